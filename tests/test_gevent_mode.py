"""Gevent mode: applications written for gevent, served unchanged.

In-process tests run a lichen.Server(gevent=True) whose thread's gevent hub
drives the engine (the `serve` fixture's gevent driver); the applications
use gevent.sleep, gevent.spawn, queues and timeouts as they would under
gevent.pywsgi. Command line tests run `lichen --gevent` (monkey-patching
first) with the applications of tests/apps/geventapps.py, against real
clients: many sockets at once, requests, a Flask view."""

import gc
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

gevent = pytest.importorskip("gevent")

import lichen  # noqa: E402
from helpers_cli import APPS, LichenProcess, child_env, request  # noqa: E402
from support import Conn, recv_all, wait_for  # noqa: E402


@pytest.fixture
def driver():
    return "gevent"


def _get(conn, path="/"):
    conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return conn.read_response()


def _body(body):
    return [("Content-Length", str(len(body)))], [body]


# -- in process: the hub of the server's thread -------------------------------

@pytest.mark.timeout(30)
def test_background_greenlet_outlives_its_request(serve):
    results = {}

    def work(key):
        gevent.sleep(0.3)
        results[key] = "done at %.1f" % 0.3

    def app(environ, start_response):
        key = environ["QUERY_STRING"]
        if environ["PATH_INFO"] == "/start":
            gevent.spawn(work, key)
            body = b"started"
        else:
            body = results.get(key, "pending").encode()
        headers, out = _body(body)
        start_response("200 OK", headers)
        return out

    srv = serve(app)
    with Conn(srv.address) as c:
        started = time.monotonic()
        assert _get(c, "/start?a").body == b"started"
        # The response did not wait for the greenlet.
        assert time.monotonic() - started < 0.25
        assert _get(c, "/result?a").body == b"pending"
    time.sleep(0.5)  # no request in between: the hub runs it all the same
    with Conn(srv.address) as c:
        assert _get(c, "/result?a").body == b"done at 0.3"


@pytest.mark.timeout(30)
def test_error_in_a_spawned_greenlet_goes_to_the_hub(serve):
    reported = []

    def fail():
        raise ValueError("failed in a spawned greenlet")

    def app(environ, start_response):
        hub = gevent.get_hub()
        if not reported and "hooked" not in environ:
            original = hub.handle_error

            def handle_error(context, type_, value, tb):
                reported.append((context, value))
                # gevent's own report still happens (printed to stderr).
                return original(context, type_, value, tb)
            hub.handle_error = handle_error
        gevent.spawn(fail)
        headers, out = _body(b"ok")
        start_response("200 OK", headers)
        return out

    srv = serve(app)
    with Conn(srv.address) as c:
        assert _get(c).body == b"ok"
        wait_for(lambda: reported)
        # The server goes on: another request on the same connection.
        assert _get(c).body == b"ok"
    context, value = reported[0]
    assert isinstance(value, ValueError)
    assert isinstance(context, gevent.Greenlet)


@pytest.mark.timeout(30)
def test_gevent_primitives_in_a_view(serve):
    from gevent.event import Event
    from gevent.lock import Semaphore
    from gevent.queue import Queue

    def app(environ, start_response):
        q, done, lock = Queue(), Event(), Semaphore()

        def producer():
            for i in range(3):
                with lock:
                    q.put(i)
                gevent.sleep(0.01)
            done.set()
        gevent.spawn(producer)
        done.wait(5)
        items = [q.get() for _ in range(3)]
        try:
            with gevent.Timeout(0.05):
                gevent.sleep(1)
            timed_out = b"no"
        except gevent.Timeout:
            timed_out = b"yes"
        headers, out = _body(b"%r timeout=%s" % (items, timed_out))
        start_response("200 OK", headers)
        return out

    srv = serve(app)
    with Conn(srv.address) as c:
        assert _get(c).body == b"[0, 1, 2] timeout=yes"


@pytest.mark.timeout(30)
def test_sleeping_views_are_served_together(serve):
    def app(environ, start_response):
        gevent.sleep(0.5)
        headers, out = _body(b"slept")
        start_response("200 OK", headers)
        return out

    srv = serve(app)
    conns = [Conn(srv.address) for _ in range(50)]
    started = time.monotonic()
    for c in conns:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in conns:
        assert c.read_response().body == b"slept"
    # One delay, not fifty.
    assert time.monotonic() - started < 2.0
    for c in conns:
        c.close()


@pytest.mark.timeout(30)
def test_client_gone_while_its_view_sleeps(serve):
    finished = []

    def app(environ, start_response):
        gevent.sleep(0.3)
        start_response("200 OK", [("Content-Length", "4")])
        finished.append(environ["PATH_INFO"])
        return [b"late"]

    srv = serve(app)
    c = Conn(srv.address)
    c.send(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.05)
    c.close()
    with Conn(srv.address) as other:
        assert _get(other, "/here").body == b"late"
    wait_for(lambda: "/gone" in finished)
    # The fixture's teardown checks that nothing of it is left alive.


@pytest.mark.timeout(30)
def test_graceful_stop_lets_sleeping_views_finish(serve):
    entered = []

    def app(environ, start_response):
        entered.append(1)
        gevent.sleep(0.5)
        headers, out = _body(b"finished")
        start_response("200 OK", headers)
        return out

    srv = serve(app)
    conns = [Conn(srv.address) for _ in range(5)]
    for c in conns:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: len(entered) == 5)
    address = srv.address
    started = time.monotonic()
    srv.stop(5)  # from another thread than the hub's: returns when drained
    assert time.monotonic() - started < 3
    for c in conns:
        r = c.read_response()
        assert (r.status, r.body) == (200, b"finished")
        c.close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2)


@pytest.mark.timeout(30)
def test_stop_timeout_cuts_what_is_still_sleeping(serve):
    def app(environ, start_response):
        gevent.sleep(10)
        start_response("200 OK", [])
        return [b"never"]

    srv = serve(app)
    c = Conn(srv.address)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    started = time.monotonic()
    srv.stop(0.5)
    assert time.monotonic() - started < 3
    assert c.sock.recv(100) == b""  # closed without an answer
    c.close()


@pytest.mark.timeout(30)
def test_limit_concurrency_counts_requests_not_idle_connections(serve):
    active = [0, 0]  # now, most

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            active[0] += 1
            active[1] = max(active)
            gevent.sleep(0.2)
            active[0] -= 1
        headers, out = _body(b"ok")
        start_response("200 OK", headers)
        return out

    srv = serve(app, limit_concurrency=2)
    # Two idle keep-alive connections would hold both slots if connections
    # were counted.
    idle = [Conn(srv.address) for _ in range(2)]
    for c in idle:
        assert _get(c).body == b"ok"
    conns = [Conn(srv.address) for _ in range(6)]
    started = time.monotonic()
    for c in conns:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in conns:
        assert c.read_response().body == b"ok"
    elapsed = time.monotonic() - started
    assert active[1] == 2
    assert 0.55 < elapsed < 3.0, elapsed  # three rounds of two
    for c in idle + conns:
        assert _get(c).body == b"ok"  # all still open
        c.close()


def _fetch(port):
    """GET / on a gevent socket of its own: the whole answer."""
    from gevent import socket as gsocket
    s = gsocket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = recv_all(s)
    s.close()
    return data


def _in_a_thread(scenario, timeout=25):
    """scenario() in a thread of its own (its own gevent hub); its result,
    or its exception raised here."""
    out = {}

    def thread():
        try:
            out["result"] = scenario()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=thread)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the scenario did not end"
    if "error" in out:
        raise out["error"]
    return out["result"]


@pytest.mark.timeout(30)
def test_start_returns_at_once_and_serves_from_the_hub():
    # The Python API as gevent's servers have it, in this thread's hub: the
    # caller's greenlet goes on while the server serves.
    def app(environ, start_response):
        gevent.sleep(0.05)
        headers, out = _body(b"hub")
        start_response("200 OK", headers)
        return out

    def scenario():
        srv = lichen.Server(app, host="127.0.0.1", port=0, gevent=True)
        started = time.monotonic()
        srv.start()
        assert time.monotonic() - started < 0.1
        jobs = [gevent.spawn(_fetch, srv.address[1]) for _ in range(10)]
        gevent.joinall(jobs, timeout=10)
        bodies = [j.value for j in jobs]
        serving = gevent.spawn(srv.serve_forever)
        gevent.sleep(0.01)
        assert not serving.ready()  # blocks only its own greenlet
        srv.stop(5)
        serving.join(5)
        assert serving.ready() and serving.successful()
        srv.close()
        return bodies

    bodies = _in_a_thread(scenario)
    assert all(b.endswith(b"\r\n\r\nhub") for b in bodies), bodies
    gc.collect()
    assert not any(lichen.live_counts().values()), lichen.live_counts()


def test_run_once_is_the_hubs_in_gevent_mode():
    srv = lichen.Server(lambda e, s: [], host="127.0.0.1", port=0,
                        gevent=True)
    try:
        with pytest.raises(RuntimeError, match="gevent's hub"):
            srv.run_once(0)
    finally:
        srv.close()


def test_start_needs_gevent_mode():
    srv = lichen.Server(lambda e, s: [], host="127.0.0.1", port=0)
    try:
        with pytest.raises(RuntimeError, match="gevent=True"):
            srv.start()
    finally:
        srv.close()


# -- the command line: lichen --gevent -----------------------------------------

def _gevent_server(app, *args, env=None):
    return LichenProcess(["--gevent", "--chdir", str(APPS), "-b",
                          "127.0.0.1:0", *args, app],
                         env=child_env(**(env or {})))


def _many(port, count, path="/", timeout=20):
    """count connections at once, one request each; returns the bodies and
    the seconds from the first connect to the last response."""
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close"
                      b"\r\n\r\n" % path.encode())
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, [])
        left, bodies = count, []
        deadline = started + timeout
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                chunk = key.fileobj.recv(65536)
                if chunk:
                    key.data.append(chunk)
                    continue
                sel.unregister(key.fileobj)
                bodies.append(b"".join(key.data))
                left -= 1
        return bodies, time.monotonic() - started
    finally:
        sel.close()
        for s in socks:
            s.close()


@pytest.mark.heavy
@pytest.mark.timeout(60)
def test_long_poll_a_thousand_clients_in_one_delay():
    proc = _gevent_server("geventapps:sleepy",
                          env={"GEVENT_APP_DELAY": "0.5"})
    try:
        bodies, seconds = _many(proc.port, 1000)
        assert len(bodies) == 1000
        assert all(b.startswith(b"HTTP/1.1 200 ") and b.endswith(b"slept\n")
                   for b in bodies)
        print("1000 clients of a 0.5 s long-poll: %.2f s" % seconds)
        assert seconds < 1.0, seconds
        assert proc.stop() == 0, proc.stderr
    finally:
        proc.kill()


@pytest.mark.timeout(60)
def test_flask_view_calling_a_slow_service_with_requests():
    pytest.importorskip("flask")
    pytest.importorskip("requests")
    backend = _gevent_server("geventapps:slow_service", "--backlog", "1024",
                             env={"GEVENT_APP_DELAY": "0.5"})
    try:
        front = _gevent_server("geventapps:make_flask", "--factory",
                               env={"BACKEND_URL": backend.urls[0]})
        try:
            bodies, seconds = _many(front.port, 200, "/proxy?q=x")
            assert len(bodies) == 200
            assert all(b.startswith(b"HTTP/1.1 200 ") and
                       b.endswith(b"view got: backend q=x") for b in bodies)
            print("200 requests through a 0.5 s service: %.2f s" % seconds)
            # About one service delay (serially it would be 100 s).
            assert seconds < 2.0, seconds
            assert front.stop() == 0, front.stderr
        finally:
            front.kill()
        assert backend.stop() == 0, backend.stderr
    finally:
        backend.kill()


@pytest.mark.timeout(60)
def test_monkey_patching_comes_first_and_can_be_left_out():
    backend = _gevent_server("geventapps:slow_service",
                             env={"GEVENT_APP_DELAY": "0.3"})
    proc = _gevent_server("geventapps:blocking",
                          env={"GEVENT_APP_DELAY": "0.3",
                               "BACKEND_URL": backend.urls[0]})
    try:
        # time.sleep, a thread joined, urllib: each cooperates.
        for path in ("/", "/thread", "/urllib"):
            bodies, seconds = _many(proc.port, 20, path)
            assert len(bodies) == 20 and all(b.endswith(b"slept\n")
                                             for b in bodies), bodies[:1]
            assert seconds < 1.5, (path, seconds)
        patched = request(proc.urls[0], path="/patched").body.decode()
        assert "gevent" in patched, patched
        assert proc.stop() == 0, proc.stderr
        assert backend.stop() == 0, backend.stderr
    finally:
        proc.kill()
        backend.kill()
    proc = _gevent_server("geventapps:blocking", "--no-monkey-patch",
                          env={"GEVENT_APP_DELAY": "0.3"})
    try:
        bodies, seconds = _many(proc.port, 4)
        assert len(bodies) == 4
        assert seconds > 1.1, seconds  # the stdlib's time.sleep blocks
        assert "gevent" not in request(proc.urls[0],
                                       path="/patched").body.decode()
        assert proc.stop() == 0, proc.stderr
    finally:
        proc.kill()


@pytest.mark.timeout(60)
def test_pub_sub_chat_over_long_polling():
    proc = _gevent_server("geventapps:chat")
    socks = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
            s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        assert wait_for(lambda: request(proc.urls[0], path="/waiting")
                        .body == b"50", timeout=10)
        resp = request(proc.urls[0], method="POST", path="/post",
                       body=b"hello, fifty")
        assert resp.body == b"sent to 50"
        for s in socks:
            data = b""
            while not data.endswith(b"hello, fifty"):
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
        assert proc.stop() == 0, proc.stderr
    finally:
        for s in socks:
            s.close()
        proc.kill()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _open_idle(port, count):
    """count keep-alive connections, each after one answered request."""
    socks = []
    for start in range(0, count, 500):
        batch = [socket.create_connection(("127.0.0.1", port), timeout=20)
                 for _ in range(min(500, count - start))]
        for s in batch:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in batch:
            data = b""
            while not data.endswith(b"slept\n"):
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
        socks.extend(batch)
    return socks


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_ten_thousand_idle_connections_memory_flat():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10500:
        pytest.skip("needs 10,500 descriptors, the hard limit is %d" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 10500), hard))
    proc = _gevent_server("geventapps:sleepy", "--keepalive", "60",
                          env={"GEVENT_APP_DELAY": "0"})
    try:
        pid = proc.proc.pid
        rss0 = _rss_kb(pid)
        fds0 = len(os.listdir("/proc/%d/fd" % pid))
        peaks, afters = [], []
        for _ in range(3):  # the first warms up the allocators
            socks = _open_idle(proc.port, 10000)
            peaks.append(_rss_kb(pid))
            for s in socks:
                s.close()
            # Measured once the server has closed them all (on a busy
            # machine that takes longer than a second).
            deadline = time.monotonic() + 20
            while (len(os.listdir("/proc/%d/fd" % pid)) > fds0 + 2
                   and time.monotonic() < deadline):
                time.sleep(0.1)
            time.sleep(0.5)
            afters.append(_rss_kb(pid))
        print("RSS %d kB; 10,000 idle: %s kB; after: %s kB" % (
            rss0, peaks, afters))
        # An idle keep-alive connection costs a few kB of engine memory
        # (no greenlet, no Python object) ...
        assert (peaks[0] - rss0) / 10000 < 2, (rss0, peaks)
        # ... and, once warm, another round costs nothing more (a leak of
        # a few hundred bytes per connection would be megabytes).
        assert peaks[2] <= peaks[1] + 2048, peaks
        assert afters[2] <= afters[1] + 2048, afters
        assert request(proc.urls[0]).body == b"slept\n"
        assert proc.stop() == 0, proc.stderr
    finally:
        proc.kill()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_gevent_mode_without_gevent_says_what_to_install(tmp_path):
    # An interpreter where `import gevent` fails, as without the extra.
    fake = tmp_path / "gevent"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ImportError('No module named gevent')\n")
    env = child_env(PYTHONPATH=str(tmp_path))
    for flag in (["--gevent"], ["-k", "gevent"]):
        proc = subprocess.run(
            [sys.executable, "-m", "lichen", *flag, "examples.hello"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=30, cwd=str(APPS.parent.parent))
        assert proc.returncode == 2
        lines = proc.stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "pip install 'lichen[gevent]'" in lines[0]


def test_unknown_worker_class_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "lichen", "-k", "eventlet", "examples.hello"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
        cwd=str(APPS.parent.parent))
    assert proc.returncode == 2
    assert b"unknown worker class 'eventlet'" in proc.stderr


@pytest.mark.timeout(30)
def test_stop_from_a_view_answers_that_request(serve):
    holder = {}

    def app(environ, start_response):
        started = time.monotonic()
        holder["srv"].stop(10)  # returns at once: it is this request's
        waited = time.monotonic() - started
        headers, out = _body(b"bye after %.1f" % waited)
        start_response("200 OK", headers)
        return out

    srv = holder["srv"] = serve(app)
    with Conn(srv.address) as c:
        r = _get(c)
        assert (r.status, r.body) == (200, b"bye after 0.0")
    assert wait_for(lambda: srv._drained.is_set())


class _ShortPeakServer(lichen.Server):
    """The pool's peak halves every second (10 s by default)."""

    def _engine_options(self):
        return dict(super()._engine_options(), pool_window_ms=1000)


@pytest.mark.timeout(30)
def test_pool_keeps_the_workers_a_burst_needed_then_lets_them_go():
    # 100 views sleeping at once, twice: the second burst reuses the 100
    # greenlets of the first (a greenlet per request would cost an mmap
    # and a munmap each); once the peak has passed, the pool goes back to
    # its 64.
    import greenlet
    served_by = set()

    def app(environ, start_response):
        served_by.add(greenlet.getcurrent())
        gevent.sleep(0.2)
        headers, out = _body(b"ok")
        start_response("200 OK", headers)
        return out

    def scenario():
        srv = _ShortPeakServer(app, host="127.0.0.1", port=0, gevent=True)
        srv.start()
        port = srv.address[1]
        counts = []
        for _ in range(2):
            jobs = [gevent.spawn(_fetch, port) for _ in range(100)]
            gevent.joinall(jobs, timeout=10)
            assert all(j.value.endswith(b"ok") for j in jobs)
            counts.append(lichen.live_counts()["greenlets"])
        counts.append(len(served_by))
        served_by.clear()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                lichen.live_counts()["greenlets"] > 64:
            _fetch(port)  # turns of the loop, which trim the surplus
        counts.append(lichen.live_counts()["greenlets"])
        srv.stop(5)
        srv.close()
        return counts

    counts = _in_a_thread(scenario)
    after_first, after_second, greenlets_used, at_last = counts
    assert after_first >= 90, counts  # kept, beyond the 64
    assert after_second <= 110, counts
    # 200 requests, each burst 100 at once: the second reused the first's.
    assert greenlets_used <= 120, counts
    assert at_last == 64, counts


@pytest.mark.timeout(30)
def test_close_from_a_view_is_refused(serve):
    holder = {}

    def app(environ, start_response):
        try:
            holder["srv"].close()
            body = b"closed"
        except RuntimeError as exc:
            body = str(exc).encode()
        headers, out = _body(body)
        start_response("200 OK", headers)
        return out

    srv = holder["srv"] = serve(app)
    with Conn(srv.address) as c:
        r = _get(c)
        assert r.body.startswith(b"close() called from inside"), r.body
        assert _get(c).status == 200  # and it goes on serving


def test_a_loop_that_fails_ends_instead_of_spinning():
    # The engine's turn raising (an OSError of its poll, say): the driver
    # closes it, its waiters wake, and the hub reports the exception once.
    from lichen.gevent import HubDriver

    class FailingEngine:
        def __init__(self):
            self.r, self.w = os.pipe()
            os.write(self.w, b"x")  # readable for good
            self.turns = 0
            self.closed = False

        def fileno(self):
            return self.r

        def run_once(self, timeout):
            self.turns += 1
            raise OSError("the poll failed")

        def close(self):
            self.closed = True

    def scenario():
        engine = FailingEngine()
        hub = gevent.get_hub()
        reported = []
        hub.handle_error = lambda ctx, t, v, tb: reported.append(v)
        try:
            driver = HubDriver(engine)
            driver.start()
            ended = driver.wait(5)
            gevent.sleep(0.1)
            return ended, engine.turns, engine.closed, reported
        finally:
            os.close(engine.r)
            os.close(engine.w)

    ended, turns, closed, reported = _in_a_thread(scenario)
    assert ended and closed and turns == 1
    assert [str(e) for e in reported] == ["the poll failed"]
