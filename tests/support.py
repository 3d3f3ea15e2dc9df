"""Raw-socket helpers for the black-box HTTP/WSGI tests.

Every socket made here has a timeout, so no test can hang on I/O.
Connections made with Conn are tracked and closed by close_all() at teardown.

The transport: the `serve` fixture calls use_transport() for the server it
starts ('plain', or 'tls' with the CA that issued the server's
certificate), and Conn, request() and client_socket() then speak the same:
over TLS the socket is a TLSSocket, which reads and writes the request's
bytes as they are, encrypted.
"""
import socket
import ssl
import struct
import threading
import time

TIMEOUT = 5.0

_open_lock = threading.Lock()
_open = []

# What the servers of the running test speak (set by the `serve` fixture).
_transport = {'name': 'plain', 'context': None}


def use_transport(name, cafile=None):
    """From now on, connect over `name` ('plain' or 'tls'); with 'tls',
    trust the CA in cafile (and check the server's certificate names
    127.0.0.1)."""
    assert name in ('plain', 'tls'), name
    ctx = None
    if name == 'tls':
        ctx = _client_contexts.get(cafile)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cafile)
            _client_contexts[cafile] = ctx
    _transport.update(name=name, context=ctx)


_client_contexts = {}


def transport():
    """'plain' or 'tls': what Conn speaks now."""
    return _transport['name']


def client_socket(addr, timeout=TIMEOUT, rcvbuf=None, sndbuf=None,
                  source_address=None, handshake=True):
    """A socket connected to addr over the current transport: a plain
    socket, or a TLSSocket (see there for handshake=False)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(tuple(addr[:2]))
        if _transport['name'] == 'tls':
            sock = TLSSocket(sock, _transport['context'], addr[0],
                             handshake=handshake)
    except BaseException:
        sock.close()
        raise
    return sock


class TLSSocket:
    """A TLS client connection over a connected socket, used like one:
    sendall, recv, settimeout, setsockopt, shutdown, close...

    An ssl.SSLObject on memory BIOs, guarded by a lock, with the socket I/O
    done outside it: one thread may send while another receives (an
    ssl.SSLSocket is not safe for that: both directions share one SSL
    object), and shutdown(SHUT_WR) can send close_notify and leave the
    reading side as it was.

    recv() returns b'' at the end of the stream, whether the server sent
    close_notify first (.close_notify is then True) or just closed (a TCP
    EOF, or a record cut short); a reset raises ConnectionResetError as on
    a plain socket, and a TLS alert or a broken record raises ssl.SSLError.

    handshake=False: the ClientHello is sent at once, but nothing waits for
    the answer; bytes given to sendall() before the handshake is done are
    kept, and go out when the first recv() has completed it (a client whose
    connection the server never takes)."""

    MAX_READ = 256 * 1024  # an SSLObject's read(n) allocates n bytes

    def __init__(self, sock, context, server_hostname, handshake=True):
        self.raw = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out,
                                     server_hostname=server_hostname)
        self._lock = threading.Lock()       # the SSLObject and the BIOs
        self._send_lock = threading.Lock()  # the order of what is sent
        self._recv_lock = threading.Lock()
        self._queued = None
        self._plain = bytearray()  # decrypted, not yet returned by recv
        self.close_notify = False
        self._write_shut = False
        if handshake:
            self._handshake()
        else:
            self._queued = bytearray()
            self._step()

    # -- the handshake -------------------------------------------------
    def _step(self):
        """One handshake step: True when done. Sends what it produced."""
        with self._send_lock:
            with self._lock:
                try:
                    self._obj.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                out = self._out.read()
            if out:
                self.raw.sendall(out)
        return done

    def _handshake(self):
        """Complete the handshake; False if the server closed first."""
        while not self._step():
            data = self.raw.recv(65536)
            if not data:
                return False
            with self._lock:
                self._in.write(data)
        return True

    def _finish_handshake(self):
        """For handshake=False: complete it, then send what was kept."""
        if self._queued is None:
            return True
        if not self._handshake():
            return False
        queued, self._queued = self._queued, None
        if queued:
            self.sendall(queued)
        return True

    # -- sending -------------------------------------------------------
    def sendall(self, data):
        if self._queued is not None:
            self._queued += data
            return
        view = memoryview(data).cast('B')
        with self._send_lock:
            for i in range(0, len(view), 65536):
                with self._lock:
                    self._obj.write(view[i:i + 65536])
                    out = self._out.read()
                self.raw.sendall(out)

    # -- receiving -----------------------------------------------------
    def recv(self, n=65536):
        n = max(1, min(n, self.MAX_READ))
        with self._recv_lock:
            if self._queued is not None and not self._finish_handshake():
                return b''
            while True:
                if self._plain:
                    data = bytes(self._plain[:n])
                    del self._plain[:n]
                    return data
                with self._lock:
                    data = self._read_record(n)
                    flush = self._out.pending
                if flush:
                    self._flush_nowait()
                if data is not None:
                    return data
                raw = self.raw.recv(min(max(n, 17 * 1024), self.MAX_READ))
                with self._lock:
                    if raw:
                        self._in.write(raw)
                    else:
                        self._in.write_eof()

    def _read_record(self, n):
        """Under the lock: decrypted bytes, b'' at the end, or None when
        more must be read from the socket."""
        try:
            data = self._obj.read(n)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            data = b''
        except ssl.SSLEOFError:
            return b''  # a TCP EOF without close_notify
        if not data:
            self.close_notify = True  # read() returns b'' after it
        return data

    def _flush_nowait(self):
        # What reading produced (rare: an alert, a key update's answer).
        # A sender holding the lock takes it with its own bytes.
        if self._send_lock.acquire(blocking=False):
            try:
                with self._lock:
                    out = self._out.read()
                if out:
                    self.raw.sendall(out)
            finally:
                self._send_lock.release()

    # -- closing -------------------------------------------------------
    def shutdown(self, how):
        """SHUT_WR / SHUT_RDWR send close_notify first, then shut the
        socket's sending side; reading goes on as before (SHUT_WR)."""
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self._write_shut \
                and self._queued is None:
            self._write_shut = True
            with self._recv_lock, self._send_lock:
                with self._lock:
                    # SSL_shutdown, waiting for the server's close_notify,
                    # would consume (and drop) records already received:
                    # decrypt them all first.
                    while True:
                        data = self._read_record(self.MAX_READ)
                        if not data:
                            break
                        self._plain += data
                    if data is None:  # not at the end: send close_notify
                        try:
                            self._obj.unwrap()
                        except ssl.SSLWantReadError:
                            pass
                    out = self._out.read()
                if out:
                    self.raw.sendall(out)
        self.raw.shutdown(how)

    def close(self):
        self.raw.close()

    # -- the rest is the socket's --------------------------------------
    def settimeout(self, t):
        self.raw.settimeout(t)

    def gettimeout(self):
        return self.raw.gettimeout()

    def setsockopt(self, *args):
        self.raw.setsockopt(*args)

    def getsockopt(self, *args):
        return self.raw.getsockopt(*args)

    def getsockname(self):
        return self.raw.getsockname()

    def getpeername(self):
        return self.raw.getpeername()

    def fileno(self):
        return self.raw.fileno()

    def version(self):
        return self._obj.version()

    def cipher(self):
        return self._obj.cipher()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class IncompleteResponse(Exception):
    """The peer closed (or reset) the connection before the response was complete."""

    def __init__(self, msg, response=None):
        super().__init__(msg)
        self.response = response


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []  # [(name, value)] as received (str, latin-1)
        self.body = b''
        self.chunked = False
        self.trailers = []
        self.interim = []  # 1xx responses received before this one
        self.raw_head = b''

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return self.header(name) is not None

    def tokens(self, name):
        """Comma-separated tokens of all headers `name`, lower-cased."""
        out = []
        for v in self.header_all(name):
            out += [t.strip().lower() for t in v.split(',') if t.strip()]
        return out

    def __repr__(self):
        return '<Response %s %s %r body=%d bytes%s>' % (
            self.version, self.status, self.headers, len(self.body),
            ' chunked' if self.chunked else '')


class Conn:
    """A client connection with a read buffer kept across responses (pipelining)."""

    def __init__(self, addr, timeout=TIMEOUT, rcvbuf=None, sndbuf=None,
                 source_address=None, handshake=True):
        """Over the current transport (see client_socket); over TLS the
        handshake is done here, unless handshake=False."""
        self.sock = client_socket(addr, timeout, rcvbuf, sndbuf,
                                  source_address, handshake)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        with _open_lock:
            _open.append(self)

    # -- writing -------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode('latin-1')
        self.sock.sendall(data)

    def try_send(self, data):
        """sendall that reports False instead of raising if the peer is gone."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False

    # -- reading -------------------------------------------------------
    def _fill(self, n=65536):
        if self.eof:
            return False
        try:
            data = self.sock.recv(n)
        except ConnectionResetError:
            self.reset = True
            data = b''
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_line(self):
        while True:
            i = self.buf.find(b'\n')
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                assert line.endswith(b'\r\n'), 'server sent a bare LF line: %r' % line
                return line[:-2]
            if not self._fill():
                raise IncompleteResponse('closed while reading a line (have %r)' % bytes(self.buf[:200]))

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill(max(65536, n - len(self.buf))):
                raise IncompleteResponse('closed after %d of %d bytes' % (len(self.buf), n))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_some(self, n=65536):
        if not self.buf:
            self._fill(n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _read_head(self, resp):
        line = self.read_line()
        resp.raw_head = line + b'\r\n'
        parts = line.decode('latin-1').split(' ', 2)
        assert len(parts) >= 2 and parts[0].startswith('HTTP/'), 'bad status line %r' % line
        resp.version = parts[0]
        resp.status = int(parts[1])
        resp.reason = parts[2] if len(parts) > 2 else ''
        while True:
            line = self.read_line()
            resp.raw_head += line + b'\r\n'
            if not line:
                break
            name, sep, value = line.decode('latin-1').partition(':')
            assert sep and name and name == name.strip(), 'bad header line %r' % line
            resp.headers.append((name, value.strip(' \t')))

    def read_response(self, method='GET', interim_ok=True):
        """Read one full response. 1xx responses are collected in .interim.

        Raises IncompleteResponse (with .response holding what was read) when
        the connection ends early."""
        interim = []
        while True:
            resp = Response()
            self._read_head(resp)
            if 100 <= resp.status < 200:
                assert interim_ok, 'unexpected interim response %r' % resp
                interim.append(resp)
                continue
            break
        resp.interim = interim
        try:
            if method == 'HEAD' or resp.status in (204, 304):
                return resp
            te = resp.tokens('transfer-encoding')
            if te:
                assert te[-1] == 'chunked', resp
                resp.chunked = True
                self._read_chunked(resp)
            elif resp.has('content-length'):
                n = int(resp.header('content-length'))
                while len(self.buf) < n:
                    if not self._fill(max(65536, n - len(self.buf))):
                        resp.body = bytes(self.buf)
                        self.buf.clear()
                        raise IncompleteResponse('closed after %d of %d body bytes' % (len(resp.body), n), resp)
                resp.body = bytes(self.buf[:n])
                del self.buf[:n]
            else:
                resp.body = self.read_until_close()
        except IncompleteResponse as e:
            e.response = resp
            raise
        return resp

    def _read_chunked(self, resp):
        body = bytearray()
        try:
            while True:
                line = self.read_line()
                size = int(line.split(b';')[0], 16)
                if size == 0:
                    while True:
                        t = self.read_line()
                        if not t:
                            break
                        resp.trailers.append(t)
                    break
                body += self.read_exact(size)
                assert self.read_exact(2) == b'\r\n', 'chunk not followed by CRLF'
        finally:
            resp.body = bytes(body)

    def read_until_close(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        while self._fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def expect_close(self, timeout=2.0):
        """Assert that the server closes the connection within `timeout`.

        Returns whatever bytes arrived before the close."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('connection still open after %.1fs (got %r)' % (timeout, bytes(self.buf[:200])))
            self.sock.settimeout(left)
            try:
                self._fill()
            except socket.timeout:
                raise AssertionError('connection still open after %.1fs (got %r)' % (timeout, bytes(self.buf[:200])))
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def is_open(self, wait=0.2):
        """True if nothing (no data, no EOF) arrives within `wait` seconds."""
        if self.buf or self.eof:
            return False
        self.sock.settimeout(wait)
        try:
            self._fill()
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)

    def rst_close(self):
        """Close with a RST (SO_LINGER 0), like a client that vanished."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def close_all():
    with _open_lock:
        conns = list(_open)
        _open.clear()
    for c in conns:
        c.close()


# -- building requests --------------------------------------------------

def build(method='GET', path='/', headers=(), body=b'', version='HTTP/1.1', host='x', auto_length=True):
    """Build raw request bytes. Adds Host (if host) and Content-Length (if body)."""
    if isinstance(body, str):
        body = body.encode('latin-1')
    lines = ['%s %s %s' % (method, path, version)]
    names = {k.lower() for k, _ in headers}
    if host is not None and 'host' not in names:
        lines.append('Host: %s' % host)
    for k, v in headers:
        lines.append('%s: %s' % (k, v))
    if auto_length and body and 'content-length' not in names and 'transfer-encoding' not in names:
        lines.append('Content-Length: %d' % len(body))
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + body


def chunked(body, size=7, ext=b'', trailers=b''):
    out = bytearray()
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b'%x%s\r\n' % (len(part), ext) + part + b'\r\n'
    out += b'0\r\n' + trailers + b'\r\n'
    return bytes(out)


def request(addr, method='GET', path='/', headers=(), body=b'', version='HTTP/1.1', timeout=TIMEOUT):
    """One request on a fresh connection; returns the Response."""
    with Conn(addr, timeout=timeout) as c:
        c.send(build(method, path, headers, body, version))
        return c.read_response(method)


def recv_all(sock):
    """Every byte the peer sends on sock until it closes its side."""
    data = b''
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def get_until_close(sock, path='/'):
    """GET with Connection: close on a connected socket; the bytes that
    come back before the server closes."""
    sock.sendall(build('GET', path, [('Connection', 'close')]))
    return recv_all(sock)


def wait_for(pred, timeout=5.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


# -- applications --------------------------------------------------------

SIMPLE_KEYS = (str, bytes, bool, int, float, tuple, type(None))


class Recorder:
    """WSGI app wrapper that counts calls and records a plain copy of each environ
    (no references to wsgi.input etc., so nothing keeps the connection alive)."""

    def __init__(self, app=None):
        self.app = app or hello_app
        self.calls = 0
        self.environs = []
        self.lock = threading.Lock()

    @property
    def paths(self):
        return [e.get('PATH_INFO') for e in self.environs]

    def __call__(self, environ, start_response):
        with self.lock:
            self.calls += 1
            self.environs.append({k: v for k, v in environ.items() if isinstance(v, SIMPLE_KEYS)})
        return self.app(environ, start_response)


def hello_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def path_app(environ, start_response):
    body = environ['PATH_INFO'].encode('latin-1')
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [body]


def echo_app(environ, start_response):
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


class CloseCounter:
    """Iterable response with a close() counter; yields `n` chunks of `chunk`."""

    def __init__(self, chunk=b'x' * 65536, n=1, fail_at=None):
        self.chunk = chunk
        self.n = n
        self.fail_at = fail_at
        self.closed = 0
        self.yielded = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.fail_at is not None and self.yielded == self.fail_at:
            raise RuntimeError('failure inside the response iterable')
        if self.yielded >= self.n:
            raise StopIteration
        self.yielded += 1
        return self.chunk

    def close(self):
        self.closed += 1


def rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise RuntimeError('no VmRSS')
