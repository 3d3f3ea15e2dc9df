"""Helpers for the TLS tests: certificates made at test time with trustme,
clients over real sockets (Python's ssl, openssl s_client, curl), and the
application the TLS tests serve.

Certificates (make_certs, the `certs` fixture): CA "A" (RSA, so that the
TLS 1.2 ECDHE-RSA suites can be offered) issues the server's certificate
(localhost and 127.0.0.1) and a client certificate; CA "B" issues a second
server certificate (for the reload tests) and a client certificate that A
does not vouch for. The server's key is also written encrypted.
"""

import functools
import hashlib
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import threading
import warnings
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import support

HOST = '127.0.0.1'
SERVER_NAME = 'localhost'  # what clients send as SNI and check
CURL = shutil.which('curl')
OPENSSL = shutil.which('openssl')
PASSWORD = 'correct horse, battery staple'
BIG = 64 * 1024 * 1024  # the large bodies, up and down
FILE_SIZE = 6 * 1024 * 1024 + 12345  # the wsgi.file_wrapper file
TIMEOUT = support.TIMEOUT
MiB = 1024 * 1024


# -- certificates -------------------------------------------------------------

class Certs:
    """Paths (str) of the PEM files, and the certificates as x509 objects."""


def _write(path, data):
    Path(path).write_bytes(data)
    return str(path)


def _cert(pem_bytes):
    return x509.load_pem_x509_certificate(pem_bytes)


def make_certs(d):
    d = Path(d)
    c = Certs()
    ca = trustme.CA(key_type=trustme.KeyType.RSA,
                    organization_name='lichen tests A')
    other = trustme.CA(organization_name='lichen tests B')
    c.ca, c.other_ca = ca, other
    c.ca_pem = _write(d / 'ca-a.pem', ca.cert_pem.bytes())
    c.other_ca_pem = _write(d / 'ca-b.pem', other.cert_pem.bytes())
    c.both_ca_pem = _write(d / 'ca-ab.pem',
                           ca.cert_pem.bytes() + other.cert_pem.bytes())

    server = ca.issue_cert(SERVER_NAME, HOST, key_type=trustme.KeyType.RSA)
    c.server_cert = _write(d / 'server.crt', b''.join(
        p.bytes() for p in server.cert_chain_pems))
    c.server_key = _write(d / 'server.key', server.private_key_pem.bytes())
    c.server_pem = _write(d / 'server.pem',
                          server.private_key_and_cert_chain_pem.bytes())
    c.server_x509 = _cert(server.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(
        server.private_key_pem.bytes(), password=None)
    c.server_key_encrypted = _write(
        d / 'server-encrypted.key', key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode())))
    c.password = PASSWORD

    server_b = other.issue_cert(SERVER_NAME, HOST)
    c.server_b_cert = _write(d / 'server-b.crt', b''.join(
        p.bytes() for p in server_b.cert_chain_pems))
    c.server_b_key = _write(d / 'server-b.key',
                            server_b.private_key_pem.bytes())
    c.server_b_x509 = _cert(server_b.cert_chain_pems[0].bytes())

    client = ca.issue_cert('client@example.org',
                           common_name='lichen test client',
                           organization_name='Lichen, tests')
    c.client_pem = _write(d / 'client.pem',
                          client.private_key_and_cert_chain_pem.bytes())
    c.client_x509 = _cert(client.cert_chain_pems[0].bytes())
    c.ca_x509 = _cert(ca.cert_pem.bytes())

    stranger = other.issue_cert('stranger@example.org',
                                common_name='a stranger')
    c.other_client_pem = _write(
        d / 'stranger.pem', stranger.private_key_and_cert_chain_pem.bytes())
    return c


@pytest.fixture(scope='session')
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp('tls-certs'))


# -- data ---------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def big_data():
    """BIG random bytes (the same in every run of a session)."""
    return random.Random(20240611).randbytes(BIG)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope='session')
def datafile(tmp_path_factory):
    """A FILE_SIZE file for wsgi.file_wrapper, and its sha256."""
    path = tmp_path_factory.mktemp('tls-data') / 'file.bin'
    data = random.Random(7).randbytes(FILE_SIZE)
    path.write_bytes(data)
    return str(path), sha256(data)


@pytest.fixture(scope='session')
def bigfile(tmp_path_factory):
    """big_data() in a file, for the command-line clients to send."""
    path = tmp_path_factory.mktemp('tls-big') / 'big.bin'
    path.write_bytes(big_data())
    return str(path)


def stream_pieces(n):
    """What /stream?n yields: n pieces of varied sizes."""
    return [bytes([65 + i % 26]) * (i * 997 % 5000 + 1) for i in range(n)]


# -- the application ----------------------------------------------------------

def make_app(datafile=None):
    """One WSGI app for the TLS tests, by path:

    /env         the environ's str values, as JSON
    /upload      reads wsgi.input in blocks; JSON: length, sha256, and the
                 Expect, Transfer-Encoding and Content-Length headers
    /echo        the request body
    /down?N      the first N bytes of big_data(), with a Content-Length,
                 in 1 MiB pieces from a generator
    /stream?N    stream_pieces(N) from a generator, no Content-Length
    /file        datafile through wsgi.file_wrapper
    anything else: the path
    """

    def app(environ, start_response):
        path = environ['PATH_INFO']
        qs = environ.get('QUERY_STRING', '')
        if path == '/env':
            body = json.dumps({k: v for k, v in environ.items()
                               if isinstance(v, str)}).encode()
            start_response('200 OK', [('Content-Type', 'application/json')])
            return [body]
        if path == '/upload':
            h = hashlib.sha256()
            n = 0
            inp = environ['wsgi.input']
            while True:
                block = inp.read(MiB)
                if not block:
                    break
                h.update(block)
                n += len(block)
            body = json.dumps({
                'length': n, 'sha256': h.hexdigest(),
                'expect': environ.get('HTTP_EXPECT'),
                'transfer_encoding': environ.get('HTTP_TRANSFER_ENCODING'),
                'content_length': environ.get('CONTENT_LENGTH'),
            }).encode()
            start_response('200 OK', [('Content-Type', 'application/json')])
            return [body]
        if path == '/echo':
            body = environ['wsgi.input'].read()
            start_response('200 OK', [
                ('Content-Type', 'application/octet-stream')])
            return [body]
        if path == '/down':
            n = int(qs)
            data = big_data()

            def pieces():
                for i in range(0, n, MiB):
                    yield data[i:min(n, i + MiB)]

            start_response('200 OK', [
                ('Content-Type', 'application/octet-stream'),
                ('Content-Length', str(n))])
            return pieces()
        if path == '/stream':
            def pieces():
                yield from stream_pieces(int(qs))

            start_response('200 OK', [('Content-Type', 'text/plain')])
            return pieces()
        if path == '/file':
            start_response('200 OK', [
                ('Content-Type', 'application/octet-stream')])
            return environ['wsgi.file_wrapper'](open(datafile, 'rb'), 65536)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [path.encode('latin-1')]

    return app


# -- Python ssl clients -------------------------------------------------------

def client_context(cafile, *, certfile=None, min_version=None,
                   max_version=None, ciphers=None, alpn=None):
    """A client context that verifies the server against cafile."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if certfile:
        ctx.load_cert_chain(certfile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def legacy_context(cafile, version):
    """A client that speaks only TLS `version` (1.0 or 1.1), with what it
    takes for this OpenSSL to offer it."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        ctx = client_context(cafile, min_version=version,
                             max_version=version,
                             ciphers='DEFAULT:@SECLEVEL=0')
    return ctx


class TLSConn(support.Conn):
    """support.Conn over TLS: the handshake is done in the constructor."""

    def __init__(self, addr, ctx, timeout=TIMEOUT,
                 server_hostname=SERVER_NAME):
        raw = socket.create_connection((addr[0], addr[1]), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        with support._open_lock:
            support._open.append(self)

    def _fill(self, n=65536):
        # An SSLSocket's recv(n) allocates n bytes whatever it returns.
        return super()._fill(min(n, MiB))

    @property
    def version(self):
        return self.sock.version()

    @property
    def cipher(self):
        return self.sock.cipher()[0]


def https_get(addr, ctx, path='/', timeout=TIMEOUT):
    """One GET on a TLS connection of its own; the support.Response."""
    with TLSConn(addr, ctx, timeout=timeout) as c:
        c.send(support.build('GET', path))
        return c.read_response()


def get_env(addr, ctx, timeout=TIMEOUT):
    resp = https_get(addr, ctx, '/env', timeout)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def handshake_fails(addr, ctx, path='/', timeout=TIMEOUT):
    """Try a handshake then a GET; return what went wrong (an exception),
    or raise AssertionError with what the server answered."""
    raw = socket.create_connection((addr[0], addr[1]), timeout=timeout)
    try:
        try:
            s = ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
        except (ssl.SSLError, OSError) as e:
            return e
        # TLS 1.3: the server's verdict on the client's certificate comes
        # after the client's side of the handshake is done.
        try:
            s.sendall(support.build('GET', path))
            data = s.recv(65536)
        except (ssl.SSLError, OSError) as e:
            return e
        assert not data, 'the server answered: %r' % data[:300]
        return EOFError('closed without an alert')
    finally:
        raw.close()


def client_hello(ctx=None):
    """The bytes of a real ClientHello (and nothing else)."""
    ctx = ctx or ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=SERVER_NAME)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class ControlServer:
    """A Python ssl server in a thread, to show that a client setting the
    tests use does succeed where the server allows it: it completes one
    handshake per connection and records the version."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.sock.settimeout(TIMEOUT)
        self.address = self.sock.getsockname()
        self.versions = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(TIMEOUT)
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    self.versions.append(s.version())
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(TIMEOUT)


# -- command-line clients -----------------------------------------------------

# The environment of the clients and peers this module runs (curl, openssl):
# without the sanitizer the ASan re-run preloads into the test process (an
# uninstrumented curl under the preloaded libasan stalls on large uploads).
_SANITIZER_VARS = ('LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS',
                   'LSAN_OPTIONS', 'PYTHONMALLOC')


def tool_env():
    return {k: v for k, v in os.environ.items() if k not in _SANITIZER_VARS}


def s_client(port, *args, input=b'', cafile=None, timeout=20):
    """openssl s_client against 127.0.0.1:port (SNI localhost), verifying
    the server; the CompletedProcess (stdout bytes, stderr text)."""
    assert OPENSSL, 'openssl is not installed'
    cmd = [OPENSSL, 's_client', '-connect', '%s:%d' % (HOST, port),
           '-servername', SERVER_NAME]
    if cafile:
        cmd += ['-CAfile', cafile, '-verify_return_error']
    cmd += list(args)
    r = subprocess.run(cmd, input=input, capture_output=True,
                       timeout=timeout, env=tool_env())
    r.stderr = r.stderr.decode('utf-8', 'replace')
    return r


def curl(cafile, *args, timeout=60):
    """curl --cacert cafile args; the CompletedProcess (bytes)."""
    assert CURL, 'curl is not installed (make test-tools installs it)'
    return subprocess.run([CURL, '-sS', '--cacert', cafile] + list(args),
                          capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=tool_env())


def url(srv_or_port, path='/'):
    port = srv_or_port if isinstance(srv_or_port, int) \
        else srv_or_port.address[1]
    return 'https://%s:%d%s' % (HOST, port, path)


class OpensslServer:
    """openssl s_server -www on 127.0.0.1 (a port of its own), with the
    server's certificate and the given options: the control for checks
    that need a server that does allow something lichen refuses."""

    def __init__(self, certs, *args):
        assert OPENSSL, 'openssl is not installed'
        self.proc = subprocess.Popen(
            [OPENSSL, 's_server', '-accept', '%s:0' % HOST,
             '-cert', certs.server_cert, '-key', certs.server_key, '-www']
            + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=tool_env())
        self.port = None
        timer = threading.Timer(10, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:
                if line.startswith(b'ACCEPT '):
                    self.port = int(line.split()[1].rsplit(b':', 1)[1])
                    break
        finally:
            timer.cancel()
        assert self.port, 'openssl s_server did not start'

    def close(self):
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BytesConn(support.Conn):
    """support.Conn's response parser over bytes already received (what a
    command-line client wrote out)."""

    def __init__(self, data):
        self.buf = bytearray(data)
        self.eof = True
        self.reset = False

    def _fill(self, n=65536):
        return False

    def responses(self, methods=()):
        out = []
        methods = list(methods)
        while self.buf:
            out.append(self.read_response(
                methods.pop(0) if methods else 'GET'))
        return out
