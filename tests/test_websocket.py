"""lichen's websockets with real clients: the websockets library's sync
client and websocket-client (import websocket), plus the raw client of
ws_support.py where a test must see the bytes on the wire.

The applications use environ['wsgi.websocket'] (gevent-websocket's
interface); the last tests run lichen.pywsgi.WSGIServer with
geventwebsocket's WebSocketHandler in a subprocess.
"""
import json
import queue
import socket
import subprocess
import threading
import time

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import support
from helpers_cli import PYTHON, REPO, child_env, free_port
from ws_support import (
    OP_BINARY, OP_TEXT, Pong, WSClient, accept_for, binary, build_frame, echo_app, http_response_to, new_key, text,
)

MiB = 1024 * 1024


class AppError(Exception):
    pass


def plain_errors(app):
    """An app whose exceptions reach lichen as AppError('Type: text') with
    no traceback into the app's frames: pytest keeps the log records of
    lichen's error log (with their tracebacks) until the test ends, and a
    frame holding environ would keep the websocket alive past the serve
    fixture's live-objects check."""
    def wrapped(environ, start_response):
        err = None
        try:
            return app(environ, start_response)
        except Exception as e:
            err = '%s: %s' % (type(e).__name__, e)
            wrapped.errors.append(err)
        del environ, start_response
        raise AppError(err)

    wrapped.errors = []
    return wrapped


def url(srv, path='/'):
    host, port = srv.address
    return 'ws://%s:%d%s' % (host, port, path)


def ws_connect(srv, path='/', **kw):
    kw.setdefault('max_size', None)
    kw.setdefault('open_timeout', 5)
    kw.setdefault('close_timeout', 5)
    kw.setdefault('ping_interval', None)
    return connect(url(srv, path), **kw)


def wsc_connect(srv, path='/', **kw):
    return websocket.create_connection(url(srv, path), timeout=10, **kw)


def upgrade_request(path='/', key=None, version='13', method='GET', http='HTTP/1.1', extra=()):
    headers = [('Host', 'x'), ('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
               ('Sec-WebSocket-Key', key or new_key()), ('Sec-WebSocket-Version', version)]
    return support.build(method, path, headers + list(extra), version=http, host=None)


# -- echo ---------------------------------------------------------------------

ECHO_SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, MiB, 16 * MiB]


@pytest.mark.parametrize('compression', ['deflate', None], ids=['deflate', 'plain'])
def test_echo_websockets_library(serve, compression):
    """Text and binary from 0 bytes to 16 MiB (lichen's default limit) on one
    connection, with and without permessage-deflate."""
    srv = serve(echo_app)
    with ws_connect(srv, compression=compression) as ws:
        ext = ws.response.headers.get('Sec-WebSocket-Extensions')
        assert (ext is not None) == (compression == 'deflate'), ext
        for n in ECHO_SIZES:
            t = ('é' * (n // 2) + 'x' * (n % 2))
            ws.send(t)
            assert ws.recv(timeout=20) == t, n
            b = bytes(range(256)) * (n // 256) + bytes(n % 256)
            ws.send(b)
            assert ws.recv(timeout=20) == b, n
        ws.close()
    assert ws.close_code == 1000


def test_echo_websocket_client(serve):
    srv = serve(echo_app)
    ws = wsc_connect(srv)
    try:
        for n in ECHO_SIZES:
            t = 'ü' * (n // 2) + 'y' * (n % 2)
            ws.send(t)
            assert ws.recv() == t, n
            b = bytes(range(255, -1, -1)) * (n // 256) + bytes(n % 256)
            ws.send_binary(b)
            assert ws.recv() == b, n
    finally:
        ws.close()
    assert ws.status == 101


def test_fragmented_messages(serve):
    """A message sent in fragments (the websockets library's iterable send,
    websocket-client's frames) comes to the app whole and goes back whole."""
    srv = serve(echo_app)
    with ws_connect(srv, compression=None) as ws:
        ws.send(['fra', 'gmen', 'ted ', 'téxt'])
        assert ws.recv(timeout=5) == 'fragmented téxt'
        ws.send([b'\x00' * 70000, b'\x01' * 3, b''])
        assert ws.recv(timeout=5) == b'\x00' * 70000 + b'\x01' * 3
    ws2 = wsc_connect(srv)
    try:
        ws2.send_frame(websocket.ABNF.create_frame('abc', websocket.ABNF.OPCODE_TEXT, fin=0))
        ws2.send_frame(websocket.ABNF.create_frame('def', websocket.ABNF.OPCODE_CONT, fin=0))
        ws2.send_frame(websocket.ABNF.create_frame('ghi', websocket.ABNF.OPCODE_CONT, fin=1))
        assert ws2.recv() == 'abcdefghi'
    finally:
        ws2.close()


def test_ping_pong(serve):
    srv = serve(echo_app)
    with ws_connect(srv) as ws:
        for payload in (b'', b'ping-1', b'\xff' * 125):
            assert ws.ping(payload).wait(5), payload
        ws.send('after pings')
        assert ws.recv(timeout=5) == 'after pings'
    ws2 = wsc_connect(srv)
    try:
        ws2.ping('hello ping')
        opcode, data = ws2.recv_data(control_frame=True)
        assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b'hello ping')
    finally:
        ws2.close()


# -- close codes --------------------------------------------------------------

SERVER_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]


@plain_errors
def closing_app(environ, start_response):
    """Closes with the code and reason the path names: /close/CODE/REASON."""
    ws = environ['wsgi.websocket']
    _, _, code, reason = environ['PATH_INFO'].split('/', 3)
    ws.close(int(code), reason.encode('latin-1').decode('utf-8'))
    assert ws.closed
    return []


@pytest.mark.parametrize('code', SERVER_CODES)
def test_server_close_code_seen_by_websockets_library(serve, code):
    srv = serve(closing_app)
    reason = 'bye %d' % code
    with ws_connect(srv, '/close/%d/%s' % (code, reason.replace(' ', '_'))) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None, info.value
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason.replace(' ', '_'))


def test_server_close_reason_forms(serve):
    """ws.close(code, reason): str (UTF-8), bytes, up to 123 bytes, seen on the wire."""
    reasons = {'/s': 'héllo wörld', '/b': b'raw bytes', '/long': 'r' * 123, '/empty': ''}
    seen = queue.Queue()

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        ws.close(4321, reasons[environ['PATH_INFO']])
        seen.put(ws.closed)
        return []

    srv = serve(app)
    for path, reason in reasons.items():
        ws = WSClient(srv.address, path=path)
        close, before = ws.expect_close(4321)
        assert before == []
        assert close.reason == (reason.encode('utf-8') if isinstance(reason, str) else reason)
        assert seen.get(timeout=5) is True


@pytest.mark.parametrize('code', [1000, 1001, 3000, 4999])
def test_server_close_code_seen_by_websocket_client(serve, code):
    srv = serve(closing_app)
    ws = wsc_connect(srv, '/close/%d/why' % code)
    try:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert frame.data[:2] == code.to_bytes(2, 'big') and frame.data[2:] == b'why'
    finally:
        ws.close()
        ws.shutdown()       # close() leaves the socket open once the close frame was read


CLIENT_CODES = [1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999]


@pytest.mark.parametrize('code', CLIENT_CODES)
def test_client_close_code(serve, code):
    """The client closes with a code: the server echoes it, and receive() returns None."""
    got = queue.Queue()

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        got.put(ws.receive())
        got.put(ws.receive())
        got.put(ws.closed)
        return []

    srv = serve(app)
    with ws_connect(srv) as ws:
        ws.send('one')
        ws.close(code, 'client says %d' % code)
    assert ws.close_code == code, (ws.close_code, ws.close_reason)
    assert [got.get(timeout=5) for _ in range(3)] == ['one', None, True]


def test_client_disconnect_without_close(serve):
    """The client vanishes (RST): receive() returns None."""
    got = queue.Queue()

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        got.put(ws.receive())
        got.put(ws.receive())
        return []

    srv = serve(app)
    ws = WSClient(srv.address)
    ws.send_message('x')
    assert got.get(timeout=5) == 'x'
    ws.conn.rst_close()
    assert got.get(timeout=5) is None


# -- subprotocols ---------------------------------------------------------------

@plain_errors
def subprotocol_app(environ, start_response):
    """Chooses 'chat' if the path says so; reports what lichen negotiated
    (ws.protocol read before the 101 and after the first send, which sends
    it)."""
    ws = environ['wsgi.websocket']
    if environ['PATH_INFO'] == '/choose':
        start_response('101 Switching Protocols', [('Sec-WebSocket-Protocol', 'chat')])
    before = ws.protocol  # chosen, the 101 not sent yet
    ws.send('opened')
    ws.send(json.dumps({'protocol': ws.protocol, 'before': before}))
    ws.receive()
    return []


def test_subprotocol_chosen(serve):
    srv = serve(subprotocol_app)
    with ws_connect(srv, '/choose', subprotocols=['superchat', 'chat']) as ws:
        assert ws.subprotocol == 'chat'
        assert ws.response.headers['Sec-WebSocket-Protocol'] == 'chat'
        assert ws.recv(timeout=5) == 'opened'
        assert json.loads(ws.recv(timeout=5)) == {'protocol': 'chat',
                                                  'before': 'chat'}


def test_no_subprotocol_when_app_does_not_choose(serve):
    srv = serve(subprotocol_app)
    ws = WSClient(srv.address, protocols=['chat'])
    assert ws.protocol is None and not ws.response.has('sec-websocket-protocol')
    assert ws.recv_message() == text('opened')
    assert json.loads(ws.recv_message().data) == {'protocol': None,
                                                  'before': None}
    ws.close_cleanly()


@pytest.mark.parametrize('offered', [[], ['superchat'], ['chatty', 'xchat', 'cha'], ['CHAT']],
                         ids=['none', 'other', 'substrings', 'case'])
def test_subprotocol_not_offered_is_refused(serve, offered):
    """The app picks 'chat' but the client did not offer it (nor does 'chat'
    match part of an offered name): the handshake never answers 101 with
    'chat' (a 101 without the header, or an error status)."""
    srv = serve(subprotocol_app)
    c = WSClient(srv.address, handshake=False)
    c.conn.send(c.handshake_request('/choose', protocols=offered))
    resp = c.read_head()
    assert 'chat' not in resp.header_all('sec-websocket-protocol'), resp
    if resp.status == 101:
        assert not resp.has('sec-websocket-protocol'), resp
    else:
        assert 400 <= resp.status < 600, resp
        assert subprotocol_app.errors and 'not offered' in subprotocol_app.errors[-1], subprotocol_app.errors


# -- handshakes that must work -------------------------------------------------------

def test_frame_in_the_handshake_segment(serve):
    """A client that sends its first frame right behind the request (same
    segment): the frame is not lost (nor read as HTTP)."""
    srv = serve(echo_app)
    ws = WSClient(srv.address, handshake=False)
    ws.conn.send(ws.handshake_request() + build_frame(OP_TEXT, b'early') + build_frame(OP_BINARY, b'bird'))
    assert ws.read_head().status == 101
    assert [ws.recv(), ws.recv()] == [text('early'), binary(b'bird')]
    ws.close_cleanly()


def test_upgrade_header_forms(serve):
    """Tokens are case-insensitive and Connection may list others (Firefox
    sends 'keep-alive, Upgrade')."""
    srv = serve(echo_app)
    for upgrade, connection in [('WebSocket', 'keep-alive, Upgrade'), ('websocket', 'upgrade'),
                                ('WEBSOCKET', 'Upgrade, HTTP2-Settings')]:
        key = new_key()
        req = support.build('GET', '/', [('Upgrade', upgrade), ('Connection', connection),
                                         ('Sec-WebSocket-Key', key), ('Sec-WebSocket-Version', '13')])
        resp, c = http_response_to(srv.address, req)
        assert resp.status == 101, (upgrade, connection, resp)
        assert resp.header('sec-websocket-accept') == accept_for(key)
        c.close()


def test_upgrade_after_keepalive_and_pipelined_requests(serve):
    """An upgrade on a connection that already served plain requests, also
    when the upgrade request was pipelined behind one."""
    def app(environ, start_response):
        if environ.get('HTTP_UPGRADE', '').lower() == 'websocket':
            return echo_app(environ, start_response)
        start_response('200 OK', [('Content-Length', '2')])
        return [b'ok']

    srv = serve(app)
    for pipelined in (False, True):
        ws = WSClient(srv.address, handshake=False)
        first = support.build('GET', '/plain')
        upgrade = ws.handshake_request('/ws')
        if pipelined:
            ws.conn.send(first + upgrade)
            assert ws.conn.read_response().body == b'ok'
        else:
            ws.conn.send(first)
            assert ws.conn.read_response().body == b'ok'
            ws.conn.send(upgrade)
        resp = ws.read_head()
        assert resp.status == 101, resp
        ws.send_message('after http')
        assert ws.recv() == text('after http')
        ws.close_cleanly()


# -- compression on and off -------------------------------------------------------

def test_compression_offer_accepted_by_default(serve):
    srv = serve(echo_app)
    with ws_connect(srv) as ws:
        assert 'permessage-deflate' in ws.response.headers['Sec-WebSocket-Extensions']
        ws.send('x' * 100000)
        assert ws.recv(timeout=5) == 'x' * 100000


def test_compression_off(serve):
    srv = serve(echo_app, ws_compression=False)
    with ws_connect(srv) as ws:
        assert 'Sec-WebSocket-Extensions' not in ws.response.headers
        ws.send('x' * 100000)
        assert ws.recv(timeout=5) == 'x' * 100000
    raw = WSClient(srv.address, extensions='permessage-deflate; client_max_window_bits')
    assert raw.deflate is None and not raw.response.has('sec-websocket-extensions')
    raw.close_cleanly()


def test_compression_offer_server_bits8_websockets_library(serve):
    """The websockets library asking for server_max_window_bits=8: the
    server must answer 8 or leave the extension out; an answer of 9 makes
    the client fail the handshake (NegotiationError)."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    srv = serve(echo_app)
    with ws_connect(srv, compression=None,
                    extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=8)]) as ws:
        ws.send('x' * 1000)
        assert ws.recv(timeout=5) == 'x' * 1000


# -- bad handshakes -------------------------------------------------------------------

def test_version_12_gets_426(serve):
    rec = support.Recorder(echo_app)
    srv = serve(rec)
    resp, c = http_response_to(srv.address, upgrade_request(version='12'))
    assert resp.status == 426, resp
    assert resp.header('sec-websocket-version') == '13', resp
    assert rec.calls == 0


@pytest.mark.parametrize('req', [
    upgrade_request(key='abc'),
    upgrade_request(key='AAAAAAAAAAAAAAAAAAAAAA=='[:-4]),
    upgrade_request(key='!!!!!!!!!!!!!!!!!!!!!!=='),
    upgrade_request(method='POST'),
    upgrade_request(http='HTTP/1.0'),
    support.build('GET', '/', [('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
                               ('Sec-WebSocket-Version', '13')]),
], ids=['short-key', 'truncated-key', 'not-base64', 'post', 'http10', 'no-key'])
def test_bad_handshake_gets_400(serve, req):
    rec = support.Recorder(echo_app)
    srv = serve(rec)
    resp, c = http_response_to(srv.address, req)
    assert resp.status == 400, resp
    assert rec.calls == 0


# -- attributes -----------------------------------------------------------------------

def test_attributes(serve):
    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        ws.send(json.dumps({
            'origin': ws.origin, 'path': ws.path, 'version': ws.version, 'protocol': ws.protocol,
            'closed': ws.closed, 'environ_is': ws.environ is environ,
            'wsgi.websocket_version': environ['wsgi.websocket_version'],
            'query': environ.get('QUERY_STRING'),
        }))
        ws.receive()
        return []

    srv = serve(app)
    with ws_connect(srv, '/chat/room?x=1', origin='http://example.com') as ws:
        got = json.loads(ws.recv(timeout=5))
    assert got == {'origin': 'http://example.com', 'path': '/chat/room', 'version': '13', 'protocol': None,
                   'closed': False, 'environ_is': True, 'wsgi.websocket_version': '13', 'query': 'x=1'}
    with ws_connect(srv, '/') as ws:
        assert json.loads(ws.recv(timeout=5))['origin'] is None


# -- send() rules, errors after the close ------------------------------------------------

def test_send_binary_rules(serve):
    results = queue.Queue()

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        ws.send('héllo', binary=True)          # UTF-8 bytes in a binary frame
        ws.send(b'abc', binary=False)          # valid UTF-8 bytes as text
        ws.send(bytearray(b'bytearray'))
        ws.send(memoryview(b'memoryview'))
        ws.send('plain str')
        ws.send(b'plain bytes')
        try:
            ws.send(b'\xff\xfe', binary=False)
            results.put('no error')
        except ValueError:
            results.put('ValueError')
        ws.send('still open')
        ws.receive()
        return []

    srv = serve(app)
    ws = WSClient(srv.address)
    got = [ws.recv_message() for _ in range(7)]
    assert got == [binary('héllo'.encode()), text('abc'), binary(b'bytearray'), binary(b'memoryview'),
                   text('plain str'), binary(b'plain bytes'), text('still open')]
    assert results.get(timeout=5) == 'ValueError'
    ws.close_cleanly()


def test_api_argument_errors(serve):
    """close(): the reason is at most 123 bytes, 1005/1006/1015 are not sent,
    a second close() is harmless; send() takes str or bytes-like only."""
    results = queue.Queue()

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        out = {}
        for name, fn in [('reason124', lambda: ws.close(1000, 'x' * 124)), ('code1005', lambda: ws.close(1005)),
                         ('code1006', lambda: ws.close(1006)), ('code1015', lambda: ws.close(1015)),
                         ('code999', lambda: ws.close(999)), ('code5000', lambda: ws.close(5000)),
                         ('send_int', lambda: ws.send(123)), ('send_none', lambda: ws.send(None))]:
            try:
                fn()
                out[name] = 'no error'
            except (ValueError, TypeError) as e:
                out[name] = type(e).__name__
        out['closed_after_errors'] = ws.closed
        ws.send(json.dumps(out))
        ws.close(3001, 'x' * 123)
        ws.close(1000)                  # a second close sends nothing more
        results.put(ws.closed)
        return []

    srv = serve(app)
    ws = WSClient(srv.address)
    out = json.loads(ws.recv_message().data)
    assert out == {'reason124': 'ValueError', 'code1005': 'ValueError', 'code1006': 'ValueError',
                   'code1015': 'ValueError', 'code999': 'ValueError', 'code5000': 'ValueError',
                   'send_int': 'TypeError', 'send_none': 'TypeError', 'closed_after_errors': False}
    close, before = ws.expect_close(3001)
    assert close.reason == b'x' * 123 and before == []
    assert results.get(timeout=5) is True


def test_websocket_error_after_close(serve):
    import geventwebsocket.exceptions
    results = queue.Queue()

    def app(environ, start_response):
        from lichen.websocket import WebSocketError
        ws = environ['wsgi.websocket']
        assert ws.receive() is None
        out = {'closed': ws.closed}
        try:
            ws.send('too late')
            out['send'] = 'no error'
        except WebSocketError as e:
            out['send'] = 'WebSocketError'
            out['gevent_subclass'] = isinstance(e, geventwebsocket.exceptions.WebSocketError)
        out['receive'] = ws.receive()
        results.put(out)
        return []

    srv = serve(app)
    ws = WSClient(srv.address)
    ws.close_cleanly(1001)
    assert results.get(timeout=5) == {'closed': True, 'send': 'WebSocketError', 'gevent_subclass': True,
                                      'receive': None}


# -- many connections: broadcast, idle, slow ------------------------------------------------

def broadcast_app_factory():
    clients = []
    lock = threading.Lock()

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        with lock:
            clients.append(ws)
        try:
            while True:
                m = ws.receive()
                if m is None:
                    break
                with lock:
                    targets = list(clients)
                for other in targets:       # sent from this connection's greenlet
                    if not other.closed:
                        other.send(m)
        finally:
            with lock:
                clients.remove(ws)
        return []

    app.clients = clients
    return app


def _broadcast(serve):
    app = broadcast_app_factory()
    srv = serve(app)
    conns = [WSClient(srv.address) for _ in range(5)]
    assert support.wait_for(lambda: len(app.clients) == 5)
    for i, sender in enumerate(conns):
        sender.send_message('from %d' % i)
        for c in conns:
            assert c.recv_message() == text('from %d' % i)
    conns[0].close_cleanly()
    assert support.wait_for(lambda: len(app.clients) == 4)
    conns[1].send_message(b'\x00bin')
    for c in conns[1:]:
        assert c.recv_message() == binary(b'\x00bin')
    for c in conns[1:]:
        c.close_cleanly()


def test_broadcast_native(serve):
    _broadcast(serve)


@pytest.mark.parametrize('driver', ['gevent'])
def test_broadcast_gevent(serve, driver):
    _broadcast(serve)


@pytest.mark.parametrize('driver', ['serve_forever', 'gevent'])
def test_max_message_1009(serve, driver):
    srv = serve(echo_app, ws_max_message=1000)
    ws = WSClient(srv.address)
    ws.send_message(b'x' * 1000)
    assert ws.recv_message() == binary(b'x' * 1000)
    ws.send_message(b'x' * 600, fragment=300)
    assert ws.recv_message() == binary(b'x' * 600)
    ws.try_send_raw(build_frame(OP_TEXT, b'y' * 600, fin=False) + build_frame(0, b'y' * 401, fin=True))
    close, before = ws.expect_close(1009)
    assert before == []
    with ws_connect(srv) as ws2:
        with pytest.raises(ConnectionClosed) as info:
            ws2.send('z' * 1001)
            ws2.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_max_message_1009_on_header_before_payload(serve):
    """A frame whose header announces more than ws_max_message fails at
    once, before its payload arrives."""
    srv = serve(echo_app, ws_max_message=MiB)
    ws = WSClient(srv.address)
    frame = build_frame(OP_BINARY, b'', length=2 * MiB)
    ws.try_send_raw(frame)
    ws.expect_close(1009)


@pytest.mark.parametrize('driver', ['serve_forever', 'gevent'])
def test_slow_client_send_waits_others_not_blocked(serve, driver):
    """The app sends 16 MiB to a client that reads nothing: send() waits
    once ws_max_queue (64 KiB) plus the socket buffers are full, and while
    it waits, another client still gets its echoes. Then the slow client
    reads everything, whole and in order."""
    progress = {'sent': 0, 'done': False}
    N, SIZE = 256, 65536

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        if environ['PATH_INFO'] == '/flood':
            for i in range(N):
                ws.send(bytes([i]) * SIZE)
                progress['sent'] = i + 1
            progress['done'] = True
            ws.receive()
            return []
        return echo_app(environ, start_response)

    srv = serve(app, ws_max_queue=64 * 1024)
    slow = WSClient(srv.address, path='/flood', rcvbuf=65536, timeout=10)
    assert support.wait_for(lambda: progress['sent'] > 0)
    time.sleep(0.5)
    stalled_at = progress['sent']
    time.sleep(0.3)
    assert progress['sent'] == stalled_at and not progress['done'], progress
    assert stalled_at * SIZE < 12 * MiB, 'send() did not wait: %d bytes accepted' % (stalled_at * SIZE)
    other = WSClient(srv.address)
    t0 = time.monotonic()
    for i in range(20):
        other.send_message('ping %d' % i)
        assert other.recv_message(timeout=2) == text('ping %d' % i)
    assert time.monotonic() - t0 < 2
    other.close_cleanly()
    for i in range(N):
        m = slow.recv_message(timeout=10)
        assert m == binary(bytes([i]) * SIZE), i
    assert support.wait_for(lambda: progress['done'])
    slow.close_cleanly()


@pytest.mark.parametrize('driver', ['gevent'])
def test_timeout_in_a_waiting_send_leaves_the_websocket_open(serve, driver):
    """A gevent.Timeout thrown into a send() that waits for a slow client
    goes up to the application as it is; the frame was queued whole, so the
    websocket goes on: the client gets every message, whole and in order,
    and the application's next send and receive work."""
    import gevent
    seen = {}
    N, SIZE = 64, 65536

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        sent = 0
        try:
            with gevent.Timeout(0.3):
                for i in range(N):
                    ws.send(bytes([i]) * SIZE)
                    sent += 1
        except gevent.Timeout:
            seen['timeout'] = True
        seen['sent'] = sent
        seen['closed'] = ws.closed
        ws.send('after')
        seen['got'] = ws.receive()
        return []

    srv = serve(app, ws_max_queue=64 * 1024)
    slow = WSClient(srv.address, rcvbuf=65536, timeout=10)
    assert support.wait_for(lambda: 'sent' in seen)
    assert seen['timeout'] and not seen['closed'] and seen['sent'] < N, seen
    for i in range(seen['sent'] + 1):  # the one the timeout cut is whole too
        assert slow.recv_message(timeout=10) == binary(bytes([i]) * SIZE), i
    assert slow.recv_message(timeout=10) == text('after')
    slow.send_message('bye')
    assert support.wait_for(lambda: seen.get('got') == 'bye'), seen
    slow.expect_close(1000)


@pytest.mark.parametrize('driver', ['serve_forever', 'gevent'])
def test_idle_websockets_do_not_stop_other_requests(serve, driver):
    def app(environ, start_response):
        if environ.get('HTTP_UPGRADE', '').lower() == 'websocket':
            return echo_app(environ, start_response)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'hello']

    srv = serve(app)
    idle = [WSClient(srv.address) for _ in range(10)]
    t0 = time.monotonic()
    for _ in range(20):
        resp = support.request(srv.address)
        assert (resp.status, resp.body) == (200, b'hello')
    assert time.monotonic() - t0 < 2
    idle[3].send_message('still alive')
    assert idle[3].recv_message() == text('still alive')
    for ws in idle:
        ws.close_cleanly()


# -- the end of the application ------------------------------------------------------------

def test_app_returns_connection_closed_leftovers_not_http(serve):
    """The app reads one message and returns: lichen sends close 1000 and
    closes; the frames (and an HTTP-looking payload) the client sent after
    are never read as HTTP: no '400' or any HTTP response in the stream."""
    calls = []

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        calls.append(ws.receive())
        return []

    srv = serve(app)
    ws = WSClient(srv.address)
    leftover = (build_frame(OP_TEXT, b'first')
                + build_frame(OP_TEXT, b'second')
                + b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
                + build_frame(OP_BINARY, b'GET /again HTTP/1.1\r\n\r\n', mask=False))
    ws.try_send_raw(leftover)
    rest = b''
    try:
        close, before = ws.expect_close(1000, reply=False)
    except AssertionError:
        rest = bytes(ws.conn.buf)
        raise
    assert b'HTTP/' not in rest
    assert before == [] and calls == ['first']


def test_app_returns_without_using_the_websocket(serve):
    def app(environ, start_response):
        return []

    srv = serve(app)
    ws = WSClient(srv.address)          # the 101 is sent on return
    close, before = ws.expect_close(1000)
    assert before == []


def test_app_answers_plain_http_403(serve):
    def app(environ, start_response):
        start_response('403 Forbidden', [('Content-Type', 'text/plain'), ('Content-Length', '6')])
        return [b'nope!\n']

    srv = serve(app)
    resp, c = http_response_to(srv.address, upgrade_request())
    assert (resp.status, resp.body) == (403, b'nope!\n')
    assert c.expect_close() == b''
    with pytest.raises(InvalidStatus):
        ws_connect(srv)


def test_app_exception_closes_with_1011_or_1000(serve):
    """An app that raises after the handshake: the connection ends with a
    close frame (1011 internal error or 1000), then the TCP close."""
    @plain_errors
    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        ws.receive()
        raise RuntimeError('app failure (expected by the test)')

    srv = serve(app)
    ws = WSClient(srv.address)
    ws.send_message('boom')
    ws.expect_close((1011, 1000))


# -- lichen.pywsgi with gevent-websocket's handler (subprocess) ------------------------------

MODULE_UNDER_TEST = 'lichen'   # 'gevent' runs the program with gevent.pywsgi (a reference)

PYWSGI_PROGRAM = r'''
import sys
MODULE = sys.argv[1]
port = int(sys.argv[2])
if MODULE == 'gevent':
    from gevent import pywsgi
else:
    from lichen import pywsgi
from geventwebsocket.handler import WebSocketHandler

clients = set()


def app(environ, start_response):
    ws = environ.get('wsgi.websocket')
    if ws is None:
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'plain http']
    clients.add(ws)
    try:
        while True:
            m = ws.receive()
            if m is None:
                break
            if m == 'info':
                ws.send('%s %s' % (ws.path, ws.origin))
                continue
            for c in list(clients):
                c.send(m)
    finally:
        clients.discard(ws)
    return []


print('READY', flush=True)
pywsgi.WSGIServer(('127.0.0.1', port), app, handler_class=WebSocketHandler, log=None).serve_forever()
'''


@pytest.mark.timeout(60)
def test_pywsgi_with_geventwebsocket_handler(tmp_path):
    port = free_port()
    proc = subprocess.Popen([PYTHON, '-c', PYWSGI_PROGRAM, MODULE_UNDER_TEST, str(port)], cwd=str(REPO),
                            env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), 1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
                time.sleep(0.05)
        a = websocket.create_connection('ws://127.0.0.1:%d/room' % port, timeout=10, origin='http://o.example')
        b = websocket.create_connection('ws://127.0.0.1:%d/room' % port, timeout=10)
        try:
            a.send('info')
            assert a.recv() == '/room http://o.example'
            b.send('info')                      # b registered before the broadcast
            assert b.recv().startswith('/room')
            a.send('to all')
            assert a.recv() == 'to all' and b.recv() == 'to all'
            b.send_binary(b'\x00\xff' * 40000)
            assert a.recv() == b'\x00\xff' * 40000 and b.recv() == b'\x00\xff' * 40000
            resp = support.request(('127.0.0.1', port))
            assert (resp.status, resp.body) == (200, b'plain http')
        finally:
            a.close()
            b.close()
        raw = WSClient(('127.0.0.1', port))
        raw.send_ping(b'p')
        assert raw.recv() == Pong(b'p')
        raw.close_cleanly()
        assert proc.poll() is None
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert b'Traceback' not in err, err.decode('utf-8', 'replace')
