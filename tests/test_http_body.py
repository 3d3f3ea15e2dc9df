"""Request bodies: Content-Length, chunked, wsgi.input API, 100-continue, unread bodies."""
import hashlib
import json
import os
import threading
import time

import pytest

from support import Conn, Recorder, build, chunked, echo_app, wait_for

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports


def test_content_length_body(serve):
    srv = serve(echo_app)
    with Conn(srv.address) as c:
        c.send(build('POST', '/', body=b'hello body'))
        r = c.read_response()
    assert r.status == 200 and r.body == b'hello body'


def test_content_length_body_arriving_in_pieces(serve):
    srv = serve(echo_app)
    body = bytes(range(256)) * 10
    with Conn(srv.address) as c:
        c.send(build('POST', '/', [('Content-Length', str(len(body)))]))
        for i in range(0, len(body), 500):
            time.sleep(0.01)
            c.send(body[i:i + 500])
        r = c.read_response()
    assert r.body == body


def test_chunked_body(serve):
    seen = {}

    def app(environ, start_response):
        seen['cl'] = environ.get('CONTENT_LENGTH')
        seen['terminated'] = environ.get('wsgi.input_terminated')
        return echo_app(environ, start_response)
    srv = serve(app)
    body = b'The quick brown fox jumps over the lazy dog' * 3
    with Conn(srv.address) as c:
        c.send(build('POST', '/', [('Transfer-Encoding', 'chunked')], chunked(body, 10)))
        r = c.read_response()
        assert r.status == 200 and r.body == body
    assert seen['terminated'] is True
    assert seen['cl'] in (None, '')


def test_chunked_body_with_extensions(serve):
    srv = serve(echo_app)
    data = (b'5;ext=1\r\nhello\r\n'
            b'6;a=b;c="d e"\r\n world\r\n'
            b'1;name\r\n!\r\n'
            b'0;last=yes\r\n\r\n')
    with Conn(srv.address) as c:
        c.send(build('POST', '/', [('Transfer-Encoding', 'chunked')], data) + build('GET', '/next'))
        r = c.read_response()
        assert r.status == 200 and r.body == b'hello world!'
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b''


def test_chunked_body_with_trailers(serve):
    app = Recorder(echo_app)
    srv = serve(app)
    data = b'5\r\nhello\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n'
    with Conn(srv.address) as c:
        c.send(build('POST', '/a', [('Transfer-Encoding', 'chunked')], data) + build('GET', '/b'))
        r = c.read_response()
        assert r.status == 200 and r.body == b'hello'
        r2 = c.read_response()
        assert r2.status == 200
    assert app.paths == ['/a', '/b']


def test_chunked_body_uppercase_hex_and_leading_zeros(serve):
    srv = serve(echo_app)
    body = b'x' * 0x1A + b'y' * 0xff
    data = b'01A\r\n' + b'x' * 0x1A + b'\r\nFF\r\n' + b'y' * 0xff + b'\r\n000\r\n\r\n'
    with Conn(srv.address) as c:
        c.send(build('POST', '/', [('Transfer-Encoding', 'chunked')], data))
        assert c.read_response().body == body


def input_api_app(environ, start_response):
    inp = environ['wsgi.input']
    out = {}
    script = environ['QUERY_STRING']
    if script == 'read-n':
        out['parts'] = [inp.read(3).decode(), inp.read(4).decode(), inp.read(1000).decode(), inp.read(10).decode()]
    elif script == 'read-all':
        out['parts'] = [inp.read().decode(), inp.read().decode()]
    elif script == 'read-minus-one':
        out['parts'] = [inp.read(-1).decode()]
    elif script == 'readline':
        out['parts'] = [inp.readline().decode(), inp.readline(3).decode(), inp.readline(100).decode(),
                        inp.readline().decode(), inp.readline().decode(), inp.readline().decode()]
    elif script == 'readlines':
        out['parts'] = [x.decode() for x in inp.readlines()]
    elif script == 'iter':
        out['parts'] = [x.decode() for x in inp]
    elif script == 'mixed':
        out['parts'] = [inp.readline().decode(), inp.read(2).decode(), inp.readline().decode(),
                        inp.read().decode()]
    body = json.dumps(out).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]


BODY = b'line1\nline2 is longer\nthird\nlast without newline'


@pytest.mark.parametrize('encoding', ['length', 'chunked'])
@pytest.mark.parametrize('script,expected', [
    ('read-n', ['lin', 'e1\nl', BODY[7:].decode(), '']),
    ('read-all', [BODY.decode(), '']),
    ('read-minus-one', [BODY.decode()]),
    ('readline', ['line1\n', 'lin', 'e2 is longer\n', 'third\n', 'last without newline', '']),
    ('readlines', ['line1\n', 'line2 is longer\n', 'third\n', 'last without newline']),
    ('iter', ['line1\n', 'line2 is longer\n', 'third\n', 'last without newline']),
    ('mixed', ['line1\n', 'li', 'ne2 is longer\n', 'third\nlast without newline']),
])
def test_wsgi_input_api(serve, encoding, script, expected):
    srv = serve(input_api_app)
    if encoding == 'length':
        req = build('POST', '/?' + script, body=BODY)
    else:
        req = build('POST', '/?' + script, [('Transfer-Encoding', 'chunked')], chunked(BODY, 4))
    with Conn(srv.address) as c:
        c.send(req)
        r = c.read_response()
    assert r.status == 200, r
    assert json.loads(r.body)['parts'] == expected


def test_wsgi_input_read_zero_and_empty_body(serve):
    def app(environ, start_response):
        inp = environ['wsgi.input']
        parts = [inp.read(0), inp.read(), inp.readline(), inp.read(5)]
        start_response('200 OK', [])
        return [repr(parts).encode()]
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        assert c.read_response().body == repr([b'', b'', b'', b'']).encode()
        c.send(build('POST', '/', [('Content-Length', '0')]))
        assert c.read_response().body == repr([b'', b'', b'', b'']).encode()


def hashing_app(environ, start_response):
    inp = environ['wsgi.input']
    h = hashlib.sha256()
    n = 0
    biggest = 0
    while True:
        data = inp.read(65536)
        if not data:
            break
        biggest = max(biggest, len(data))
        n += len(data)
        h.update(data)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('%s %d %d' % (h.hexdigest(), n, biggest)).encode()]


def _send_in_thread(conn, data):
    errors = []

    def run():
        try:
            conn.send(data)
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


@pytest.mark.timeout(60)
@pytest.mark.parametrize('encoding', ['length', 'chunked'])
def test_big_body_streamed(serve, encoding):
    srv = serve(hashing_app)
    body = os.urandom(10 * 1024 * 1024)
    if encoding == 'length':
        req = build('POST', '/', [('Content-Length', str(len(body)))]) + body
    else:
        req = build('POST', '/', [('Transfer-Encoding', 'chunked')]) + chunked(body, 100000)
    with Conn(srv.address, timeout=30) as c:
        t, errors = _send_in_thread(c, req)
        r = c.read_response()
        t.join(30)
    assert not errors
    digest, n, biggest = r.body.decode().split()
    assert digest == hashlib.sha256(body).hexdigest()
    assert int(n) == len(body)
    assert 0 < int(biggest) <= 65536


# -- Expect: 100-continue ---------------------------------------------------

def test_expect_100_continue_sent_when_app_reads(serve):
    marks = {}

    def app(environ, start_response):
        time.sleep(0.4)  # the 100 must not be sent before the app reads
        marks['read_at'] = time.monotonic()
        body = environ['wsgi.input'].read()
        start_response('200 OK', [])
        return [body]
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('POST', '/', [('Content-Length', '5'), ('Expect', '100-continue')]))
        line = c.read_line()
        got_at = time.monotonic()
        assert line == b'HTTP/1.1 100 Continue'
        assert c.read_line() == b''
        c.send(b'hello')
        r = c.read_response(interim_ok=False)
    assert got_at >= marks['read_at'] - 0.01
    assert r.status == 200 and r.body == b'hello'


def test_expect_100_continue_after_earlier_pipelined_response(serve):
    # The first response waits to share a write with the second; the 100
    # Continue of the second request must not overtake it.
    srv = serve(echo_app)
    with Conn(srv.address) as c:
        c.send(build('POST', '/', body=b'first') +
               build('POST', '/', [('Content-Length', '6'), ('Expect', '100-continue')]))
        r1 = c.read_response(interim_ok=False)
        assert r1.status == 200 and r1.body == b'first'
        assert c.read_line() == b'HTTP/1.1 100 Continue'
        assert c.read_line() == b''
        c.send(b'second')
        r2 = c.read_response(interim_ok=False)
    assert r2.status == 200 and r2.body == b'second'


def test_expect_100_continue_chunked(serve):
    srv = serve(echo_app)
    with Conn(srv.address) as c:
        c.send(build('POST', '/', [('Transfer-Encoding', 'chunked'), ('Expect', '100-continue')]))
        assert c.read_line() == b'HTTP/1.1 100 Continue'
        assert c.read_line() == b''
        c.send(chunked(b'hello there'))
        r = c.read_response(interim_ok=False)
    assert r.status == 200 and r.body == b'hello there'


def test_expect_100_continue_not_sent_if_app_does_not_read(serve):
    app = Recorder(lambda e, s: (s('403 Forbidden', [('Content-Type', 'text/plain')]), [b'no'])[1])
    srv = serve(app)
    evil = build('GET', '/evil')
    with Conn(srv.address) as c:
        c.send(build('POST', '/upload', [('Content-Length', str(len(evil))), ('Expect', '100-continue')]))
        # the final response comes without us ever sending the body
        r = c.read_response(interim_ok=False)
        assert r.status == 403 and r.body == b'no'
        assert r.interim == []
        # now the client sends the body anyway, then a real request
        c.try_send(evil + build('GET', '/next'))
        try:
            r2 = c.read_response(interim_ok=False)
        except Exception:
            r2 = None  # connection closed: acceptable
        if r2 is not None:
            assert r2.status == 403
    assert '/evil' not in app.paths
    assert app.paths[0] == '/upload'


def test_expect_100_continue_not_sent_for_http10(serve):
    srv = serve(echo_app)
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello')
        r = c.read_response(interim_ok=False)
    assert r.status == 200 and r.body == b'hello'


# -- unread bodies are never parsed as requests ------------------------------

@pytest.mark.parametrize('encoding', ['length', 'chunked'])
def test_unread_body_is_not_a_request(serve, encoding):
    app = Recorder()  # hello_app, never reads wsgi.input
    srv = serve(app)
    evil = build('GET', '/evil')
    if encoding == 'length':
        req = build('POST', '/upload', [('Content-Length', str(len(evil)))]) + evil
    else:
        req = build('POST', '/upload', [('Transfer-Encoding', 'chunked')]) + chunked(evil, 5)
    with Conn(srv.address) as c:
        c.send(req + build('GET', '/next'))
        r = c.read_response()
        assert r.status == 200 and r.body == b'hello'
        try:
            r2 = c.read_response()
        except Exception:
            r2 = None  # closed instead of draining: acceptable
        if r2 is not None:
            assert r2.status == 200
    assert '/evil' not in app.paths
    assert app.paths[0] == '/upload'
    assert set(app.paths) <= {'/upload', '/next'}


def test_partially_read_body_is_not_a_request(serve):
    def app(environ, start_response):
        environ['wsgi.input'].read(3)
        start_response('200 OK', [])
        return [b'ok']
    rec = Recorder(app)
    srv = serve(rec)
    evil = b'xx\r\n' + build('GET', '/evil')
    with Conn(srv.address) as c:
        c.send(build('POST', '/upload', body=evil) + build('GET', '/next'))
        assert c.read_response().body == b'ok'
        try:
            c.read_response()
        except Exception:
            pass
    assert '/evil' not in rec.paths


# -- the client goes away --------------------------------------------------------

@pytest.mark.parametrize('encoding', ['length', 'chunked'])
def test_client_disconnect_during_body_raises_client_disconnected(serve, encoding):
    from lichen._lichen import ClientDisconnected
    seen = []

    def app(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except BaseException as e:
            seen.append(e)
            raise
        seen.append('read completed')
        start_response('200 OK', [])
        return [b'x']
    srv = serve(app)
    c = Conn(srv.address)
    if encoding == 'length':
        c.send(build('POST', '/', [('Content-Length', '1000')]) + b'a' * 100)
    else:
        c.send(build('POST', '/', [('Transfer-Encoding', 'chunked')]) + b'3e8\r\n' + b'a' * 100)
    time.sleep(0.2)
    c.close()
    assert wait_for(lambda: seen, 5)
    assert isinstance(seen[0], ClientDisconnected), seen
    assert isinstance(seen[0], OSError)
    with Conn(srv.address) as c2:
        c2.send(build('POST', '/', body=b'fine'))
        r = c2.read_response()
    assert r.status == 200


@pytest.mark.timeout(30)
def test_pipelined_batch_with_big_responses_not_read_until_sent(serve):
    """200 pipelined requests whose responses (64 KB each) fill both socket
    buffers before the client reads anything: no deadlock, all in order."""
    def app(environ, start_response):
        n = int(environ['PATH_INFO'][1:])
        start_response('200 OK', [])
        return [bytes([n % 256]) * 65536]
    srv = serve(app)
    with Conn(srv.address, timeout=20) as c:
        t, errors = _send_in_thread(c, b''.join(build('GET', '/%d' % i) for i in range(200)))
        for i in range(200):
            r = c.read_response()
            assert r.status == 200 and r.body == bytes([i % 256]) * 65536
        t.join(10)
        assert not errors


@pytest.mark.parametrize('ext', [b'', b';name=value'])
def test_chunked_body_split_at_every_offset(serve, ext):
    """The chunked decoder must not depend on where the network splits the
    bytes: chunk-size lines, extensions, CRLFs and trailers cut anywhere."""
    srv = serve(echo_app)
    body = b'hello world, chunked!'
    data = chunked(body, 8, ext=ext, trailers=b'X-T: 1\r\n')
    head = build('POST', '/', [('Transfer-Encoding', 'chunked')])
    bad = []
    with Conn(srv.address) as c:
        for cut in range(1, len(data)):
            c.send(head + data[:cut])
            time.sleep(0.003)
            c.send(data[cut:])
            r = c.read_response()
            if r.status != 200 or r.body != body:
                bad.append((cut, data[:cut][-10:], r.status, r.body[:60]))
                break
    assert not bad, bad


@pytest.mark.parametrize('method', ['read', 'readline', 'readlines', 'iter'])
def test_input_never_reads_past_the_body(serve, method):
    """wsgi.input stops at the end of this request's body, even with the next
    pipelined request already in the same buffer."""
    def app(environ, start_response):
        inp = environ['wsgi.input']
        if method == 'read':
            data = inp.read(100000)
        elif method == 'readline':
            data = inp.readline(100000)
        elif method == 'readlines':
            data = b''.join(inp.readlines())
        else:
            data = b''.join(inp)
        start_response('200 OK', [])
        return [data]
    app = Recorder(app)
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('POST', '/a', body=b'hello') + build('GET', '/b') + build('POST', '/c', body=b'x\ny'))
        assert c.read_response().body == b'hello'
        assert c.read_response().body == b''
        assert c.read_response().body == (b'x\n' if method == 'readline' else b'x\ny')
    assert app.paths == ['/a', '/b', '/c']


def test_input_kept_past_its_request(serve):
    """An application that keeps wsgi.input (or the whole environ) past its
    request gets an error reading it later; the next requests, on the same
    connection, each read their own body through their own input."""
    kept_inputs, kept_environs = [], []

    def app(environ, start_response):
        path = environ['PATH_INFO']
        inp = environ['wsgi.input']
        out = []
        for old in kept_inputs + [e['wsgi.input'] for e in kept_environs]:
            assert old is not inp
            try:
                old.read(1)
                out.append(b'old read;')
            except Exception as e:
                out.append(b'old refused;' if 'ended' in str(e) else repr(e).encode())
        if path == '/keep-input':
            kept_inputs.append(inp)
        elif path == '/keep-environ':
            kept_environs.append(environ)
        out.append(inp.read())
        start_response('200 OK', [])
        return out
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('POST', '/keep-input', body=b'one') + build('POST', '/plain', body=b'two')
               + build('POST', '/keep-environ', body=b'three') + build('POST', '/plain', body=b'four'))
        assert c.read_response().body == b'one'
        assert c.read_response().body == b'old refused;two'
        assert c.read_response().body == b'old refused;three'
        assert c.read_response().body == b'old refused;old refused;four'
