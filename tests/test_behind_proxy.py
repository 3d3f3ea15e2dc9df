"""lichen behind Debian's nginx and HAProxy, as docs/deploy.md configures
them: the `lichen` command (tests/apps/proxyapp.py) behind a proxy on
127.0.0.1, a client connecting from 127.0.0.2 so that the client, the
proxy and lichen's view of them can be told apart.

- nginx: a keep-alive upstream (lichen sees a connection or two for many
  requests, against one per request without it), a unix socket upstream,
  a response streamed with `proxy_buffering off`, a websocket, TLS ended
  at nginx; the forwarded headers as the application sees them.
- HAProxy in HTTP mode: keep-alive on both sides, `option forwardfor`.
- Two lichen servers behind one nginx, one killed (SIGKILL) or stopped
  (SIGTERM) under load: every request is answered 200.
"""

import http.client
import json
import signal
import socket
import ssl
import threading
import time

import pytest

from helpers_cli import child_env
from proxy_support import (NGINX_PROXY_HEADERS, HAProxy, Nginx, free_port,
                           proxies)  # noqa: F401 (proxies: a fixture)

APP = 'tests.apps.proxyapp'
CLIENT = '127.0.0.2'  # the client's address, which nginx forwards
TIMEOUT = 10.0


def fill(template, **values):
    """{name} replaced by its value; nginx's own braces left alone."""
    for name, value in values.items():
        template = template.replace('{%s}' % name, str(value))
    return template


def start_lichen(cli_server, *args, name='', bind='127.0.0.1:0'):
    return cli_server(['--bind', bind, *args, APP],
                      env=child_env(LICHEN_TEST_NAME=name))


def lichen_port(proc):
    return int(proc.urls[0].rsplit(':', 1)[1])


def get(port, path='/env', conn=None, headers=None):
    """GET through the proxy from CLIENT: (status, JSON or bytes)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=TIMEOUT,
                                          source_address=(CLIENT, 0))
    try:
        conn.request('GET', path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status == 200 and \
                resp.getheader('Content-Type') == 'application/json':
            body = json.loads(body)
        return resp.status, body
    finally:
        if own:
            conn.close()


def assert_forwarded(env, scheme='http'):
    """What lichen made of nginx's X-Forwarded-For and -Proto: nginx is
    127.0.0.1 (trusted by default), so the client is CLIENT."""
    assert env['REMOTE_ADDR'] == CLIENT, env
    assert env['HTTP_X_FORWARDED_FOR'] == CLIENT, env
    assert env['HTTP_X_FORWARDED_PROTO'] == scheme, env
    assert env['wsgi.url_scheme'] == scheme, env


# -- nginx --------------------------------------------------------------------

# Port `keepalive`: HTTP/1.1 to lichen, connections kept (at most 16 idle);
# port `plain`: nginx's default, HTTP/1.0 and a connection per request.
NGINX_KEEPALIVE = '''
    upstream lichen {
        server 127.0.0.1:{upstream};
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:{keepalive};
        location / {
            proxy_pass http://lichen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{headers}
        }
    }
    server {
        listen 127.0.0.1:{plain};
        location / {
            proxy_pass http://127.0.0.1:{upstream};
{headers}
        }
    }
'''


def test_nginx_keepalive_upstream(cli_server, proxies, tmp_path):
    lichen = start_lichen(cli_server)
    keepalive, plain = free_port(), free_port()
    proxies(Nginx, tmp_path / 'nginx', fill(
        NGINX_KEEPALIVE, upstream=lichen_port(lichen), keepalive=keepalive,
        plain=plain, headers=NGINX_PROXY_HEADERS), [keepalive, plain])
    n = 40
    # each request on a client connection of its own: nginx's upstream
    # connections alone are what is kept
    envs = [get(keepalive)[1] for _ in range(n)]
    for env in envs:
        assert_forwarded(env)
        assert env['SERVER_PROTOCOL'] == 'HTTP/1.1'
        assert env['HTTP_CONNECTION'] is None  # nginx's "close" removed
        assert env['HTTP_HOST'] == '127.0.0.1'
    kept = {env['REMOTE_PORT'] for env in envs}
    assert len(kept) <= 2, kept
    envs = [get(plain)[1] for _ in range(n)]
    for env in envs:
        assert_forwarded(env)
        assert env['SERVER_PROTOCOL'] == 'HTTP/1.0'
        assert env['HTTP_CONNECTION'] == 'close'
    assert len({env['REMOTE_PORT'] for env in envs}) == n


NGINX_UNIX = '''
    upstream lichen {
        server unix:{sock};
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:{port};
        location / {
            proxy_pass http://lichen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{headers}
        }
    }
'''


def test_nginx_unix_socket_upstream(cli_server, proxies, tmp_path):
    sock = tmp_path / 'lichen.sock'
    lichen = start_lichen(cli_server, bind='unix:%s' % sock)
    assert lichen.urls == ['unix:%s' % sock]
    port = free_port()
    proxies(Nginx, tmp_path / 'nginx', fill(
        NGINX_UNIX, sock=sock, port=port, headers=NGINX_PROXY_HEADERS),
        [port])
    for _ in range(3):
        status, env = get(port)
        assert status == 200
        # a unix socket peer is trusted by default: its headers count
        assert_forwarded(env)
        assert env['HTTP_HOST'] == '127.0.0.1'


# Port `port`: streaming, buffering off; port `buffered`: nginx's default.
NGINX_STREAM = '''
    upstream lichen {
        server 127.0.0.1:{upstream};
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:{port};
        location / {
            proxy_pass http://lichen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{headers}
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:{buffered};
        location / {
            proxy_pass http://lichen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{headers}
        }
    }
'''


def start_streaming(cli_server, proxies, tmp_path):
    """lichen behind NGINX_STREAM: (port, buffered)."""
    lichen = start_lichen(cli_server)
    port, buffered = free_port(), free_port()
    proxies(Nginx, tmp_path / 'nginx', fill(
        NGINX_STREAM, upstream=lichen_port(lichen), port=port,
        buffered=buffered, headers=NGINX_PROXY_HEADERS), [port, buffered])
    return port, buffered


def read_until(sock, data, marker, timeout):
    """Read from sock until marker is in data (or EOF, or the time is
    up); returns what was read so far."""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_nginx_streams_with_proxy_buffering_off(cli_server, proxies,
                                                tmp_path):
    """The application yields "first", then waits for the client to say it
    has it (a file) before it yields "last": the client gets "first" before
    the application has produced the rest."""
    port, _ = start_streaming(cli_server, proxies, tmp_path)
    for i in range(2):  # twice: the second on a kept upstream connection
        gate = tmp_path / ('gate%d' % i)
        with socket.create_connection(('127.0.0.1', port), TIMEOUT,
                                      source_address=(CLIENT, 0)) as s:
            s.sendall(b'GET /stream?%s HTTP/1.1\r\nHost: x\r\n'
                      b'Connection: close\r\n\r\n' % str(gate).encode())
            data = read_until(s, b'', b'first\n', 5.0)
            assert data.startswith(b'HTTP/1.1 200 OK\r\n'), data
            assert b'first\n' in data and b'last\n' not in data, data
            gate.touch()
            data = read_until(s, data, b'\r\n0\r\n\r\n', TIMEOUT)
        assert b'last\n' in data, data
        assert b'gate never opened' not in data
        assert data.endswith(b'\r\n0\r\n\r\n'), data  # chunked, complete


FLOOD_MIB = 64


def parked_flood(port, mib=FLOOD_MIB, path='/flood'):
    """GET path?MIB (/flood) through the proxy on port, the client reading the head
    and then nothing: how much the application produced meanwhile (once
    that stops growing), and how much the client then receives."""
    total = mib << 20
    with socket.create_connection(('127.0.0.1', port), TIMEOUT,
                                  source_address=(CLIENT, 0)) as s:
        s.sendall(b'GET %s?%d HTTP/1.1\r\nHost: x\r\n'
                  b'Connection: close\r\n\r\n' % (path.encode(), mib))
        data = read_until(s, b'', b'\r\n\r\n', 5.0)
        head, _, body = data.partition(b'\r\n\r\n')
        assert head.startswith(b'HTTP/1.1 200 OK\r\n'), data[:200]
        produced, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = int(get(port, '/produced')[1])
            if now in (produced, total):
                break
            produced = now
        received = len(body)
        s.settimeout(TIMEOUT)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
    return now, received


def test_nginx_proxy_buffering_off_passes_back_pressure(cli_server, proxies,
                                                        tmp_path):
    """With buffering off a client that does not read holds the application
    up (nginx reads from lichen only as fast as the client takes it); with
    nginx's default buffering nginx takes the whole response at once (in
    memory, then in a temporary file), and lichen is done with it, unless
    the response says "X-Accel-Buffering: no"."""
    port, buffered = start_streaming(cli_server, proxies, tmp_path)
    total = FLOOD_MIB << 20
    produced, received = parked_flood(port)
    assert received == total
    assert produced < total // 4, produced
    produced, received = parked_flood(buffered)
    assert received == total
    assert produced == total
    produced, received = parked_flood(buffered, path='/flood-unbuffered')
    assert received == total
    assert produced < total // 4, produced


NGINX_WEBSOCKET = '''
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }
    upstream lichen {
        server 127.0.0.1:{upstream};
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:{port};
        location / {
            proxy_pass http://lichen;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
{headers}
        }
    }
'''


def test_nginx_websocket(cli_server, proxies, tmp_path):
    from websockets.sync.client import connect

    lichen = start_lichen(cli_server)
    port = free_port()
    proxies(Nginx, tmp_path / 'nginx', fill(
        NGINX_WEBSOCKET, upstream=lichen_port(lichen), port=port,
        headers=NGINX_PROXY_HEADERS), [port])
    # plain HTTP through the same location, kept alive upstream
    envs = [get(port)[1] for _ in range(5)]
    for env in envs:
        assert_forwarded(env)
        assert env['HTTP_CONNECTION'] is None
    assert len({env['REMOTE_PORT'] for env in envs}) == 1
    big = 'lichen behind nginx ' * 20000
    with connect('ws://127.0.0.1:%d/ws' % port, open_timeout=TIMEOUT,
                 close_timeout=TIMEOUT, max_size=None,
                 source_address=(CLIENT, 0)) as ws:
        assert 'permessage-deflate' in \
            ws.response.headers.get('Sec-WebSocket-Extensions', '')
        ws.send('hello')
        assert ws.recv(TIMEOUT) == 'hello'
        ws.send(b'\x00\x01\xff')
        assert ws.recv(TIMEOUT) == b'\x00\x01\xff'
        ws.send(big)
        assert ws.recv(TIMEOUT) == big
        ws.send('env')
        env = json.loads(ws.recv(TIMEOUT))
    assert_forwarded(env)
    assert env['HTTP_CONNECTION'].lower() == 'upgrade'


NGINX_TLS = '''
    upstream lichen {
        server 127.0.0.1:{upstream};
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {
            proxy_pass http://lichen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{headers}
            proxy_set_header X-Forwarded-Port $server_port;
        }
    }
'''


def test_nginx_terminates_tls(cli_server, proxies, tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert('localhost', '127.0.0.1')
    chain = tmp_path / 'server.crt'
    key = tmp_path / 'server.key'
    chain.write_bytes(b''.join(p.bytes() for p in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    lichen = start_lichen(cli_server)  # plain HTTP
    port = free_port()
    proxies(Nginx, tmp_path / 'nginx', fill(
        NGINX_TLS, upstream=lichen_port(lichen), port=port, cert=chain,
        key=key, headers=NGINX_PROXY_HEADERS), [port])
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    conn = http.client.HTTPSConnection('localhost', port, timeout=TIMEOUT,
                                       context=ctx,
                                       source_address=(CLIENT, 0))
    try:
        for _ in range(3):
            status, env = get(port, conn=conn)
            assert status == 200
            assert_forwarded(env, scheme='https')
            assert env['HTTP_HOST'] == 'localhost'
            assert env['SERVER_PORT'] == str(port)
    finally:
        conn.close()


# -- HAProxy ------------------------------------------------------------------

HAPROXY_HTTP = '''
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    option http-keep-alive
    option forwardfor

frontend web
    bind 127.0.0.1:{port}
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    default_backend lichen

backend lichen
    http-reuse safe
    option httpchk GET /env
    server lichen1 127.0.0.1:{upstream} check inter 2s
'''


def test_haproxy_http_mode(cli_server, proxies, tmp_path):
    lichen = start_lichen(cli_server)
    port = free_port()
    proxies(HAProxy, tmp_path / 'haproxy', fill(
        HAPROXY_HTTP, upstream=lichen_port(lichen), port=port), [port])
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=TIMEOUT,
                                      source_address=(CLIENT, 0))
    envs, client_ports = [], set()
    try:
        for _ in range(10):
            status, env = get(port, conn=conn)
            assert status == 200, env
            envs.append(env)
            client_ports.add(conn.sock.getsockname()[1])
    finally:
        conn.close()
    assert len(client_ports) == 1  # one client connection: kept
    assert len({env['REMOTE_PORT'] for env in envs}) == 1  # and lichen's
    for env in envs:
        assert_forwarded(env)
        assert env['SERVER_PROTOCOL'] == 'HTTP/1.1'
        assert env['HTTP_HOST'] == '127.0.0.1:%d' % port


# -- failover: two lichen servers behind one nginx ----------------------------

NGINX_FAILOVER = '''
    upstream lichens {
        server 127.0.0.1:{a} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:{b} max_fails=1 fail_timeout=10s;
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:{port};
        location / {
            proxy_pass http://lichens;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
            proxy_connect_timeout 2s;
{headers}
        }
    }
'''
LOAD_SECONDS = 3.0
LOAD_THREADS = 6


def load(port, seconds, threads, results):
    """Threads GETting /work?0.002 through the proxy for that long, each on
    a keep-alive connection of its own; results gets (time, status,
    server) per request (status 0: no answer)."""
    stop = time.monotonic() + seconds

    def client():
        conn = None
        while time.monotonic() < stop:
            if conn is None:
                conn = http.client.HTTPConnection(
                    '127.0.0.1', port, timeout=TIMEOUT,
                    source_address=(CLIENT, 0))
            try:
                status, env = get(port, '/work?0.002', conn=conn)
                server = env['server'] if status == 200 else None
            except (OSError, http.client.HTTPException) as e:
                status, server = 0, repr(e)
                conn.close()
                conn = None
            results.append((time.monotonic(), status, server))
        if conn is not None:
            conn.close()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


@pytest.mark.parametrize('how', ['SIGKILL', 'SIGTERM'])
def test_nginx_failover(cli_server, proxies, tmp_path, how):
    """One of two lichen servers killed (SIGKILL) or stopped gracefully
    (SIGTERM) in the middle of a load of GETs: nginx passes what failed on
    to the other one, and every request gets its 200."""
    a = start_lichen(cli_server, '--graceful-timeout', '5', name='a')
    b = start_lichen(cli_server, '--graceful-timeout', '5', name='b')
    port = free_port()
    nginx = proxies(Nginx, tmp_path / 'nginx', fill(
        NGINX_FAILOVER, a=lichen_port(a), b=lichen_port(b), port=port,
        headers=NGINX_PROXY_HEADERS), [port])
    results = []
    workers = load(port, LOAD_SECONDS, LOAD_THREADS, results)
    time.sleep(LOAD_SECONDS / 3)
    stopped_at = time.monotonic()
    a.signal(getattr(signal, how))
    exit_status = a.wait(10)
    gone_at = time.monotonic()
    for w in workers:
        w.join(LOAD_SECONDS + 2 * TIMEOUT)
    assert not any(w.is_alive() for w in workers)

    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:10]
    assert len(results) > 60, len(results)
    before = [r[2] for r in results if r[0] < stopped_at]
    after = [r[2] for r in results if r[0] > gone_at + 0.1]
    assert set(before) == {'a', 'b'}
    assert len(after) > 20 and set(after) == {'b'}
    if how == 'SIGKILL':
        assert exit_status == -signal.SIGKILL
        # nginx tried the dead server and passed the request on: its log
        # names both upstreams for such a request
        retried = [line for line in nginx.access_log()
                   if 'upstream=127.0.0.1:%d, 127.0.0.1:%d'
                   % (lichen_port(a), lichen_port(b)) in line]
        assert retried, nginx.access_log()[-20:]
        assert all(line.startswith('200 ') for line in retried)
    else:
        assert exit_status == 0, a.stderr
