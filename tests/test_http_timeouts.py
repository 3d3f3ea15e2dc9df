"""Head, body-progress and write-progress timeouts."""
import time

import pytest

import lichen
from support import CloseCounter, Conn, IncompleteResponse, Recorder, build, request, wait_for


def ok_after(srv):
    r = request(srv.address, 'GET', '/after')
    assert r.status == 200


def _closed_or_408(c, timeout):
    """The connection ends within `timeout`, with a 408 or with nothing."""
    data = c.expect_close(timeout=timeout)
    if data:
        assert data.startswith(b'HTTP/1.1 408 ') or data.startswith(b'HTTP/1.0 408 '), data[:100]
    return data


@pytest.mark.timeout(20)
def test_head_timeout_partial_request_line(serve):
    app = Recorder()
    srv = serve(app, timeout_header=0.5)
    with Conn(srv.address) as c:
        c.send(b'GET /sl')
        t0 = time.monotonic()
        _closed_or_408(c, timeout=3.0)
        elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed <= 2.5, elapsed
    assert app.calls == 0
    ok_after(srv)


@pytest.mark.timeout(20)
def test_head_timeout_partial_headers(serve):
    app = Recorder()
    srv = serve(app, timeout_header=0.5)
    with Conn(srv.address) as c:
        c.send(b'GET / HTTP/1.1\r\nHost: x\r\nX-A: ')
        _closed_or_408(c, timeout=3.0)
    assert app.calls == 0


@pytest.mark.timeout(20)
def test_head_timeout_is_not_extended_by_trickling(serve):
    """A slowloris that sends one header byte every 100 ms still hits the head timeout."""
    app = Recorder()
    srv = serve(app, timeout_header=0.5)
    c = Conn(srv.address)
    c.send(b'GET / HTTP/1.1\r\nHost: x\r\n')
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 4:
        if not c.try_send(b'X'):
            closed = True
            break
        if not c.is_open(0.1):
            closed = True
            break
    elapsed = time.monotonic() - t0
    assert closed, 'connection still open after 4 s of trickled headers'
    assert elapsed < 2.5, elapsed
    assert app.calls == 0
    ok_after(srv)


@pytest.mark.timeout(20)
def test_head_timeout_on_connection_that_sends_nothing(serve):
    srv = serve(Recorder(), timeout_header=0.5, keepalive=30)
    with Conn(srv.address) as c:
        _closed_or_408(c, timeout=3.0)


@pytest.mark.timeout(20)
def test_body_progress_timeout(serve):
    seen = {}

    def app(environ, start_response):
        try:
            seen['data'] = environ['wsgi.input'].read()
        except Exception as e:
            seen['error'] = e
            raise
        start_response('200 OK', [])
        return [b'got %d' % len(seen['data'])]
    srv = serve(app, timeout_body=0.5)
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789')
        t0 = time.monotonic()
        data = c.expect_close(timeout=4.0)
        elapsed = time.monotonic() - t0
        if data:
            assert data.split(b' ')[1] in (b'408', b'400'), data[:100]
    assert 0.3 <= elapsed <= 3.0, elapsed
    assert 'data' not in seen
    assert isinstance(seen.get('error'), OSError), seen
    ok_after(srv)


@pytest.mark.timeout(20)
def test_body_progress_timeout_is_per_progress(serve):
    """A slow but steady body (a byte every 100 ms, 2 s in all) is not cut by a 0.5 s progress timeout."""
    srv = serve(lambda e, s: (s('200 OK', []), [e['wsgi.input'].read()])[1], timeout_body=0.5)
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n')
        for i in range(20):
            time.sleep(0.1)
            c.send(b'%d' % (i % 10))
        r = c.read_response()
    assert r.status == 200 and r.body == b'01234567890123456789'


@pytest.mark.timeout(20)
def test_body_progress_timeout_chunked(serve):
    seen = []

    def app(environ, start_response):
        seen.append(environ['wsgi.input'].read())
        start_response('200 OK', [])
        return [b'x']
    srv = serve(app, timeout_body=0.5)
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel')
        data = c.expect_close(timeout=4.0)
        if data:
            assert data.split(b' ')[1] in (b'408', b'400'), data[:100]
    assert seen == []
    ok_after(srv)


@pytest.mark.timeout(30)
def test_write_timeout_on_client_that_never_reads(serve):
    it = CloseCounter(chunk=b'w' * 65536, n=800)  # 50 MB

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return it if environ['PATH_INFO'] == '/big' else [b'ok']
    srv = serve(app, timeout_write=0.5)
    c = Conn(srv.address, rcvbuf=4096)
    c.send(build('GET', '/big'))
    # the client never reads: the server must give up on its own
    assert wait_for(lambda: it.closed > 0, timeout=10), 'close() not called after the write timeout'
    assert it.closed == 1
    assert it.yielded < 800
    assert wait_for(lambda: lichen.live_counts()['connections'] == 0, timeout=5), lichen.live_counts()
    # from the client side the stream ends (possibly reset) without completing
    c.sock.settimeout(5)
    try:
        c.read_response()
        pytest.fail('response completed although the server gave up')
    except IncompleteResponse:
        pass
    ok_after(srv)
    assert it.closed == 1


@pytest.mark.timeout(30)
def test_slow_reader_within_write_timeout_gets_everything(serve):
    it = CloseCounter(chunk=b'r' * 65536, n=32)  # 2 MB

    def app(environ, start_response):
        start_response('200 OK', [])
        return it
    srv = serve(app, timeout_write=1.0)
    with Conn(srv.address, rcvbuf=16384) as c:
        c.send(build('GET', '/'))
        # read slowly, but keep making progress well within the timeout
        got = bytearray()
        r = None
        while True:
            time.sleep(0.005)
            d = c.read_some(16384)
            if not d:
                break
            got += d
            if len(got) > 2 * 1024 * 1024 + 10:
                # the whole chunked response has arrived; parse it
                c.buf[:0] = got
                got = None
                r = c.read_response()
                break
    assert r is not None and r.body == b'r' * (2 * 1024 * 1024)
    assert wait_for(lambda: it.closed == 1, 2)


@pytest.mark.timeout(20)
def test_head_timeout_for_second_request_on_keepalive_connection(serve):
    app = Recorder()
    srv = serve(app, timeout_header=0.5, keepalive=30)
    with Conn(srv.address) as c:
        c.send(build('GET', '/1'))
        assert c.read_response().status == 200
        c.send(b'GET /2 HTTP/1.1\r\nHost')
        t0 = time.monotonic()
        _closed_or_408(c, timeout=3.0)
        assert time.monotonic() - t0 < 2.5
    assert app.paths == ['/1']
