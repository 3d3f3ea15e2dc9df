"""The rest of the stack over TLS: websockets (wss://) with real clients,
gevent mode with an application that sleeps and spawns, static files and
a graceful stop. The same servers as elsewhere, certfile/keyfile given;
certificates from tls_support (trustme)."""

import asyncio
import hashlib
import os
import socket
import ssl
import threading
import time

import pytest
import websocket as websocket_client  # websocket-client
import websockets.sync.client

import lichen
from tls_support import HOST, TLSConn, certs, client_context

__all__ = ['certs']

pytestmark = pytest.mark.timeout(120)


def tls_options(certs):
    return dict(certfile=certs.server_cert, keyfile=certs.server_key)


def echo_ws(environ, start_response):
    ws = environ.get('wsgi.websocket')
    if ws is None:
        body = environ['wsgi.url_scheme'].encode()
        start_response('200 OK', [('Content-Length', str(len(body)))])
        return [body]
    while True:
        msg = ws.receive()
        if msg is None:
            return []
        ws.send(msg)


def test_wss_echo_with_the_websockets_library(serve, certs):
    srv = serve(echo_ws, **tls_options(certs))
    port = srv.address[1]
    ctx = client_context(certs.ca_pem)
    with websockets.sync.client.connect(
            f'wss://{HOST}:{port}/ws', ssl=ctx,
            server_hostname=HOST, max_size=None) as ws:
        ws.send('hello')
        assert ws.recv() == 'hello'
        big = os.urandom(3 << 20)  # many records, both ways, compressed
        ws.send(big)
        assert ws.recv() == big
        for i in range(200):
            ws.send(f'm{i}')
        assert [ws.recv() for _ in range(200)] == [f'm{i}'
                                                   for i in range(200)]


def test_wss_with_websocket_client_and_no_compression(serve, certs):
    srv = serve(echo_ws, ws_compression=False, **tls_options(certs))
    port = srv.address[1]
    ws = websocket_client.create_connection(
        f'wss://{HOST}:{port}/ws',
        sslopt={'ca_certs': certs.ca_pem, 'server_hostname': HOST})
    try:
        payload = os.urandom(200_000)
        ws.send_binary(payload)
        assert ws.recv() == payload
        ws.ping(b'p')
        ws.send('text')
        assert ws.recv() == 'text'
    finally:
        ws.close()


def test_a_slow_wss_reader_gets_every_byte_in_order(serve, certs):
    """The send queue of a websocket, retried over TLS as the client
    drains: 8 MiB sent while the client reads slowly."""
    n, size = 128, 64 * 1024

    def app(environ, start_response):
        ws = environ['wsgi.websocket']
        for i in range(n):
            ws.send(bytes([i % 251]) * size)
        ws.close()
        return []

    srv = serve(app, ws_compression=False, **tls_options(certs))
    port = srv.address[1]
    ctx = client_context(certs.ca_pem)
    with websockets.sync.client.connect(
            f'wss://{HOST}:{port}/', ssl=ctx, server_hostname=HOST,
            max_size=None, compression=None) as ws:
        got = []
        for i in range(n):
            msg = ws.recv()
            got.append(msg == bytes([i % 251]) * size)
            if i % 16 == 0:
                time.sleep(0.05)
    assert all(got) and len(got) == n


@pytest.mark.parametrize('driver', ['gevent'])
def test_gevent_mode_over_tls_waits_and_spawns_without_blocking(
        serve, certs, driver):
    """/slow waits (gevent) until 20 other TLS requests have been served:
    it can only be answered if its wait blocked nobody."""
    import gevent
    import gevent.event

    served = []
    events = []  # made in the server's thread, bound to its hub

    def enough():
        if not events:
            events.append(gevent.event.Event())
        return events[0]

    def app(environ, start_response):
        if environ['PATH_INFO'] == '/slow':
            gevent.sleep(0.1)
            assert enough().wait(60)
        else:
            served.append(1)
            if len(served) == 20:
                enough().set()
        g = gevent.spawn(lambda: environ['SSL_PROTOCOL'])
        body = g.get().encode()
        start_response('200 OK', [('Content-Length', str(len(body)))])
        return [body]

    srv = serve(app, **tls_options(certs))
    ctx = client_context(certs.ca_pem)
    slow = TLSConn(srv.address, ctx)
    slow.send(b'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
    for _ in range(20):
        with TLSConn(srv.address, ctx) as c:
            c.send(b'GET / HTTP/1.1\r\nHost: x\r\nConnection: close'
                   b'\r\n\r\n')
            r = c.read_response()
            assert r.status == 200 and r.body.startswith(b'TLSv1.')
    r = slow.read_response()
    assert r.status == 200 and r.body.startswith(b'TLSv1.')


@pytest.mark.parametrize('driver', ['gevent'])
def test_gevent_wss_echo(serve, certs, driver):
    srv = serve(echo_ws, **tls_options(certs))
    ctx = client_context(certs.ca_pem)
    with websockets.sync.client.connect(
            f'wss://{HOST}:{srv.address[1]}/', ssl=ctx,
            server_hostname=HOST) as ws:
        ws.send('over gevent')
        assert ws.recv() == 'over gevent'


def test_static_files_over_tls(serve, certs, tmp_path):
    data = os.urandom((5 << 20) + 123)  # sendfile's size class, in blocks
    (tmp_path / 'big.bin').write_bytes(data)
    (tmp_path / 'small.txt').write_bytes(b'small file\n')
    srv = serve(echo_ws, static=[('/s', str(tmp_path))],
                **tls_options(certs))
    ctx = client_context(certs.ca_pem)
    with TLSConn(srv.address, ctx) as c:
        for path, want in [('/s/big.bin', data), ('/s/small.txt',
                                                  b'small file\n')] * 2:
            c.send(f'GET {path} HTTP/1.1\r\nHost: x\r\n\r\n')
            r = c.read_response()
            assert r.status == 200
            assert hashlib.sha256(r.body).digest() == \
                hashlib.sha256(want).digest()
        c.send(b'GET /s/big.bin HTTP/1.1\r\nHost: x\r\nRange: '
               b'bytes=1000000-1000009\r\n\r\n')
        r = c.read_response()
        assert r.status == 206 and r.body == data[1000000:1000010]


def test_graceful_stop_finishes_a_tls_request_in_flight(serve, certs):
    started = threading.Event()

    def app(environ, start_response):
        started.set()
        time.sleep(0.5)
        start_response('200 OK', [('Content-Length', '4')])
        return [b'done']

    srv = serve(app, **tls_options(certs))
    ctx = client_context(certs.ca_pem)
    c = TLSConn(srv.address, ctx)
    c.send(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    assert started.wait(10)
    srv.stop(timeout=5)
    r = c.read_response()
    assert r.status == 200 and r.body == b'done'
    c.close()


def test_the_live_counter_of_tls_connections(serve, certs):
    srv = serve(echo_ws, **tls_options(certs))
    ctx = client_context(certs.ca_pem)
    conns = [TLSConn(srv.address, ctx) for _ in range(5)]
    for c in conns:
        c.send(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        assert c.read_response().body == b'https'
    assert lichen.live_counts()['tls'] == 5
    for c in conns:
        c.close()
    deadline = time.monotonic() + 5
    while lichen.live_counts()['tls'] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lichen.live_counts()['tls'] == 0
