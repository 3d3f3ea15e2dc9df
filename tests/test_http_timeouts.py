"""Every timeout of the README's table (keep-alive, head, body progress,
write progress, the graceful stop) and the lingering close, under every way
to drive the engine: serve_forever, and a plain selectors loop that calls
run_once(0) only when the engine's fileno() is readable (in a thread's main
greenlet, and in a greenlet of its own). The selectors loops never wake on
their own: a timeout that fires there fired because the fd said so."""
import threading
import time

import pytest

import lichen
from conftest import DRIVERS
from support import (CloseCounter, Conn, IncompleteResponse, Recorder, build,
                     hello_app, request, wait_for)

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports


@pytest.fixture(params=DRIVERS)
def driver(request):
    return request.param


def ok_after(srv):
    r = request(srv.address, 'GET', '/after')
    assert r.status == 200


def assert_408_then_close(c, timeout):
    """The connection gets a 408 response and is closed, within timeout."""
    data = c.expect_close(timeout=timeout)
    assert data.startswith(b'HTTP/1.1 408 Request Timeout\r\n'), data[:100]
    assert b'\r\nConnection: close\r\n' in data, data


@pytest.mark.timeout(20)
def test_head_timeout_partial_request_line(serve):
    app = Recorder()
    srv = serve(app, timeout_header=0.5)
    with Conn(srv.address) as c:
        c.send(b'GET /sl')
        t0 = time.monotonic()
        assert_408_then_close(c, timeout=3.0)
        elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed <= 1.5, elapsed
    assert app.calls == 0
    ok_after(srv)


@pytest.mark.timeout(20)
def test_head_timeout_partial_headers(serve):
    app = Recorder()
    srv = serve(app, timeout_header=0.5)
    with Conn(srv.address) as c:
        c.send(b'GET / HTTP/1.1\r\nHost: x\r\nX-A: ')
        assert_408_then_close(c, timeout=3.0)
    assert app.calls == 0


@pytest.mark.timeout(20)
def test_head_timeout_is_not_extended_by_trickling(serve):
    """A slowloris that sends one header byte every 100 ms still hits the
    head timeout."""
    app = Recorder()
    srv = serve(app, timeout_header=0.5)
    c = Conn(srv.address)
    c.send(b'GET / HTTP/1.1\r\nHost: x\r\n')
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4 and c.try_send(b'X') and c.is_open(0.1):
        pass
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, elapsed
    assert_408_then_close(c, timeout=2.0)
    assert app.calls == 0
    ok_after(srv)


@pytest.mark.timeout(20)
def test_head_timeout_on_connection_that_sends_nothing(serve):
    """A connection that never sends a byte is closed at the head timeout,
    without a response: nothing was asked."""
    srv = serve(Recorder(), timeout_header=0.5, keepalive=30)
    with Conn(srv.address) as c:
        t0 = time.monotonic()
        assert c.expect_close(timeout=3.0) == b''
        assert 0.4 <= time.monotonic() - t0 <= 1.5


@pytest.mark.timeout(20)
def test_keepalive_timeout_closes_idle_connection(serve):
    srv = serve(Recorder(), keepalive=0.5)
    with Conn(srv.address) as c:
        c.send(build('GET', '/1'))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.expect_close(timeout=3.0) == b''
        elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed <= 1.5, elapsed
    assert wait_for(lambda: srv.connections == 0, 2)


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
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n'
               b'0123456789')
        t0 = time.monotonic()
        assert_408_then_close(c, timeout=4.0)
        elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed <= 1.5, elapsed
    assert 'data' not in seen
    assert isinstance(seen.get('error'), TimeoutError), seen
    ok_after(srv)


@pytest.mark.timeout(20)
def test_body_timeout_the_application_answers_itself(serve):
    """An application that catches the timeout answers the request itself;
    the connection is closed after it (the rest of the body never came)."""
    def app(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except TimeoutError:
            start_response('400 Bad Request', [('Content-Length', '4')])
            return [b'slow']
        start_response('200 OK', [])
        return [b'fast']
    srv = serve(app, timeout_body=0.5)
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab')
        r = c.read_response()
        assert (r.status, r.body) == (400, b'slow')
        assert r.header('connection') == 'close'
        assert c.expect_close(timeout=2.0) == b''


@pytest.mark.timeout(20)
def test_body_progress_timeout_is_per_progress(serve):
    """A slow but steady body (a byte every 100 ms, 2 s in all) is not cut
    by a 0.5 s progress timeout."""
    srv = serve(lambda e, s: (s('200 OK', []), [e['wsgi.input'].read()])[1],
                timeout_body=0.5)
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
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked'
               b'\r\n\r\n5\r\nhel')
        assert_408_then_close(c, timeout=4.0)
    assert seen == []
    ok_after(srv)


@pytest.mark.timeout(30)
def test_write_timeout_on_client_that_never_reads(serve):
    it = CloseCounter(chunk=b'w' * 65536, n=800)  # 50 MB

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type',
                                   'application/octet-stream')])
        return it if environ['PATH_INFO'] == '/big' else [b'ok']
    srv = serve(app, timeout_write=0.5)
    c = Conn(srv.address, rcvbuf=4096)
    c.send(build('GET', '/big'))
    # the client never reads: the server must give up on its own
    assert wait_for(lambda: it.closed > 0, timeout=10), \
        'close() not called after the write timeout'
    assert it.closed == 1
    assert it.yielded < 800
    assert wait_for(lambda: lichen.live_counts()['connections'] == 0,
                    timeout=5), lichen.live_counts()
    # from the client side the stream ends (possibly reset) without
    # completing
    c.sock.settimeout(5)
    with pytest.raises(IncompleteResponse):
        c.read_response()
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
        assert_408_then_close(c, timeout=3.0)
        assert time.monotonic() - t0 < 1.5
    assert app.paths == ['/1']


@pytest.mark.timeout(20)
def test_lingering_close_ends_for_a_client_that_keeps_sending(serve):
    """A rejected request is answered, and the connection lingers (input
    read and dropped) for 2 s at most, however long the client sends."""
    srv = serve(Recorder())
    with Conn(srv.address) as c:
        c.send(b'GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n')
        t0 = time.monotonic()
        head = c.read_line()
        assert head.startswith(b'HTTP/1.1 400 '), head
        while c.try_send(b'x' * 1024) and time.monotonic() - t0 < 6:
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 4.0, elapsed
    assert wait_for(lambda: srv.connections == 0, 2)


def _slow_app(started):
    def app(environ, start_response):
        seconds = float(environ['QUERY_STRING'] or 0)
        started.set()
        # Waits for the client's body, a byte at a time: the request
        # stays in flight, waiting on its connection, not on the loop.
        n = 0
        while n < seconds * 10 and environ['wsgi.input'].read(1):
            n += 1
        start_response('200 OK', [('Content-Length', '4')])
        return [b'done']
    return app


def _request_in_flight(serve, graceful_timeout, seconds):
    """A server, and a connection whose request waits for its body, a byte
    per 100 ms for seconds."""
    started = threading.Event()
    srv = serve(_slow_app(started), graceful_timeout=graceful_timeout)
    c = Conn(srv.address)
    c.send(b'POST /?%g HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n'
           % (seconds, seconds * 10))
    assert started.wait(5)
    return srv, c


@pytest.mark.timeout(30)
def test_graceful_stop_lets_a_request_finish(serve):
    srv, c = _request_in_flight(serve, graceful_timeout=5, seconds=0.5)
    with c:
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        time.sleep(0.2)
        # No longer accepting: a new client is never answered (the kernel
        # may take its connection into the backlog; it is reset at the end).
        # Over TLS its ClientHello goes unanswered, its request waits.
        late = Conn(srv.address, handshake=False)
        late.send(build('GET', '/'))
        for _ in range(5):
            c.send(b'x')
            time.sleep(0.1)
        r = c.read_response()
        assert (r.status, r.body) == (200, b'done')
        assert r.header('connection') == 'close'
        stopper.join(10)
        assert not stopper.is_alive()
        assert late.expect_close(timeout=2.0) == b''


@pytest.mark.timeout(30)
def test_graceful_stop_answers_a_connection_accepted_before_it(serve):
    # Accepted, but its request still on its way when the stop comes: the
    # request is answered, not lost with a closed connection.
    srv = serve(hello_app, graceful_timeout=10)
    c = Conn(srv.address)
    time.sleep(0.2)  # accepted by now
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    time.sleep(0.3)
    c.send(build('GET', '/'))
    r = c.read_response()
    assert r.status == 200 and r.header('connection') == 'close'
    stopper.join(10)
    assert not stopper.is_alive()
    c.close()


@pytest.mark.timeout(30)
def test_graceful_stop_closes_silent_connections_after_a_moment(serve):
    # Between requests a connection is closed at once; one that never
    # sends a byte (a browser's preconnect) gets about a second, not the
    # graceful timeout.
    srv = serve(hello_app, graceful_timeout=20)
    between = Conn(srv.address)
    between.send(build('GET', '/'))
    assert between.read_response().status == 200
    silent = Conn(srv.address)
    time.sleep(0.2)
    t0 = time.monotonic()
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    assert between.expect_close(timeout=0.5) == b''
    assert silent.expect_close(timeout=3.0) == b''
    elapsed = time.monotonic() - t0
    stopper.join(10)
    assert not stopper.is_alive()
    assert 0.8 <= elapsed <= 2.5, elapsed
    between.close()
    silent.close()


@pytest.mark.timeout(30)
def test_graceful_stop_closes_what_outlives_its_timeout(serve):
    srv, c = _request_in_flight(serve, graceful_timeout=0.5, seconds=60)
    with c:
        t0 = time.monotonic()
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        assert c.expect_close(timeout=5.0) == b''
        elapsed = time.monotonic() - t0
        stopper.join(10)
        assert not stopper.is_alive()
    assert 0.4 <= elapsed <= 2.0, elapsed
