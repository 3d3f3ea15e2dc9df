"""Deployment, end to end through the command line: the configuration file
(-c), the pid file, the switch to another user and group, the umask and
unix socket permissions, systemd's socket activation. Real lichen
processes, real sockets."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from helpers_cli import (APPS, PYTHON, REPO, child_env, port_of, request,
                         run_lichen)

HELLO = b"Hello, world!\n"
NOBODY, NOGROUP = 65534, 65534

as_root = pytest.mark.skipif(os.geteuid() != 0,
                             reason="switching user needs root")


def assert_one_line(stderr, expected):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("lichen: "), lines[0]
    assert expected in lines[0], lines[0]
    return lines[0]


def write(path, text):
    path.write_text(text)
    return str(path)


def proc_status(pid):
    """/proc/PID/status as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f
                    if ":\t" in line)


@pytest.fixture
def preload(tmp_path):
    """-c FILE importing, as root, the standard modules deployapp uses:
    where the Python installation is readable by root alone (this
    machine's lives under /root), a user switched to could not import
    them."""
    return ["-c", write(tmp_path / "preload.py",
                        "import json, subprocess  # noqa\n")]


@pytest.fixture
def shared_dir():
    """A directory every user may write in (tmp_path's parents are
    root's own): where a switched server's pid and socket files go."""
    path = tempfile.mkdtemp(prefix="lichen-deploy-")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- the configuration file --------------------------------------------------

def test_config_file_serves_with_its_settings(cli_server, tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (public / "a.txt").write_text("static from the file\n")
    sock = tmp_path / "conf.sock"
    conf = write(tmp_path / "lichen.conf.py", f"""
import os
here = os.path.dirname(__file__)
bind = ["127.0.0.1:0", "unix:{sock}"]
wsgi_app = "examples.hello:app"
server_header = "from-the-file"
keepalive = 0
static = ["/static=" + os.path.join(here, "public")]
""")
    proc = cli_server(["-c", conf], listeners=2)
    assert proc.urls[1] == f"unix:{sock}"
    for url in proc.urls:
        resp = request(url)
        assert resp.body == HELLO
        assert resp.header("Server") == "from-the-file"
        assert resp.header("Connection") == "close"  # keepalive = 0
    assert request(proc.urls[0], path="/static/a.txt").text == \
        "static from the file\n"
    assert "WARNING" not in proc.stderr, proc.stderr
    assert proc.stop() == 0


def test_flags_override_the_file(cli_server, tmp_path):
    sock = tmp_path / "unused.sock"
    conf = write(tmp_path / "lichen.conf.py", f"""
bind = "unix:{sock}"
wsgi_app = "examples.no_such_module"
server_header = "from-the-file"
limit_request_line = 100
""")
    proc = cli_server(["-c", conf, "-b", "127.0.0.1:0", "--server-header",
                       "from-the-flag", "examples.hello"])
    assert len(proc.urls) == 1 and proc.urls[0].startswith("http://")
    assert not sock.exists()
    resp = request(proc.urls[0])
    assert resp.body == HELLO
    assert resp.header("Server") == "from-the-flag"
    # What the flags do not say, the file does.
    assert request(proc.urls[0], path="/" + "x" * 200).status == 414
    assert proc.stop() == 0


def test_gunicorn_config_file(cli_server, tmp_path):
    # A gunicorn configuration as found in projects: gunicorn's names,
    # helpers, hooks and settings lichen does not have.
    log = tmp_path / "access.log"
    pid = tmp_path / "g.pid"
    conf = write(tmp_path / "gunicorn.conf.py", f"""
import multiprocessing
bind = "127.0.0.1:0"
workers = multiprocessing.cpu_count() * 2 + 1
timeout = 120
daemon = False
errorlog = "-"
accesslog = "{log}"
loglevel = "info"
pidfile = "{pid}"
worker_class = "lichen.gunicorn.Worker"
keepalvie = 2
max_port = 9000
def post_fork(server, worker):
    pass
""")
    proc = cli_server(["-c", conf, "examples.hello"])
    assert request(proc.urls[0], path="/?x=1").body == HELLO
    warnings = re.findall(r"\[WARNING\] (.*)", proc.stderr)
    # workers and timeout are lichen's too: a master with its workers.
    assert warnings == [
        f"{conf}: keepalvie is not a setting (did you mean keepalive?); "
        "ignored",
        f"{conf}: post_fork: a gunicorn server hook lichen does not call; "
        "ignored",
    ], proc.stderr
    assert pid.read_text() == f"{proc.proc.pid}\n"
    deadline = time.monotonic() + 5
    while "GET /?x=1" not in log.read_text() and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET /?x=1" in log.read_text()
    assert proc.stop() == 0
    assert not pid.exists()


def test_config_from_python_module(cli_server, tmp_path):
    (tmp_path / "deployconf.py").write_text(
        "bind = '127.0.0.1:0'\nserver_header = 'module'\n")
    (tmp_path / "hello2.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n")
    proc = cli_server(["-c", "python:deployconf", "hello2"], cwd=tmp_path)
    resp = request(proc.urls[0])
    assert (resp.body, resp.header("Server")) == (b"ok", "module")
    assert proc.stop() == 0


@pytest.mark.parametrize("text, status, expected", [
    ("keepalive = 'abc'\n", 1,
     "{conf}: invalid value for keepalive: 'abc' (expected seconds"),
    ("user = 'no-such-user-xyz'\n", 1,
     "{conf}: invalid value for user: 'no-such-user-xyz' (no such user)"),
    ("umask = 0o1777\n", 1, "{conf}: invalid value for umask: 1023"),
    ("bind = 8000\n", 1, "{conf}: invalid value for bind: 8000 (expected "
                         "an address or a list of addresses)"),
    ("gevent = 'yes'\n", 1, "{conf}: invalid value for gevent: 'yes'"),
    ("accesslog = '-'\naccess_log = '-'\n", 1,
     "{conf}: access_log and accesslog are one setting: give one"),
    ("worker_class = 'gthread'\n", 2,
     "{conf}: invalid value for worker_class: 'gthread'"),
    ("def broken(:\n", 1,
     "syntax error in configuration file {conf}, line 1"),
    ("import no_such_module_xyz\n", 1,
     "error in configuration file {conf}: ModuleNotFoundError"),
    ("raise SystemExit(3)\n", 1,
     "error in configuration file {conf}: SystemExit: 3"),
])
def test_config_file_errors(tmp_path, text, status, expected):
    conf = write(tmp_path / "bad.conf.py", text)
    r = run_lichen(["-c", conf, "-b", "127.0.0.1:0", "examples.hello"])
    assert r.returncode == status, r.stderr
    assert_one_line(r.stderr, expected.format(conf=conf))


def test_config_file_missing_and_no_app(tmp_path):
    r = run_lichen(["-c", str(tmp_path / "nope.py"), "examples.hello"])
    assert r.returncode == 1
    assert_one_line(r.stderr, f"cannot read configuration file "
                              f"{tmp_path / 'nope.py'}: no such file")
    conf = write(tmp_path / "noapp.py", "keepalive = 1\n")
    r = run_lichen(["-c", conf])
    assert r.returncode == 2
    assert_one_line(r.stderr, "required: APP (or wsgi_app in the "
                              "configuration file)")


def test_flag_errors_name_the_flag_not_the_file(tmp_path):
    conf = write(tmp_path / "ok.py", "keepalive = 1\n")
    r = run_lichen(["-c", conf, "--keepalive", "x", "examples.hello"])
    assert r.returncode == 1
    assert_one_line(r.stderr, "lichen: invalid value for --keepalive: 'x'")


# -- the pid file -------------------------------------------------------------

def test_pid_file_written_then_removed(cli_server, tmp_path):
    pid = tmp_path / "lichen.pid"
    proc = cli_server(["-b", "127.0.0.1:0", "--pid", str(pid),
                       "examples.hello"])
    assert pid.read_text() == f"{proc.proc.pid}\n"
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0
    assert not pid.exists()


def test_pid_file_of_a_live_process_refuses(tmp_path):
    pid = tmp_path / "lichen.pid"
    pid.write_text(f"{os.getpid()}\n")  # this test process: alive
    r = run_lichen(["-b", "127.0.0.1:0", "--pid", str(pid),
                    "examples.hello"])
    assert r.returncode == 1
    assert_one_line(r.stderr, f"lichen: pid file {pid} names process "
                              f"{os.getpid()}, which is running")
    assert pid.read_text() == f"{os.getpid()}\n"


def test_pid_file_that_is_not_one_is_kept(tmp_path):
    pid = tmp_path / "settings.py"
    pid.write_text("DEBUG = True\n")
    r = run_lichen(["-b", "127.0.0.1:0", "-p", str(pid), "examples.hello"])
    assert r.returncode == 1
    assert_one_line(r.stderr, "does not hold a process id")
    assert pid.read_text() == "DEBUG = True\n"


def test_stale_pid_file_is_replaced(cli_server, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid = tmp_path / "lichen.pid"
    pid.write_text(f"{dead.pid}\n")
    proc = cli_server(["-b", "127.0.0.1:0", "--pid", str(pid),
                       "examples.hello"])
    assert pid.read_text() == f"{proc.proc.pid}\n"
    assert proc.stop() == 0
    assert not pid.exists()


def test_pid_file_not_written_when_binding_fails(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    pid = tmp_path / "lichen.pid"
    try:
        r = run_lichen(["-b", f"127.0.0.1:{busy.getsockname()[1]}",
                        "--pid", str(pid), "examples.hello"])
    finally:
        busy.close()
    assert r.returncode == 1
    assert_one_line(r.stderr, "address already in use")
    assert not pid.exists()


# -- user, group, umask, unix socket permissions ------------------------------

def _free_privileged_port():
    for port in range(1000, 600, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free port below 1024 on 127.0.0.1")


@as_root
def test_switch_to_nobody_after_binding_a_privileged_port(cli_server,
                                                          shared_dir,
                                                          preload):
    port = _free_privileged_port()
    pid = os.path.join(shared_dir, "lichen.pid")
    proc = cli_server(preload + [
        "--chdir", str(APPS), "-b", f"127.0.0.1:{port}", "--user", "nobody",
        "--group", "nogroup", "--pid", pid, "deployapp"])
    assert port_of(proc.urls[0]) == port
    status = proc_status(proc.proc.pid)
    assert status["Uid"].split() == [str(NOBODY)] * 4
    assert status["Gid"].split() == [str(NOGROUP)] * 4
    assert status["Groups"].split() == [str(NOGROUP)]
    who = json.loads(request(proc.urls[0], path="/whoami").body)
    assert who == {"uid": NOBODY, "euid": NOBODY, "gid": NOGROUP,
                   "egid": NOGROUP, "groups": [NOGROUP],
                   "imported_as": {"uid": NOBODY, "gid": NOGROUP}}
    # Written as root before the switch, removed by nobody at exit.
    assert os.stat(pid).st_uid == 0
    assert open(pid).read() == f"{proc.proc.pid}\n"
    assert proc.stop() == 0
    assert not os.path.exists(pid)


@as_root
def test_user_alone_takes_its_group(cli_server, preload):
    proc = cli_server(preload + [
        "--chdir", str(APPS), "-b", "127.0.0.1:0", "-u", str(NOBODY),
        "deployapp"])
    who = json.loads(request(proc.urls[0], path="/whoami").body)
    nobody_gid = int(subprocess.check_output(["id", "-g", "nobody"]))
    assert (who["uid"], who["gid"]) == (NOBODY, nobody_gid)
    assert 0 not in who["groups"]  # root's groups are dropped
    assert proc.stop() == 0


@as_root
def test_pid_file_the_user_cannot_remove_is_said(cli_server, tmp_path):
    pid = tmp_path / "lichen.pid"  # in a directory only root may write
    proc = cli_server(["-b", "127.0.0.1:0", "--user", "nobody", "--pid",
                       str(pid), "examples.hello"])
    assert proc.stop() == 0
    assert re.search(r"\[WARNING\] cannot remove pid file "
                     + re.escape(str(pid)) + ": permission denied",
                     proc.stderr), proc.stderr
    # Left behind, it is stale: the next start replaces it.
    proc = cli_server(["-b", "127.0.0.1:0", "--pid", str(pid),
                       "examples.hello"])
    assert pid.read_text() == f"{proc.proc.pid}\n"
    assert proc.stop() == 0


@as_root
def test_tls_key_must_be_readable_after_the_switch(cli_server, shared_dir):
    import ssl

    import trustme
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert = os.path.join(shared_dir, "server.crt")
    key = os.path.join(shared_dir, "server.key")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)  # root's alone
    args = ["-b", "127.0.0.1:0", "--certfile", cert, "--keyfile", key,
            "--user", "nobody", "--group", "nogroup", "examples.hello"]
    r = run_lichen(args)
    assert r.returncode == 1, r.stderr
    assert_one_line(r.stderr, f"lichen: --keyfile {key} is not readable by "
                              "user nobody group nogroup, which lichen "
                              "switched to")
    os.chown(key, 0, NOGROUP)
    os.chmod(key, 0o640)  # as Debian's ssl-cert group reads keys
    proc = cli_server(args)
    assert proc.urls[0].startswith("https://")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    port = port_of(proc.urls[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(HELLO)
    assert proc_status(proc.proc.pid)["Uid"].split() == [str(NOBODY)] * 4
    assert proc.stop() == 0


@as_root
def test_unix_socket_mode_and_owner(cli_server, shared_dir):
    path = os.path.join(shared_dir, "app.sock")
    proc = cli_server(["-b", f"unix:{path}", "--unix-socket-mode", "660",
                       "--user", "nobody", "--group", "nogroup",
                       "examples.hello"])
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0
    assert not os.path.exists(path)  # nobody may write the directory


def test_umask_sets_the_unix_socket_mode_by_default(cli_server, tmp_path):
    path = tmp_path / "app.sock"
    proc = cli_server(["-b", f"unix:{path}", "--umask", "027",
                       "examples.hello"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o750
    assert proc_status(proc.proc.pid)["Umask"] == "0027"
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


@pytest.mark.parametrize("args, expected", [
    (["--umask", "8"], "invalid value for --umask: '8' (expected an octal "
                       "mode"),
    (["--unix-socket-mode", "rw"], "invalid value for --unix-socket-mode"),
    (["--user", "no-such-user-xyz"], "invalid value for --user: "
                                     "'no-such-user-xyz' (no such user)"),
    (["--group", "no-such-group-xyz"], "(no such group)"),
    (["--user", "4000000"], "user 4000000 is not in the user database: "
                            "give the group too"),
])
def test_deploy_option_errors(args, expected):
    r = run_lichen(args + ["-b", "127.0.0.1:0", "examples.hello"])
    assert r.returncode == 1, r.stderr
    assert_one_line(r.stderr, expected)


@as_root
def test_switching_needs_the_capability(tmp_path):
    # Root without CAP_SETUID and CAP_SETGID (as a user other than root
    # is) cannot switch: one line, exit status 1.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    r = subprocess.run([setpriv, "--bounding-set=-setuid,-setgid",
                        "--inh-caps=-setuid,-setgid", PYTHON, "-m",
                        "lichen", "-b", "127.0.0.1:0", "--user", "nobody",
                        "examples.hello"], cwd=str(REPO),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=20, env=child_env())
    assert r.returncode == 1, r.stderr
    assert_one_line(r.stderr, "lichen: cannot switch to user nobody and "
                              "group nogroup: operation not permitted")


# -- systemd socket activation ------------------------------------------------

# What systemd does for a service with sockets: they become fds 3, 4, ...,
# LISTEN_PID is the service's pid, LISTEN_FDS their number, LISTEN_FDNAMES
# their names; then lichen is exec'd (same pid).
LAUNCHER = r"""
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(copies):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_PID"] = (str(os.getpid()) if sys.argv[3] == "self"
                            else sys.argv[3])
os.environ["LISTEN_FDS"] = str(len(fds))
if sys.argv[2]:
    os.environ["LISTEN_FDNAMES"] = sys.argv[2]
os.execv(sys.executable, [sys.executable, "-m", "lichen"] + sys.argv[4:])
"""


def activated(cli_server, socks, args, names="", listen_pid="self",
              **kwargs):
    """lichen started as systemd starts a socket-activated service."""
    fds = [s.fileno() for s in socks]
    return cli_server(args, command=[PYTHON, "-c", LAUNCHER,
                                     ",".join(map(str, fds)), names,
                                     listen_pid],
                      pass_fds=fds, **kwargs)


@pytest.fixture
def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def test_socket_activation_tcp_and_unix(cli_server, tcp_listener, tmp_path):
    path = str(tmp_path / "activated.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen(64)
    port = tcp_listener.getsockname()[1]
    try:
        proc = activated(cli_server, [tcp_listener, unix],
                         ["--chdir", str(APPS), "deployapp"],
                         names="web:admin", listeners=2)
        assert proc.urls == [f"http://127.0.0.1:{port}", f"unix:{path}"]
        assert f"[INFO] Socket activation: fd 3 (web) is " \
               f"http://127.0.0.1:{port}" in proc.stderr
        assert f"[INFO] Socket activation: fd 4 (admin) is unix:{path}" \
               in proc.stderr
        for url in proc.urls:
            assert request(url).body == b'"deploy app"'
        seen = json.loads(request(proc.urls[0], path="/inherited").body)
        # Not passed on to a child: neither the variables nor the fds.
        assert seen == {"environ": {"LISTEN_PID": None, "LISTEN_FDS": None,
                                    "LISTEN_FDNAMES": None},
                        "child": ["unset", "unset", "unset"],
                        "fds": {"3": "cloexec", "4": "cloexec"}}
        assert proc.stop() == 0
        # The socket file is systemd's: it stays.
        assert os.path.exists(path)
    finally:
        unix.close()


def test_socket_activation_beside_bind(cli_server, tcp_listener):
    proc = activated(cli_server, [tcp_listener],
                     ["-b", "127.0.0.1:0", "examples.hello"], listeners=2)
    assert port_of(proc.urls[0]) == tcp_listener.getsockname()[1]
    assert port_of(proc.urls[1]) != port_of(proc.urls[0])
    assert "Socket activation: fd 3 is http://" in proc.stderr  # unnamed
    for url in proc.urls:
        assert request(url).body == HELLO
    assert proc.stop() == 0


def test_activated_fd_named_by_bind_is_served_once(cli_server, tcp_listener):
    proc = activated(cli_server, [tcp_listener],
                     ["-b", "fd://3", "examples.hello"], names="web")
    assert len(proc.urls) == 1
    assert proc.stderr.count("Listening at:") == 1
    assert "Socket activation: fd 3 (web) is" in proc.stderr
    assert request(proc.urls[0]).body == HELLO
    assert proc.stop() == 0


def test_activation_for_another_process_is_ignored(cli_server, tcp_listener):
    proc = activated(cli_server, [tcp_listener],
                     ["--chdir", str(APPS), "-b", "127.0.0.1:0",
                      "deployapp"], listen_pid="1")
    assert len(proc.urls) == 1
    assert port_of(proc.urls[0]) != tcp_listener.getsockname()[1]
    assert "Socket activation" not in proc.stderr
    seen = json.loads(request(proc.urls[0], path="/inherited").body)
    assert seen["child"] == ["unset", "unset", "unset"]
    assert proc.stop() == 0


def test_restart_loses_no_connection(cli_server, tcp_listener):
    """The socket stays open in the service manager between two runs: a
    client that connects while no lichen runs is served by the next."""
    port = tcp_listener.getsockname()[1]
    first = activated(cli_server, [tcp_listener], ["examples.hello"])
    assert request(f"http://127.0.0.1:{port}").body == HELLO
    assert first.stop() == 0
    waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close"
                        b"\r\n\r\n")
        second = activated(cli_server, [tcp_listener], ["examples.hello"])
        data = b""
        while True:
            chunk = waiting.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        assert data.endswith(HELLO)
    finally:
        waiting.close()
    assert request(f"http://127.0.0.1:{port}").body == HELLO
    assert second.stop() == 0


def test_activated_fd_that_is_no_socket(tmp_path):
    r = subprocess.run(
        [PYTHON, "-c", LAUNCHER, "0", "", "self", "-b", "127.0.0.1:0",
         "examples.hello"], cwd=str(REPO), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 1, r.stderr
    assert_one_line(r.stderr, "lichen: cannot use socket activation's fd 3: ")


def test_server_refuses_the_process_options():
    import lichen

    def app(environ, start_response):  # never called
        start_response("200 OK", [])
        return [b""]

    for name, value in [("user", "nobody"), ("pid", "x.pid"),
                        ("group", "nogroup"), ("umask", 0o22)]:
        with pytest.raises(TypeError, match=f"does not take '{name}'"):
            lichen.Server(app, port=0, **{name: value})
