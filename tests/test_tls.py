"""TLS, end to end: real clients (Python's ssl, requests, httpx, curl,
openssl s_client) over real sockets against a real lichen server, in
process (the `serve` fixture) and from the command line (`cli_server`).
Certificates are made at test time with trustme (tls_support.py)."""

import hashlib
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings

import httpx
import pytest
import requests
from cryptography import x509

import lichen
import support
from conftest import DRIVERS
from helpers_cli import PYTHON, REPO, child_env, run_lichen
from tls_support import (BIG, CURL, FILE_SIZE, HOST, OPENSSL, MiB,
                         BytesConn, ControlServer, OpensslServer, TLSConn,
                         big_data, bigfile, certs, client_context,
                         client_hello, curl, datafile, get_env,
                         handshake_fails, https_get, legacy_context,
                         make_app, s_client, sha256, stream_pieces,
                         tool_env, url)

# The fixtures tls_support defines, used here by name.
__all__ = ['bigfile', 'certs', 'datafile']

HELLO = b'Hello, world!\n'  # examples.hello, the command line's app
TLS12 = ssl.TLSVersion.TLSv1_2
# What the server may pick in TLS 1.2: ECDHE with AES-GCM or ChaCha20.
TLS12_SUITES = re.compile(
    r'^ECDHE-(RSA|ECDSA)-(AES128-GCM-SHA256|AES256-GCM-SHA384|'
    r'CHACHA20-POLY1305)$')


@pytest.fixture
def tls_serve(serve, certs, datafile):
    """srv = tls_serve(app=None, **options): serve() with the server's
    certificate and key (certs.server_cert, certs.server_key) unless
    certfile is given; the app is tls_support.make_app's."""

    def start(app=None, **options):
        if 'certfile' not in options:
            options['certfile'] = certs.server_cert
            options['keyfile'] = certs.server_key
        return serve(app or make_app(datafile[0]), **options)

    return start


@pytest.fixture
def ctx(certs):
    """A client context that trusts CA A (the server's)."""
    return client_context(certs.ca_pem)


def recorder(datafile):
    return support.Recorder(make_app(datafile[0]))


def json_of(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)


# -- Python's ssl ------------------------------------------------------------

def test_python_ssl_get(tls_serve, ctx):
    srv = tls_serve()
    port = srv.address[1]
    assert srv.urls == ['https://127.0.0.1:%d' % port]
    with TLSConn(srv.address, ctx) as c:
        assert c.version == 'TLSv1.3'
        c.send(support.build('GET', '/hello'))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b'/hello'
        assert lichen.live_counts()['tls'] >= 1


def test_key_in_certfile(tls_serve, certs, ctx):
    """certfile alone, the key in it too."""
    srv = tls_serve(certfile=certs.server_pem)
    assert https_get(srv.address, ctx, '/k').body == b'/k'


def test_python_ssl_keepalive(tls_serve, ctx):
    srv = tls_serve()
    with TLSConn(srv.address, ctx) as c:
        for i in range(5):
            c.send(support.build('GET', '/env'))
            env = json_of(c.read_response())
            assert env['REMOTE_PORT'] == str(c.sock.getsockname()[1])
            assert env['wsgi.url_scheme'] == 'https'
        assert c.is_open()


def test_python_ssl_pipelining(tls_serve, ctx):
    srv = tls_serve()
    body = os.urandom(100000)
    reqs = [support.build('GET', '/first'),
            support.build('POST', '/echo', body=body),
            support.build('GET', '/stream?40'),
            support.build('HEAD', '/head'),
            support.build('GET', '/last')]
    with TLSConn(srv.address, ctx) as c:
        c.send(b''.join(reqs))  # all at once, then the answers in order
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response('HEAD')
        r5 = c.read_response()
        assert (r1.status, r1.body) == (200, b'/first')
        assert (r2.status, r2.body) == (200, body)
        assert r3.chunked and r3.body == b''.join(stream_pieces(40))
        assert r4.status == 200 and r4.body == b''
        assert (r5.status, r5.body) == (200, b'/last')
        assert c.is_open()


def test_python_ssl_chunked_request_and_streamed_response(tls_serve, ctx):
    srv = tls_serve()
    data = os.urandom(300000)
    with TLSConn(srv.address, ctx) as c:
        c.send(support.build('POST', '/upload',
                             [('Transfer-Encoding', 'chunked')],
                             support.chunked(data, size=4000)))
        got = json_of(c.read_response())
        assert got['transfer_encoding'] == 'chunked'
        assert (got['length'], got['sha256']) == (len(data), sha256(data))
        c.send(support.build('GET', '/stream?300'))
        resp = c.read_response()
        assert resp.status == 200 and resp.chunked
        assert resp.body == b''.join(stream_pieces(300))


def test_python_ssl_file_wrapper(tls_serve, ctx, datafile):
    srv = tls_serve()
    with TLSConn(srv.address, ctx) as c:
        for _ in range(2):  # and the connection goes on after it
            c.send(support.build('GET', '/file'))
            resp = c.read_response()
            assert resp.status == 200
            assert len(resp.body) == FILE_SIZE
            assert sha256(resp.body) == datafile[1]
        c.send(support.build('GET', '/after'))
        assert c.read_response().body == b'/after'


def test_python_ssl_expect_100_continue(tls_serve, ctx):
    srv = tls_serve()
    data = os.urandom(2 * MiB)
    with TLSConn(srv.address, ctx) as c:
        c.send(support.build('POST', '/upload', [
            ('Content-Length', str(len(data))),
            ('Expect', '100-continue')]))
        interim = support.Response()
        c._read_head(interim)  # before any of the body is sent
        assert interim.status == 100, interim
        c.send(data)
        got = json_of(c.read_response(interim_ok=False))
        assert got['expect'] == '100-continue'
        assert (got['length'], got['sha256']) == (len(data), sha256(data))


def test_close_notify_when_the_server_closes(tls_serve, ctx):
    """A response delimited by the close (HTTP/1.0, no length), and one
    with Connection: close: the server ends with a close_notify, so a
    client that refuses a truncated stream gets it all."""
    srv = tls_serve()
    raw = socket.create_connection(srv.address, timeout=5)
    with ctx.wrap_socket(raw, server_hostname='localhost',
                         suppress_ragged_eofs=False) as s:
        s.sendall(b'GET /stream?60 HTTP/1.0\r\nHost: x\r\n\r\n')
        data = support.recv_all(s)  # SSLEOFError if no close_notify
    head, _, body = data.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.')
    assert body == b''.join(stream_pieces(60))
    raw = socket.create_connection(srv.address, timeout=5)
    with ctx.wrap_socket(raw, server_hostname='localhost',
                         suppress_ragged_eofs=False) as s:
        data = support.get_until_close(s, '/closing')
    assert data.startswith(b'HTTP/1.1 200') and data.endswith(b'/closing')


@pytest.mark.parametrize('driver', DRIVERS)
def test_exchange_under_every_driver(tls_serve, ctx, datafile, driver):
    """The server driven by serve_forever, a selectors loop (also in a
    greenlet) and gevent's hub: one connection with a bit of everything."""
    srv = tls_serve()
    data = os.urandom(3 * MiB + 7)
    with TLSConn(srv.address, ctx) as c:
        c.send(support.build('GET', '/env'))
        env = json_of(c.read_response())
        assert env['HTTPS'] == 'on' and env['SSL_PROTOCOL'] == 'TLSv1.3'
        c.send(support.build('POST', '/upload',
                             [('Transfer-Encoding', 'chunked')],
                             support.chunked(data, size=65536)))
        assert json_of(c.read_response())['sha256'] == sha256(data)
        c.send(support.build('POST', '/upload', [
            ('Content-Length', str(len(data))),
            ('Expect', '100-continue')]))
        interim = support.Response()
        c._read_head(interim)
        assert interim.status == 100
        c.send(data)
        assert json_of(c.read_response())['sha256'] == sha256(data)
        c.send(support.build('GET', '/stream?100') +
               support.build('GET', '/file') +
               support.build('GET', '/down?%d' % len(data)))
        assert c.read_response().body == b''.join(stream_pieces(100))
        assert sha256(c.read_response().body) == datafile[1]
        assert c.read_response().body == big_data()[:len(data)]


# -- large bodies, every client ---------------------------------------------

def _big_up(client, srv, certs, bigfile):
    data = big_data()
    u = url(srv, '/upload')
    if client == 'python-ssl':
        with TLSConn(srv.address, client_context(certs.ca_pem),
                     timeout=60) as c:
            c.send(support.build('POST', '/upload', [
                ('Content-Length', str(len(data)))]))
            c.send(data)
            return json_of(c.read_response())
    if client == 'requests':
        r = requests.post(u, data=data, verify=certs.ca_pem, timeout=60)
        assert r.status_code == 200
        return r.json()
    if client == 'httpx':
        with httpx.Client(verify=client_context(certs.ca_pem),
                          timeout=60) as h:
            r = h.post(u, content=data)
            assert r.status_code == 200
            return r.json()
    if client == 'curl':
        r = curl(certs.ca_pem, '--data-binary', '@' + bigfile,
                 '-H', 'Content-Type: application/octet-stream', u)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    if client == 's_client':
        head = (b'POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
                b'Content-Length: %d\r\n\r\n' % len(data))
        r = s_client(srv.address[1], '-quiet', input=head + data,
                     cafile=certs.ca_pem, timeout=60)
        (resp,) = BytesConn(r.stdout).responses()
        return json_of(resp)
    raise ValueError(client)


def _big_down(client, srv, certs, tmp_path):
    u = url(srv, '/down?%d' % BIG)
    if client == 'python-ssl':
        with TLSConn(srv.address, client_context(certs.ca_pem),
                     timeout=60) as c:
            c.send(support.build('GET', '/down?%d' % BIG))
            resp = c.read_response()
            assert resp.status == 200
            return hashlib.sha256(resp.body).hexdigest(), len(resp.body)
    h = hashlib.sha256()
    n = 0
    if client == 'requests':
        with requests.get(u, verify=certs.ca_pem, stream=True,
                          timeout=60) as r:
            assert r.status_code == 200
            for block in r.iter_content(MiB):
                h.update(block)
                n += len(block)
        return h.hexdigest(), n
    if client == 'httpx':
        with httpx.Client(verify=client_context(certs.ca_pem),
                          timeout=60) as hc:
            with hc.stream('GET', u) as r:
                assert r.status_code == 200
                for block in r.iter_bytes():
                    h.update(block)
                    n += len(block)
        return h.hexdigest(), n
    if client == 'curl':
        out = tmp_path / 'down.bin'
        r = curl(certs.ca_pem, '-o', str(out), u)
        assert r.returncode == 0, r.stderr
        data = out.read_bytes()
        return sha256(data), len(data)
    if client == 's_client':
        r = s_client(srv.address[1], '-quiet', input=(
            b'GET /down?%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
            % BIG), cafile=certs.ca_pem, timeout=60)
        (resp,) = BytesConn(r.stdout).responses()
        assert resp.status == 200
        return sha256(resp.body), len(resp.body)
    raise ValueError(client)


CLIENTS = ['python-ssl', 'requests', 'httpx', 'curl', 's_client']


@pytest.mark.parametrize('client', CLIENTS)
def test_64mib_up(tls_serve, certs, bigfile, client):
    srv = tls_serve()
    got = _big_up(client, srv, certs, bigfile)
    assert got['length'] == BIG
    assert got['sha256'] == sha256(big_data())


@pytest.mark.parametrize('client', CLIENTS)
def test_64mib_down(tls_serve, certs, tmp_path, client):
    srv = tls_serve()
    digest, n = _big_down(client, srv, certs, tmp_path)
    assert n == BIG
    assert digest == sha256(big_data())


# -- requests and httpx -------------------------------------------------------

def _chunks(data, size):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_requests(tls_serve, certs, datafile):
    srv = tls_serve()
    data = os.urandom(MiB + 3)
    # verify= on each call: a Session's own is overridden by the
    # environment's REQUESTS_CA_BUNDLE, where one is set.
    kw = {'verify': certs.ca_pem, 'timeout': 10}
    with requests.Session() as s:
        r = s.get(url(srv, '/hello'), **kw)
        assert (r.status_code, r.content) == (200, b'/hello')
        # keep-alive: one connection for all of these
        ports = {s.get(url(srv, '/env'), **kw).json()['REMOTE_PORT']
                 for _ in range(3)}
        assert len(ports) == 1
        # a chunked request body (a generator)
        got = s.post(url(srv, '/upload'), data=_chunks(data, 10000),
                     **kw).json()
        assert got['transfer_encoding'] == 'chunked'
        assert got['sha256'] == sha256(data)
        # a client that says Expect: 100-continue and sends at once
        got = s.post(url(srv, '/upload'), data=data,
                     headers={'Expect': '100-continue'}, **kw).json()
        assert got['sha256'] == sha256(data)
        # a streamed (chunked) response from a generator
        with s.get(url(srv, '/stream?200'), stream=True, **kw) as r:
            assert r.headers['Transfer-Encoding'] == 'chunked'
            assert b''.join(r.iter_content(None)) == \
                b''.join(stream_pieces(200))
        # wsgi.file_wrapper
        r = s.get(url(srv, '/file'), **kw)
        assert sha256(r.content) == datafile[1]
        ports.add(s.get(url(srv, '/env'), **kw).json()['REMOTE_PORT'])
        assert len(ports) == 1


def test_httpx(tls_serve, certs, datafile):
    srv = tls_serve()
    data = os.urandom(MiB + 5)
    with httpx.Client(verify=client_context(certs.ca_pem),
                      timeout=10) as h:
        r = h.get(url(srv, '/hello'))
        assert (r.status_code, r.content) == (200, b'/hello')
        assert r.http_version == 'HTTP/1.1'
        ports = {h.get(url(srv, '/env')).json()['REMOTE_PORT']
                 for _ in range(3)}
        assert len(ports) == 1
        got = h.post(url(srv, '/upload'),
                     content=_chunks(data, 10000)).json()
        assert got['transfer_encoding'] == 'chunked'
        assert got['sha256'] == sha256(data)
        with h.stream('GET', url(srv, '/stream?200')) as r:
            assert r.headers['Transfer-Encoding'] == 'chunked'
            assert b''.join(r.iter_bytes()) == b''.join(stream_pieces(200))
        r = h.get(url(srv, '/file'))
        assert sha256(r.content) == datafile[1]
        ports.add(h.get(url(srv, '/env')).json()['REMOTE_PORT'])
        assert len(ports) == 1


# -- curl ---------------------------------------------------------------------

def test_curl_get(tls_serve, certs):
    srv = tls_serve()
    r = curl(certs.ca_pem, '-w', '\n%{http_code} %{http_version}',
             url(srv, '/hello'))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b'/hello\n200 1.1'


def test_curl_keepalive(tls_serve, certs):
    """Three URLs in one command: one connection, reused twice."""
    srv = tls_serve()
    r = curl(certs.ca_pem, '-w', '%{num_connects} %{http_code}\n',
             '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null',
             url(srv, '/a'), url(srv, '/b'), url(srv, '/c'))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split('\n') == ['1 200', '0 200', '0 200', '']


def test_curl_chunked_request_and_streamed_response(tls_serve, certs,
                                                    datafile, tmp_path):
    srv = tls_serve()
    r = curl(certs.ca_pem, '-H', 'Transfer-Encoding: chunked',
             '-H', 'Content-Type: application/octet-stream',
             '--data-binary', '@' + datafile[0], url(srv, '/upload'))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got['transfer_encoding'] == 'chunked'
    assert (got['length'], got['sha256']) == (FILE_SIZE, datafile[1])
    heads = tmp_path / 'heads'
    r = curl(certs.ca_pem, '-D', str(heads), url(srv, '/stream?500'))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b''.join(stream_pieces(500))
    assert re.search(r'(?im)^transfer-encoding: chunked\r?$',
                     heads.read_text())


def test_curl_file_wrapper(tls_serve, certs, datafile, tmp_path):
    srv = tls_serve()
    out = tmp_path / 'file.bin'
    r = curl(certs.ca_pem, '-o', str(out), url(srv, '/file'))
    assert r.returncode == 0, r.stderr
    assert sha256(out.read_bytes()) == datafile[1]


def test_curl_expect_100_continue(tls_serve, certs, datafile):
    srv = tls_serve()
    r = curl(certs.ca_pem, '-v', '-H', 'Expect: 100-continue',
             '--data-binary', '@' + datafile[0], url(srv, '/upload'))
    assert r.returncode == 0, r.stderr
    assert b'< HTTP/1.1 100 Continue' in r.stderr
    got = json.loads(r.stdout)
    assert got['expect'] == '100-continue'
    assert got['sha256'] == datafile[1]


def test_curl_plain_http_to_the_tls_port(tls_serve):
    srv = tls_serve()
    r = subprocess.run([CURL, '-sS', '-w', '\n%{http_code}',
                        'http://127.0.0.1:%d/' % srv.address[1]],
                       capture_output=True, timeout=10, env=tool_env())
    assert r.returncode == 0, r.stderr
    body, _, status = r.stdout.rpartition(b'\n')
    assert status == b'400'
    assert b'https' in body.lower()


# -- openssl s_client ---------------------------------------------------------

def test_s_client_get(tls_serve, certs):
    srv = tls_serve()
    r = s_client(srv.address[1], '-quiet', cafile=certs.ca_pem, input=(
        b'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
    assert r.returncode == 0, r.stderr
    (resp,) = BytesConn(r.stdout).responses()
    assert (resp.status, resp.body) == (200, b'/hello')


def test_s_client_keepalive_pipelined(tls_serve, certs, datafile):
    srv = tls_serve()
    data = os.urandom(50000)
    reqs = (support.build('GET', '/one') +
            support.build('POST', '/upload',
                          [('Transfer-Encoding', 'chunked')],
                          support.chunked(data, 999)) +
            support.build('GET', '/stream?77') +
            support.build('GET', '/file') +
            support.build('GET', '/last', [('Connection', 'close')]))
    r = s_client(srv.address[1], '-quiet', cafile=certs.ca_pem, input=reqs)
    assert r.returncode == 0, r.stderr
    resps = BytesConn(r.stdout).responses()
    assert [x.status for x in resps] == [200] * 5
    assert resps[0].body == b'/one'
    got = json.loads(resps[1].body)
    assert got['sha256'] == sha256(data)
    assert got['transfer_encoding'] == 'chunked'
    assert resps[2].chunked
    assert resps[2].body == b''.join(stream_pieces(77))
    assert sha256(resps[3].body) == datafile[1]
    assert resps[4].body == b'/last'


# -- the environ --------------------------------------------------------------

def test_environ_tls13(tls_serve, ctx):
    srv = tls_serve()
    with TLSConn(srv.address, ctx) as c:
        for _ in range(2):  # on every request of the connection
            c.send(support.build('GET', '/env'))
            env = json_of(c.read_response())
            assert env['wsgi.url_scheme'] == 'https'
            assert env['HTTPS'] == 'on'
            assert env['SSL_PROTOCOL'] == 'TLSv1.3' == c.version
            assert env['SSL_CIPHER'] == c.cipher
            assert env['SSL_CLIENT_VERIFY'] == 'NONE'
            for key in ('SSL_CLIENT_S_DN', 'SSL_CLIENT_I_DN',
                        'SSL_CLIENT_CERT'):
                assert key not in env


def test_environ_tls12(tls_serve, certs):
    srv = tls_serve()
    with TLSConn(srv.address,
                 client_context(certs.ca_pem, max_version=TLS12)) as c:
        c.send(support.build('GET', '/env'))
        env = json_of(c.read_response())
        assert env['SSL_PROTOCOL'] == 'TLSv1.2' == c.version
        assert env['SSL_CIPHER'] == c.cipher
        assert TLS12_SUITES.match(env['SSL_CIPHER']), env['SSL_CIPHER']
        assert env['SSL_CLIENT_VERIFY'] == 'NONE'
        assert env['wsgi.url_scheme'] == 'https' and env['HTTPS'] == 'on'


def _check_client_cert_environ(env, certs):
    assert env['SSL_CLIENT_VERIFY'] == 'SUCCESS'
    assert env['SSL_CLIENT_S_DN'] == certs.client_x509.subject.rfc4514_string()
    assert env['SSL_CLIENT_I_DN'] == certs.ca_x509.subject.rfc4514_string()
    assert env['SSL_CLIENT_I_DN'] == \
        certs.client_x509.issuer.rfc4514_string()
    pem = env['SSL_CLIENT_CERT']
    assert pem.startswith('-----BEGIN CERTIFICATE-----')
    assert x509.load_pem_x509_certificate(pem.encode()) == certs.client_x509


@pytest.mark.parametrize('version, cert_reqs', [
    (None, 'required'), (TLS12, 'required'), (None, 2),
    (TLS12, ssl.CERT_REQUIRED)])
def test_client_certificate_required(tls_serve, certs, version, cert_reqs):
    srv = tls_serve(cert_reqs=cert_reqs, ca_certs=certs.ca_pem)
    c = client_context(certs.ca_pem, certfile=certs.client_pem,
                       max_version=version)
    with TLSConn(srv.address, c) as conn:
        conn.send(support.build('GET', '/env'))
        env = json_of(conn.read_response())
    assert env['SSL_PROTOCOL'] == ('TLSv1.2' if version else 'TLSv1.3')
    _check_client_cert_environ(env, certs)


@pytest.mark.parametrize('version', [None, TLS12])
@pytest.mark.parametrize('client_cert', ['none', 'other CA'])
def test_client_certificate_required_refused(tls_serve, certs, datafile,
                                             version, client_cert):
    app = recorder(datafile)
    srv = tls_serve(app, cert_reqs='required', ca_certs=certs.ca_pem)
    c = client_context(certs.ca_pem, max_version=version,
                       certfile=(certs.other_client_pem
                                 if client_cert == 'other CA' else None))
    err = handshake_fails(srv.address, c, '/env')
    assert isinstance(err, (ssl.SSLError, OSError, EOFError)), err
    assert app.calls == 0
    # and a client with a good certificate is served after that
    good = client_context(certs.ca_pem, certfile=certs.client_pem)
    assert https_get(srv.address, good, '/ok').body == b'/ok'


@pytest.mark.parametrize('client_cert', ['none', 'good', 'other CA'])
def test_client_certificate_optional(tls_serve, certs, client_cert):
    srv = tls_serve(cert_reqs='optional', ca_certs=certs.ca_pem)
    certfile = {'none': None, 'good': certs.client_pem,
                'other CA': certs.other_client_pem}[client_cert]
    env = get_env(srv.address, client_context(certs.ca_pem,
                                              certfile=certfile))
    if client_cert == 'none':
        assert env['SSL_CLIENT_VERIFY'] == 'NONE'
        assert 'SSL_CLIENT_CERT' not in env
    elif client_cert == 'good':
        _check_client_cert_environ(env, certs)
    else:
        assert env['SSL_CLIENT_VERIFY'].startswith('FAILED:'), env
        assert len(env['SSL_CLIENT_VERIFY']) > len('FAILED:')


def test_plain_bind_beside_tls(serve, certs, datafile, ctx):
    srv = serve(make_app(datafile[0]), certfile=certs.server_cert,
                keyfile=certs.server_key,
                bind=['127.0.0.1:0', 'plain:127.0.0.1:0'])
    tls_addr, plain_addr = srv.addresses
    assert srv.urls == ['https://127.0.0.1:%d' % tls_addr[1],
                        'http://127.0.0.1:%d' % plain_addr[1]]
    env = json_of(support.request(plain_addr, path='/env'))
    assert env['wsgi.url_scheme'] == 'http'
    assert not [k for k in env if k.startswith('SSL_') or k == 'HTTPS']
    env = get_env(tls_addr, ctx)
    assert env['wsgi.url_scheme'] == 'https' and env['HTTPS'] == 'on'


# -- protocol policy ----------------------------------------------------------

@pytest.mark.parametrize('version', ['TLSv1', 'TLSv1_1'])
def test_old_tls_versions_refused(tls_serve, certs, version):
    version = getattr(ssl.TLSVersion, version)
    client = legacy_context(certs.ca_pem, version)
    # The control: this client does speak that version to a server that
    # allows it.
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(certs.server_cert, certs.server_key)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        sctx.minimum_version = sctx.maximum_version = version
    sctx.set_ciphers('DEFAULT:@SECLEVEL=0')
    control = ControlServer(sctx)
    try:
        with TLSConn(control.address, client) as c:
            assert c.version in ('TLSv1', 'TLSv1.1')
    finally:
        control.close()
    srv = tls_serve()
    err = handshake_fails(srv.address, client)
    assert isinstance(err, ssl.SSLError), err
    assert https_get(srv.address, client_context(certs.ca_pem),
                     '/ok').body == b'/ok'


@pytest.mark.parametrize('cipher, served', [
    ('ECDHE-RSA-AES128-GCM-SHA256', True),
    ('ECDHE-RSA-AES256-GCM-SHA384', True),
    ('ECDHE-RSA-CHACHA20-POLY1305', True),
    ('ECDHE-RSA-AES128-SHA', False),      # CBC
    ('ECDHE-RSA-AES256-SHA384', False),   # CBC
    ('AES128-GCM-SHA256', False),         # no forward secrecy
    ('DHE-RSA-AES128-GCM-SHA256', False),  # no ECDHE
])
def test_tls12_suites(tls_serve, certs, cipher, served):
    srv = tls_serve()
    r = s_client(srv.address[1], '-tls1_2', '-cipher', cipher,
                 cafile=certs.ca_pem)
    out = r.stdout.decode('latin-1')
    if served:
        assert r.returncode == 0, r.stderr
        assert 'Cipher is %s' % cipher in out
    else:
        assert r.returncode != 0, out
        assert 'Cipher is %s' % cipher not in out
        # the control: the same command against a server that allows it
        with OpensslServer(certs, '-tls1_2', '-cipher',
                           'ALL:@SECLEVEL=0') as control:
            r = s_client(control.port, '-tls1_2', '-cipher', cipher,
                         cafile=certs.ca_pem)
        assert 'Cipher is %s' % cipher in r.stdout.decode('latin-1')


def test_tls_min_version_13(tls_serve, certs):
    srv = tls_serve(tls_min_version='1.3')
    err = handshake_fails(srv.address,
                          client_context(certs.ca_pem, max_version=TLS12))
    assert isinstance(err, ssl.SSLError), err
    env = get_env(srv.address, client_context(certs.ca_pem))
    assert env['SSL_PROTOCOL'] == 'TLSv1.3'


def test_alpn(tls_serve, certs):
    srv = tls_serve()
    r = s_client(srv.address[1], '-alpn', 'http/1.1', cafile=certs.ca_pem)
    assert r.returncode == 0, r.stderr
    assert 'ALPN protocol: http/1.1' in r.stdout.decode('latin-1')
    c = client_context(certs.ca_pem, alpn=['h2', 'http/1.1'])
    with TLSConn(srv.address, c) as conn:
        assert conn.sock.selected_alpn_protocol() == 'http/1.1'
        conn.send(support.build('GET', '/alpn'))
        assert conn.read_response().body == b'/alpn'
    r = s_client(srv.address[1], cafile=certs.ca_pem)
    assert 'No ALPN negotiated' in r.stdout.decode('latin-1')


def _renegotiate(port, cafile):
    """s_client -tls1_2 asked to renegotiate ("R") once its handshake is
    done, then a request; its output, and how many ServerHellos it saw."""
    proc = subprocess.Popen(
        [OPENSSL, 's_client', '-connect', '%s:%d' % (HOST, port),
         '-servername', 'localhost', '-CAfile', cafile, '-tls1_2', '-msg'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=tool_env())
    out = []
    cond = threading.Condition()

    def read():
        for line in proc.stdout:
            with cond:
                out.append(line.decode('latin-1'))
                cond.notify_all()

    def wait_for(text, timeout=10):
        with cond:
            cond.wait_for(lambda: text in ''.join(out), timeout)

    def write(data):
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # s_client already ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for('New, TLSv1.2')
        write(b'R\n')
        wait_for('RENEGOTIATING')
        time.sleep(0.5)
        write(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        time.sleep(0.5)
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    out = ''.join(out)
    hellos = len(re.findall(r'<<< TLS 1\.2, Handshake \[length [0-9a-f]+\]'
                            r', ServerHello$', out, re.M))
    return out, hellos


def test_client_renegotiation_refused(tls_serve, certs, ctx):
    # The control: s_server allowing it, the client renegotiates.
    with OpensslServer(certs, '-tls1_2', '-client_renegotiation') as control:
        out, hellos = _renegotiate(control.port, certs.ca_pem)
    assert 'RENEGOTIATING' in out and hellos == 2, out
    srv = tls_serve()
    out, hellos = _renegotiate(srv.address[1], certs.ca_pem)
    assert 'RENEGOTIATING' in out, out
    assert hellos == 1, out  # no second handshake
    # refused: a no_renegotiation alert, or the connection closed
    after = out.split('RENEGOTIATING', 1)[1]
    assert re.search(r'no renegotiation|closed|errno=0', after), after
    assert https_get(srv.address, ctx, '/still').body == b'/still'


def test_session_resumption_tls13(tls_serve, certs, tmp_path):
    srv = tls_serve()
    sess = str(tmp_path / 'session.pem')
    request = b'GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    r = s_client(srv.address[1], '-sess_out', sess, '-ign_eof',
                 cafile=certs.ca_pem, input=request)
    out = r.stdout.decode('latin-1')
    assert r.returncode == 0, r.stderr
    assert 'New, TLSv1.3' in out and 'HTTP/1.1 200' in out
    assert os.path.getsize(sess) > 0
    # A TLS 1.3 ticket is used once: each resumed connection must bring a
    # new one, or every other connection would be a full handshake.
    for i in range(3):
        renewed = str(tmp_path / f'session{i}.pem')
        r = s_client(srv.address[1], '-sess_in', sess, '-sess_out', renewed,
                     '-ign_eof', cafile=certs.ca_pem, input=request)
        out = r.stdout.decode('latin-1')
        assert r.returncode == 0, r.stderr
        assert 'Reused, TLSv1.3' in out, (i, out)
        assert 'HTTP/1.1 200' in out
        sess = renewed


@pytest.mark.parametrize('how', ['ticket', 'session id'])
def test_session_resumption_tls12(tls_serve, certs, how):
    srv = tls_serve()
    args = ['-tls1_2', '-reconnect']
    if how == 'session id':
        args.append('-no_ticket')
    r = s_client(srv.address[1], *args, cafile=certs.ca_pem)
    out = r.stdout.decode('latin-1')
    assert r.returncode == 0, r.stderr
    assert out.count('New, TLSv1.2') == 1, out
    assert out.count('Reused, TLSv1.2') == 5, out


# -- bad input ----------------------------------------------------------------

@pytest.mark.parametrize('body', [0, 256 * 1024])
def test_plain_http_to_the_tls_port(tls_serve, datafile, ctx, body):
    app = recorder(datafile)
    srv = tls_serve(app)
    with support.Conn(srv.address) as c:
        data = b'x' * body
        req = support.build('POST' if body else 'GET', '/', body=data)
        errors = []

        def send():
            try:
                c.sock.sendall(req)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=send)
        t.start()  # all of it, while the answer is read
        resp = c.read_response()
        rest = c.read_until_close(timeout=5)
        t.join(5)
        assert resp.version == 'HTTP/1.1' and resp.status == 400, resp
        assert b'https' in resp.body.lower(), resp.body
        assert 'close' in resp.tokens('connection')
        assert rest == b''
        assert c.eof and not c.reset, 'the connection was reset'
        assert not errors, errors
    assert app.calls == 0
    assert https_get(srv.address, ctx, '/ok').body == b'/ok'


@pytest.mark.parametrize('garbage', [
    bytes(range(256)) * 4,                                # not TLS at all
    b'\x16\x03\x01\x00\x30' + b'\xff' * 48,               # a bad handshake
    b'\x16\x03\x01\xff\xff' + os.urandom(1000),           # record too long
    b'\x80\x2e\x01\x00\x02' + os.urandom(45),             # SSLv2 hello
])
def test_garbage_closed(tls_serve, ctx, garbage):
    srv = tls_serve()
    with support.Conn(srv.address) as c:
        c.try_send(garbage)
        c.expect_close(timeout=3)
    assert https_get(srv.address, ctx, '/next').body == b'/next'


def test_truncated_client_hello_closed(tls_serve, ctx):
    srv = tls_serve()
    hello = client_hello(ctx)
    assert hello[0] == 0x16 and len(hello) > 100
    with support.Conn(srv.address) as c:
        c.send(hello[:len(hello) // 2])
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_close(timeout=3)
    assert https_get(srv.address, ctx, '/next').body == b'/next'


@pytest.mark.parametrize('when', ['before any byte', 'after the hello',
                                  'after the server hello'])
def test_reset_mid_handshake(tls_serve, ctx, when):
    srv = tls_serve()
    for _ in range(3):
        c = support.Conn(srv.address)
        if when != 'before any byte':
            c.send(client_hello(ctx))
        if when == 'after the server hello':
            assert c.read_some(5)[:1] == b'\x16'
        c.rst_close()
    time.sleep(0.1)
    assert https_get(srv.address, ctx, '/next').body == b'/next'


def test_handshake_timeout_silent_client(tls_serve, ctx):
    srv = tls_serve(tls_handshake_timeout=1)
    with support.Conn(srv.address) as c:
        t0 = time.monotonic()
        assert c.expect_close(timeout=4) == b''
        took = time.monotonic() - t0
    assert 0.8 <= took <= 2.5, took
    assert https_get(srv.address, ctx, '/next').body == b'/next'


def test_handshake_timeout_counts_from_accept(tls_serve, ctx):
    """A ClientHello a byte every 0.2 s: closed at about 1 s from accept,
    although bytes keep coming."""
    srv = tls_serve(tls_handshake_timeout=1)
    hello = client_hello(ctx)
    with support.Conn(srv.address) as c:
        t0 = time.monotonic()
        closed = None
        for b in hello:
            if not c.try_send(bytes([b])):
                closed = time.monotonic() - t0
                break
            r, _, _ = select.select([c.sock], [], [], 0.2)
            if r:
                c.read_some()
                if c.eof:
                    closed = time.monotonic() - t0
                    break
            if time.monotonic() - t0 > 5:
                break
    assert closed is not None, 'still open after 5 s'
    assert 0.8 <= closed <= 2.5, closed


def test_handshake_timeout_spares_an_established_connection(tls_serve, ctx):
    srv = tls_serve(tls_handshake_timeout=1)
    with TLSConn(srv.address, ctx) as c:
        c.send(support.build('GET', '/a'))
        assert c.read_response().body == b'/a'
        time.sleep(1.6)
        c.send(support.build('GET', '/b'))
        assert c.read_response().body == b'/b'
    with TLSConn(srv.address, ctx) as c:  # idle before its first request
        time.sleep(1.6)
        c.send(support.build('GET', '/c'))
        assert c.read_response().body == b'/c'


# -- the API ------------------------------------------------------------------

def test_bad_certfile_is_a_config_error(tmp_path, certs):
    from lichen.config import ConfigError
    app = support.hello_app
    missing = str(tmp_path / 'missing.pem')
    with pytest.raises(ConfigError) as info:
        lichen.Server(app, host='127.0.0.1', port=0, certfile=missing)
    assert '\n' not in str(info.value)
    with pytest.raises(ConfigError):
        lichen.Server(app, host='127.0.0.1', port=0,
                      certfile=certs.server_cert, keyfile=certs.server_b_key)
    with pytest.raises(ConfigError):
        lichen.Server(app, host='127.0.0.1', port=0,
                      certfile=certs.server_cert, keyfile=certs.server_key,
                      ciphers='NO-SUCH-CIPHER')


def _install(src_cert, src_key, cert, key):
    for src, dst in ((src_cert, cert), (src_key, key)):
        tmp = str(dst) + '.new'
        with open(src, 'rb') as f, open(tmp, 'wb') as g:
            g.write(f.read())
        os.replace(tmp, dst)


def _peer_der(addr, ctx):
    with TLSConn(addr, ctx) as c:
        c.send(support.build('GET', '/peer'))
        assert c.read_response().body == b'/peer'
        return c.sock.getpeercert(binary_form=True)


def _der(cert):
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.DER)


def test_reload_tls(tls_serve, certs, tmp_path):
    from lichen.config import ConfigError
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    _install(certs.server_cert, certs.server_key, cert, key)
    srv = tls_serve(certfile=str(cert), keyfile=str(key))
    ctx_a = client_context(certs.ca_pem)
    ctx_b = client_context(certs.other_ca_pem)
    with TLSConn(srv.address, ctx_a) as old:
        old.send(support.build('GET', '/1'))
        assert old.read_response().body == b'/1'
        _install(certs.server_b_cert, certs.server_b_key, cert, key)
        srv.reload_tls()
        assert _peer_der(srv.address, ctx_b) == _der(certs.server_b_x509)
        assert isinstance(handshake_fails(srv.address, ctx_a),
                          ssl.SSLCertVerificationError)
        old.send(support.build('GET', '/2'))  # keeps working, cert A
        assert old.read_response().body == b'/2'
        assert old.sock.getpeercert(True) == _der(certs.server_x509)
        cert.write_bytes(b'-----BEGIN CERTIFICATE-----\nbroken\n'
                         b'-----END CERTIFICATE-----\n')
        with pytest.raises(ConfigError):
            srv.reload_tls()
        assert _peer_der(srv.address, ctx_b) == _der(certs.server_b_x509)
        old.send(support.build('GET', '/3'))
        assert old.read_response().body == b'/3'


# -- the command line ---------------------------------------------------------

def assert_one_line(stderr, expected=None):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert 'Traceback' not in stderr
    assert lines[0].startswith('lichen: '), lines[0]
    if expected is not None:
        assert expected in lines[0], lines[0]
    return lines[0]


def _bad_option_cases(certs, tmp_path):
    garbage = tmp_path / 'garbage.pem'
    garbage.write_text('not a certificate\n')
    missing = str(tmp_path / 'missing-cert.pem')
    cert, key = certs.server_cert, certs.server_key
    enc = certs.server_key_encrypted
    return {
        'missing certfile': (['--certfile', missing], 1, missing),
        'missing keyfile': (['--certfile', cert, '--keyfile', missing], 1,
                            missing),
        'certfile not a certificate': (['--certfile', str(garbage),
                                        '--keyfile', key], 1,
                                       'cannot load the certificate'),
        'wrong key password': (['--certfile', cert, '--keyfile', enc,
                                '--keyfile-password', 'wrong'], 1,
                               'wrong password'),
        'no key password': (['--certfile', cert, '--keyfile', enc], 1,
                            'its password is needed'),
        'missing password file': (['--certfile', cert, '--keyfile', enc,
                                   '--keyfile-password-file', missing], 1,
                                  None),
        'key of another cert': (['--certfile', cert,
                                 '--keyfile', certs.server_b_key], 1,
                                'does not match the certificate'),
        'unknown cipher list': (['--certfile', cert, '--keyfile', key,
                                 '--ciphers', 'NO-SUCH-CIPHER'], 1,
                                'NO-SUCH-CIPHER'),
        'missing ca-certs': (['--certfile', cert, '--keyfile', key,
                              '--cert-reqs', 'required',
                              '--ca-certs', missing], 1, None),
        'bad cert-reqs': (['--certfile', cert, '--keyfile', key,
                           '--cert-reqs', 'sometimes'], 2, '--cert-reqs'),
        'bad tls-min-version': (['--certfile', cert, '--keyfile', key,
                                 '--tls-min-version', '1.1'], None,
                                '--tls-min-version'),
    }


BAD_OPTIONS = ['missing certfile', 'missing keyfile',
               'certfile not a certificate', 'wrong key password',
               'no key password', 'missing password file',
               'key of another cert', 'unknown cipher list',
               'missing ca-certs', 'bad cert-reqs', 'bad tls-min-version']


@pytest.mark.parametrize('case', BAD_OPTIONS)
def test_cli_bad_tls_option(certs, tmp_path, case):
    args, status, text = _bad_option_cases(certs, tmp_path)[case]
    r = run_lichen(args + ['-b', '127.0.0.1:0', 'examples.hello'],
                   timeout=30)
    if status is None:  # an argparse choice or a validated value
        assert r.returncode in (1, 2), (r.returncode, r.stderr)
    else:
        assert r.returncode == status, (r.returncode, r.stderr)
    assert_one_line(r.stderr, text)


def _cli(cli_server, certs, *args, app='examples.hello', **kwargs):
    return cli_server(['--certfile', certs.server_cert,
                       '--keyfile', certs.server_key,
                       '-b', '127.0.0.1:0'] + list(args) + [app], **kwargs)


def _port(proc):
    return int(proc.urls[0].rsplit(':', 1)[1])


@pytest.mark.parametrize('how', ['--keyfile-password',
                                 '--keyfile-password-file'])
def test_cli_encrypted_key(cli_server, certs, tmp_path, ctx, how):
    if how == '--keyfile-password':
        pw = ['--keyfile-password', certs.password]
    else:
        pwfile = tmp_path / 'password'
        pwfile.write_text(certs.password + '\nthe first line only\n')
        pw = ['--keyfile-password-file', str(pwfile)]
    proc = cli_server(['--certfile', certs.server_cert,
                       '--keyfile', certs.server_key_encrypted] + pw +
                      ['-b', '127.0.0.1:0', 'examples.hello'])
    assert proc.urls[0].startswith('https://127.0.0.1:')
    resp = https_get((HOST, _port(proc)), ctx)
    assert (resp.status, resp.body) == (200, HELLO)
    assert proc.stop() == 0


ENV_APP = '''\
import json


def application(environ, start_response):
    body = json.dumps({k: v for k, v in environ.items()
                       if isinstance(v, str)}).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]
'''


def test_cli_tls_flags(cli_server, certs, tmp_path):
    """--cert-reqs, --ca-certs, --tls-min-version, --tls-handshake-timeout
    and a plain: bind from the command line; curl with a client cert."""
    (tmp_path / 'envapp.py').write_text(ENV_APP)
    proc = _cli(cli_server, certs, '--cert-reqs', 'required',
                '--ca-certs', certs.ca_pem, '--tls-min-version', '1.3',
                '--tls-handshake-timeout', '1',
                '-b', 'plain:127.0.0.1:0', '--chdir', str(tmp_path),
                app='envapp', listeners=2)
    assert proc.urls[0].startswith('https://127.0.0.1:')
    assert proc.urls[1].startswith('http://127.0.0.1:')
    port = _port(proc)
    r = curl(certs.ca_pem, '--cert', certs.client_pem,
             'https://127.0.0.1:%d/' % port)
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)
    assert env['SSL_PROTOCOL'] == 'TLSv1.3'
    _check_client_cert_environ(env, certs)
    r = curl(certs.ca_pem, 'https://127.0.0.1:%d/' % port)
    assert r.returncode != 0  # no client certificate
    tls12 = client_context(certs.ca_pem, certfile=certs.client_pem,
                           max_version=TLS12)
    assert isinstance(handshake_fails((HOST, port), tls12), ssl.SSLError)
    plain_port = int(proc.urls[1].rsplit(':', 1)[1])
    r = subprocess.run([CURL, '-sS', 'http://127.0.0.1:%d/' % plain_port],
                       capture_output=True, timeout=10, env=tool_env())
    env = json.loads(r.stdout)
    assert env['wsgi.url_scheme'] == 'http' and 'HTTPS' not in env
    with support.Conn((HOST, port)) as c:
        t0 = time.monotonic()
        c.expect_close(timeout=4)
        took = time.monotonic() - t0
    assert 0.8 <= took <= 2.5, took
    assert proc.stop() == 0


@pytest.mark.parametrize('mode', ['', '--gevent'])
def test_cli_sighup_reloads_the_certificate(cli_server, certs, tmp_path,
                                            mode):
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    _install(certs.server_cert, certs.server_key, cert, key)
    proc = cli_server(['--certfile', str(cert), '--keyfile', str(key),
                       '--keepalive', '30', '-b', '127.0.0.1:0'] +
                      ([mode] if mode else []) + ['examples.hello'])
    addr = (HOST, _port(proc))
    ctx_a = client_context(certs.ca_pem)
    ctx_b = client_context(certs.other_ca_pem)
    with TLSConn(addr, ctx_a) as old:
        old.send(support.build('GET', '/'))
        assert old.read_response().body == HELLO
        _install(certs.server_b_cert, certs.server_b_key, cert, key)
        proc.signal(signal.SIGHUP)
        assert proc.wait_stderr('Reloaded the TLS certificate'), proc.stderr
        assert https_get(addr, ctx_b).body == HELLO
        assert isinstance(handshake_fails(addr, ctx_a),
                          ssl.SSLCertVerificationError)
        old.send(support.build('GET', '/'))  # opened before: still works
        assert old.read_response().body == HELLO
        assert old.sock.getpeercert(True) == _der(certs.server_x509)

        cert.write_bytes(b'-----BEGIN CERTIFICATE-----\nbroken\n'
                         b'-----END CERTIFICATE-----\n')
        proc.signal(signal.SIGHUP)
        assert proc.wait_stderr('TLS reload failed'), proc.stderr
        time.sleep(0.2)
        assert https_get(addr, ctx_b).body == HELLO  # the old one, B
        old.send(support.build('GET', '/'))
        assert old.read_response().body == HELLO
    stderr = proc.stderr
    assert proc.stop() == 0
    failed = [line for line in stderr.splitlines() if 'reload' in line.lower()
              and 'failed' in line.lower()]
    assert len(failed) == 1, stderr
    assert 'keeping the old certificate' in failed[0]
    assert 'Traceback' not in stderr
    assert all(line.startswith('[') for line in stderr.splitlines()
               if line.strip()), stderr


def test_cli_failed_handshakes_are_logged_sparingly(cli_server, certs, ctx):
    """A burst of clients sending garbage: each is closed, the server goes
    on, and the log gets at most about a line a second about them."""
    proc = _cli(cli_server, certs)
    addr = (HOST, _port(proc))
    t0 = time.monotonic()
    for _ in range(40):  # a handshake record with a broken message
        with support.Conn(addr) as c:
            c.try_send(b'\x16\x03\x01\x00\x30' + b'\xff' * 48)
            c.expect_close(timeout=3)
    took = time.monotonic() - t0
    assert https_get(addr, ctx).body == HELLO
    time.sleep(0.3)
    lines = [line for line in proc.stderr.splitlines()
             if 'handshake' in line.lower()]
    assert 1 <= len(lines) <= took + 2, (took, proc.stderr)
    assert proc.stop() == 0


# -- lichen.pywsgi ------------------------------------------------------------

PYWSGI_PROGRAM = r'''
import json
import socket
import ssl
import sys

from lichen import pywsgi

mode, cert, key, ca = sys.argv[1:5]


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [json.dumps({k: v for k, v in environ.items()
                        if isinstance(v, str)}).encode()]


sock = socket.socket()
sock.bind(('127.0.0.1', 0))
sock.listen(64)
if mode == 'files':
    server = pywsgi.WSGIServer(sock, app, keyfile=key, certfile=cert)
elif mode == 'ssl_context':
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = pywsgi.WSGIServer(sock, app, ssl_context=ctx)
else:
    server = pywsgi.WSGIServer(sock, app, keyfile=key, certfile=cert,
                               ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED,
                               server_side=True,
                               do_handshake_on_connect=False,
                               suppress_ragged_eofs=True, log=None)
print('PORT', sock.getsockname()[1], flush=True)
server.serve_forever()
'''


@pytest.mark.parametrize('mode', ['files', 'ssl_context', 'client cert'])
def test_pywsgi_serves_https(certs, tmp_path, ctx, mode):
    program = tmp_path / 'pywsgi_tls.py'
    program.write_text(PYWSGI_PROGRAM)
    proc = subprocess.Popen(
        [PYTHON, str(program), mode, certs.server_cert, certs.server_key,
         certs.ca_pem], cwd=str(REPO), env=child_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        timer = threading.Timer(30, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith(b'PORT '):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail('the program did not start:\n%s'
                        % err.decode('utf-8', 'replace'))
        addr = (HOST, int(line.split()[1]))
        client = ctx
        if mode == 'client cert':
            client = client_context(certs.ca_pem, certfile=certs.client_pem)
        env = get_env(addr, client)
        assert env['wsgi.url_scheme'] == 'https' and env['HTTPS'] == 'on'
        assert env['SSL_PROTOCOL'] == 'TLSv1.3'
        if mode == 'client cert':
            _check_client_cert_environ(env, certs)
            assert isinstance(handshake_fails(addr, ctx),
                              (ssl.SSLError, OSError, EOFError))
        else:
            assert env['SSL_CLIENT_VERIFY'] == 'NONE'
    finally:
        proc.kill()
        proc.communicate(timeout=10)
