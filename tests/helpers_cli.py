"""Helpers for the command line, API and framework tests: run lichen in a
subprocess, find its ports from its "Listening at" lines, talk HTTP to it."""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
PYTHON = sys.executable
# The start-up lines, in the error log's format (gunicorn's):
# [time] [pid] [INFO] Listening at: URL (pid)
LISTENING_RE = re.compile(
    r"^\[[^]]+\] \[(\d+)\] \[INFO\] Listening at: (\S+) \(\d+\)$")
START_TIMEOUT = 20.0


def lichen_script():
    """The console script installed beside this interpreter."""
    return str(Path(PYTHON).with_name("lichen"))


def child_env(**extra):
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def ignore_sigint():
    """In a child before exec: SIGINT ignored, as a shell starts a
    background job (or nohup its command)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LichenProcess:
    """A lichen server in a subprocess; stderr is collected by a thread."""

    def __init__(self, args, *, listeners=1, cwd=REPO, command=None,
                 pass_fds=(), env=None, stdout=subprocess.DEVNULL,
                 sigint_ignored=False):
        self.command = (command or [PYTHON, "-m", "lichen"]) + list(args)
        self.proc = subprocess.Popen(
            self.command, cwd=str(cwd), stdin=subprocess.DEVNULL,
            stdout=stdout, stderr=subprocess.PIPE, pass_fds=pass_fds,
            env=env or child_env(),
            preexec_fn=ignore_sigint if sigint_ignored else None)
        self._lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.urls = self._wait_listening(listeners)

    def _read(self):
        for raw in self.proc.stderr:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._lines.append(None)  # EOF
            self._cond.notify_all()

    def _wait_listening(self, count):
        deadline = time.monotonic() + START_TIMEOUT
        with self._cond:
            while True:
                urls = [m.group(2) for m in
                        (LISTENING_RE.match(l) for l in self._lines if l)
                        if m]
                if len(urls) >= count:
                    return urls
                if None in self._lines:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        self.kill()
        raise AssertionError(
            f"lichen did not report {count} listener(s); command "
            f"{self.command}; stderr:\n{self.stderr}")

    @property
    def stderr(self):
        with self._cond:
            return "\n".join(l for l in self._lines if l is not None)

    def wait_stderr(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while text not in self.stderr:
                left = deadline - time.monotonic()
                if left <= 0 or None in self._lines:
                    return False
                self._cond.wait(left)
            return True

    @property
    def port(self):
        return port_of(self.urls[0])

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout=15.0):
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


def port_of(url):
    return int(url.rsplit(":", 1)[1])


def run_lichen(args, *, cwd=REPO, command=None, timeout=60):
    """Run lichen expecting it to exit (a start-up error, --version)."""
    return subprocess.run(
        (command or [PYTHON, "-m", "lichen"]) + list(args), cwd=str(cwd),
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, env=child_env())


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def connection(url, timeout=10.0):
    if url.startswith("unix:"):
        return UnixHTTPConnection(url[len("unix:"):], timeout=timeout)
    m = re.fullmatch(r"http://(\[[^\]]+\]|[^:/]+):(\d+)", url)
    assert m, url
    host = m.group(1).strip("[]")
    return http.client.HTTPConnection(host, int(m.group(2)), timeout=timeout)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    @property
    def text(self):
        return self.body.decode("utf-8")


def request(url, method="GET", path="/", body=None, headers=None,
            timeout=10.0):
    """One request on a new connection; returns a Response."""
    conn = connection(url, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.headers, data)
    finally:
        conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
