"""Abuse: slow clients and piles of idle connections against one lichen
process, while a normal client keeps asking for a page every 200 ms and must
get it within a second, every time.

Each test runs the server in a subprocess (LichenProcess), so a server that
gets stuck fails the test instead of hanging pytest. The slow attacks come
from slowhttptest (Debian package `slowhttptest`, which `make test` installs
when missing), aimed at 127.0.0.1 only and bounded in time. The TLS attacks
(stalled handshakes, garbage on the TLS port) are made here with plain
sockets, against a certificate made at test time with the openssl command.
The figures are printed (run with -s to see them); docs/abuse.md records
those measured.

This module is also the application the server runs (`test_abuse:application`).
"""

import csv
import math
import os
import resource
import selectors
import shutil
import socket
import ssl
import statistics
import struct
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
                data = self.fetch()
                if not (data.startswith(b"HTTP/1.1 200 ") and
                        data.endswith(b"Hello, world!\n")):
                    err = f"bad answer {data[:80]!r}"
            except OSError as e:
                err = repr(e)
            took = time.monotonic() - t0
            self.samples.append((took, err))
            self._halt.wait(max(0.0, PROBE_INTERVAL - took))

    def fetch(self):
        return get(self.port)

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


# ---- TLS -------------------------------------------------------------------------

HANDSHAKE_TIMEOUT = 3  # --tls-handshake-timeout of the TLS tests
STALLERS = 500  # of each kind: silent, and a partial ClientHello
# The stalled handshakes cost the normal client at most this much at the
# median, over its median before the attack.
TLS_MEDIAN_EXTRA = 0.010


def make_certificate(directory):
    """A fresh self-signed EC certificate for 127.0.0.1 and localhost;
    returns (certfile, keyfile)."""
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl command is not installed (Debian package openssl)")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        [exe, "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def start_tls_server(directory, extra_args=()):
    """A lichen process whose listener speaks TLS; returns (server, client
    context trusting its certificate)."""
    cert, key = make_certificate(directory)
    server = start_server(["--certfile", cert, "--keyfile", key,
                           "--tls-handshake-timeout", str(HANDSHAKE_TIMEOUT),
                           *extra_args])
    assert server.urls[0].startswith("https://127.0.0.1:"), server.urls
    return server, ssl.create_default_context(cafile=cert)


def get_tls(port, ctx, path="/", timeout=PROBE_BOUND * 2):
    """GET over TLS on a new connection (Connection: close), the
    certificate verified; returns the raw bytes of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return get_until_close(s, path)


class TLSProber(Prober):
    """The normal client over TLS: a full handshake every time."""

    def __init__(self, port, ctx):
        super().__init__(port)
        self.ctx = ctx
        self.starts = []  # when each probe began, beside self.samples

    def fetch(self):
        self.starts.append(time.monotonic())
        return get_tls(self.port, self.ctx)

    def between(self, t0, t1):
        """Sorted times of the probes begun between t0 and t1."""
        return sorted(took for start, (took, _) in
                      zip(self.starts, self.samples) if t0 <= start < t1)


def tls_baseline(port, ctx, count=15):
    """Median time of a TLS GET on a new connection, the server idle."""
    times = []
    for _ in range(count):
        t0 = time.monotonic()
        assert get_tls(port, ctx).endswith(b"Hello, world!\n")
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def client_hello():
    """The bytes a real client (Python's ssl) sends first: its ClientHello,
    one TLS record."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


def reset_close(sock):
    """Close with a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Watched:
    """Client sockets waiting for the server to close them, in a selector:
    when each was connected, what came back, when and how it ended."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.live = 0
        self.records = []

    def add(self, sock, kind, t_connect):
        rec = {"kind": kind, "t": t_connect, "data": b"", "closed": None,
               "how": None}
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, rec)
        self.records.append(rec)
        self.live += 1

    def service(self, timeout):
        for key, _ in self.sel.select(timeout):
            rec, sock = key.data, key.fileobj
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk, how = b"", "reset"
            else:
                how = "eof"
            if chunk:
                rec["data"] += chunk
                continue
            rec["closed"] = time.monotonic() - rec["t"]
            rec["how"] = how
            self.sel.unregister(sock)
            sock.close()
            self.live -= 1

    def wait_all(self, deadline):
        while self.live and time.monotonic() < deadline:
            self.service(min(0.1, max(0.0, deadline - time.monotonic())))

    def close(self):
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()
        self.sel.close()

    def closed_after(self, kind=None):
        """Sorted seconds from connect to the server's close."""
        return sorted(r["closed"] for r in self.records
                      if r["closed"] is not None
                      and (kind is None or r["kind"] == kind))


def spread(values):
    if not values:
        return "none"
    return (f"{values[0]:.2f}/{values[len(values) // 2]:.2f}/"
            f"{values[-1]:.2f} s")


def log_lines(server):
    return server.stderr.splitlines()


def wait_fds(pid, fds0, timeout=10.0):
    deadline = time.monotonic() + timeout
    while fd_count(pid) > fds0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return fd_count(pid)


@pytest.mark.heavy
@pytest.mark.timeout(90)
def test_tls_stalled_handshakes_are_cut_while_others_are_served(tmp_path):
    # 500 clients connect and never send a byte, 500 send the first 50 bytes
    # of a ClientHello and stop. The server holds them all, serves the
    # normal client among them as if they were not there, and closes every
    # one at --tls-handshake-timeout, logging no more than a line a second.
    server, ctx = start_tls_server(str(tmp_path))
    partial = client_hello()[:50]
    watched = Watched()
    try:
        pid = server.proc.pid
        base = tls_baseline(server.port, ctx)
        rss0, fds0 = rss_kb(pid), fd_count(pid)
        lines0 = len(log_lines(server))
        prober = TLSProber(server.port, ctx)
        prober.start()
        watch = ServerWatch(pid)
        watch.start()
        t0 = time.monotonic()
        for i in range(2 * STALLERS):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            t = time.monotonic()
            if i % 2:
                s.sendall(partial)
            watched.add(s, "partial" if i % 2 else "silent", t)
        opened = time.monotonic() - t0
        # All accepted: the server holds one descriptor per connection.
        deadline = time.monotonic() + 2
        while fd_count(pid) < fds0 + 2 * STALLERS and \
                time.monotonic() < deadline:
            watched.service(0.05)
        fds_held = fd_count(pid)
        t_held = time.monotonic()
        watched.wait_all(t0 + HANDSHAKE_TIMEOUT + 10)
        window = time.monotonic() - t0
        fds1 = wait_fds(pid, fds0)
        samples = watch.finish()
        summary = prober.check(min_samples=int(
            (time.monotonic() - t0) / PROBE_INTERVAL * 0.5))
        # the probes made while all the stalled handshakes were held
        low, high = HANDSHAKE_TIMEOUT - 0.5, 2 * HANDSHAKE_TIMEOUT
        during = prober.between(t0, t0 + low)
        assert during, f"no probe while they were held ({summary})"
        median = statistics.median(during)
        rss1 = rss_kb(pid)
        rss_peak = max([s[2] for s in samples] + [rss1])
        new_lines = log_lines(server)[lines0:]
        silent = watched.closed_after("silent")
        part = watched.closed_after("partial")
        how = {h: sum(r["how"] == h for r in watched.records)
               for h in ("eof", "reset")}
        answered = sum(bool(r["data"]) for r in watched.records)
        print(f"\n{2 * STALLERS} stalled handshakes opened in {opened:.2f}s; "
              f"server fds {fds0} -> {fds_held} (at {t_held - t0:.2f}s) -> "
              f"{fds1}; RSS {rss0} kB -> peak {rss_peak} kB -> {rss1} kB; "
              f"closed by the server after (min/median/max) silent "
              f"{spread(silent)}, partial ClientHello {spread(part)}; "
              f"{how['eof']} EOF, {how['reset']} reset, {answered} got bytes "
              f"first; all gone {window:.2f}s after the first; normal client "
              f"before {base * 1e3:.1f} ms median, while they were held "
              f"{len(during)} probes, median {median * 1e3:.1f} ms, max "
              f"{during[-1] * 1e3:.1f} ms; in all {summary}; "
              f"{len(new_lines)} log lines: {new_lines}")
        assert fds_held >= fds0 + 2 * STALLERS, (fds0, fds_held)
        assert len(silent) == STALLERS and len(part) == STALLERS, (
            f"left open by the server: {STALLERS - len(silent)} silent, "
            f"{STALLERS - len(part)} partial")
        # Cut at the handshake timeout (counted from accept, which comes
        # after the client's connect): not before, and not long after.
        for name, times in (("silent", silent), ("partial", part)):
            assert low <= times[0] and times[-1] <= high, (name, spread(times))
        assert fds1 <= fds0, f"server kept {fds1 - fds0} descriptors"
        assert median <= base + TLS_MEDIAN_EXTRA, (
            f"normal client's median {median * 1e3:.1f} ms during the "
            f"attack, {base * 1e3:.1f} ms before")
        assert len(new_lines) <= math.ceil(window) + 1, new_lines
        assert server.proc.poll() is None, server.stderr[-2000:]
        assert get_tls(server.port, ctx).endswith(b"Hello, world!\n")
    finally:
        watched.close()
        server.stop(timeout=20)


GARBAGE_CONNECTIONS = 2000
GARBAGE_RATE = 500  # connections a second
PLAIN_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.heavy
@pytest.mark.timeout(90)
def test_tls_port_survives_garbage_and_plain_http(tmp_path):
    # 2,000 connections at 500 a second, five kinds in turn: random bytes;
    # a TLS handshake record full of random bytes; a plain HTTP GET; the
    # first 50 bytes of a ClientHello, then a reset; a whole ClientHello,
    # then a reset. Each one the server closes (the plain GET after a plain
    # 400 saying the port speaks HTTPS), the normal client is answered all
    # along, and stderr gets at most about a line a second.
    server, ctx = start_tls_server(str(tmp_path))
    hello = client_hello()
    kinds = ("random", "record", "plain-get", "partial-rst", "hello-rst")
    watched = Watched()
    try:
        pid = server.proc.pid
        base = tls_baseline(server.port, ctx)
        rss0, fds0 = rss_kb(pid), fd_count(pid)
        lines0 = len(log_lines(server))
        prober = TLSProber(server.port, ctx)
        prober.start()
        watch = ServerWatch(pid)
        watch.start()
        t0 = time.monotonic()
        resets = 0
        for i in range(GARBAGE_CONNECTIONS):
            due = t0 + i / GARBAGE_RATE
            while time.monotonic() < due:
                watched.service(max(0.0, due - time.monotonic()))
            kind = kinds[i % len(kinds)]
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            t = time.monotonic()
            if kind == "random":
                s.sendall(os.urandom(1 + i % 2048))
            elif kind == "record":
                s.sendall(b"\x16\x03\x01\x00\x80" + os.urandom(128))
            elif kind == "plain-get":
                s.sendall(PLAIN_GET)
            elif kind == "partial-rst":
                s.sendall(hello[:50])
                reset_close(s)
                resets += 1
                continue
            else:
                s.sendall(hello)
                reset_close(s)
                resets += 1
                continue
            watched.add(s, kind, t)
        sent = time.monotonic() - t0
        watched.wait_all(time.monotonic() + HANDSHAKE_TIMEOUT + 10)
        window = time.monotonic() - t0
        fds1 = wait_fds(pid, fds0)
        samples = watch.finish()
        summary = prober.check(min_samples=int(
            (time.monotonic() - t0) / PROBE_INTERVAL * 0.5))
        median = statistics.median(took for took, _ in prober.samples)
        rss1 = rss_kb(pid)
        fds_peak = max([s[1] for s in samples] + [fds1])
        rss_peak = max([s[2] for s in samples] + [rss1])
        new_lines = log_lines(server)[lines0:]
        left = [r["kind"] for r in watched.records if r["closed"] is None]
        gets = [r for r in watched.records if r["kind"] == "plain-get"]
        bad_gets = [r["data"][:200] for r in gets
                    if not (r["data"].startswith(b"HTTP/1.1 400 ")
                            and b"https" in r["data"].lower())]
        print(f"\n{GARBAGE_CONNECTIONS} garbage connections in {sent:.2f}s "
              f"({resets} ended by a reset); closed by the server after "
              f"(min/median/max) "
              + ", ".join(f"{k} {spread(watched.closed_after(k))}"
                          for k in kinds[:3])
              + f"; server fds {fds0} -> peak {fds_peak} -> {fds1}; RSS "
              f"{rss0} kB -> peak {rss_peak} kB -> {rss1} kB; normal client "
              f"before {base * 1e3:.1f} ms median, during {summary}; "
              f"{len(new_lines)} log lines in {window:.1f}s: {new_lines}")
        if gets:
            print(f"plain GET answered: {gets[0]['data'][:300]!r}")
        assert not left, f"{len(left)} left open by the server: {left[:10]}"
        assert not bad_gets, f"{len(bad_gets)} plain GETs: {bad_gets[:3]}"
        for k in kinds[:3]:
            closed = watched.closed_after(k)
            assert closed[-1] <= 2 * HANDSHAKE_TIMEOUT, (k, spread(closed))
        assert fds1 <= fds0, f"server kept {fds1 - fds0} descriptors"
        assert median <= base + TLS_MEDIAN_EXTRA, (
            f"normal client's median {median * 1e3:.1f} ms during the "
            f"attack, {base * 1e3:.1f} ms before")
        assert len(new_lines) <= math.ceil(window) + 1, new_lines
        assert server.proc.poll() is None, server.stderr[-2000:]
        assert get_tls(server.port, ctx).endswith(b"Hello, world!\n")
    finally:
        watched.close()
        server.stop(timeout=20)
