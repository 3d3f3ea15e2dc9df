"""The Python API: lichen.Server in this process, serve() in a subprocess,
and the option and bind-address checks shared with the command line."""

import errno
import gc
import os
import selectors
import signal
import socket
import subprocess
import textwrap
import threading
import time
import warnings

import pytest

from helpers_cli import PYTHON, REPO, child_env, ignore_sigint, request

import lichen
from lichen.config import ConfigError, DEFAULTS, parse_bind, validate

HELLO = b"Hello, world!\n"


def hello(environ, start_response):
    body = HELLO
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def url_of(server):
    host, port = server.address
    return f"http://{host}:{port}"


def assert_nothing_live():
    counts = lichen.live_counts()
    assert counts["connections"] == 0, counts
    assert counts["greenlets"] == 0, counts


def refused(address):
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        return True
    return False


# -- Server in a thread ------------------------------------------------------

def test_server_in_thread_and_stop():
    server = lichen.Server(hello, port=0)
    host, port = server.address
    assert host == "127.0.0.1" and port != 0
    assert server.addresses == [("127.0.0.1", port)]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for _ in range(3):
        resp = request(url_of(server))
        assert resp.status == 200 and resp.body == HELLO
    server.stop()
    assert not thread.is_alive(), "stop() returned before serve_forever"
    assert refused(("127.0.0.1", port))
    server.close()
    assert_nothing_live()


def test_stop_waits_for_request_in_flight():
    def slow(environ, start_response):
        time.sleep(1.0)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    server = lichen.Server(slow, port=0, graceful_timeout=10)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    result = {}
    client = threading.Thread(
        target=lambda: result.update(resp=request(url_of(server))))
    client.start()
    time.sleep(0.3)
    server.stop()
    client.join(10)
    assert result["resp"].body == b"done"
    assert not thread.is_alive()
    server.close()
    assert_nothing_live()


def test_context_manager_closes_sockets():
    with lichen.Server(hello, port=0) as server:
        address = server.address
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        assert request(url_of(server)).body == HELLO
    thread.join(10)
    assert not thread.is_alive()
    assert refused(address)
    assert_nothing_live()


def test_stop_before_serving_from_owner_thread():
    server = lichen.Server(hello, port=0)
    address = server.address
    server.stop(1)
    assert refused(address)
    with pytest.raises(RuntimeError):
        server.serve_forever()
    server.close()


def test_unix_socket_server(tmp_path):
    path = str(tmp_path / "api.sock")
    server = lichen.Server(hello, bind=[f"unix:{path}"])
    assert server.address == path
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert request(f"unix:{path}").body == HELLO
    server.stop()
    server.close()
    assert not os.path.exists(path)


def test_caller_owned_socket_is_left_open():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = lichen.Server(hello, sockets=[sock])
    assert server.address == sock.getsockname()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert request(url_of(server)).body == HELLO
    server.stop()
    server.close()
    assert sock.fileno() != -1, "lichen closed a socket it does not own"
    sock.close()


# -- another event loop drives the engine ------------------------------------

def test_run_once_driven_by_a_selectors_loop():
    """A plain selectors loop in Python waits on server.fileno() and calls
    run_once(0) only when it is readable: the engine needs nothing else."""
    server = lichen.Server(hello, port=0)
    results, errors = [], []

    def client():
        try:
            for i in range(5):
                results.append(request(url_of(server), path=f"/?{i}"))
        except Exception as exc:
            errors.append(exc)

    sel = selectors.DefaultSelector()
    sel.register(server.fileno(), selectors.EVENT_READ)
    thread = threading.Thread(target=client)
    thread.start()
    wakeups = 0
    deadline = time.monotonic() + 20
    while thread.is_alive() and time.monotonic() < deadline:
        if sel.select(0.1):
            wakeups += 1
            assert server.run_once(0) is True
    thread.join(5)
    assert not errors, errors
    assert [r.body for r in results] == [HELLO] * 5
    assert wakeups >= 5
    # Graceful stop driven by the same loop.
    address = server.address
    server.stop(1)
    assert server.run_once(0) is False
    sel.close()
    assert refused(address)
    server.close()
    assert_nothing_live()


def test_run_once_with_external_loop_and_stop_from_another_thread():
    server = lichen.Server(hello, port=0)
    sel = selectors.DefaultSelector()
    sel.register(server.fileno(), selectors.EVENT_READ)
    stopper = threading.Timer(0.5, server.stop, args=(1,))
    stopper.start()
    deadline = time.monotonic() + 10
    serving = True
    while serving and time.monotonic() < deadline:
        if sel.select(0.2):
            serving = server.run_once(0)
    stopper.join(10)
    sel.close()
    assert not serving, "stop() from another thread did not end run_once"
    server.close()


# -- serve() in its own process: signals -------------------------------------

SERVE_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {apps!r})
    import lichen, cliapp
    lichen.serve(cliapp.application, "127.0.0.1", 0, graceful_timeout=10)
    print("serve returned", flush=True)
""")


def start_serve(sigint_ignored=False):
    proc = subprocess.Popen(
        [PYTHON, "-c", SERVE_SCRIPT.format(apps=str(REPO / "tests" / "apps"))],
        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_env(), text=True,
        preexec_fn=ignore_sigint if sigint_ignored else None)
    first = proc.stderr.readline()
    line = proc.stderr.readline()
    # The command line's start-up lines, in gunicorn's format:
    # [time] [pid] [INFO] Listening at: URL (pid)
    if (f"[{proc.pid}] [INFO] Starting lichen" not in first
            or "Listening at: http://127.0.0.1:" not in line):
        proc.kill()
        raise AssertionError(first + line + proc.stderr.read())
    assert f"[{proc.pid}] [INFO]" in line, line
    port = int(line.split("Listening at: http://127.0.0.1:")[1].split()[0])
    return proc, port


@pytest.mark.parametrize("signum, sigint_ignored", [
    (signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-inherited-ignored"])
def test_serve_stops_on_signal(signum, sigint_ignored):
    proc, port = start_serve(sigint_ignored)
    try:
        assert request(f"http://127.0.0.1:{port}").body == HELLO
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "serve returned" in out
    assert "Traceback" not in err, err


def test_serve_sigterm_is_graceful():
    proc, port = start_serve()
    result = {}
    try:
        client = threading.Thread(target=lambda: result.update(
            resp=request(f"http://127.0.0.1:{port}", path="/slow?1",
                         timeout=15)))
        client.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        client.join(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result["resp"].body == b"slow done\n"
    assert proc.returncode == 0, err


# -- options and bind addresses (no engine needed) ---------------------------

def test_defaults_match_documentation():
    assert DEFAULTS["keepalive"] == 5.0
    assert DEFAULTS["timeout_header"] == 30.0
    assert DEFAULTS["timeout_body"] == 60.0
    assert DEFAULTS["timeout_write"] == 60.0
    assert DEFAULTS["graceful_timeout"] == 30.0
    assert DEFAULTS["limit_request_line"] == 8190
    assert DEFAULTS["limit_request_fields"] == 100
    assert DEFAULTS["limit_request_field_size"] == 8190
    assert DEFAULTS["limit_request_body"] == 1073741824
    assert DEFAULTS["backlog"] == 2048
    assert DEFAULTS["defer_accept"] == 0.0
    assert DEFAULTS["server_header"] is None
    assert DEFAULTS["access_log"] is None
    assert validate() == DEFAULTS


@pytest.mark.parametrize("options", [
    {"keepalive": -1}, {"keepalive": "5"}, {"keepalive": True},
    {"timeout_header": 0}, {"timeout_body": float("nan")},
    {"limit_request_line": 0}, {"limit_request_line": 1.5},
    {"limit_request_body": -1}, {"backlog": 0}, {"log_level": "loud"},
    {"defer_accept": -1}, {"defer_accept": 7200},
    {"root_path": "api"}, {"server_header": "bad\r\nheader"},
])
def test_bad_options_raise_before_binding(options):
    with pytest.raises(ConfigError) as info:
        lichen.Server(hello, port=0, **options)
    assert list(options)[0] in str(info.value)


def test_text_numbers_accepted_from_command_line():
    cfg = validate({"keepalive": "2.5", "limit_request_body": "0"}, cli=True)
    assert cfg["keepalive"] == 2.5 and cfg["limit_request_body"] == 0
    with pytest.raises(ConfigError, match="--keepalive"):
        validate({"keepalive": "x"}, cli=True)


def test_unknown_option():
    with pytest.raises(ConfigError, match="unknown option: nope"):
        validate(nope=1)
    with pytest.raises(TypeError):
        lichen.Server(hello, port=0, nope=1)


def test_app_must_be_callable():
    with pytest.raises(TypeError):
        lichen.Server(42, port=0)


@pytest.mark.parametrize("text, kind, host, port, path, fd", [
    ("127.0.0.1:8080", "tcp", "127.0.0.1", 8080, None, None),
    ("localhost", "tcp", "localhost", 8000, None, None),
    ("0.0.0.0:0", "tcp", "0.0.0.0", 0, None, None),
    ("[::1]:9000", "tcp", "::1", 9000, None, None),
    ("[::]", "tcp", "::", 8000, None, None),
    ("unix:/tmp/x.sock", "unix", None, None, "/tmp/x.sock", None),
    ("unix:///tmp/x.sock", "unix", None, None, "/tmp/x.sock", None),
    ("fd://3", "fd", None, None, None, 3),
])
def test_parse_bind(text, kind, host, port, path, fd):
    spec = parse_bind(text)
    assert (spec.kind, spec.host, spec.port, spec.path, spec.fd) == (
        kind, host, port, path, fd)


@pytest.mark.parametrize("text", [
    "", ":8000", "host:", "host:x", "host:65536", "::1", "[::1", "[1.2.3.4]:1",
    "unix:", "fd://", "fd://-1", "http://host:80", "a b:1",
])
def test_parse_bind_rejects(text):
    with pytest.raises(ConfigError):
        parse_bind(text)


def test_bind_error_is_an_oserror_with_one_line():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with pytest.raises(lichen.BindError) as info:
            lichen.Server(hello, port=port)
    finally:
        busy.close()
    assert info.value.errno == errno.EADDRINUSE
    assert str(info.value) == (f"cannot bind 127.0.0.1:{port}: address "
                               "already in use")


def test_failed_construction_releases_earlier_listeners():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()
    try:
        with pytest.raises(lichen.BindError):
            lichen.Server(hello, bind=[f"127.0.0.1:{free_port}",
                                       f"127.0.0.1:{busy.getsockname()[1]}"])
    finally:
        busy.close()
    # The first listener was closed again: its port can be bound.
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port))


def test_error_log_format_and_level(capsys):
    from lichen import _logging

    log = _logging.configure("warning")
    try:
        log.info("not shown")
        try:
            raise KeyError("boom")
        except KeyError as exc:
            _logging.engine_log(40, "Error handling request /x", exc)
        err = capsys.readouterr().err
        assert "not shown" not in err
        first = err.splitlines()[0]
        assert first.endswith("[ERROR] Error handling request /x")
        assert f"] [{os.getpid()}] [ERROR]" in first
        assert "Traceback (most recent call last)" in err
        assert "KeyError: 'boom'" in err
    finally:
        _logging.configure("info")



# -- dropped without close() --------------------------------------------------

def resource_warnings(drop):
    """The ResourceWarnings said when drop() lets the last references go
    and the collector runs. The warnings themselves are let go too: a
    warning holds its source."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop()
        gc.collect()
    said = [str(w.message) for w in caught
            if issubclass(w.category, ResourceWarning)]
    del caught
    gc.collect()
    return said


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def received(sock, into):
    """What sock received so far, without waiting for more."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        into += sock.recv(65536)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(timeout)
    return bytes(into)


def serve_until(server, done, timeout=5.0):
    """Drive server with run_once until done() is true."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        server.run_once(0.05)


def test_server_dropped_without_close_warns_and_closes():
    """As an unclosed socket or file does: a ResourceWarning, and
    everything it held closed (listener, connections, the engine's own
    descriptors)."""
    gc.collect()
    before = open_fds()
    server = lichen.Server(hello, port=0)
    address = server.address
    client = socket.create_connection(address, timeout=5)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = bytearray()
    serve_until(server, lambda: HELLO in received(client, got))
    # an idle keep-alive connection and an idle worker are left
    assert lichen.live_counts()["connections"] == 1
    held = [server]
    del server
    said = resource_warnings(held.clear)
    assert [m for m in said if "unclosed <lichen.Server" in m], said
    assert client.recv(100) == b"", "the connection was not closed"
    client.close()
    assert refused(address)
    assert open_fds() == before
    assert_nothing_live()


def engine_of(app):
    """A bare engine (lichen._lichen.Server) on a listener of its own."""
    from lichen import _lichen
    from lichen.config import engine_options
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    env = {"SERVER_NAME": "127.0.0.1", "SERVER_PORT": "0",
           "SCRIPT_NAME": "", "wsgi.file_wrapper": _lichen.FileWrapper}
    engine = _lichen.Server(app, [(sock.fileno(), env)],
                            engine_options(validate(), -1, None))
    return engine, sock


@pytest.mark.parametrize("in_flight", [False, True],
                         ids=["idle", "request-in-flight"])
def test_engine_in_a_cycle_is_collected(in_flight):
    """An engine whose application refers back to it (a cycle) and that is
    dropped without close() is collected: a ResourceWarning, its greenlets
    unwound (a request in flight hears ClientDisconnected), its
    descriptors closed."""
    gc.collect()
    before = open_fds()
    holder = {}
    heard = []

    def app(environ, start_response):
        holder["seen"] = True
        if environ["PATH_INFO"] == "/upload":
            holder["waiting"] = True
            try:
                environ["wsgi.input"].read()
            except Exception as exc:
                heard.append(exc)
                raise
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    engine, sock = engine_of(app)
    holder["engine"] = engine  # app -> holder -> engine -> app
    address = sock.getsockname()
    client = socket.create_connection(address, timeout=5)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = bytearray()
    serve_until(engine, lambda: received(client, got).endswith(b"ok"))
    if in_flight:
        client.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 10\r\n\r\n01")
        serve_until(engine, lambda: holder.get("waiting"))
    held = [engine, app, holder]
    del engine, app, holder
    said = resource_warnings(held.clear)  # only the cycle holds them now
    assert [m for m in said if "unclosed lichen engine" in m], said
    assert client.recv(100) == b"", "the connection was not closed"
    if in_flight:
        assert len(heard) == 1 and isinstance(
            heard[0], lichen._lichen.ClientDisconnected), heard
    client.close()
    sock.close()
    assert open_fds() == before
    assert_nothing_live()
