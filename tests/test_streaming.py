"""Streamed responses: small blocks gather, but no block waits on the
application (PEP 3333: a server "must not delay the transmission of any
block" unless it keeps transmitting while the application makes the next).

Blocks of an iterable gather in the connection's output buffer, and a
pipelined response may wait there for the next one of its batch; while the
application runs, a flusher thread of the engine sends whatever has waited
two of its 1 ms ticks. These tests block the application with time.sleep
(which stops the whole loop in native mode) and check that the bytes
already given reach the client anyway."""
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from support import Conn, build, request, wait_for

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports

# The client must see held bytes long before the application wakes up.
SLEEP = 0.8
PROMPT = 0.4


def read_until(c, marker, timeout):
    """Bytes read from Conn c until marker is among them, or the timeout."""
    data = b''
    deadline = time.monotonic() + timeout
    c.sock.settimeout(0.05)
    try:
        while marker not in data and time.monotonic() < deadline:
            try:
                got = c.sock.recv(65536)
            except socket.timeout:
                continue
            if not got:
                break
            data += got
    finally:
        c.sock.settimeout(5)
    return data


def test_block_is_sent_while_the_app_blocks(serve):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'first-block'
        time.sleep(SLEEP)  # blocks the loop itself, not just this request
        yield b'second-block'

    srv = serve(app)
    with Conn(srv.address) as c:
        t0 = time.monotonic()
        c.send(build('GET', '/'))
        data = read_until(c, b'first-block', PROMPT)
        assert b'first-block' in data, data
        assert time.monotonic() - t0 < PROMPT
        assert b'second-block' not in data
        rest = read_until(c, b'0\r\n\r\n', 5)
        whole = data + rest
        assert whole.endswith(b'0\r\n\r\n'), whole
        assert b'second-block' in whole
        assert c.is_open()


def test_many_small_blocks_arrive_whole_and_in_order(serve):
    blocks = [b'%05d:' % i + b'x' * (i % 97) for i in range(3000)]

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        for i, b in enumerate(blocks):
            if i % 500 == 499:
                time.sleep(0.01)  # some pauses longer than a tick
            yield b

    srv = serve(app)
    with Conn(srv.address) as c:
        for _ in range(3):
            c.send(build('GET', '/'))
            r = c.read_response()
            assert r.chunked
            assert r.body == b''.join(blocks)


def test_large_block_after_small_ones_keeps_order(serve):
    big = bytes(range(256)) * 1024  # 256 KiB: sent directly, not gathered

    def app(environ, start_response):
        start_response('200 OK', [])
        yield b'a' * 10
        yield big
        yield b'b' * 10

    srv = serve(app)
    r = request(srv.address)
    assert r.body == b'a' * 10 + big + b'b' * 10


def test_pipelined_response_is_not_held_behind_a_slow_app(serve):
    def app(environ, start_response):
        if environ['PATH_INFO'] == '/slow':
            time.sleep(SLEEP)
        start_response('200 OK', [('Content-Length', '4')])
        return [environ['PATH_INFO'][1:].encode()[:4].ljust(4, b'.')]

    srv = serve(app)
    with Conn(srv.address) as c:
        t0 = time.monotonic()
        # both heads in one packet: the first response would wait for the
        # second to share its write
        c.send(build('GET', '/fast') + build('GET', '/slow'))
        data = read_until(c, b'fast', PROMPT)
        assert b'fast' in data, data
        assert time.monotonic() - t0 < PROMPT
        rest = read_until(c, b'slow', 5)
        assert b'slow' in data + rest


def test_write_inside_the_iterable_keeps_order(serve):
    def app(environ, start_response):
        write = start_response('200 OK', [])

        def gen():
            yield b'1'
            write(b'2')
            yield b'3'
            write(b'4')
        return gen()

    srv = serve(app)
    r = request(srv.address)
    assert r.body == b'1234'


class SlowBody:
    """100 bytes, a pause, then 50 more blocks with pauses; counts close()."""

    def __init__(self):
        self.i = 0
        self.closed = 0
        self.finished = False

    def __iter__(self):
        return self

    def __next__(self):
        self.i += 1
        if self.i == 1:
            return b'x' * 100
        if self.i > 51:
            self.finished = True
            raise StopIteration
        time.sleep(0.3 if self.i == 2 else 0.01)
        return b'y' * 1000

    def close(self):
        self.closed += 1


def test_client_gone_while_blocks_are_held(serve):
    bodies = []

    def app(environ, start_response):
        start_response('200 OK', [])
        bodies.append(SlowBody())
        return bodies[-1]

    srv = serve(app)
    c = Conn(srv.address)
    c.send(build('GET', '/'))
    assert b'x' * 100 in read_until(c, b'x' * 100, PROMPT)
    c.rst_close()
    assert wait_for(lambda: bodies[0].closed == 1, 5)
    assert not bodies[0].finished
    # the server goes on serving
    assert request(srv.address).status == 200
    assert bodies[1].finished and bodies[1].closed == 1


FORK_SCRIPT = textwrap.dedent('''
    import os, socket, sys, threading, time
    import lichen

    def app(environ, start_response):
        start_response('200 OK', [])
        yield b'first-block'
        time.sleep(%(sleep)r)
        yield b'second'

    def first_block_delay():
        srv = lichen.Server(app, host='127.0.0.1', port=0)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        s = socket.create_connection(srv.address, timeout=5)
        t0 = time.monotonic()
        s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')
        data = b''
        while b'first-block' not in data:
            data += s.recv(65536)
        delay = time.monotonic() - t0
        while s.recv(65536):
            pass
        s.close()
        srv.stop(timeout=5)
        t.join(5)
        return delay

    # The flusher thread starts in the parent, then the process forks.
    assert first_block_delay() < %(prompt)r, 'parent'
    pid = os.fork()
    if pid == 0:
        ok = first_block_delay() < %(prompt)r
        counts = lichen.live_counts()
        os._exit(0 if ok and not any(counts.values()) else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
''')


def test_forked_child_gets_its_own_flusher(tmp_path):
    script = tmp_path / 'fork_stream.py'
    script.write_text(FORK_SCRIPT % {'sleep': SLEEP, 'prompt': PROMPT})
    env = dict(os.environ, PYTHONWARNINGS='ignore::DeprecationWarning')
    p = subprocess.run([sys.executable, str(script)], capture_output=True,
                       timeout=60, env=env)
    assert p.returncode == 0, (p.returncode, p.stderr.decode()[-2000:])
