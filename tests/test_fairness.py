"""A worker that never has to wait (small writes, read faster than written)
still lets the other connections run: it yields to the loop after a burst."""

import subprocess
import sys
import time

from pathlib import Path

import pytest

from helpers_cli import LichenProcess, child_env
from support import Conn, build

TESTS = Path(__file__).resolve().parent

CHUNK = b'f' * 512


def app(environ, start_response):
    if environ['PATH_INFO'] == '/huge':
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])

        def gen():
            # Without a limit of our own: only the client hanging up ends it.
            while True:
                yield CHUNK
        return gen()
    start_response('200 OK', [('Content-Length', '2')])
    return [b'ok']


@pytest.mark.timeout(60)
def test_fast_reader_of_endless_response_does_not_starve_others():
    # The server is a process of its own (a server thread here would share
    # the GIL with the client), and so is the reader, so that it reads
    # faster than the server writes and the server's socket never fills.
    server = LichenProcess(['test_fairness:app', '--bind', '127.0.0.1:0'],
                           env=child_env(PYTHONPATH=str(TESTS)))
    reader = subprocess.Popen(
        [sys.executable, '-c', READER, str(server.port)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == 'flowing'
        worst = 0.0
        with Conn(('127.0.0.1', server.port), timeout=5) as c:
            for _ in range(20):
                t0 = time.monotonic()
                c.send(build('GET', '/small'))
                r = c.read_response()
                worst = max(worst, time.monotonic() - t0)
                assert r.status == 200 and r.body == b'ok'
        assert reader.poll() is None, 'the huge response stopped'
        assert worst < 1.0, f'a small request waited {worst:.2f}s'
    finally:
        reader.kill()
        reader.wait(10)
        server.stop()


READER = """
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'GET /huge HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
n = 0
buf = bytearray(1 << 20)
announced = False
while True:
    k = s.recv_into(buf)
    if not k:
        break
    n += k
    if n > (4 << 20) and not announced:
        print('flowing', flush=True)
        announced = True
"""
