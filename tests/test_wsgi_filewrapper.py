"""wsgi.file_wrapper: real files (sendfile), BytesIO and read()-only objects (fallback)."""
import hashlib
import io
import os
import time

import pytest

from support import Conn, Response, build, request, wait_for

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports


@pytest.fixture
def datafile(tmp_path):
    def make(size):
        path = tmp_path / ('data-%d' % size)
        data = os.urandom(size)
        path.write_bytes(data)
        return str(path), data
    return make


def file_app(path, seek=0, set_length=None, blksize=None):
    opened = []

    def app(environ, start_response):
        f = open(path, 'rb')
        f.seek(seek)
        opened.append(f)
        headers = [('Content-Type', 'application/octet-stream')]
        if set_length is not None:
            headers.append(('Content-Length', str(set_length)))
        start_response('200 OK', headers)
        wrapper = environ['wsgi.file_wrapper']
        return wrapper(f, blksize) if blksize else wrapper(f)
    app.opened = opened
    return app


def test_file_wrapper_present(serve):
    seen = {}

    def app(environ, start_response):
        seen['fw'] = callable(environ.get('wsgi.file_wrapper'))
        start_response('200 OK', [])
        return [b'x']
    srv = serve(app)
    request(srv.address)
    assert seen['fw'] is True


def test_real_file_with_app_content_length(serve, datafile):
    path, data = datafile(1024 * 1024 + 17)
    app = file_app(path, set_length=len(data))
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            r = c.read_response()
            assert r.status == 200
            assert r.header('content-length') == str(len(data))
            assert r.body == data
    assert wait_for(lambda: all(f.closed for f in app.opened), 2)


def test_real_file_content_length_is_inferred(serve, datafile):
    path, data = datafile(300000)
    srv = serve(file_app(path))
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        r = c.read_response()
    assert r.body == data
    assert r.header('content-length') == str(len(data)), r


def test_real_file_positioned_mid_file(serve, datafile):
    path, data = datafile(500000)
    app = file_app(path, seek=12345)
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            r = c.read_response()
            assert r.body == data[12345:]
            if r.has('content-length'):
                assert r.header('content-length') == str(len(data) - 12345)
    assert wait_for(lambda: all(f.closed for f in app.opened), 2)


def test_real_file_with_shorter_content_length(serve, datafile):
    path, data = datafile(100000)
    srv = serve(file_app(path, set_length=1000))
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            r = c.read_response()
            assert r.body == data[:1000]


def test_real_file_head(serve, datafile):
    path, data = datafile(100000)
    app = file_app(path, set_length=len(data))
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('HEAD', '/') + build('GET', '/'))
        h = c.read_response('HEAD')
        assert h.body == b'' and h.header('content-length') == str(len(data))
        assert c.read_response().body == data
    assert wait_for(lambda: all(f.closed for f in app.opened), 2)


def test_real_file_with_blksize(serve, datafile):
    path, data = datafile(70000)
    srv = serve(file_app(path, blksize=1000))
    assert request(srv.address).body == data


def test_real_file_http10(serve, datafile):
    path, data = datafile(200000)
    srv = serve(file_app(path))
    with Conn(srv.address) as c:
        c.send(b'GET / HTTP/1.0\r\n\r\n')
        r = c.read_response()
    assert r.body == data


def test_empty_file(serve, datafile):
    path, data = datafile(0)
    srv = serve(file_app(path))
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            assert c.read_response().body == b''


class Closing(io.BytesIO):
    closes = 0

    def close(self):
        type(self).closes += 1
        super().close()


def test_bytesio_fallback(serve):
    data = os.urandom(200000)
    Closing.closes = 0

    def app(environ, start_response):
        start_response('200 OK', [])
        return environ['wsgi.file_wrapper'](Closing(data), 8192)
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            assert c.read_response().body == data
    assert wait_for(lambda: Closing.closes == 2, 2), Closing.closes


def test_read_only_filelike(serve):
    data = os.urandom(100000)

    class ReadOnly:
        def __init__(self):
            self.pos = 0

        def read(self, n=-1):
            if n is None or n < 0:
                n = len(data)
            n = min(n, 777)  # short reads
            out = data[self.pos:self.pos + n]
            self.pos += len(out)
            return out

    def app(environ, start_response):
        start_response('200 OK', [])
        return environ['wsgi.file_wrapper'](ReadOnly())
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            assert c.read_response().body == data


def test_file_wrapper_iterable_by_app(serve, datafile):
    # PEP 3333: the wrapper is an iterable of blocks the app (or middleware) may consume itself
    path, data = datafile(50000)

    def app(environ, start_response):
        w = environ['wsgi.file_wrapper'](open(path, 'rb'), 4096)
        try:
            blocks = list(w)
        finally:
            w.close()
        start_response('200 OK', [])
        return [b''.join(blocks)]
    srv = serve(app)
    assert request(srv.address).body == data


@pytest.mark.timeout(60)
def test_large_file_to_slow_reader(serve, datafile):
    path, data = datafile(20 * 1024 * 1024)
    app = file_app(path)
    srv = serve(app)
    h = hashlib.sha256()
    n = 0
    with Conn(srv.address, timeout=20, rcvbuf=65536) as c:
        c.send(build('GET', '/'))
        head = Response()
        c._read_head(head)
        assert head.status == 200
        if head.has('content-length'):
            assert head.header('content-length') == str(len(data))
            while n < len(data):
                chunk = c.read_some(65536)
                assert chunk, 'closed after %d bytes' % n
                h.update(chunk)
                n += len(chunk)
                if n % (1024 * 1024) < 65536:
                    time.sleep(0.05)  # a slow reader
        else:
            time.sleep(1)  # let the server fill the socket and wait
            c._read_chunked(head)
            h.update(head.body)
            n = len(head.body)
    assert n == len(data)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert wait_for(lambda: all(f.closed for f in app.opened), 2)


def test_file_position_follows_what_sendfile_sent(serve, datafile):
    # sendfile does not move the file's offset as Python sees it: the
    # server seeks the file object to the end of what it sent.
    path, data = datafile(100000)
    positions = []

    class Tracked(io.FileIO):
        def close(self):
            if not self.closed:
                positions.append(self.tell())
            super().close()

    def app(environ, start_response):
        f = Tracked(path, 'rb')
        f.seek(1000)
        start_response('200 OK', [])
        return environ['wsgi.file_wrapper'](f)

    srv = serve(app)
    r = request(srv.address)
    assert r.body == data[1000:]
    assert wait_for(lambda: positions, 2)
    assert positions == [len(data)]
