"""PasteDeploy: ``use = egg:lichen#main`` (and ``#gevent``) in a
[server:main] section, run by Pyramid's pserve and by paste.deploy's
loadserver, the options as keys."""

import json
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers_cli import (APPS, PYTHON, REPO, LichenProcess, child_env,
                         request)

from lichen.config import OPTIONS_BY_NAME

pytest.importorskip("paste.deploy")

PYRAMID_SITE = REPO / "examples" / "pyramid_site"
# What a PasteDeploy user's own script does: the application and the
# server of one file.
LOAD_AND_SERVE = ("import sys\n"
                  "from paste.deploy import loadapp, loadserver\n"
                  "uri = 'config:' + sys.argv[1]\n"
                  "loadserver(uri)(loadapp(uri))\n")


def pserve():
    """Pyramid's pserve, installed beside this interpreter."""
    return str(Path(PYTHON).with_name("pserve"))


def write_ini(tmp_path, text, name="test.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def stop_cleanly(proc):
    try:
        proc.signal(15)  # SIGTERM
        assert proc.wait(15) == 0, proc.stderr
        assert "Received SIGTERM: stopping gracefully" in proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
    finally:
        proc.kill()


def test_pserve_serves_the_pyramid_example(tmp_path):
    pytest.importorskip("pyramid")
    # The example's development.ini as it is, but on a free port.
    ini = write_ini(tmp_path, f"""\
        [app:main]
        use = config:{PYRAMID_SITE}/development.ini#main

        [server:main]
        use = config:{PYRAMID_SITE}/development.ini#main
        port = 0
        """)
    proc = LichenProcess([str(ini)], command=[pserve()], cwd=tmp_path,
                         env=child_env(PYTHONPATH=str(PYRAMID_SITE)),
                         stdout=subprocess.PIPE)
    try:
        url = proc.urls[0]
        assert url.startswith("http://127.0.0.1:")
        resp = request(url, path="/")
        assert resp.status == 200
        # [app:main]'s settings reached the application.
        assert resp.text == ("Hello from Pyramid on lichen! (from "
                             "development.ini)\n")
        resp = request(url, method="POST", path="/echo",
                       body=b'{"a": [1, 2]}',
                       headers={"Content-Type": "application/json"})
        assert resp.status == 200
        assert json.loads(resp.body) == {"echo": {"a": [1, 2]}}
        assert request(url, path="/hello?name=x").status == 200
        assert request(url, path="/nope").status == 404
        # The ini's keepalive = 5: the connection is kept.
        assert resp.header("Connection") != "close"
        assert "Starting lichen 0.1.0" in proc.stderr
        stop_cleanly(proc)
    finally:
        proc.kill()
    assert "Starting server in PID" in proc.stderr  # pserve's own line
    out = proc.proc.stdout.read().decode()
    # access_log = - : the requests answered, in the access log on stdout.
    assert '"GET / HTTP/1.1" 200 ' in out, out
    assert '"POST /echo HTTP/1.1" 200 ' in out, out
    assert '"GET /nope HTTP/1.1" 404 ' in out, out


def test_loadserver_takes_lichens_options(tmp_path):
    access_log = tmp_path / "access.log"
    ini = write_ini(tmp_path, f"""\
        [app:main]
        use = call:pasteapps:echo
        colour = green

        [server:main]
        use = egg:lichen#main
        bind = 127.0.0.1:0
               127.0.0.1:0
        keepalive = 0
        access_log = {access_log}
        server-header = lichen-paste
        limit_request_body = 10
        static = /files=%(here)s/public /more=%(here)s/public
        static_types = .one=text/x-one .two=text/x-two
        static_dotfiles = true
        """)
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "a.one").write_text("first")
    (tmp_path / "public" / ".b.two").write_text("second")
    proc = LichenProcess([str(ini)], command=[PYTHON, "-c", LOAD_AND_SERVE],
                         cwd=APPS, listeners=2)
    try:
        assert len(set(proc.urls)) == 2
        for url in proc.urls:
            resp = request(url, method="POST", path="/p", body=b"0123456789")
            assert resp.status == 200
            assert json.loads(resp.body)["body"] == "0123456789"
            assert json.loads(resp.body)["settings"] == {"colour": "green"}
            assert resp.header("Server") == "lichen-paste"
            assert resp.header("Connection") == "close"  # keepalive = 0
        resp = request(proc.urls[0], method="POST", path="/p",
                       body=b"0123456789x")
        assert resp.status == 413  # limit_request_body = 10
        # static, static_types (two of each) and static_dotfiles, from
        # the directory beside the file (%(here)s).
        for path, body, ctype in [("/files/a.one", "first", "text/x-one"),
                                  ("/more/.b.two", "second", "text/x-two")]:
            resp = request(proc.urls[1], path=path)
            assert (resp.status, resp.text) == (200, body)
            assert resp.header("Content-Type") == ctype
        stop_cleanly(proc)
    finally:
        proc.kill()
    lines = access_log.read_text().splitlines()
    assert [l.split('"')[1] for l in lines] == [
        "POST /p HTTP/1.1", "POST /p HTTP/1.1", "GET /files/a.one HTTP/1.1",
        "GET /more/.b.two HTTP/1.1"], lines


def test_gevent_variant_serves_sleeping_requests_together(tmp_path):
    pytest.importorskip("gevent")
    ini = write_ini(tmp_path, """\
        [app:main]
        use = call:pasteapps:sleepy
        delay = 1.5

        [server:main]
        use = egg:lichen#gevent
        host = 127.0.0.1
        port = 0
        """)
    proc = LichenProcess([str(ini)], command=[pserve()], cwd=tmp_path,
                         env=child_env(PYTHONPATH=str(APPS)))
    try:
        url = proc.urls[0]
        assert "Starting lichen 0.1.0 (gevent mode)" in proc.stderr
        done = {}

        def get(path):
            start = time.monotonic()
            resp = request(url, path=path)
            done[path] = time.monotonic() - start
            return resp.status, resp.text

        start = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            sleepers = [pool.submit(get, p) for p in ("/gevent-sleep",
                                                      "/time-sleep")]
            time.sleep(0.2)  # both sleeping now
            assert get("/fast") == (200, "/fast")
            # Answered while both sleepers still wait.
            assert not any(f.done() for f in sleepers), done
            assert [f.result() for f in sleepers] == [
                (200, "/gevent-sleep"), (200, "/time-sleep")]
        # time.sleep cooperated too: the standard library was patched, so
        # the two sleeps of 1.5 s took 1.5 s, not 3.
        assert time.monotonic() - start < 2.7, done
        assert done["/time-sleep"] >= 1.4, done
        stop_cleanly(proc)
    finally:
        proc.kill()


# --- errors: a bad key or value is one clear ConfigError naming the key ----
# Each configuration's runner is called, as pserve calls it, in one
# subprocess (from a directory of its own: the installed lichen's entry
# points, not a build's leftovers in the working tree); what each raised
# is compared below.

BAD_CONFIGS = [
    ("keepalive = abc", "invalid value for keepalive: 'abc' (expected "
                        "seconds, a number >= 0)"),
    ("access-log = -\ntimeout-header = 0",
     "invalid value for timeout-header: 0.0 (expected seconds, a number "
     ">= 0.001)"),
    ("threads = 4\nconnection_limit = 2", "unknown keys for lichen's "
                                          "server: connection_limit, threads "
                                          "(lichen takes host, port, bind and "
                                          "its options by name, e.g. "
                                          "keepalive, access_log)"),
    ("workers = 2", "workers: the process's, set by the lichen command only; "
                    "in a server section, use the tools that start pserve (a "
                    "service manager) instead"),
    ("listen = 127.0.0.1:8080", "unknown key for lichen's server: listen "
                                "(lichen takes host, port, bind and its "
                                "options by name, e.g. keepalive, "
                                "access_log)"),
    ("access_log = -\naccess-log = x", "access_log and access-log are the "
                                       "same key: give one"),
    ("port = 80000", "invalid value for port: '80000' (expected a port "
                     "number, 0 to 65535)"),
    ("host = 127.0.0.1\nbind = 127.0.0.1:0",
     "give bind, or host and port, not both"),
    ("bind = 127.0.0.1:0 localhost:x",
     "invalid bind address 'localhost:x': port must be 0-65535"),
    ("static = /static=/no/such/dir",
     "invalid value for static: '/static=/no/such/dir' (no such directory: "
     "/no/such/dir)"),
    ("keyfile_password = x", "keyfile_password needs certfile"),
    ("static_dotfiles = maybe",
     "invalid value for static_dotfiles: 'maybe' (expected true or false)"),
]
if "user" in OPTIONS_BY_NAME:  # the command line's, not a server's
    BAD_CONFIGS.append((
        "pid = /tmp/x.pid\nkeepalive = 1\nuser = nobody",
        "pid, user: the process's, set by the lichen command only; in a "
        "server section, use the tools that start pserve (a service "
        "manager) instead"))
RUNNERS = ["main", "gevent"]
GEVENT_ONLY = [
    ("main", "monkey_patch = false",
     "unknown key for lichen's server: monkey_patch (lichen takes host, "
     "port, bind and its options by name, e.g. keepalive, access_log)"),
    ("gevent", "monkey_patch = perhaps",
     "invalid value for monkey_patch: 'perhaps' (expected true or false)"),
]
CASES = [(use, keys, message) for keys, message in BAD_CONFIGS
         for use in RUNNERS] + GEVENT_ONLY
CALL_EACH = """\
import json, sys
from paste.deploy import loadserver
import gevent.monkey

def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]

out = []
for path in sys.argv[1:]:
    try:
        loadserver("config:" + path)(app)
        out.append("served")
    except Exception as exc:
        out.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
out.append(gevent.monkey.is_module_patched("socket"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def errors(tmp_path_factory):
    """{(use, keys): what calling the runner raised}"""
    pytest.importorskip("gevent")
    d = tmp_path_factory.mktemp("paste-errors")
    paths = []
    for i, (use, keys, _) in enumerate(CASES):
        port = "" if any(k in keys for k in ("port", "bind", "host")) \
            else "port = 0\n"
        paths.append(write_ini(d, f"[server:main]\nuse = egg:lichen#{use}\n"
                                  f"{port}{keys}\n", name=f"{i}.ini"))
    result = subprocess.run([PYTHON, "-c", CALL_EACH] + [str(p) for p in paths],
                            cwd=d, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60,
                            env=child_env())
    assert result.returncode == 0, result.stderr
    assert "Listening at" not in result.stderr, result.stderr
    *raised, patched = json.loads(result.stdout)
    # Every value was checked before gevent's runner patched anything.
    assert patched is False
    return {(use, keys): r for (use, keys, _), r in zip(CASES, raised)}


@pytest.mark.parametrize("use, keys, message", CASES)
def test_bad_key_or_value_is_a_clear_error(errors, use, keys, message):
    assert errors[use, keys] == "lichen.config.ConfigError: " + message


def test_pserve_reports_a_bad_value_and_exits(tmp_path):
    pytest.importorskip("pyramid")
    ini = write_ini(tmp_path, """\
        [app:main]
        use = call:pasteapps:echo

        [server:main]
        use = egg:lichen#main
        port = 0
        graceful_timeout = soon
        """)
    result = subprocess.run([pserve(), str(ini)], cwd=tmp_path,
                            env=child_env(PYTHONPATH=str(APPS)),
                            stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith(
        "ConfigError: invalid value for graceful_timeout: 'soon' (expected "
        "seconds, a number >= 0)"), result.stderr
    assert "Listening at" not in result.stderr
