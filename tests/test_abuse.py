"""Abuse: slow clients and piles of idle connections against one lichen
process, while a normal client keeps asking for a page every 200 ms and must
get it within a second, every time.

Each test runs the server in a subprocess (LichenProcess), so a server that
gets stuck fails the test instead of hanging pytest. The slow attacks come
from slowhttptest (Debian package `slowhttptest`, which `make test` installs
when missing), aimed at 127.0.0.1 only and bounded in time. The figures are
printed (run with -s to see them); docs/abuse.md records those measured.

This module is also the application the server runs (`test_abuse:application`).
"""

import csv
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from support import get_until_close

HERE = Path(__file__).resolve().parent

PROBE_INTERVAL = 0.2  # the normal client asks this often ...
PROBE_BOUND = 1.0  # ... and must be answered within this, every time
NOFILE_WANTED = 65536


# ---- the application ---------------------------------------------------------

BIG_PIECE = b"x" * 65536  # /big?N: N pieces of 64 KiB, streamed


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        # Reads the whole body: a slow body keeps this request waiting.
        body = environ["wsgi.input"].read()
        out = b"%d bytes\n" % len(body)
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(out)))])
        return [out]
    if path == "/big":
        pieces = int(environ.get("QUERY_STRING") or 16)
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(BIG_PIECE) * pieces))])
        return (BIG_PIECE for _ in range(pieces))
    out = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(out)))])
    return [out]


# ---- helpers -----------------------------------------------------------------

def raise_nofile(wanted=NOFILE_WANTED):
    """Raise this process's open-files limit as far as allowed (also the
    limit its children inherit). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_server(extra_args=()):
    """One lichen process serving this module, with a high open-files limit
    (inherited from this process, see raise_nofile)."""
    from helpers_cli import LichenProcess, child_env

    raise_nofile()
    env = child_env(PYTHONPATH=str(HERE))
    return LichenProcess(["test_abuse:application", "--bind", "127.0.0.1:0",
                          *extra_args], env=env)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def get(port, path="/", timeout=PROBE_BOUND * 2):
    """GET on a new connection (Connection: close); returns the raw bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return get_until_close(s, path)


class Prober(threading.Thread):
    """The normal client: GET / every PROBE_INTERVAL on a new connection."""

    def __init__(self, port):
        super().__init__(daemon=True, name="abuse-prober")
        self.port = port
        self.samples = []  # (latency seconds, error or None)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            t0 = time.monotonic()
            err = None
            try:
                data = get(self.port)
                if not (data.startswith(b"HTTP/1.1 200 ") and
                        data.endswith(b"Hello, world!\n")):
                    err = f"bad answer {data[:80]!r}"
            except OSError as e:
                err = repr(e)
            took = time.monotonic() - t0
            self.samples.append((took, err))
            self._halt.wait(max(0.0, PROBE_INTERVAL - took))

    def finish(self):
        self._halt.set()
        self.join(10)
        assert not self.is_alive()
        return self.samples

    def check(self, min_samples):
        samples = self.finish()
        lat = sorted(s[0] for s in samples)
        errors = [s for s in samples if s[1] is not None]
        slow = [s for s in samples if s[0] >= PROBE_BOUND]
        summary = (f"{len(samples)} probes, median {lat[len(lat) // 2] * 1e3:.1f}"
                   f" ms, max {lat[-1] * 1e3:.1f} ms" if lat else "no probes")
        print(f"\nnormal client: {summary}")
        assert len(samples) >= min_samples, summary
        assert not errors, f"{len(errors)} failed: {errors[:3]} ({summary})"
        assert not slow, f"{len(slow)} over {PROBE_BOUND}s ({summary})"
        return summary


def slowhttptest(port, mode, *extra, path="/", seconds=15, connections=500,
                 rate=250):
    """Run one bounded slowhttptest attack against 127.0.0.1:port; returns
    its per-second statistics: [(second, closed, pending, connected)]."""
    exe = shutil.which("slowhttptest")
    if exe is None:
        pytest.fail("slowhttptest is not installed: run make test-tools (Debian package slowhttptest)")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "stats")
        cmd = [exe, mode, "-c", str(connections), "-r", str(rate),
               "-l", str(seconds), "-p", "2", "-g", "-o", prefix,
               "-u", f"http://127.0.0.1:{port}{path}", *extra]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              errors="replace", timeout=seconds + 45)
        try:
            with open(prefix + ".csv") as f:
                rows = list(csv.reader(f))[1:]
        except OSError:
            rows = []
    assert rows, f"slowhttptest gave no statistics:\n{proc.stdout[-2000:]}"
    return [tuple(int(x) for x in row[:4]) for row in rows if row]


class ServerWatch(threading.Thread):
    """Samples the server's descriptors and RSS twice a second."""

    def __init__(self, pid):
        super().__init__(daemon=True, name="abuse-watch")
        self.pid = pid
        self.t0 = time.monotonic()
        self.samples = []  # (seconds, fds, RSS kB)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(0.25):
            try:
                self.samples.append((time.monotonic() - self.t0,
                                     fd_count(self.pid), rss_kb(self.pid)))
            except OSError:
                return

    def finish(self):
        self._halt.set()
        self.join(5)
        return self.samples


def run_attack(server_args, mode, *attack_args, path="/", seconds=15,
               connections=500, rate=250):
    """One server, one attack, the normal client throughout. Returns the
    attacker's statistics and the server's samples."""
    server = start_server(server_args)
    try:
        pid = server.proc.pid
        assert get(server.port).endswith(b"Hello, world!\n")
        rss0, fds0 = rss_kb(pid), fd_count(pid)
        prober = Prober(server.port)
        prober.start()
        watch = ServerWatch(pid)
        watch.start()
        try:
            rows = slowhttptest(server.port, mode, *attack_args, path=path,
                                seconds=seconds, connections=connections,
                                rate=rate)
        finally:
            # watch on until the server is back to its descriptors
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                    not watch.samples or watch.samples[-1][1] > fds0 + 1):
                time.sleep(0.25)
            samples = watch.finish()
        elapsed = time.monotonic() - watch.t0
        summary = prober.check(
            min_samples=int(elapsed / PROBE_INTERVAL * 0.5))
        assert server.proc.poll() is None, server.stderr[-2000:]

        fds_peak = max(s[1] for s in samples)
        at_peak = next(s[0] for s in samples if s[1] == fds_peak)
        # +1: the normal client may hold one connection at that moment
        shed_at = next((s[0] for s in samples
                        if s[0] > at_peak and s[1] <= fds0 + 1), None)
        rss_peak = max(s[2] for s in samples)
        deadline = time.monotonic() + 10
        while fd_count(pid) > fds0 and time.monotonic() < deadline:
            time.sleep(0.2)
        fds1, rss1 = fd_count(pid), rss_kb(pid)
        attacker_peak = max(r[3] for r in rows)
        print(f"attack {mode} {' '.join(attack_args)} on {path}: attacker "
              f"peak {attacker_peak} connected, {rows[-1][1]} closed, ran "
              f"{rows[-1][0]}s; server fds {fds0} -> peak {fds_peak} -> back "
              f"at {shed_at if shed_at is None else round(shed_at, 1)}s -> "
              f"{fds1}; RSS {rss0} kB -> peak {rss_peak} kB -> {rss1} kB; "
              f"{summary}")
        assert fds_peak >= fds0 + connections * 0.8, (
            f"the attack did not get its connections in (peak {fds_peak})")
        # The server shed them, well before the attack's planned end.
        assert shed_at is not None and shed_at < seconds, (shed_at, samples)
        assert fds1 <= fds0, f"server kept {fds1 - fds0} descriptors"
        return rows, {"fds0": fds0, "fds_peak": fds_peak, "rss0": rss0,
                      "rss_peak": rss_peak, "rss1": rss1}
    finally:
        server.stop(timeout=20)


def assert_attacker_saw_them_closed(rows):
    """Most of the connections the attacker got in, it saw closed. Its
    last report may come before it has seen the last few go, and on a
    loaded machine it may not get all of them in: the server's descriptors,
    checked in run_attack, are the exact count."""
    peak = max(r[3] for r in rows)
    assert rows[-1][1] >= 0.8 * peak, (peak, rows[-1])


# ---- the tests -----------------------------------------------------------------

@pytest.mark.heavy
@pytest.mark.timeout(90)
def test_slowloris_heads_time_out_while_others_are_served():
    # 500 connections each sending a header line every second, never ending
    # the head: the server cuts each at --timeout-header.
    rows, _ = run_attack(["--timeout-header", "3"], "-H", "-i", "1")
    assert_attacker_saw_them_closed(rows)


@pytest.mark.heavy
@pytest.mark.timeout(90)
def test_slow_body_is_cut_while_others_are_served():
    # 500 POSTs announcing 8 KiB of body and sending a few bytes every 5 s
    # to an application that reads it: cut at --timeout-body (2 s without
    # progress).
    rows, _ = run_attack(["--timeout-body", "2"], "-B", "-i", "5",
                         "-s", "8192", path="/upload")
    assert_attacker_saw_them_closed(rows)


@pytest.mark.heavy
@pytest.mark.timeout(90)
def test_slow_read_is_cut_while_others_are_served():
    # 200 clients asking for 8 MiB with a receive window of 64..256 bytes
    # and reading 5 bytes a second. The kernel takes a few MiB per socket
    # (that is its send buffer, not the server's memory); then the write
    # stalls and is cut at --timeout-write. The response is a generator the
    # server must not run ahead of the socket: its RSS stays flat.
    _, srv = run_attack(["--timeout-write", "2"], "-X", "-k", "1", "-n", "1",
                        "-w", "64", "-y", "256", "-z", "5", path="/big?128",
                        connections=200, rate=200)
    assert srv["rss_peak"] - srv["rss0"] < 64 * 1024, srv


IDLE_CONNECTIONS = 10_000


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_ten_thousand_idle_connections():
    limit = raise_nofile()
    if limit < IDLE_CONNECTIONS + 1000:
        pytest.fail(f"open-files limit {limit} < {IDLE_CONNECTIONS + 1000}: "
                    "raise it (ulimit -n) to run this test")
    timeout_header = 15
    server = start_server(["--timeout-header", str(timeout_header),
                           "--backlog", "4096"])
    idle = []
    try:
        pid = server.proc.pid
        assert get(server.port).endswith(b"Hello, world!\n")
        rss0, fds0 = rss_kb(pid), fd_count(pid)
        prober = Prober(server.port)
        prober.start()
        t0 = time.monotonic()
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", server.port),
                                                 timeout=5))
        opened = time.monotonic() - t0
        # All accepted: the server holds one descriptor per connection.
        deadline = time.monotonic() + 10
        while fd_count(pid) < fds0 + IDLE_CONNECTIONS and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        fds_peak, rss_peak = fd_count(pid), rss_kb(pid)
        assert fds_peak >= fds0 + IDLE_CONNECTIONS, (fds0, fds_peak)
        time.sleep(2.0)  # the normal client keeps going among them
        t1 = time.monotonic()
        assert get(server.port).endswith(b"Hello, world!\n")
        one = time.monotonic() - t1
        summary = prober.check(min_samples=5)
        # Idle past --timeout-header: every one of them is closed by the
        # server, and its descriptors are back where they were.
        deadline = t0 + timeout_header + 15
        while fd_count(pid) > fds0 and time.monotonic() < deadline:
            time.sleep(0.2)
        fds1, rss1 = fd_count(pid), rss_kb(pid)
        print(f"{IDLE_CONNECTIONS} idle connections opened in {opened:.2f}s; "
              f"server fds {fds0} -> {fds_peak} -> {fds1}; RSS {rss0} kB -> "
              f"{rss_peak} kB -> {rss1} kB; one GET among them "
              f"{one * 1e3:.1f} ms; {summary}")
        assert fds1 <= fds0, f"server still holds {fds1 - fds0} connections"
        for s in idle[:: IDLE_CONNECTIONS // 20]:
            s.settimeout(2)
            try:
                assert s.recv(1) == b""  # closed by the server
            except ConnectionResetError:
                pass
        assert server.proc.poll() is None, server.stderr[-2000:]
    finally:
        for s in idle:
            s.close()
        server.stop(timeout=20)
