"""Out of file descriptors (EMFILE): the server pauses accepting instead of
spinning on the listener, keeps serving the connections it has, and accepts
again once descriptors are free."""

import os
import resource
import socket
import time

import pytest

from helpers_cli import APPS, LichenProcess, child_env

from support import Conn, build, get_until_close

FD_LIMIT = 64


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


class LimitedProcess(LichenProcess):
    def __init__(self, args):
        import subprocess

        real_popen = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = limit_fds
            return real_popen(*a, **kw)

        subprocess.Popen = popen
        try:
            super().__init__(args, env=child_env(PYTHONPATH=str(APPS)))
        finally:
            subprocess.Popen = real_popen


@pytest.mark.timeout(60)
def test_emfile_pauses_accepting_then_recovers():
    server = LimitedProcess(["cliapp:application", "--bind", "127.0.0.1:0"])
    try:
        addr = ("127.0.0.1", server.port)
        # One connection served before the flood, kept open across it.
        first = Conn(addr)
        first.send(build("GET", "/"))
        assert first.read_response().status == 200

        flood = []
        for _ in range(FD_LIMIT * 2):
            s = socket.create_connection(addr, timeout=5)
            flood.append(s)
        time.sleep(0.5)  # the server has hit EMFILE by now

        # Not spinning: about no CPU while the backlog cannot be accepted.
        pid = server.proc.pid
        before = cpu_seconds(pid)
        time.sleep(1.0)
        used = cpu_seconds(pid) - before
        assert used < 0.3, f"server used {used:.2f}s CPU in 1s at EMFILE"

        # The connection it already had is still served.
        first.send(build("GET", "/"))
        assert first.read_response().status == 200

        # Free the descriptors: every queued connection gets answered.
        answered = 0
        for s in flood[: FD_LIMIT // 2]:
            s.close()
        for s in flood[FD_LIMIT // 2:]:
            data = get_until_close(s)
            assert data.startswith(b"HTTP/1.1 200"), data[:80]
            answered += 1
            s.close()
        assert answered == len(flood) - FD_LIMIT // 2
        assert "out of file descriptors" in server.stderr, server.stderr
        first.close()
    finally:
        server.stop()
