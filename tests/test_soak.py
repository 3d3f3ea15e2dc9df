"""Soak: a million keep-alive requests against one lichen process, with its
memory (VmRSS) and descriptors (/proc/PID/fd) sampled before, during and
after. Both must stay flat: RSS within 10 MB of what it was after warm-up,
the descriptor count back to where it started once the clients are gone.

The load comes from wrk (Debian package `wrk`, installed by `make test` when
missing) in bounded bursts of two seconds until a million requests have been
answered, alternately one request at a time per connection and pipelined by
16 (wrk's own pipelining script); each burst opens and closes its
connections. The figures are printed (run with -s); docs/abuse.md records them.
"""

import re
import shutil
import subprocess
import threading
import time

import pytest

from test_abuse import fd_count, get, rss_kb, start_server

TOTAL_REQUESTS = 1_000_000
WARMUP_REQUESTS = 100_000
BURST_SECONDS = 2
MIN_BURSTS = 6  # so that there is a "during" even on a fast machine
PIPELINE_DEPTH = 16
# wrk's own example for pipelining: each "request" is PIPELINE_DEPTH of them
PIPELINE_LUA = """
init = function(args)
   local r = {}
   for i = 1, %d do r[i] = wrk.format(nil, "/") end
   req = table.concat(r)
end
request = function() return req end
""" % PIPELINE_DEPTH
TIME_CAP = 150  # seconds of load at most, whatever the speed
RSS_GROWTH_MAX_KB = 10 * 1024
CONNECTIONS = 32

REQUESTS_RE = re.compile(r"(\d+) requests in ([\d.]+)(m?s)")
NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKERR_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), "
                        r"write (\d+), timeout (\d+)")


def wrk_burst(exe, port, seconds, script=None):
    """One wrk run; returns (requests answered, seconds)."""
    cmd = [exe, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "2s",
           *(["-s", script] if script else []), f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=seconds + 30).stdout
    m = REQUESTS_RE.search(out)
    assert m, f"no request count in wrk output:\n{out}"
    took = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    bad = NON2XX_RE.search(out)
    assert not bad, f"wrk got non-2xx answers:\n{out}"
    errs = SOCKERR_RE.search(out)
    # read errors are wrk's connections closed at the end of the run
    assert not errs or (int(errs.group(1)) == int(errs.group(3)) ==
                        int(errs.group(4)) == 0), f"socket errors:\n{out}"
    return int(m.group(1)), took


@pytest.mark.heavy
@pytest.mark.timeout(300)
def test_million_keepalive_requests_memory_and_fds_flat(tmp_path):
    exe = shutil.which("wrk")
    if exe is None:
        pytest.fail("wrk is not installed: run make test-tools (Debian package wrk)")
    script = tmp_path / "pipeline.lua"
    script.write_text(PIPELINE_LUA)
    server = start_server(["--keepalive", "5"])
    try:
        pid = server.proc.pid
        assert get(server.port).endswith(b"Hello, world!\n")
        rss_start, fds_start = rss_kb(pid), fd_count(pid)

        samples = []  # (seconds since start, RSS kB, fds)
        done = threading.Event()
        t_start = time.monotonic()

        def sample():
            while not done.wait(0.5):
                try:
                    samples.append((time.monotonic() - t_start, rss_kb(pid),
                                    fd_count(pid)))
                except OSError:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        total, busy, rss_warm, warm_at, bursts = 0, 0.0, None, None, 0
        by_kind = {False: [0, 0.0], True: [0, 0.0]}
        try:
            # bursts alternate: one request at a time per connection, then
            # PIPELINE_DEPTH pipelined requests per write
            while (total < TOTAL_REQUESTS or bursts < MIN_BURSTS) and \
                    busy < TIME_CAP:
                piped = bursts % 2 == 1
                n, took = wrk_burst(exe, server.port, BURST_SECONDS,
                                    str(script) if piped else None)
                total += n
                busy += took
                bursts += 1
                by_kind[piped][0] += n
                by_kind[piped][1] += took
                if rss_warm is None and total >= WARMUP_REQUESTS:
                    rss_warm, warm_at = rss_kb(pid), time.monotonic() - t_start
                assert server.proc.poll() is None, server.stderr[-2000:]
        finally:
            done.set()
            sampler.join(5)

        # The clients are gone: every connection is closed.
        deadline = time.monotonic() + 10
        while fd_count(pid) > fds_start and time.monotonic() < deadline:
            time.sleep(0.1)
        rss_end, fds_end = rss_kb(pid), fd_count(pid)
        after_warm = [s for s in samples if s[0] >= warm_at] or \
            [(0, rss_end, fds_end)]
        rss_peak = max(s[1] for s in after_warm)
        fds_peak = max(s[2] for s in samples) if samples else fds_end
        rates = ", ".join(
            f"{kind} {n / t:.0f}/s" for kind, (n, t) in
            (("one at a time", by_kind[False]),
             (f"pipelined by {PIPELINE_DEPTH}", by_kind[True])) if t)
        print(f"\nsoak: {total} requests in {busy:.1f}s of load, {bursts} "
              f"wrk runs of {CONNECTIONS} keep-alive connections ({rates}); "
              f"RSS {rss_start} kB at start, {rss_warm} kB after warm-up, peak "
              f"{rss_peak} kB after it, {rss_end} kB at the end; fds "
              f"{fds_start} -> peak {fds_peak} -> {fds_end}")
        assert total >= TOTAL_REQUESTS, (
            f"only {total} requests in {busy:.0f}s (cap {TIME_CAP}s)")
        assert rss_peak - rss_warm < RSS_GROWTH_MAX_KB, (rss_warm, rss_peak)
        assert rss_end - rss_warm < RSS_GROWTH_MAX_KB, (rss_warm, rss_end)
        assert fds_end == fds_start, (fds_start, fds_end)
        assert get(server.port).endswith(b"Hello, world!\n")
    finally:
        assert server.stop(timeout=20) == 0
