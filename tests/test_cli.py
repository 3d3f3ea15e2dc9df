"""The command line, end to end: real subprocesses, real sockets."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers_cli import (APPS, REPO, LichenProcess, free_port,
                         ipv6_loopback_available, lichen_script, port_of,
                         request, run_lichen)

import lichen

HELLO = b"Hello, world!\n"
LINE_RE = re.compile(
    r"^\[[^]]+\] \[\d+\] \[INFO\] Listening at: "
    r"http://127\.0\.0\.1:(\d+) \(\d+\)$", re.M)
START_RE = re.compile(
    r"^\[[^]]+\] \[(\d+)\] \[INFO\] Starting lichen " +
    re.escape(lichen.__version__) + "$", re.M)


# -- serving -----------------------------------------------------------------

def test_python_m_lichen_serves_hello(cli_server):
    proc = cli_server(["-b", "127.0.0.1:0", "examples.hello"])
    start = START_RE.search(proc.stderr)
    assert start and int(start.group(1)) == proc.proc.pid, proc.stderr
    m = LINE_RE.search(proc.stderr)
    assert m and m.start() > start.start(), proc.stderr
    port = int(m.group(1))
    assert port != 0
    resp = request(proc.urls[0], path="/")
    assert resp.status == 200
    assert resp.body == HELLO
    assert resp.header("Content-Type").startswith("text/plain")
    assert proc.stop() == 0


def test_console_script_serves_hello(cli_server):
    script = lichen_script()
    assert os.access(script, os.X_OK), f"{script} not installed"
    proc = cli_server(["--bind", "127.0.0.1:0", "examples.hello:app"],
                      command=[script])
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


@pytest.mark.parametrize("args", [
    ["cliapp"],                       # module alone: its 'application'
    ["cliapp:application"],
    ["cliapp:make_app()"],            # factory call in the spec
    ["--factory", "cliapp:make_app"],  # factory by flag
])
def test_app_spec_forms(cli_server, args):
    proc = cli_server(["--chdir", str(APPS), "-b", "127.0.0.1:0"] + args)
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


def test_default_bind_is_localhost_8000(cli_server):
    # Only when 8000 is free on this machine.
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 8000))
    except OSError:
        pytest.skip("port 8000 is in use here")
    proc = cli_server(["examples.hello"])
    assert proc.urls == ["http://127.0.0.1:8000"]
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


def test_two_binds_two_listening_lines(cli_server):
    proc = cli_server(["-b", "127.0.0.1:0", "-b", "127.0.0.1:0",
                       "examples.hello"], listeners=2)
    assert len(LINE_RE.findall(proc.stderr)) == 2
    assert port_of(proc.urls[0]) != port_of(proc.urls[1])
    for url in proc.urls:
        assert request(url).body == HELLO
    assert proc.stop() == 0


def test_unix_socket(cli_server, tmp_path):
    path = tmp_path / "lichen.sock"
    # A stale socket file from a dead server is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    proc = cli_server(["-b", f"unix:{path}", "examples.hello"])
    assert proc.urls == [f"unix:{path}"]
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0
    assert not path.exists(), "socket file left behind"


def test_unix_socket_in_use(cli_server, tmp_path):
    path = tmp_path / "busy.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    try:
        r = run_lichen(["-b", f"unix:{path}", "examples.hello"])
    finally:
        live.close()
    assert r.returncode == 1
    assert_one_line(r.stderr, f"lichen: cannot bind unix:{path}: address "
                              "already in use")


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
def test_ipv6_loopback(cli_server):
    proc = cli_server(["-b", "[::1]:0", "examples.hello"])
    assert re.fullmatch(r"http://\[::1\]:\d+", proc.urls[0]), proc.urls
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


def test_inherited_fd(cli_server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    try:
        proc = cli_server(["-b", f"fd://{fd}", "examples.hello"],
                          pass_fds=[fd])
        assert proc.urls == [f"http://127.0.0.1:{port}"]
        assert request(f"http://127.0.0.1:{port}").body == HELLO
        assert proc.stop() == 0
    finally:
        sock.close()


def test_root_path_sets_script_name(cli_server):
    proc = cli_server(["--chdir", str(APPS), "-b", "127.0.0.1:0",
                       "--root-path", "/api", "cliapp"])
    env = json.loads(request(proc.urls[0], path="/environ?x=1").body)
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1"
    assert env["SERVER_SOFTWARE"] == "lichen/" + lichen.__version__
    assert env["SERVER_PORT"] == str(proc.port)
    assert proc.stop() == 0


def test_server_header(cli_server):
    proc = cli_server(["-b", "127.0.0.1:0", "examples.hello"])
    assert request(proc.urls[0]).header("Server") is None
    assert proc.stop() == 0
    proc = cli_server(["-b", "127.0.0.1:0", "--server-header", "lichen-test",
                       "examples.hello"])
    assert request(proc.urls[0]).header("Server") == "lichen-test"
    assert proc.stop() == 0


# Combined log format, then the request's duration.
ACCESS_RE = re.compile(
    r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /\?x=1 HTTP/1\.1" 200 14 "-" '
    r'"cli-test/1" \S+')


def _wait_for_line(read, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read()
        if text.strip():
            return text
        time.sleep(0.05)
    return read()


def test_access_log_file(cli_server, tmp_path):
    log = tmp_path / "access.log"
    log.write_text("earlier line\n")  # appended to, not truncated
    proc = cli_server(["-b", "127.0.0.1:0", "--access-log", str(log),
                       "examples.hello"])
    resp = request(proc.urls[0], path="/?x=1",
                   headers={"User-Agent": "cli-test/1"})
    assert resp.status == 200
    text = _wait_for_line(
        lambda: log.read_text().replace("earlier line\n", "", 1))
    assert proc.stop() == 0
    assert log.read_text().startswith("earlier line\n")
    lines = text.splitlines()
    assert len(lines) == 1, lines
    assert ACCESS_RE.match(lines[0]), lines[0]


def test_access_logfile_alias_to_stdout(tmp_path):
    proc = LichenProcess(["-b", "127.0.0.1:0", "--access-logfile", "-",
                          "examples.hello"], stdout=subprocess.PIPE)
    try:
        request(proc.urls[0], path="/?x=1",
                headers={"User-Agent": "cli-test/1"})
        assert proc.stop() == 0
        out = proc.proc.stdout.read().decode()
    finally:
        proc.kill()
        proc.proc.stdout.close()
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert ACCESS_RE.match(lines[0]), lines[0]


def test_application_error_is_logged_with_traceback(cli_server):
    proc = cli_server(["--chdir", str(APPS), "-b", "127.0.0.1:0", "cliapp"])
    assert request(proc.urls[0], path="/error").status == 500
    assert proc.wait_stderr("deliberate failure for the error log")
    assert "Traceback (most recent call last)" in proc.stderr
    assert re.search(r"^\[[^\]]+\] \[\d+\] \[ERROR\] ", proc.stderr, re.M), \
        proc.stderr
    # The server goes on serving.
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


# -- stopping ----------------------------------------------------------------

MODES = pytest.mark.parametrize("mode", [[], ["--gevent"]],
                                ids=["native", "gevent"])


@MODES
def test_sigterm_finishes_request_in_flight(cli_server, mode):
    proc = cli_server(mode + ["--chdir", str(APPS), "-b", "127.0.0.1:0",
                       "--graceful-timeout", "20", "cliapp"])
    result = {}

    def slow():
        try:
            result["resp"] = request(proc.urls[0], path="/slow?1.5",
                                     timeout=20)
        except Exception as exc:  # reported below
            result["error"] = exc

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.5)  # the request is in the application now
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    rc = proc.wait(20)
    client.join(20)
    assert "error" not in result, result["error"]
    assert result["resp"].status == 200
    assert result["resp"].body == b"slow done\n"
    assert rc == 0, proc.stderr
    assert time.monotonic() - started < 10
    assert "Traceback" not in proc.stderr
    # Nothing listens any more.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proc.port), timeout=2)


@MODES
def test_sigterm_graceful_timeout_bounds_the_wait(cli_server, mode):
    proc = cli_server(mode + ["--chdir", str(APPS), "-b", "127.0.0.1:0",
                       "--graceful-timeout", "0.5", "cliapp"])
    client = threading.Thread(
        target=lambda: _ignore(request, proc.urls[0], path="/slow?4",
                               timeout=10))
    client.start()
    time.sleep(0.5)
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    rc = proc.wait(20)
    client.join(20)
    # The application blocks the process for 4 s; the server must not wait
    # much beyond that (graceful timeout 0.5 s, then force-close).
    assert rc == 0, proc.stderr
    assert time.monotonic() - started < 8


def _ignore(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception:
        pass


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@MODES
def test_sigint_exits_quietly(cli_server, inherited, mode):
    # Started from a background job or nohup, lichen inherits SIGINT
    # ignored: it stops on SIGINT all the same, as the README says.
    proc = cli_server(mode + ["-b", "127.0.0.1:0", "examples.hello"],
                      sigint_ignored=inherited == "ignored")
    assert request(proc.urls[0]).body == HELLO
    proc.signal(signal.SIGINT)
    assert proc.wait(15) == 0
    assert "Received SIGINT: stopping" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "KeyboardInterrupt" not in proc.stderr


@MODES
def test_idle_keepalive_connection_does_not_delay_sigterm(cli_server, mode):
    proc = cli_server(mode + ["-b", "127.0.0.1:0", "--keepalive", "60",
                       "examples.hello"])
    conn = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    try:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while HELLO not in data:
            chunk = conn.recv(4096)
            assert chunk, data
            data += chunk
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 5
        assert conn.recv(4096) == b""  # closed by the server
    finally:
        conn.close()


# -- start-up errors -----------------------------------------------------------

def assert_one_line(stderr, expected=None):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("lichen: "), lines[0]
    if expected is not None:
        assert lines[0] == expected or expected in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, status, text", [
    ([], 2, "required: APP"),
    (["--no-such-option", "examples.hello"], 2, "unrecognized arguments"),
    (["examples.hello", "extra"], 2, "unrecognized arguments"),
    (["-b"], 2, "expected one argument"),
    (["no_such_module_xyz"], 1, "cannot import 'no_such_module_xyz'"),
    (["examples.no_such"], 1, "cannot import 'examples.no_such'"),
    (["examples.hello:nope"], 1,
     "module 'examples.hello' has no attribute 'nope'"),
    (["json"], 1, "has no attribute 'application' or 'app'"),
    (["a b"], 1, "invalid APP"),
    (["--chdir", str(APPS), "cliapp:not_callable"], 1, "not callable"),
    (["--chdir", str(APPS), "cliapp:broken_factory()"], 1,
     "ValueError: factory says no"),
    (["--chdir", str(APPS), "--factory", "cliapp:broken_factory"], 1,
     "factory says no"),
    (["--chdir", "/nonexistent-dir-xyz", "examples.hello"], 1,
     "cannot change directory"),
    (["--keepalive", "abc", "examples.hello"], 1,
     "invalid value for --keepalive: 'abc'"),
    (["--keepalive", "-1", "examples.hello"], 1, "--keepalive"),
    (["--timeout-header", "0", "examples.hello"], 1, "--timeout-header"),
    (["--limit-request-line", "1.5", "examples.hello"], 1,
     "--limit-request-line"),
    (["--limit-request-body", "-1", "examples.hello"], 1,
     "--limit-request-body"),
    (["--backlog", "x", "examples.hello"], 1, "--backlog"),
    (["--log-level", "loud", "examples.hello"], 1, "--log-level"),
    (["--root-path", "api", "examples.hello"], 1, "--root-path"),
    (["-b", "127.0.0.1:99999", "examples.hello"], 1, "port must be 0-65535"),
    (["-b", "127.0.0.1:http", "examples.hello"], 1, "invalid bind address"),
    (["-b", "::1:8000", "examples.hello"], 1, "brackets"),
    (["-b", "fd://x", "examples.hello"], 1, "fd://N"),
    (["-b", "fd://999", "examples.hello"], 1, "cannot use fd://999"),
    (["-b", "unix:", "examples.hello"], 1, "missing unix socket path"),
    (["-b", "unix:/nonexistent-dir-xyz/l.sock", "examples.hello"], 1,
     "cannot bind unix:/nonexistent-dir-xyz/l.sock: no such file"),
    (["-b", "no-such-host.invalid:80", "examples.hello"], 1,
     "cannot bind no-such-host.invalid:80"),
    (["--access-log", "/nonexistent-dir-xyz/a.log", "-b", "127.0.0.1:0",
      "examples.hello"], 1, "cannot open access log"),
])
def test_startup_error_is_one_line(args, status, text):
    r = run_lichen(args)
    assert r.returncode == status, (r.returncode, r.stderr)
    assert_one_line(r.stderr, text)


def test_unix_path_that_is_a_regular_file(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    r = run_lichen(["-b", f"unix:{path}", "examples.hello"])
    assert r.returncode == 1
    assert_one_line(r.stderr, "exists and is not a socket")
    assert path.read_text() == "keep me"


def test_port_in_use():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        r = run_lichen(["-b", f"127.0.0.1:{port}", "examples.hello"])
    finally:
        busy.close()
    assert r.returncode == 1
    line = assert_one_line(r.stderr)
    assert line == (f"lichen: cannot bind 127.0.0.1:{port}: address already "
                    "in use")


def test_bad_module_errors(tmp_path):
    (tmp_path / "syntaxbad.py").write_text("def app(:\n    pass\n")
    (tmp_path / "raises.py").write_text("1 / 0\n")
    (tmp_path / "needsdep.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    cases = [
        ("syntaxbad", "syntax error in"),
        ("raises", "ZeroDivisionError: division by zero"),
        ("needsdep", "No module named 'no_such_dependency_xyz'"),
        ("exits", "SystemExit: 3"),
    ]
    for module, text in cases:
        r = run_lichen(["--chdir", str(tmp_path), module])
        assert r.returncode == 1, (module, r.stderr)
        assert_one_line(r.stderr, text)


def test_traceback_flag_shows_traceback(tmp_path):
    (tmp_path / "raises.py").write_text("1 / 0\n")
    r = run_lichen(["--traceback", "--chdir", str(tmp_path), "raises"])
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "ZeroDivisionError" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1].startswith("lichen: ")


def test_version():
    r = run_lichen(["--version"])
    assert r.returncode == 0
    assert r.stdout.strip() == f"lichen {lichen.__version__}"


def test_help_lists_options_with_defaults():
    r = run_lichen(["--help"])
    assert r.returncode == 0
    for flag in ["--bind", "--backlog", "--keepalive", "--timeout-header",
                 "--timeout-body", "--timeout-write", "--graceful-timeout",
                 "--limit-request-line", "--limit-request-fields",
                 "--limit-request-field-size", "--limit-request-body",
                 "--access-log", "--log-level", "--server-header",
                 "--root-path", "--factory", "--chdir", "--traceback",
                 "--version"]:
        assert flag in r.stdout, flag
    assert "default: 8190" in r.stdout


def test_cwd_is_on_sys_path_for_console_script(tmp_path):
    # The console script's sys.path[0] is its bin directory, not the cwd:
    # lichen must add the cwd so that 'lichen myapp' finds ./myapp.py.
    (tmp_path / "myapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n")
    proc = LichenProcess(["-b", "127.0.0.1:0", "myapp"], cwd=tmp_path,
                         command=[lichen_script()])
    try:
        assert request(proc.urls[0]).body == b"ok"
        assert proc.stop() == 0
    finally:
        proc.kill()

