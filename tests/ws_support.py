"""A raw-socket WebSocket client (RFC 6455, RFC 7692) for the black-box tests.

It does what a test needs and a real client refuses to do: frames with any
opcode, reserved bits, lengths or masking, sent whole, in chops or byte by
byte; and it checks everything the server sends (frames unmasked, reserved
bits only for a negotiated extension, control frames short and whole, close
codes valid, compressed messages inflating with the window the server chose).

Every socket is a support.Conn (a timeout on every socket; support.close_all()
closes them at teardown).
"""
import base64
import hashlib
import os
import struct
import threading
import time
import zlib

import support
from support import Conn

GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
TIMEOUT = 5.0

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x4, 0x2, 0x1          # rsv argument: bit 4 = RSV1 ... (Autobahn's numbering)
TAIL = b'\x00\x00\xff\xff'                 # what RFC 7692 strips from each compressed message


class ProtocolViolation(AssertionError):
    """The server sent something RFC 6455 forbids."""


def accept_for(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (str)."""
    return base64.b64encode(hashlib.sha1(key.encode('ascii') + GUID).digest()).decode('ascii')


def new_key():
    return base64.b64encode(os.urandom(16)).decode('ascii')


def mask_bytes(data, key):
    """data XOR the 4-byte key repeated (fast for many MiB)."""
    n = len(data)
    if not n:
        return b''
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, 'little') ^ int.from_bytes(k, 'little')).to_bytes(n, 'little')


def build_frame(opcode, payload=b'', fin=True, rsv=0, mask=True, mask_key=None, length=None, length_form=None):
    """Bytes of one frame.

    rsv: the three reserved bits as a number 0..7 (4 = RSV1, 2 = RSV2, 1 = RSV3).
    mask: a client frame is masked; False sends it unmasked.
    length: the length written in the header (default len(payload)); a lie
        is allowed. length_form: '7', '16' or '64' forces that encoding (a
        non-minimal length)."""
    if isinstance(payload, str):
        payload = payload.encode('utf-8')
    payload = bytes(payload)
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    form = length_form or ('7' if n <= 125 else '16' if n <= 0xFFFF else '64')
    if form == '7':
        head = struct.pack('!BB', b0, mbit | n)
    elif form == '16':
        head = struct.pack('!BBH', b0, mbit | 126, n)
    else:
        head = struct.pack('!BBQ', b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b''):
    if code is None:
        return b''
    if isinstance(reason, str):
        reason = reason.encode('utf-8')
    return struct.pack('!H', code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, payload, masked=False):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.payload = payload
        self.masked = masked

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b'...'
        return '<Frame op=%d fin=%d rsv=%d len=%d %r>' % (self.opcode, self.fin, self.rsv, len(self.payload), p)


class Message:
    """A whole data message: opcode OP_TEXT or OP_BINARY, data bytes."""

    def __init__(self, opcode, data, frames=1, compressed=False):
        self.opcode = opcode
        self.data = data
        self.frames = frames
        self.compressed = compressed

    @property
    def text(self):
        assert self.opcode == OP_TEXT, self
        return self.data.decode('utf-8')

    def __eq__(self, other):
        return isinstance(other, Message) and (self.opcode, self.data) == (other.opcode, other.data)

    def __repr__(self):
        d = self.data if len(self.data) <= 40 else self.data[:40] + b'...'
        return '<Message %s len=%d %r>' % ('text' if self.opcode == OP_TEXT else 'binary', len(self.data), d)


def text(data):
    return Message(OP_TEXT, data.encode('utf-8') if isinstance(data, str) else data)


def binary(data):
    return Message(OP_BINARY, bytes(data))


class Close:
    def __init__(self, code, reason):
        self.code = code
        self.reason = reason

    def __repr__(self):
        return '<Close %r %r>' % (self.code, self.reason)


class Ping:
    def __init__(self, data):
        self.data = data

    def __eq__(self, other):
        return type(other) is type(self) and other.data == self.data

    def __repr__(self):
        return '<%s %r>' % (type(self).__name__, self.data)


class Pong(Ping):
    pass


def valid_close_code(code):
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code <= 4999


def parse_extensions(values):
    """[(name, {param: value or True})] from Sec-WebSocket-Extensions values."""
    out = []
    for value in values:
        for ext in value.split(','):
            parts = [p.strip() for p in ext.split(';')]
            if not parts[0]:
                continue
            params = {}
            for p in parts[1:]:
                k, eq, v = p.partition('=')
                params[k.strip().lower()] = v.strip().strip('"') if eq else True
            out.append((parts[0].lower(), params))
    return out


class Deflate:
    """permessage-deflate state of the client side, from the server's answer."""

    def __init__(self, params, level=6):
        self.params = params
        for k in params:
            assert k in ('server_no_context_takeover', 'client_no_context_takeover',
                         'server_max_window_bits', 'client_max_window_bits'), \
                'unknown permessage-deflate parameter in the answer: %r' % (params,)
        self.server_nct = 'server_no_context_takeover' in params
        self.client_nct = 'client_no_context_takeover' in params
        self.server_bits = int(params.get('server_max_window_bits', 15))
        cmwb = params.get('client_max_window_bits', 15)
        assert cmwb is not True, 'client_max_window_bits without a value in the answer'
        self.client_bits = int(cmwb)
        assert 8 <= self.server_bits <= 15 and 8 <= self.client_bits <= 15, params
        self.level = level
        self._comp = None
        self._decomp = None

    def compress(self, data):
        # zlib's raw deflate cannot use an 8-bit window; 9 is what it uses for 8 anyway
        if self._comp is None or self.client_nct:
            self._comp = zlib.compressobj(self.level, zlib.DEFLATED, -max(9, self.client_bits))
        out = self._comp.compress(data) + self._comp.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def decompress(self, data, max_size=None):
        # Inflating with the server's announced window fails ("invalid
        # distance too far back") if the server reached further back; a fresh
        # inflater per message fails if the server kept its context while it
        # promised server_no_context_takeover.
        if self._decomp is None or self.server_nct:
            self._decomp = zlib.decompressobj(-max(9, self.server_bits))
        out = self._decomp.decompress(data + TAIL)
        assert not self._decomp.unconsumed_tail
        return out


class WSClient:
    """One WebSocket connection made by hand.

        ws = WSClient(addr)                       # handshake done and checked
        ws.send_message('hi')                     # masked text frame
        assert ws.recv() == text('hi')
        ws.close_cleanly()                        # 1000 both ways, then the TCP close
    """

    def __init__(self, addr, path='/', headers=(), protocols=(), extensions=None,
                 timeout=TIMEOUT, handshake=True, rcvbuf=None, sndbuf=None, origin=None,
                 deflate_level=6):
        self.addr = addr
        self.conn = Conn(addr, timeout=timeout, rcvbuf=rcvbuf, sndbuf=sndbuf)
        self.sock = self.conn.sock
        self.timeout = timeout
        self.deflate = None
        self.deflate_level = deflate_level
        self.response = None
        self.protocol = None
        self.extensions = []
        self.events = []          # every frame received, in order (Frame objects)
        self._pending = None      # [opcode, [payloads], rsv1] of a fragmented message
        self.close_received = None
        self.close_sent = False
        if handshake:
            self.handshake(path, headers, protocols, extensions, origin)

    # -- handshake --------------------------------------------------------
    def handshake_request(self, path='/', headers=(), protocols=(), extensions=None, origin=None,
                          key=None, version='13'):
        self.key = key or new_key()
        hs = [('Host', '%s:%d' % tuple(self.addr[:2])), ('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
              ('Sec-WebSocket-Key', self.key), ('Sec-WebSocket-Version', version)]
        if origin:
            hs.append(('Origin', origin))
        if protocols:
            hs.append(('Sec-WebSocket-Protocol', ', '.join(protocols)))
        if extensions:
            hs.append(('Sec-WebSocket-Extensions', extensions))
        return support.build('GET', path, hs + list(headers), host=None)

    def read_head(self):
        resp = support.Response()
        self.conn._read_head(resp)
        return resp

    def handshake(self, path='/', headers=(), protocols=(), extensions=None, origin=None):
        self.conn.send(self.handshake_request(path, headers, protocols, extensions, origin))
        resp = self.response = self.read_head()
        assert resp.status == 101, 'handshake answered %r (body start %r)' % (resp, bytes(self.conn.buf[:200]))
        assert resp.version == 'HTTP/1.1', resp
        assert resp.tokens('upgrade') == ['websocket'], resp
        assert 'upgrade' in resp.tokens('connection'), resp
        assert resp.header('sec-websocket-accept') == accept_for(self.key), resp
        assert len(resp.header_all('sec-websocket-accept')) == 1, resp
        assert not resp.has('content-length') and not resp.has('transfer-encoding'), resp
        protos = resp.header_all('sec-websocket-protocol')
        assert len(protos) <= 1, resp
        self.protocol = protos[0] if protos else None
        if self.protocol is not None:
            assert self.protocol in protocols, 'server chose %r, not offered (%r)' % (self.protocol, protocols)
        self.extensions = parse_extensions(resp.header_all('sec-websocket-extensions'))
        for name, params in self.extensions:
            assert name == 'permessage-deflate', 'extension not offered: %r' % (self.extensions,)
            assert extensions and 'permessage-deflate' in extensions, 'extension not offered: %r' % (resp,)
            assert self.deflate is None, 'permessage-deflate accepted twice: %r' % (resp,)
            self.deflate = Deflate(params, self.deflate_level)
        return resp

    # -- sending ------------------------------------------------------------
    def send_raw(self, data, chop=None, delay=0.0):
        """Send bytes: at once, or in chops of `chop` bytes (1: octet-wise)
        with `delay` seconds between chops (TCP_NODELAY is on)."""
        if not chop:
            self.conn.send(data)
            return
        for i in range(0, len(data), chop):
            self.conn.send(data[i:i + chop])
            if delay:
                time.sleep(delay)

    def try_send_raw(self, data, chop=None, delay=0.0):
        """send_raw that stops (returning False) once the server is gone:
        for bytes after a frame the server may fail the connection on."""
        try:
            self.send_raw(data, chop, delay)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False

    def send_frame(self, opcode, payload=b'', fin=True, rsv=0, mask=True, chop=None, **kw):
        self.send_raw(build_frame(opcode, payload, fin, rsv, mask, **kw), chop)

    def message_frames(self, data, opcode=None, fragment=None, compress=False):
        """Frames (bytes) of one message: text for str, binary for bytes unless
        opcode says; in fragments of `fragment` payload bytes (after
        compression); compressed with the negotiated permessage-deflate."""
        if isinstance(data, str):
            data = data.encode('utf-8')
            opcode = OP_TEXT if opcode is None else opcode
        opcode = OP_BINARY if opcode is None else opcode
        rsv = 0
        if compress:
            assert self.deflate, 'permessage-deflate was not negotiated'
            data = self.deflate.compress(data)
            rsv = RSV1
        if not fragment or len(data) <= fragment:
            return [build_frame(opcode, data, True, rsv)]
        out = []
        for i in range(0, len(data), fragment):
            last = i + fragment >= len(data)
            out.append(build_frame(opcode if i == 0 else OP_CONT, data[i:i + fragment], last, rsv if i == 0 else 0))
        return out

    def send_message(self, data, opcode=None, fragment=None, compress=False, chop=None):
        self.send_raw(b''.join(self.message_frames(data, opcode, fragment, compress)), chop)

    def send_ping(self, data=b''):
        self.send_frame(OP_PING, data)

    def send_close(self, code=1000, reason=b'', payload=None, chop=None):
        self.close_sent = True
        self.send_frame(OP_CLOSE, close_payload(code, reason) if payload is None else payload, chop=chop)

    # -- receiving ----------------------------------------------------------
    def recv_frame(self, timeout=None):
        """The next frame from the server, checked against RFC 6455's rules
        for a server. Raises support.IncompleteResponse at EOF."""
        self.sock.settimeout(timeout or self.timeout)
        try:
            b0, b1 = self.conn.read_exact(2)
            fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
            masked, n = bool(b1 & 0x80), b1 & 0x7F
            if n == 126:
                n, = struct.unpack('!H', self.conn.read_exact(2))
                if n < 126:
                    raise ProtocolViolation('non-minimal 16-bit length %d' % n)
            elif n == 127:
                n, = struct.unpack('!Q', self.conn.read_exact(8))
                if n >> 63 or n <= 0xFFFF:
                    raise ProtocolViolation('bad 64-bit length %d' % n)
            if masked:
                raise ProtocolViolation('the server masked a frame')
            payload = self.conn.read_exact(n) if n else b''
        finally:
            self.sock.settimeout(self.timeout)
        frame = Frame(fin, rsv, opcode, payload, masked)
        self.events.append(frame)
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolViolation('reserved opcode from the server: %r' % frame)
        if opcode >= 8:
            if not fin or len(payload) > 125:
                raise ProtocolViolation('bad control frame: %r' % frame)
            if rsv:
                raise ProtocolViolation('reserved bits on a control frame: %r' % frame)
        elif opcode == OP_CONT:
            if rsv:
                raise ProtocolViolation('reserved bits on a continuation: %r' % frame)
        elif rsv & ~(RSV1 if self.deflate else 0):
            raise ProtocolViolation('reserved bits without an extension: %r' % frame)
        return frame

    def recv(self, timeout=None):
        """The next event: a Message (reassembled, inflated), Ping, Pong or Close.
        A close frame's code and reason are checked (valid code, UTF-8 reason)."""
        while True:
            f = self.recv_frame(timeout)
            if self.close_received is not None:
                raise ProtocolViolation('frame after the close frame: %r' % f)
            if f.opcode == OP_PING:
                return Ping(f.payload)
            if f.opcode == OP_PONG:
                return Pong(f.payload)
            if f.opcode == OP_CLOSE:
                if len(f.payload) == 1:
                    raise ProtocolViolation('1-byte close payload')
                if not f.payload:
                    code, reason = None, b''
                else:
                    code, = struct.unpack('!H', f.payload[:2])
                    reason = f.payload[2:]
                    if not valid_close_code(code):
                        raise ProtocolViolation('invalid close code %d from the server' % code)
                    try:
                        reason.decode('utf-8')
                    except UnicodeDecodeError:
                        raise ProtocolViolation('close reason not UTF-8: %r' % reason)
                self.close_received = Close(code, reason)
                return self.close_received
            if f.opcode == OP_CONT:
                if self._pending is None:
                    raise ProtocolViolation('continuation with nothing to continue')
                self._pending[1].append(f.payload)
            else:
                if self._pending is not None:
                    raise ProtocolViolation('new data frame inside a fragmented message: %r' % f)
                self._pending = [f.opcode, [f.payload], bool(f.rsv & RSV1)]
            if not f.fin:
                continue
            opcode, parts, compressed = self._pending
            self._pending = None
            data = b''.join(parts)
            if compressed:
                data = self.deflate.decompress(data)
            if opcode == OP_TEXT:
                try:
                    data.decode('utf-8')
                except UnicodeDecodeError:
                    raise ProtocolViolation('text message not UTF-8: %r' % data[:100])
            return Message(opcode, data, len(parts), compressed)

    def recv_message(self, timeout=None):
        """The next event, asserted to be a data message."""
        ev = self.recv(timeout)
        assert isinstance(ev, Message), 'expected a message, got %r' % (ev,)
        return ev

    def nothing_within(self, seconds):
        """True if no byte (and no EOF) arrives within `seconds`."""
        return self.conn.is_open(seconds)

    def wait_eof(self, timeout=2.0):
        """Assert the server closes the TCP connection (after its close frame)
        within `timeout`; returns any bytes that came before the close."""
        data = self.conn.expect_close(timeout)
        self.conn.sock.settimeout(self.timeout)
        return data

    def expect_close(self, codes=(1000,), timeout=None, reply=True, eof_timeout=2.0):
        """Read until the server's close frame (other events are returned in
        the list); assert its code is in `codes`; answer it (unless reply is
        False) and assert the TCP connection is then closed by the server,
        with nothing after the close frame. Returns (Close, [events before])."""
        if isinstance(codes, int) or codes is None:
            codes = (codes,)
        before = []
        while True:
            try:
                ev = self.recv(timeout)
            except support.IncompleteResponse as e:
                raise AssertionError('TCP closed without a close frame (events: %r; frames %r): %s'
                                     % (before, self.events[-5:], e))
            if isinstance(ev, Close):
                break
            before.append(ev)
        assert ev.code in codes, 'close code %r (reason %r), expected one of %r; events before: %r' % (
            ev.code, ev.reason, codes, before)
        if reply and not self.close_sent:
            echo = close_payload(ev.code) if ev.code is not None else b''
            self.close_sent = True
            self.try_send_raw(build_frame(OP_CLOSE, echo))
        rest = self.wait_eof(eof_timeout)
        assert rest == b'', 'bytes after the close frame: %r' % rest[:200]
        return ev, before

    def close_cleanly(self, code=1000, reason=b''):
        """Client-started closing handshake: the server must echo the close
        (with the code, or 1000 for an empty close) and close the TCP connection."""
        self.send_close(code, reason)
        ev, before = self.expect_close((1000 if code is None else code,))
        return before

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_response_to(addr, request_bytes, timeout=TIMEOUT):
    """Send raw request bytes; return (Response, Conn) of the first answer
    (a 101 is returned as it is, not treated as interim)."""
    c = Conn(addr, timeout=timeout)
    c.send(request_bytes)
    resp = support.Response()
    c._read_head(resp)
    if resp.status != 101 and resp.has('content-length'):
        resp.body = c.read_exact(int(resp.header('content-length')))
    return resp, c


def echo_app(environ, start_response):
    """The echo websocket application of the tests."""
    from lichen.websocket import WebSocketError
    ws = environ['wsgi.websocket']
    while True:
        m = ws.receive()
        if m is None:
            break
        try:
            ws.send(m)
        except WebSocketError:
            # the connection failed (a later protocol error, the client's
            # close) while the echo was on its way: not an app error
            break
    return []


# -- a reference server (the websockets library) to check the tests themselves --

class ReferenceServer:
    """websockets.sync.server.serve with an echo handler in a thread; used
    when LICHEN_WS_REFERENCE=1 to check this client and the expectations
    against an independent implementation."""

    def __init__(self, max_size=None, compression='deflate'):
        from websockets.sync.server import serve

        def echo(ws):
            try:
                for m in ws:
                    ws.send(m)
            except Exception:
                pass

        self.server = serve(echo, '127.0.0.1', 0, max_size=max_size, compression=compression,
                            ping_interval=None)
        self.address = self.server.socket.getsockname()[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(5)

