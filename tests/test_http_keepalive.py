"""Keep-alive, pipelining, HEAD and bodiless statuses, over raw sockets."""
import socket
import time

import pytest

import lichen
from support import Conn, Recorder, build, chunked, echo_app, hello_app, path_app, request, wait_for

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports


def gen_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])

    def body():
        yield b'abc'
        yield b'def'
    return body()


# -- keep-alive ----------------------------------------------------------

def test_http11_keepalive_by_default(serve):
    app = Recorder(path_app)
    srv = serve(app)
    with Conn(srv.address) as c:
        for i in range(5):
            c.send(build('GET', '/r%d' % i))
            r = c.read_response()
            assert r.status == 200
            assert r.body == b'/r%d' % i
            assert 'close' not in r.tokens('connection')
        assert c.is_open()
    assert app.paths == ['/r%d' % i for i in range(5)]
    # all five requests came in on the same client port
    assert len({e['REMOTE_PORT'] for e in app.environs}) == 1


def test_http11_keepalive_after_chunked_response(serve):
    srv = serve(gen_app)
    with Conn(srv.address) as c:
        for _ in range(3):
            c.send(build('GET', '/'))
            r = c.read_response()
            assert r.status == 200 and r.chunked and r.body == b'abcdef'
        assert c.is_open()


def test_http10_closes_by_default(serve):
    srv = serve(path_app)
    with Conn(srv.address) as c:
        c.send(b'GET /a HTTP/1.0\r\n\r\n')
        r = c.read_response()
        assert r.status == 200 and r.body == b'/a'
        assert 'keep-alive' not in r.tokens('connection')
        c.expect_close()


def test_http10_keepalive_requested(serve):
    srv = serve(path_app)
    with Conn(srv.address) as c:
        for p in ('/a', '/b', '/c'):
            c.send(('GET %s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' % p).encode())
            r = c.read_response()
            assert r.status == 200 and r.body == p.encode()
            assert 'keep-alive' in r.tokens('connection')
            assert r.has('content-length')
        assert c.is_open()


def test_http10_keepalive_with_unknown_length_is_close_delimited(serve):
    srv = serve(gen_app)
    with Conn(srv.address) as c:
        c.send(b'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')
        r = c.read_response()
        assert r.status == 200
        assert not r.chunked and not r.has('content-length')
        assert r.body == b'abcdef'
        assert c.eof


def test_connection_close_closes_after_response(serve):
    app = Recorder(path_app)
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/x', [('Connection', 'close')]))
        r = c.read_response()
        assert r.status == 200 and r.body == b'/x'
        assert 'close' in r.tokens('connection')
        c.expect_close()


def test_connection_close_in_pipeline_stops_there(serve):
    app = Recorder(path_app)
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/1') + build('GET', '/2', [('Connection', 'close')]) + build('GET', '/3'))
        assert c.read_response().body == b'/1'
        assert c.read_response().body == b'/2'
        assert c.expect_close() == b''
    assert app.paths == ['/1', '/2']


def test_idle_keepalive_timer_restarts_per_request(serve):
    srv = serve(path_app, keepalive=0.6)
    with Conn(srv.address) as c:
        # 4 requests 0.3 s apart: 1.2 s in all, longer than the idle timeout
        for _ in range(4):
            c.send(build('GET', '/'))
            assert c.read_response().status == 200
            time.sleep(0.3)
        c.send(build('GET', '/'))
        assert c.read_response().status == 200


def test_keepalive_zero_disables(serve):
    srv = serve(path_app, keepalive=0)
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        r = c.read_response()
        assert r.status == 200
        assert 'close' in r.tokens('connection')
        c.expect_close()


# -- pipelining ------------------------------------------------------------

def test_pipelined_gets_in_order(serve):
    app = Recorder(path_app)
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(b''.join(build('GET', '/p%d' % i) for i in range(10)))
        for i in range(10):
            r = c.read_response()
            assert r.status == 200
            assert r.body == b'/p%d' % i
        assert c.is_open()
    assert app.paths == ['/p%d' % i for i in range(10)]


def test_pipelined_gets_with_streamed_responses(serve):
    srv = serve(gen_app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 10)
        for i in range(10):
            r = c.read_response()
            assert r.status == 200 and r.body == b'abcdef'


def test_pipelined_posts_with_bodies(serve):
    app = Recorder(echo_app)
    srv = serve(app)
    bodies = [b'', b'a', b'hello world', bytes(range(256)) * 40, b'GET / HTTP/1.1\r\n\r\n']
    data = b''
    for i, b in enumerate(bodies):
        if i % 2:
            data += build('POST', '/c%d' % i, [('Transfer-Encoding', 'chunked')], chunked(b, 100))
        else:
            data += build('POST', '/l%d' % i, [('Content-Length', str(len(b)))], b)
    with Conn(srv.address) as c:
        c.send(data)
        for b in bodies:
            r = c.read_response()
            assert r.status == 200
            assert r.body == b
    assert app.calls == len(bodies)


def test_pipelined_bad_request_in_the_middle(serve):
    app = Recorder(path_app)
    srv = serve(app)
    bad = b'GET /bad HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n'
    data = build('GET', '/1') + build('GET', '/2') + build('GET', '/3') + bad \
        + build('GET', '/4') + build('GET', '/5')
    with Conn(srv.address) as c:
        c.send(data)
        for i in (1, 2, 3):
            r = c.read_response()
            assert r.status == 200 and r.body == b'/%d' % i
        r = c.read_response()
        assert r.status == 400
        c.expect_close()
    assert app.paths == ['/1', '/2', '/3']


def test_pipelined_requests_split_across_packets(serve):
    app = Recorder(path_app)
    srv = serve(app)
    data = b''.join(build('GET', '/s%d' % i) for i in range(5))
    with Conn(srv.address) as c:
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.002)
        for i in range(5):
            assert c.read_response().body == b'/s%d' % i


# -- HEAD, 204, 304 --------------------------------------------------------

def test_head_same_headers_no_body(serve):
    srv = serve(lambda e, s: (s('200 OK', [('Content-Type', 'text/plain')]), [b'hello world'])[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        g = c.read_response()
        # HEAD then GET pipelined: if HEAD carried any body, the GET would not parse
        c.send(build('HEAD', '/') + build('GET', '/'))
        h = c.read_response('HEAD')
        g2 = c.read_response()
    assert g.body == b'hello world' and g.header('content-length') == '11'
    assert h.status == 200
    assert h.header('content-length') == '11'
    assert h.header('content-type') == 'text/plain'
    assert h.body == b''
    assert g2.status == 200 and g2.body == b'hello world'


def test_head_with_streamed_body_sends_no_body(serve):
    srv = serve(gen_app)
    with Conn(srv.address) as c:
        c.send(build('HEAD', '/') + build('GET', '/x'))
        h = c.read_response('HEAD')
        g = c.read_response()
    assert h.status == 200 and h.body == b''
    assert g.status == 200 and g.body == b'abcdef'


@pytest.mark.parametrize('status', ['204 No Content', '304 Not Modified'])
@pytest.mark.parametrize('kind', ['empty-list', 'empty-bytes', 'generator'])
def test_bodiless_status(serve, status, kind):
    def app(environ, start_response):
        start_response(status, [('X-Kind', kind)])
        if kind == 'empty-list':
            return []
        if kind == 'empty-bytes':
            return [b'']
        return iter([b''])
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') + build('GET', '/'))
        for _ in range(2):
            r = c.read_response()
            assert r.status == int(status[:3])
            assert r.header('x-kind') == kind
            assert not r.has('content-length'), r
            assert not r.has('transfer-encoding'), r
        # nothing more must follow the two heads
        assert c.is_open()
        assert c.buf == b''


def test_request_split_at_every_offset(serve):
    """The head parser must not depend on where the network splits the bytes."""
    app = Recorder(echo_app)
    srv = serve(app)
    req = build('POST', '/split?q=1', [('X-Long-Header-Name', 'some value'), ('X-B', '')], b'body!')
    bad = []
    with Conn(srv.address) as c:
        for cut in range(1, len(req)):
            c.send(req[:cut])
            time.sleep(0.002)
            c.send(req[cut:])
            r = c.read_response()
            if r.status != 200 or r.body != b'body!':
                bad.append((cut, req[:cut][-10:], r.status))
                break
    assert not bad, bad
    assert all(e['PATH_INFO'] == '/split' and e['HTTP_X_LONG_HEADER_NAME'] == 'some value'
               for e in app.environs)


# -- closing in stages (RFC 9112 9.6) ---------------------------------------
# Closing a socket with unread input makes the kernel answer with a reset,
# which can destroy the response before the client reads it. When the
# client may still be sending, the server shuts down its side and reads on
# for a while instead. Each case sends more bytes after the server has
# read the request, and reads the response only after they are there.

BIG = bytes(range(256)) * 1024  # 256 KiB: still in the server's send queue


def _late_bytes_then_read(srv, first, late):
    # A small receive window keeps most of the response queued in the
    # server's kernel when it closes: a reset would discard it.
    with Conn(srv.address, rcvbuf=4096) as c:
        c.send(first)
        time.sleep(0.1)            # the server has read the request by now
        c.try_send(late)
        time.sleep(0.5)            # the server answers and closes meanwhile
        r = c.read_response()
        c.expect_close()
        return r


def test_late_bytes_after_a_request_with_body_do_not_reset_the_response(serve):
    def app(environ, start_response):
        body = environ['wsgi.input'].read()
        time.sleep(0.25)           # respond after the late bytes arrived
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [body, BIG]
    srv = serve(app)
    r = _late_bytes_then_read(
        srv, b'POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\na=a', b'0123456789' * 2)
    assert r.status == 200 and r.body == b'a=a' + BIG


def test_server_side_close_with_a_late_pipelined_request(serve):
    def app(environ, start_response):
        time.sleep(0.25)
        start_response('200 OK', [('Connection', 'close')])
        return [BIG]
    srv = serve(app)
    r = _late_bytes_then_read(srv, build('GET', '/a'), build('GET', '/b'))
    assert r.status == 200 and r.body == BIG
    assert r.header('connection') == 'close'


def _listener_defer(srv):
    return srv._listeners[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)


@pytest.mark.skipif(not hasattr(socket, 'TCP_DEFER_ACCEPT'), reason='Linux only')
def test_defer_accept_off_by_default(serve):
    srv = serve(hello_app)
    assert _listener_defer(srv) == 0
    assert request(srv.address).status == 200
    with socket.create_connection(srv.address, timeout=10):
        assert wait_for(lambda: lichen.live_counts()['connections'] == 1)


@pytest.mark.skipif(not hasattr(socket, 'TCP_DEFER_ACCEPT'), reason='Linux only')
def test_defer_accept(serve, transport):
    """With defer_accept the kernel hands a connection over with its first
    bytes: one that connects and writes later is served as usual, and one
    that never writes is still handed over after about the deferral and then
    meets the head timeout (over TLS, the handshake timeout: it never sent
    its ClientHello)."""
    options = dict(defer_accept=1, timeout_header=0.5)
    if transport == 'tls':
        options['tls_handshake_timeout'] = 0.5
    srv = serve(hello_app, **options)
    assert _listener_defer(srv) >= 1
    assert request(srv.address).status == 200
    with Conn(srv.address) as late:
        time.sleep(0.3)
        late.send(build('GET', '/'))
        assert late.read_response().status == 200
    assert wait_for(lambda: lichen.live_counts()['connections'] == 0)
    silent = socket.create_connection(srv.address, timeout=10)
    try:
        t0 = time.monotonic()
        # Not the server's yet: no connection object while it stays silent.
        time.sleep(0.4)
        assert lichen.live_counts()['connections'] == 0
        try:
            data = silent.recv(100)
        except ConnectionResetError:
            data = b''
        if transport == 'tls':
            assert data == b'', data
        else:
            assert data == b'' or data.startswith(b'HTTP/1.1 408'), data
        assert time.monotonic() - t0 < 9
    finally:
        silent.close()
