"""Greenlets of the application, and a hub that outlives run_once.

Any greenlet of the application (the request's own, or one it spawned) may
read wsgi.input, call write() or produce the body: a wait records the
greenlet that waits, and the hub resumes that one. A request greenlet that
something other than the hub resumed (as gevent's hub does after
gevent.sleep) waits on its client and finishes outside run_once: the
engine stays attached to the greenlet that drives it, and the loop's fd
says when it has work left from that. Each test runs under every driver of
conftest.DRIVERS (serve_forever, and selectors loops in a thread's main
greenlet or in a greenlet of their own), with plain greenlets, no gevent."""
import logging
import queue
import selectors
import threading
import time

import greenlet
import pytest

import lichen
from conftest import DRIVERS
from support import Conn, build, wait_for


@pytest.fixture(params=DRIVERS)
def driver(request):
    return request.param


def spawn(fn, *args):
    """Run fn(*args) in a new greenlet, child of the current one, until it
    returns; its result (or exception) comes back here."""
    return greenlet.greenlet(fn).switch(*args)


@pytest.mark.timeout(30)
def test_spawned_greenlet_reads_the_body(serve):
    def app(environ, start_response):
        body = spawn(environ['wsgi.input'].read)
        start_response('200 OK', [])
        return [b'got ' + body]
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01')
        time.sleep(0.2)  # the greenlet waits for the rest
        c.send(b'23456789')
        r = c.read_response()
    assert (r.status, r.body) == (200, b'got 0123456789')


@pytest.mark.timeout(30)
def test_spawned_greenlet_writes_the_response(serve):
    block = b'w' * 65536

    def app(environ, start_response):
        write = start_response('200 OK', [('Content-Length',
                                           str(len(block) * 64))])

        def writer():
            for _ in range(64):
                write(block)  # waits while the client is slow to read
        spawn(writer)
        return []
    srv = serve(app)
    with Conn(srv.address, rcvbuf=16384) as c:
        c.send(build('GET', '/'))
        time.sleep(0.3)  # the writer fills the socket and waits
        r = c.read_response()
    assert r.status == 200 and r.body == block * 64


@pytest.mark.timeout(30)
def test_spawned_greenlet_produces_the_body(serve):
    """The body is streamed back as a producer greenlet reads it: it waits
    for the client's bytes, the request's greenlet for the client to read
    them back."""
    def app(environ, start_response):
        consumer = greenlet.getcurrent()
        inp = environ['wsgi.input']

        def produce():
            while True:
                piece = inp.read(4096)
                consumer.switch(piece)
                if not piece:
                    return

        producer = greenlet.greenlet(produce)

        def body():
            while True:
                piece = producer.switch()
                if not piece:
                    return
                yield piece
        start_response('200 OK', [])
        return body()
    srv = serve(app)
    data = bytes(range(256)) * 256  # 64 KiB
    with Conn(srv.address) as c:
        c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n'
               % len(data))
        for i in range(0, len(data), 8192):
            c.send(data[i:i + 8192])
            time.sleep(0.01)
        r = c.read_response()
    assert r.status == 200 and r.chunked and r.body == data


# -- a request resumed by something other than the hub -----------------------

class Parking:
    """A poor man's gevent: the application parks its greenlet and switches
    to the hub; the driver resumes parked greenlets between its turns,
    outside run_once, as gevent's hub resumes a greenlet after a sleep."""

    def __init__(self):
        self.hub = None
        self.parked = []

    def sleep(self):
        self.parked.append(greenlet.getcurrent())
        self.hub.switch()

    def drive(self, srv, stats):
        """A selectors loop that also resumes the parked greenlets: the fd
        must say when the work they leave needs a turn."""
        self.hub = greenlet.getcurrent()
        sel = selectors.DefaultSelector()
        sel.register(srv.fileno(), selectors.EVENT_READ)
        try:
            while True:
                # Those parked so far; those that park again wait a turn.
                batch, self.parked = self.parked, []
                for g in batch:
                    g.switch()
                if sel.select(0.05 if self.parked else 60.0):
                    stats['wakeups'] += 1
                    if not srv.run_once(0):
                        return
                elif not self.parked:
                    stats['select timeouts'] += 1
        finally:
            sel.close()


def run_parked(driver_greenlet, tmp_path, app_of, checks,
               server=lichen.Server):
    """Serve app_of(parking) with the Parking driver in a thread (in its main
    greenlet, or in one of its own), run checks(srv, log_path), then stop
    and check that nothing is left."""
    parking = Parking()
    log_path = tmp_path / 'access.log'
    srv = server(app_of(parking), port=0, access_log=str(log_path))
    errors = []
    stats = {'wakeups': 0, 'select timeouts': 0}

    def run():
        try:
            if driver_greenlet:
                greenlet.greenlet(parking.drive).switch(srv, stats)
            else:
                parking.drive(srv, stats)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        checks(srv, log_path)
    finally:
        srv.stop(5)
        t.join(10)
        srv.close()
    assert not t.is_alive() and not errors, errors
    assert stats['select timeouts'] == 0, stats
    assert not any(lichen.live_counts().values()), lichen.live_counts()


@pytest.mark.timeout(30)
@pytest.mark.parametrize('driver_greenlet', [False, True],
                         ids=['main-greenlet', 'own-greenlet'])
def test_request_resumed_outside_run_once(driver_greenlet, tmp_path):
    """The request parks, is resumed between turns, then waits for its
    body (the hub must be there to switch to), answers and finishes there:
    its worker goes back to the pool from outside run_once. The fd alone
    must then bring the driver round (the access log line is written, the
    connection kept alive for the next request)."""
    def app_of(parking):
        def app(environ, start_response):
            parking.sleep()
            body = environ['wsgi.input'].read()
            parking.sleep()
            start_response('200 OK', [])
            return [b'got ' + body]
        return app

    def checks(srv, log_path):
        with Conn(srv.address) as c:
            for i in range(3):
                c.send(b'POST /%d HTTP/1.1\r\nHost: x\r\n'
                       b'Content-Length: 4\r\n\r\n' % i)
                time.sleep(0.1)  # the request waits for its body
                c.send(b'ab%02d' % i)
                r = c.read_response()
                assert (r.status, r.body) == (200, b'got ab%02d' % i)
                assert wait_for(lambda: log_path.read_text().count('\n')
                                == i + 1, 5), log_path.read_text()
    run_parked(driver_greenlet, tmp_path, app_of, checks)


class ShortPeakServer(lichen.Server):
    """The pool forgets its peak at once (the engine's pool_window_ms)."""

    def _engine_options(self):
        return dict(super()._engine_options(), pool_window_ms=0)


@pytest.mark.timeout(30)
def test_worker_exits_outside_run_once(tmp_path):
    """More requests at once than the pool keeps once its peak is gone
    (64; the peak is made to last no time here): the workers beyond it
    end, some of them outside run_once, and are freed."""
    def app_of(parking):
        def app(environ, start_response):
            parking.sleep()
            start_response('200 OK', [('Content-Length', '2')])
            return [b'ok']
        return app

    def checks(srv, log_path):
        conns = [Conn(srv.address) for _ in range(80)]
        for c in conns:
            c.send(build('GET', '/'))
        for c in conns:
            assert c.read_response().body == b'ok'
            c.close()
        assert wait_for(lambda: lichen.live_counts()['greenlets'] <= 64, 5)
    run_parked(False, tmp_path, app_of, checks, server=ShortPeakServer)


@pytest.mark.timeout(30)
def test_two_greenlets_cannot_wait_on_one_connection(tmp_path):
    seen = {}

    def app_of(parking):
        def app(environ, start_response):
            inp = environ['wsgi.input']

            def reader():
                seen['body'] = inp.read()
            # The driver starts it: it waits for the body, parked on the
            # connection; then this greenlet tries too.
            parking.parked.append(greenlet.greenlet(reader,
                                                    parent=parking.hub))
            parking.sleep()
            try:
                inp.read()
            except RuntimeError as exc:
                seen['error'] = str(exc)
            while 'body' not in seen:
                parking.sleep()
            start_response('200 OK', [])
            return [seen['body']]
        return app

    def checks(srv, log_path):
        with Conn(srv.address) as c:
            c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n')
            assert wait_for(lambda: 'error' in seen, 5)
            c.send(b'body')
            assert c.read_response().body == b'body'
    run_parked(False, tmp_path, app_of, checks)
    assert 'already waiting' in seen['error']


@pytest.mark.timeout(30)
def test_greenlet_still_waiting_when_its_request_ends(tmp_path, caplog):
    """An application that answers while a greenlet of it still waits to
    read: the connection is closed (its framing is lost), the greenlet
    hears ClientDisconnected, and the server goes on."""
    heard = queue.Queue()

    def app_of(parking):
        def app(environ, start_response):
            if environ['PATH_INFO'] == '/next':
                start_response('200 OK', [])
                return [b'next']
            inp = environ['wsgi.input']

            def reader():
                try:
                    inp.read()
                except Exception as exc:
                    heard.put(exc)
            parking.parked.append(greenlet.greenlet(reader,
                                                    parent=parking.hub))
            parking.sleep()  # the reader now waits on the connection
            start_response('200 OK', [('Content-Length', '5')])
            return [b'early']
        return app

    def checks(srv, log_path):
        with Conn(srv.address) as c:
            c.send(b'POST / HTTP/1.1\r\nHost: x\r\n'
                   b'Content-Length: 100\r\n\r\n')
            r = c.read_response()
            assert (r.status, r.body) == (200, b'early')
            assert c.expect_close(timeout=5) == b''
        exc = heard.get(timeout=5)
        assert isinstance(exc, lichen._lichen.ClientDisconnected), exc
        with Conn(srv.address) as c:
            c.send(build('GET', '/next'))
            assert c.read_response().body == b'next'

    with caplog.at_level(logging.WARNING, logger='lichen.error'):
        run_parked(False, tmp_path, app_of, checks)
    assert any('still waited on the connection' in r.getMessage()
               for r in caplog.records), caplog.records
