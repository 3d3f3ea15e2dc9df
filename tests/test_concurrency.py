"""Many connections at once, slow peers, bounded memory."""
import selectors
import socket
import threading
import time

import pytest

import lichen
from support import CloseCounter, Conn, build, request, rss_kb, wait_for


def quick_or_upload_app(environ, start_response):
    if environ['PATH_INFO'] == '/upload':
        body = environ['wsgi.input'].read()
        start_response('200 OK', [])
        return [b'uploaded %d' % len(body)]
    start_response('200 OK', [])
    return [b'quick']


@pytest.mark.timeout(30)
def test_slow_uploader_does_not_delay_others(serve):
    srv = serve(quick_or_upload_app)
    up = Conn(srv.address, timeout=10)
    n = 40
    up.send(build('POST', '/upload', [('Content-Length', str(n))]))
    done = threading.Event()
    errors = []

    def trickle():
        try:
            for _ in range(n):
                up.send(b'u')
                time.sleep(0.05)
        except OSError as e:
            errors.append(e)
        done.set()
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    worst = 0
    for _ in range(50):
        s = time.monotonic()
        r = request(srv.address, 'GET', '/q')
        worst = max(worst, time.monotonic() - s)
        assert r.body == b'quick'
    elapsed = time.monotonic() - t0
    assert not done.is_set(), 'quick requests were not served while the upload was in progress'
    assert elapsed < 1.5, elapsed
    assert worst < 0.3, worst
    t.join(10)
    assert not errors
    assert up.read_response().body == b'uploaded %d' % n


@pytest.mark.timeout(60)
def test_non_reading_client_of_huge_response(serve):
    it = CloseCounter(chunk=b'h' * 65536, n=16384)  # 1 GB, generated

    def app(environ, start_response):
        if environ['PATH_INFO'] == '/huge':
            start_response('200 OK', [('Content-Type', 'application/octet-stream')])
            return it
        start_response('200 OK', [])
        return [b'small']
    srv = serve(app)
    rss0 = rss_kb()
    hog = Conn(srv.address, rcvbuf=8192)
    hog.send(build('GET', '/huge'))
    assert wait_for(lambda: it.yielded > 0, 5)
    time.sleep(1.0)
    y1 = it.yielded
    # others are served promptly meanwhile
    for _ in range(20):
        s = time.monotonic()
        assert request(srv.address, 'GET', '/small').body == b'small'
        assert time.monotonic() - s < 0.5
    time.sleep(1.0)
    y2 = it.yielded
    rss1 = rss_kb()
    # the generator is not advanced while the socket is full
    assert y2 == y1, (y1, y2)
    assert y2 < 1000, y2  # < 64 MB ever produced
    assert rss1 - rss0 < 100 * 1024, (rss0, rss1)
    hog.rst_close()
    assert wait_for(lambda: it.closed == 1, 5)
    assert it.yielded < 16384


@pytest.mark.timeout(60)
def test_huge_response_streams_with_bounded_memory(serve):
    it = CloseCounter(chunk=b's' * 65536, n=4096)  # 256 MB

    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', str(65536 * 4096))])
        return it
    srv = serve(app)
    rss0 = rss_kb()
    peak = 0
    with Conn(srv.address, timeout=20) as c:
        c.send(build('GET', '/'))
        head = c.read_line()
        assert head.startswith(b'HTTP/1.1 200')
        while c.read_line():
            pass
        n = len(c.buf)
        c.buf.clear()
        while n < 65536 * 4096:
            d = c.sock.recv(1 << 20)
            assert d
            n += len(d)
            if n % (16 << 20) < (1 << 20):
                peak = max(peak, rss_kb() - rss0)
    assert peak < 100 * 1024, peak
    assert wait_for(lambda: it.closed == 1, 2)


def _many_requests(addr, count, path=b'/'):
    """Open `count` connections, send one request on each, read all responses
    with a selector. Returns the list of (status, body)."""
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for i in range(count):
            s = socket.socket()
            s.settimeout(10)
            s.connect(addr)
            socks.append(s)
        req = b'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' % path
        for s in socks:
            s.sendall(req)
        bufs = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = bytearray()
        left = len(socks)
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                try:
                    d = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    d = b''
                if d:
                    bufs[s] += d
                else:
                    sel.unregister(s)
                    left -= 1
        assert left == 0, '%d connections without a complete response' % left
        out = []
        for s in socks:
            raw = bytes(bufs[s])
            head, _, body = raw.partition(b'\r\n\r\n')
            status = int(head.split(b' ', 2)[1]) if head else None
            out.append((status, body))
        return out
    finally:
        sel.close()
        for s in socks:
            s.close()


@pytest.mark.timeout(120)
def test_thousand_concurrent_connections(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [e['PATH_INFO'].encode()])[1])
    results = _many_requests(srv.address, 1000, b'/many')
    assert len(results) == 1000
    bad = [r for r in results if r != (200, b'/many')]
    assert not bad, bad[:5]


@pytest.mark.timeout(120)
def test_thousand_concurrent_clients_in_threads(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [e['PATH_INFO'].encode()])[1])
    results = [None] * 1000
    barrier = threading.Barrier(100)

    def worker(k):
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            pass
        for i in range(k, 1000, 100):
            try:
                r = request(srv.address, 'GET', '/t%d' % i, timeout=20)
                results[i] = (r.status, r.body)
            except Exception as e:
                results[i] = repr(e)
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bad = [(i, r) for i, r in enumerate(results) if r != (200, b'/t%d' % i)]
    assert not bad, bad[:5]


@pytest.mark.timeout(180)
def test_five_thousand_idle_keepalive_connections(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'ok'])[1], keepalive=120)
    conns = []
    req = build('GET', '/idle')
    try:
        for i in range(5000):
            s = socket.socket()
            s.settimeout(10)
            s.connect(srv.address)
            conns.append(s)
            s.sendall(req)
            # read one complete response (small; Content-Length: 2)
            data = b''
            while not data.endswith(b'\r\n\r\nok'):
                d = s.recv(4096)
                assert d, 'connection %d closed' % i
                data += d
            assert data.startswith(b'HTTP/1.1 200')
        counts = lichen.live_counts()
        assert counts['connections'] == 5000, counts
        # idle connections hold no buffer and no greenlet: in use, none; pooled,
        # a small free list whatever the number of connections
        assert counts['buffers'] == 0, counts
        assert counts.get('pooled_buffers', 0) <= 16, counts
        assert counts['greenlets'] <= 16, counts
        # a normal request is still answered quickly
        t0 = time.monotonic()
        r = request(srv.address, 'GET', '/fresh')
        assert r.status == 200
        assert time.monotonic() - t0 < 0.5
        # and the idle ones are still usable
        for s in conns[::500]:
            s.sendall(req)
            data = b''
            while not data.endswith(b'\r\n\r\nok'):
                d = s.recv(4096)
                assert d
                data += d
        assert wait_for(lambda: lichen.live_counts()['buffers'] == 0, 2), lichen.live_counts()
    finally:
        for s in conns:
            s.close()
    assert wait_for(lambda: lichen.live_counts()['connections'] == 0, 10), lichen.live_counts()
    assert lichen.live_counts()['buffers'] == 0


def test_live_counts_track_connections(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'ok'])[1])
    assert lichen.live_counts()['connections'] == 0
    conns = [Conn(srv.address) for _ in range(10)]
    for c in conns:
        c.send(build('GET', '/'))
        assert c.read_response().body == b'ok'
    assert lichen.live_counts()['connections'] == 10
    for c in conns:
        c.close()
    assert wait_for(lambda: lichen.live_counts()['connections'] == 0, 5), lichen.live_counts()


def test_stop_with_idle_and_active_connections(serve):

    def app(environ, start_response):
        start_response('200 OK', [])
        if environ['PATH_INFO'] == '/slow':
            def body():
                # waits on its client's body: an in-flight request at stop()
                yield environ['wsgi.input'].read()
            return body()
        return [b'ok']
    srv = serve(app, graceful_timeout=2)
    idle = Conn(srv.address)
    idle.send(build('GET', '/'))
    assert idle.read_response().body == b'ok'
    busy = Conn(srv.address)
    busy.send(build('POST', '/slow', [('Content-Length', '10')]) + b'12345')
    time.sleep(0.2)
    t0 = time.monotonic()
    srv.stop(timeout=3)
    assert time.monotonic() - t0 < 4
    assert idle.expect_close(2) == b''
    busy.expect_close(2)
    counts = lichen.live_counts()
    assert not any(counts.values()), counts
