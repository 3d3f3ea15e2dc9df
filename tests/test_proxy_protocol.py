"""The PROXY protocol (proxy_protocol): a header of version 1 or 2 before
anything else on each connection, from the forwarded_allow_ips peers, sets
REMOTE_ADDR and REMOTE_PORT for every request of the connection; a
connection without one, with a malformed one, or from another peer is
closed without a response."""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

from support import Conn, Recorder, build, wait_for

V2_SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def v2(command, family, block=b''):
    """A version 2 header: command 0 LOCAL, 1 PROXY."""
    return (V2_SIG + bytes([0x20 | command, family])
            + struct.pack('!H', len(block)) + block)


def tlv(kind, value):
    return bytes([kind]) + struct.pack('!H', len(value)) + value


def v2_inet(src, sport, dst='127.0.0.1', dport=80, tlvs=b''):
    return v2(1, 0x11, socket.inet_pton(socket.AF_INET, src)
              + socket.inet_pton(socket.AF_INET, dst)
              + struct.pack('!HH', sport, dport) + tlvs)


def v2_inet6(src, sport, dst='::1', dport=80, tlvs=b''):
    return v2(1, 0x21, socket.inet_pton(socket.AF_INET6, src)
              + socket.inet_pton(socket.AF_INET6, dst)
              + struct.pack('!HH', sport, dport) + tlvs)


# TLVs as load balancers send them: ALPN, authority, a NOOP, a unique id.
SOME_TLVS = (tlv(0x01, b'http/1.1') + tlv(0x02, b'app.example')
             + tlv(0x04, b'') + tlv(0x05, b'id-1234'))


def served(serve, **options):
    app = Recorder()
    options.setdefault('proxy_protocol', True)
    return app, serve(app, **options)


def get(c, path='/'):
    c.send(build('GET', path))
    r = c.read_response()
    assert r.status == 200, r
    return r


def remote(app, i=-1):
    env = app.environs[i]
    return env['REMOTE_ADDR'], env['REMOTE_PORT']


@pytest.mark.parametrize('header, addr, port', [
    (b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n', '203.0.113.7',
     '40001'),
    (b'PROXY TCP6 2001:db8::7 ::1 40002 443\r\n', '2001:db8::7', '40002'),
    (v2_inet('198.51.100.9', 40003), '198.51.100.9', '40003'),
    (v2_inet('198.51.100.9', 40004, tlvs=SOME_TLVS), '198.51.100.9',
     '40004'),
    (v2_inet6('2001:db8::9', 40005, tlvs=SOME_TLVS), '2001:db8::9',
     '40005'),
], ids=['v1-tcp4', 'v1-tcp6', 'v2-inet', 'v2-inet-tlvs', 'v2-inet6-tlvs'])
def test_the_header_sets_the_client(serve, header, addr, port):
    app, srv = served(serve)
    with Conn(srv.address) as c:
        c.send(header + build('GET', '/one'))
        assert c.read_response().status == 200
    assert remote(app) == (addr, port)


@pytest.mark.parametrize('header', [
    b'PROXY UNKNOWN\r\n',
    b'PROXY UNKNOWN 203.0.113.7 127.0.0.1 40001 80\r\n',
    v2(0, 0x00),
    v2(0, 0x11, b'\x01' * 12 + SOME_TLVS),  # LOCAL: the block is ignored
    v2(1, 0x00),  # PROXY over UNSPEC
    v2(1, 0x31, b'/run/lb.sock'.ljust(216, b'\0')),  # over a unix socket
], ids=['v1-unknown', 'v1-unknown-addresses', 'v2-local', 'v2-local-tlvs',
        'v2-unspec', 'v2-unix'])
def test_unknown_and_local_keep_the_socket_address(serve, header):
    app, srv = served(serve)
    with Conn(srv.address) as c:
        c.send(header)
        get(c)
        port = str(c.sock.getsockname()[1])
    assert remote(app) == ('127.0.0.1', port)


def test_the_address_holds_for_every_request_of_the_connection(
        serve, tmp_path):
    log = tmp_path / 'access.log'
    app, srv = served(serve, access_log=str(log))
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.50 127.0.0.1 51000 80\r\n')
        get(c, '/1')
        get(c, '/2')
        # pipelined, and a later one after a pause
        c.send(build('GET', '/3') + build('GET', '/4'))
        assert c.read_response().status == 200
        assert c.read_response().status == 200
        time.sleep(0.1)
        get(c, '/5')
    assert app.paths == ['/1', '/2', '/3', '/4', '/5']
    assert all(remote(app, i) == ('203.0.113.50', '51000')
               for i in range(5)), app.environs

    def lines():
        return log.read_text().splitlines() if log.exists() else []
    assert wait_for(lambda: len(lines()) >= 5, 3), lines()
    assert all(line.startswith('203.0.113.50 ') for line in lines()), lines()
    # the next connection has its own
    with Conn(srv.address) as c:
        c.send(v2_inet('192.0.2.77', 52000))
        get(c, '/6')
    assert remote(app) == ('192.0.2.77', '52000')


@pytest.mark.parametrize('header, addr', [
    (b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n', '203.0.113.7'),
    (v2_inet6('2001:db8::9', 40001, tlvs=SOME_TLVS), '2001:db8::9'),
], ids=['v1', 'v2'])
def test_a_header_split_across_writes(serve, header, addr):
    app, srv = served(serve)
    with Conn(srv.address) as c:
        for i in range(0, len(header), 5):
            c.send(header[i:i + 5])
            time.sleep(0.01)
        # the request in pieces of its own
        req = build('GET', '/split')
        c.send(req[:7])
        time.sleep(0.01)
        c.send(req[7:])
        assert c.read_response().status == 200
    assert app.paths == ['/split']
    assert remote(app) == (addr, '40001')


def test_proxy_headers_after_it_are_the_client_s_own(serve):
    # The client named by the header is not a trusted peer: its
    # X-Forwarded-For is not read.
    app, srv = served(serve)
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n'
               + build('GET', '/', [('X-Forwarded-For', '10.9.9.9')]))
        assert c.read_response().status == 200
    assert remote(app) == ('203.0.113.7', '40001')


@pytest.mark.parametrize('data', [
    build('GET', '/'),  # no header at all
    b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\n' + build('GET', '/'),
    b'PROXY TCP4 203.0.113.700 127.0.0.1 40001 80\r\n' + build('GET', '/'),
    b'PROXY TCP4  203.0.113.7 127.0.0.1 40001 80\r\n' + build('GET', '/'),
    b'PROXY TCP6 203.0.113.7 127.0.0.1 40001 80\r\n' + build('GET', '/'),
    b'PROXY TCP4 203.0.113.7 127.0.0.1 65536 80\r\n' + build('GET', '/'),
    b'PROXY UNKNOWN' + b' x' * 60 + b'\r\n' + build('GET', '/'),
    v2(2, 0x11, b'\0' * 12) + build('GET', '/'),  # no such command
    v2(1, 0x12, b'\0' * 12) + build('GET', '/'),  # datagrams
    v2(1, 0x11, b'\0' * 11) + build('GET', '/'),  # short addresses
    v2_inet('192.0.2.1', 1, tlvs=b'\x04\x00\x09ab') + build('GET', '/'),
    v2_inet('192.0.2.1', 1, tlvs=tlv(0x04, b'\0' * 2000)),  # too long
    V2_SIG[:6] + b'X' * 10,
], ids=['missing', 'bare-lf', 'bad-address', 'two-spaces', 'wrong-family',
        'bad-port', 'v1-too-long', 'v2-command', 'v2-dgram', 'v2-short',
        'v2-tlv-cut', 'v2-tlvs-too-long', 'v2-signature'])
def test_no_header_or_a_malformed_one_closes_without_a_response(
        serve, data):
    app, srv = served(serve)
    with Conn(srv.address) as c:
        c.try_send(data)
        assert c.expect_close() == b''
    assert app.calls == 0


def test_a_connection_that_sends_nothing_is_closed_at_the_head_timeout(
        serve):
    app, srv = served(serve, timeout_header=0.3)
    with Conn(srv.address) as silent, Conn(srv.address) as partial:
        partial.send(b'PROXY TCP4 203.0.113.7 ')
        t0 = time.monotonic()
        assert silent.expect_close(3) == b''
        assert partial.expect_close(3) == b''
        assert time.monotonic() - t0 < 2
    # a header with its request cut short: the head's 408, as without
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\nGET / HT')
        assert b' 408 ' in c.expect_close(3)
    assert app.calls == 0


def test_a_header_cut_short_by_the_client_s_close(serve):
    app, srv = served(serve)
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.7 127.0')
        c.sock.shutdown(socket.SHUT_WR)
        assert c.expect_close() == b''
    assert app.calls == 0


def test_a_peer_not_trusted_is_closed_at_once(serve):
    app, srv = served(serve, forwarded_allow_ips='10.0.0.1')
    with Conn(srv.address) as c:
        assert c.expect_close() == b''  # before it sends anything
    with Conn(srv.address) as c:
        c.try_send(b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n'
                   + build('GET', '/'))
        assert c.expect_close() == b''
    assert app.calls == 0
    # trusted by network: served
    app, srv = served(serve, forwarded_allow_ips='10.0.0.1,127.0.0.0/8')
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n')
        get(c)
    assert remote(app) == ('203.0.113.7', '40001')


def test_without_the_option_a_header_is_a_bad_request(serve):
    app, srv = served(serve, proxy_protocol=False)
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n'
               + build('GET', '/'))
        assert c.read_response().status == 400
    assert app.calls == 0


# -- over TLS -----------------------------------------------------------------

def tls_client(addr, cafile, header):
    raw = socket.create_connection(addr, timeout=5)
    raw.sendall(header)
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx.wrap_socket(raw, server_hostname='localhost')


def https_request(sock, path='/'):
    sock.sendall(build('GET', path))
    data = b''
    while b'\r\n\r\n' not in data or not data.endswith(b'hello'):
        more = sock.recv(65536)
        assert more, data
        data += more
    return data


def test_over_tls_the_header_comes_before_the_handshake(
        serve, tls_server_files):
    certfile, keyfile, cafile = tls_server_files
    app, srv = served(serve, certfile=certfile, keyfile=keyfile)
    for header, want in [
            (b'PROXY TCP4 203.0.113.8 127.0.0.1 40010 443\r\n',
             ('203.0.113.8', '40010')),
            (v2_inet6('2001:db8::8', 40011, tlvs=SOME_TLVS),
             ('2001:db8::8', '40011'))]:
        with tls_client(srv.address, cafile, header) as s:
            assert https_request(s, '/a').startswith(b'HTTP/1.1 200 ')
            assert https_request(s, '/b').startswith(b'HTTP/1.1 200 ')
        assert remote(app, -2) == remote(app, -1) == want
        assert app.environs[-1]['wsgi.url_scheme'] == 'https'
    # a handshake with no header first: closed, no byte back
    with Conn(srv.address) as c:
        ctx = ssl.create_default_context(cafile=cafile)
        with pytest.raises((ssl.SSLError, OSError)):
            ctx.wrap_socket(c.sock, server_hostname='localhost')
    assert app.calls == 4


def test_over_tls_the_handshake_timeout_applies(serve, tls_server_files):
    certfile, keyfile, cafile = tls_server_files
    app, srv = served(serve, certfile=certfile, keyfile=keyfile,
                      tls_handshake_timeout=0.3, timeout_header=30)
    with Conn(srv.address) as c:
        c.send(b'PROXY TCP4 203.0.113.8 127.0.0.1 40010 443\r\n')
        t0 = time.monotonic()
        assert c.expect_close(3) == b''
        assert time.monotonic() - t0 < 2


# -- behind HAProxy -----------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def haproxy(tmp_path):
    """start(backend_port): HAProxy on 127.0.0.1 in TCP mode, sending
    PROXY protocol version 2 to lichen on backend_port; its port."""
    exe = shutil.which('haproxy') or (
        '/usr/sbin/haproxy' if os.path.exists('/usr/sbin/haproxy') else None)
    if exe is None:
        pytest.skip('haproxy is not installed (apt-get install haproxy)')
    procs = []

    def start(backend_port):
        port = free_port()
        cfg = tmp_path / 'haproxy.cfg'
        cfg.write_text(f'''\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend front
    bind 127.0.0.1:{port}
    default_backend lichen
backend lichen
    server app 127.0.0.1:{backend_port} send-proxy-v2
''')
        proc = subprocess.Popen([exe, '-db', '-f', str(cfg)],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        procs.append(proc)

        def listening():
            assert proc.poll() is None, proc.stdout.read()
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
                return True
            except OSError:
                return False
        assert wait_for(listening, 10)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_behind_haproxy_the_application_sees_the_client(serve, haproxy):
    app, srv = served(serve)
    port = haproxy(srv.address[1])
    # the client from an address of its own, so that it differs from the
    # proxy's
    with Conn(('127.0.0.1', port), source_address=('127.0.0.2', 0)) as c:
        client_port = str(c.sock.getsockname()[1])
        get(c, '/first')
        get(c, '/second')
    wanted = ('127.0.0.2', client_port)
    got = [remote(app, i) for i, e in enumerate(app.environs)
           if e['PATH_INFO'] in ('/first', '/second')]
    assert got == [wanted, wanted], app.environs
