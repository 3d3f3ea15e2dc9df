"""Static files: the open-file cache seen from the system calls. Many
requests for one file are one open; a file replaced on disk is opened
anew, once. Runs lichen's command line under strace (skipped without
strace)."""
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers_cli import REPO, child_env

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="needs strace (Debian package strace)")

APP = "tests.apps.cliapp:app"


def start(tmp_path, *extra):
    trace = tmp_path / "trace"
    port_file = tmp_path / "port"
    cmd = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=open,openat,openat2",
           "-o", str(trace), sys.executable, "-m", "lichen",
           "--static", f"/static={tmp_path / 'root'}", "--bind",
           "127.0.0.1:0", *extra, APP]
    proc = subprocess.Popen(cmd, cwd=str(REPO), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=child_env())
    deadline = time.monotonic() + 30
    port = None
    for line in proc.stderr:
        m = re.search(rb"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)",
                      line)
        if m:
            port, proc.lichen_pid = int(m.group(1)), int(m.group(2))
            break
        if time.monotonic() > deadline:
            break
    assert port is not None, "lichen did not start under strace"
    del port_file
    return proc, port, trace


def stop(proc):
    # lichen itself, not strace (which would detach and leave it running)
    os.kill(proc.lichen_pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()


def opens_of(trace, name):
    text = trace.read_text(errors="replace")
    return [l for l in text.splitlines()
            if name in l and re.search(r"\bopen(at2?)?\(", l)]


def fetch_many(port, path, n):
    bodies = set()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(n):
            conn.request("GET", path)
            r = conn.getresponse()
            assert r.status == 200
            bodies.add(r.read())
    finally:
        conn.close()
    return bodies


def test_many_requests_one_open(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "app.css").write_bytes(b"body{color:red}\n")
    proc, port, trace = start(tmp_path)
    try:
        assert fetch_many(port, "/static/app.css", 2000) == {
            b"body{color:red}\n"}
    finally:
        stop(proc)
    opens = opens_of(trace, "app.css")
    assert len(opens) == 1, opens


def test_replaced_file_opened_anew_once(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    f = root / "data.txt"
    f.write_bytes(b"old\n")
    proc, port, trace = start(tmp_path)
    try:
        assert fetch_many(port, "/static/data.txt", 50) == {b"old\n"}
        tmp = root / "data.tmp"
        tmp.write_bytes(b"the new one\n")
        os.replace(tmp, f)
        deadline = time.monotonic() + 3
        seen = set()
        while time.monotonic() < deadline:
            got = fetch_many(port, "/static/data.txt", 20)
            seen |= got
            if got == {b"the new one\n"}:
                break
            time.sleep(0.05)
        assert got == {b"the new one\n"}, seen
        assert seen <= {b"old\n", b"the new one\n"}
        # And served from the new open file from then on.
        assert fetch_many(port, "/static/data.txt", 500) == {
            b"the new one\n"}
    finally:
        stop(proc)
    assert len(opens_of(trace, "data.txt")) == 2, opens_of(trace, "data.txt")


def test_without_the_cache_every_request_opens(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    proc, port, trace = start(tmp_path, "--static-cache", "0")
    try:
        assert fetch_many(port, "/static/a.txt", 30) == {b"a"}
    finally:
        stop(proc)
    assert len(opens_of(trace, "a.txt")) == 30
