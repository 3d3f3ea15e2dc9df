"""lichen's gunicorn worker classes (lichen.gunicorn) under a real gunicorn
master in a subprocess: what a client sees over the socket, what the
master does with the workers (signals, heartbeat, max_requests) and what
gunicorn's logs get."""

import os
import re
import signal
import socket
import threading
import time

import pytest

from helpers_cli import (APPS, PYTHON, LichenProcess, child_env, connection,
                         request, run_lichen)
from support import recv_all

WORKERS = [
    pytest.param("lichen.gunicorn.Worker", id="native"),
    pytest.param("lichen.gunicorn.GeventWorker", id="gevent"),
]
GUNICORN = [PYTHON, "-m", "gunicorn"]
APP = "gunicorn_app:application"


@pytest.fixture
def gunicorn(tmp_path):
    """start(worker_class, *args): a gunicorn master serving tests/apps/
    gunicorn_app.py on 127.0.0.1 (an ephemeral port) with one worker;
    stopped (killed if need be) at teardown."""
    started = []

    def start(worker_class, *args, stdout=None):
        command = ["-k", worker_class, "-b", "127.0.0.1:0", "-w", "1",
                   "--no-control-socket", "--graceful-timeout", "20",
                   "--pythonpath", str(APPS), *args, APP]
        env = child_env(GUNICORN_TEST_DIR=str(tmp_path))
        kwargs = {"stdout": stdout} if stdout is not None else {}
        proc = LichenProcess(command, command=GUNICORN, env=env, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            proc.stop(30)
        finally:
            proc.kill()


def get(proc, path="/", **kwargs):
    kwargs.setdefault("timeout", 20.0)
    return request(proc.urls[0], path=path, **kwargs)


def worker_pid(proc):
    resp = get(proc, "/pid")
    assert resp.status == 200, resp.body
    return int(resp.body)


def wait_for_file(directory, prefix, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(name.startswith(prefix) for name in os.listdir(directory)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no {prefix}* file in {directory}")


def in_thread(func, *args):
    """Run func(*args) in a thread; returns (thread, result list)."""
    result = []

    def target():
        try:
            result.append(func(*args))
        except Exception as exc:  # the test looks at it
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_hello_world_with_keepalive(gunicorn, worker_class):
    proc = gunicorn(worker_class)
    conn = connection(proc.urls[0], timeout=20.0)
    try:
        peers = set()
        for _ in range(3):
            conn.request("GET", "/peer")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert resp.getheader("Connection") != "close"
            peers.add(body)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"Hello, world!\n")
    finally:
        conn.close()
    # One worker, one client port: the three requests came on one
    # connection.
    assert len(peers) == 1, peers


@pytest.mark.timeout(60)
def test_gevent_worker_serves_sleeping_requests_concurrently(gunicorn):
    proc = gunicorn("lichen.gunicorn.GeventWorker")
    pid = worker_pid(proc)  # booted
    clients = 50
    barrier = threading.Barrier(clients + 1)
    results = [None] * clients

    def client(i):
        barrier.wait()
        resp = get(proc, "/gsleep", headers={"X-Client": str(i)})
        results[i] = (resp.status, resp.body)

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    assert results == [(200, b"slept\n")] * clients
    # One worker, 50 x 0.5 s of gevent.sleep: served side by side.
    assert elapsed < 2.0, elapsed
    assert worker_pid(proc) == pid


@pytest.mark.timeout(90)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_max_requests_replaces_the_worker(gunicorn, worker_class):
    proc = gunicorn(worker_class, "--max-requests", "10")
    pids = []
    for _ in range(25):
        pids.append(worker_pid(proc))  # a new connection each: none lost
    first = pids[0]
    assert pids.count(first) >= 10, pids
    # Replaced after its 10 requests (a few more at most: the gevent worker
    # may take one more connection while it begins to stop).
    assert pids.count(first) <= 12, pids
    assert pids[-1] != first, pids
    assert f"Worker exiting (pid: {first})" in proc.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_sigterm_lets_the_request_in_flight_finish(gunicorn, worker_class,
                                                   tmp_path):
    proc = gunicorn(worker_class)
    thread, result = in_thread(get, proc, "/sleep?1.5")
    wait_for_file(tmp_path, "inflight-")
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    elapsed = time.monotonic() - t0
    thread.join(10)
    resp = result[0]
    assert not isinstance(resp, Exception), resp
    assert (resp.status, resp.body) == (200, b"slept\n")
    # Once that request was answered the worker ended: not at the graceful
    # timeout (20 s).
    assert elapsed < 10.0, elapsed


def _body_half_sent_then_term(proc, tmp_path):
    """A connection whose POST sent half its body, the application
    reading it, when the master got SIGTERM (and said so)."""
    port = int(proc.urls[0].rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 10\r\n\r\n12345")
    wait_for_file(tmp_path, "reading-")
    proc.signal(signal.SIGTERM)
    assert proc.wait_stderr("Handling signal: term", timeout=10)
    return s


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_sigterm_waits_for_a_request_reading_its_body(gunicorn, worker_class,
                                                      tmp_path):
    proc = gunicorn(worker_class)
    with _body_half_sent_then_term(proc, tmp_path) as s:
        # The worker stops meanwhile; the request goes on.
        time.sleep(1.0)
        assert proc.proc.poll() is None
        s.sendall(b"67890")
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b"\r\n\r\n10"), data
    assert proc.wait(30) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_sigquit_during_a_graceful_stop_ends_it(gunicorn, worker_class,
                                                tmp_path):
    proc = gunicorn(worker_class)
    pid = worker_pid(proc)
    with _body_half_sent_then_term(proc, tmp_path) as s:
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.signal(signal.SIGQUIT)  # the master's quick shutdown
        assert proc.wait(30) == 0
        elapsed = time.monotonic() - t0
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    assert data == b""  # closed unanswered
    # The worker left on its own (the master kills one that is still
    # there 2 s after its quick shutdown began).
    assert f"Worker exiting (pid: {pid})" in proc.stderr
    assert "SIGKILL" not in proc.stderr
    assert elapsed < 8.0, elapsed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_sigquit_stops_at_once(gunicorn, worker_class, tmp_path):
    proc = gunicorn(worker_class)
    thread, result = in_thread(get, proc, "/sleep?15")
    wait_for_file(tmp_path, "inflight-")
    t0 = time.monotonic()
    proc.signal(signal.SIGQUIT)
    assert proc.wait(30) == 0
    elapsed = time.monotonic() - t0
    thread.join(20)
    # The request was cut short: its connection closed without an answer.
    assert result and isinstance(result[0], Exception), result
    assert elapsed < 8.0, elapsed


@pytest.mark.timeout(90)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_sighup_reloads_the_workers(gunicorn, worker_class):
    proc = gunicorn(worker_class)
    old = worker_pid(proc)
    proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    pid = old
    while pid == old and time.monotonic() < deadline:
        pid = worker_pid(proc)  # every request answered meanwhile
        time.sleep(0.05)
    assert pid != old
    assert proc.wait_stderr(f"Worker exiting (pid: {old})", timeout=30)
    for _ in range(5):
        assert worker_pid(proc) == pid
    assert proc.stop(30) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_idle_worker_keeps_its_heartbeat(gunicorn, worker_class):
    proc = gunicorn(worker_class, "--timeout", "2")
    pid = worker_pid(proc)
    time.sleep(5)
    assert worker_pid(proc) == pid
    assert "WORKER TIMEOUT" not in proc.stderr
    assert proc.stop(30) == 0


# gunicorn's default access_log_format, as gunicorn writes it.
ACCESS_RE = re.compile(
    r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"(GET [^"]*) HTTP/1\.1" (\d{3}) (\d+|-) "([^"]*)" "((?:[^"\\]|\\.)*)"')


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_access_log(gunicorn, worker_class, tmp_path):
    out = tmp_path / "stdout"
    with open(out, "wb") as stdout:
        proc = gunicorn(worker_class, "--access-logfile", "-",
                        stdout=stdout)
        assert get(proc, "/").status == 200
        assert get(proc, "/peer?x=1&y=%22",
                   headers={"User-Agent": 'test-agent/1.0 "x"',
                            "Referer": "http://example.com/a"}).status == 200
        assert get(proc, "/error").status == 500
        assert proc.stop(30) == 0
    lines = [l for l in out.read_text().splitlines() if l]
    assert len(lines) == 3, lines
    got = [ACCESS_RE.fullmatch(l) for l in lines]
    assert all(got), lines
    assert got[0].groups() == ("GET /", "200", "14", "-", "-")
    assert got[1].group(1, 2, 4, 5) == ("GET /peer?x=1&y=%22", "200",
                                        "http://example.com/a",
                                        r'test-agent/1.0 \"x\"')
    assert got[2].group(1, 2) == ("GET /error", "500")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_access_log_format(gunicorn, worker_class, tmp_path):
    log = tmp_path / "access.log"
    proc = gunicorn(worker_class, "--access-logfile", str(log),
                    "--access-logformat",
                    "%(m)s|%(U)s|%(q)s|%(s)s|%(B)s|%(D)s|%(p)s|%(a)s|"
                    "%({x-missing}i)s|%({x-trace}i)s|%({wsgi.url_scheme}e)s")
    pid = worker_pid(proc)
    assert get(proc, "/a%20b", headers={"User-Agent": "ua",
                                        "X-Trace": "t-1"}).status == 200
    assert proc.stop(30) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"GET\|/pid\|\|200\|{len(str(pid))}\|\d+\|<{pid}>"
                        r"\|[^|]*\|-\|-\|http", lines[0]), lines[0]
    # Any request header and environ key: the logger has the environ.
    assert re.fullmatch(rf"GET\|/a b\|\|200\|14\|\d+\|<{pid}>\|ua\|-\|t-1"
                        r"\|http", lines[1]), lines[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_application_error_is_500_and_worker_survives(gunicorn,
                                                     worker_class):
    proc = gunicorn(worker_class)
    pid = worker_pid(proc)
    resp = get(proc, "/error")
    assert resp.status == 500
    assert worker_pid(proc) == pid
    assert proc.wait_stderr("RuntimeError: deliberate failure", timeout=10)
    assert "Error handling request GET /error" in proc.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_request_limits_and_keepalive_setting(gunicorn, worker_class):
    proc = gunicorn(worker_class, "--limit-request-line", "100",
                    "--keep-alive", "1")
    assert get(proc, "/" + "a" * 200).status == 414
    assert get(proc, "/" + "a" * 50).status == 200
    port = int(proc.urls[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"Hello, world!\n"):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        t0 = time.monotonic()
        # Idle: closed by the server after the keep-alive timeout (1 s).
        assert s.recv(4096) == b""
        idle = time.monotonic() - t0
    assert 0.5 < idle < 5.0, idle


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_tls_settings_are_served_by_the_engine(gunicorn, worker_class,
                                               tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    proc = gunicorn(worker_class, "--certfile", str(cert), "--keyfile",
                    str(key))
    port = int(proc.urls[0].rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close"
                      b"\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b"Hello, world!\n"), data
    # Plain HTTP on the TLS port: the engine says so.
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"speaks HTTPS" in s.recv(4096)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", WORKERS)
def test_sigusr1_reopens_the_access_log(gunicorn, worker_class, tmp_path):
    log = tmp_path / "access.log"
    proc = gunicorn(worker_class, "--access-logfile", str(log))
    assert get(proc, "/before").status == 200
    # The line is written just after the response: wait for it.
    deadline = time.monotonic() + 20
    while "/before" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log.rename(tmp_path / "access.log.1")
    proc.signal(signal.SIGUSR1)
    # The master reopens its files and passes the signal on to the worker.
    deadline = time.monotonic() + 20
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.exists()
    for _ in range(100):  # the worker may reopen it a little later
        assert get(proc, "/after").status == 200
        if "/after" in log.read_text():
            break
        time.sleep(0.1)
    assert proc.stop(30) == 0
    assert "/before" in (tmp_path / "access.log.1").read_text()
    assert "GET /after" in log.read_text()


def process_ended(pid):
    """Gone, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("worker_class", WORKERS)
def test_worker_exits_when_the_master_dies(gunicorn, worker_class):
    proc = gunicorn(worker_class)
    pid = worker_pid(proc)
    proc.proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 15
    try:
        while not process_ended(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_ended(pid)
    finally:
        if not process_ended(pid):
            os.kill(pid, signal.SIGKILL)  # the orphan this test made
