"""Responses: framing, write(), start_response rules, header validation, close(), errors."""
import email.utils
import re
import sys
import time
from datetime import datetime, timezone

import pytest

from support import CloseCounter, Conn, IncompleteResponse, build, request, wait_for

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports


def test_content_length_added_for_one_element_list(serve):
    srv = serve(lambda e, s: (s('200 OK', [('Content-Type', 'text/plain')]), [b'hello world'])[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        r = c.read_response()
        assert r.status == 200 and r.reason == 'OK'
        assert r.version == 'HTTP/1.1'
        assert r.header('content-length') == '11'
        assert not r.has('transfer-encoding')
        assert r.body == b'hello world'


def test_content_length_of_app_is_kept(serve):
    srv = serve(lambda e, s: (s('200 OK', [('Content-Length', '6')]), [b'abc', b'def'])[1])
    r = request(srv.address)
    assert r.header_all('content-length') == ['6']
    assert not r.has('transfer-encoding')
    assert r.body == b'abcdef'


def test_chunked_when_length_unknown_on_http11(serve):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'one,'
        yield b''  # an empty chunk must not end the stream
        yield b'two,'
        yield b'three'
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            r = c.read_response()
            assert r.chunked and not r.has('content-length')
            assert r.body == b'one,two,three'
        assert c.is_open()


def test_close_delimited_on_http10(serve):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'one,'
        yield b'two'
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(b'GET / HTTP/1.0\r\n\r\n')
        r = c.read_response()
        assert not r.chunked and not r.has('content-length')
        assert r.body == b'one,two'
        assert c.eof


def test_multi_element_list(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'a', b'bc', b'', b'def'])[1])
    r = request(srv.address)
    assert r.body == b'abcdef'


def test_empty_response(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [])[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            r = c.read_response()
            assert r.status == 200 and r.body == b''


def test_write_callable(serve):
    def app(environ, start_response):
        write = start_response('200 OK', [('Content-Type', 'text/plain')])
        write(b'abc')
        write(b'def')
        return [b'ghi']
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            assert c.read_response().body == b'abcdefghi'


def test_write_callable_with_content_length(serve):
    def app(environ, start_response):
        write = start_response('200 OK', [('Content-Length', '6')])
        write(b'abc')
        write(b'def')
        return []
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 2)
        for _ in range(2):
            r = c.read_response()
            assert r.body == b'abcdef' and r.header('content-length') == '6'


def test_exc_info_before_headers_sent_replaces_response(serve):
    def app(environ, start_response):
        start_response('200 OK', [('X-First', '1')])
        try:
            raise ValueError('boom')
        except ValueError:
            start_response('503 Service Unavailable', [('Content-Type', 'text/plain')], sys.exc_info())
        return [b'error page']
    srv = serve(app)
    r = request(srv.address)
    assert r.status == 503
    assert r.body == b'error page'
    assert not r.has('x-first')


def test_exc_info_after_headers_sent_reraises(serve):
    seen = {}

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        if environ['PATH_INFO'] == '/ok':
            yield b'ok'
            return
        yield b'partial'
        try:
            raise ValueError('late boom')
        except ValueError:
            try:
                start_response('500 Internal Server Error', [], sys.exc_info())
            except ValueError as e:
                seen['reraised'] = str(e)
                raise
            seen['reraised'] = None
        yield b'never'
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        with pytest.raises(IncompleteResponse) as ei:
            c.read_response()
        assert ei.value.response.status == 200
        assert ei.value.response.body == b'partial'
    assert seen == {'reraised': 'late boom'}
    assert request(srv.address, 'GET', '/ok').body == b'ok'


def test_start_response_twice_without_exc_info(serve):
    seen = {}

    def app(environ, start_response):
        start_response('200 OK', [])
        try:
            start_response('201 Created', [])
        except Exception as e:
            seen['error'] = e
            raise
        return [b'both']
    srv = serve(app)
    r = request(srv.address)
    assert r.status == 500
    assert 'error' in seen


def test_no_start_response(serve):
    srv = serve(lambda e, s: [b'no head'])
    r = request(srv.address)
    assert r.status == 500
    assert b'no head' not in r.body


BAD_HEADS = [
    ('status-cr', '200 OK\rX', []),
    ('status-lf', '200 OK\nX-Injected: 1', []),
    ('status-crlf', '200 OK\r\nX-Injected: 1', []),
    ('status-nul', '200 O\x00K', []),
    ('name-crlf', '200 OK', [('X-A\r\nX-Injected', '1')]),
    ('name-lf', '200 OK', [('X-A\nX-Injected', '1')]),
    ('name-nul', '200 OK', [('X-\x00A', '1')]),
    ('name-colon', '200 OK', [('X-A: X-Injected', '1')]),
    ('name-space', '200 OK', [('X A', '1')]),
    ('name-empty', '200 OK', [('', '1')]),
    ('value-crlf', '200 OK', [('X-A', 'a\r\nX-Injected: 1')]),
    ('value-lf', '200 OK', [('X-A', 'a\nX-Injected: 1')]),
    ('value-cr', '200 OK', [('X-A', 'a\rX-Injected: 1')]),
    ('value-nul', '200 OK', [('X-A', 'a\x00b')]),
    ('value-int', '200 OK', [('X-A', 5)]),
    ('value-bytes', '200 OK', [('X-A', b'a')]),
    ('value-none', '200 OK', [('X-A', None)]),
    ('name-bytes', '200 OK', [(b'X-A', 'a')]),
    ('name-int', '200 OK', [(5, 'a')]),
    ('header-not-a-pair', '200 OK', [('X-A', 'a', 'b')]),
    ('header-a-str', '200 OK', ['X-A: a']),
    ('status-bytes', b'200 OK', []),
    ('status-not-a-number', 'OK 200', []),
    ('status-two-digits', '20 OK', []),
    ('status-non-latin1', '200 \u2603', []),
    ('value-non-latin1', '200 OK', [('X-A', '\u2603')]),
]


@pytest.mark.parametrize('status,headers', [c[1:] for c in BAD_HEADS], ids=[c[0] for c in BAD_HEADS])
def test_bad_status_or_header_raises_in_app(serve, status, headers):
    seen = {}

    def app(environ, start_response):
        try:
            start_response(status, headers)
        except Exception as e:
            seen['error'] = e
            raise
        seen['error'] = None
        return [b'body']
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        r = c.read_response()
        assert r.status == 500, r
        assert not r.has('x-injected'), r
        assert b'X-Injected' not in r.raw_head
        assert r.body != b'body'
        # nothing else (such as a second, split response) follows
        if not c.eof:
            c.send(build('GET', '/'))
            try:
                r2 = c.read_response()
                assert r2.status == 500
            except IncompleteResponse:
                pass
    assert isinstance(seen.get('error'), (ValueError, TypeError)), seen
    if '\u2603' in str((status, headers)):
        # gevent.pywsgi's exception for these, a ValueError too
        assert type(seen["error"]) is UnicodeError, seen


def test_header_checks_hold_for_objects_seen_before(serve):
    # The same valid name and value objects again and again, then a bad
    # value under that same name: each bad one is still refused. A header
    # added to the list after start_response is not sent at all: the
    # headers are taken when start_response is called.
    name, value = 'X-Same', 'same value'
    plans = ['ok', 'bad-value', 'ok', 'appended', 'ok', 'bad-name', 'ok']

    def app(environ, start_response):
        plan = plans[int(environ['PATH_INFO'][1:])]
        headers = [(name, value)]
        if plan == 'bad-value':
            headers.append((name, value + '\r\nX-Injected: 1'))
        if plan == 'bad-name':
            headers.append((name + ':', value))
        start_response('200 OK', headers)
        if plan == 'appended':
            headers.append((name, 'late\r\nX-Injected: 1'))
        return [b'body']
    srv = serve(app)
    for i, plan in enumerate(plans):
        with Conn(srv.address) as c:
            c.send(build('GET', '/%d' % i))
            r = c.read_response()
            assert b'X-Injected' not in r.raw_head
            if plan in ('ok', 'appended'):
                assert r.status == 200, (plan, r)
                assert r.header_all('x-same') == [value], (plan, r)
            else:
                assert r.status == 500, (plan, r)


def test_bad_header_in_exc_info_replacement(serve):
    seen = {}

    def app(environ, start_response):
        start_response('200 OK', [])
        try:
            raise KeyError('x')
        except KeyError:
            try:
                start_response('500 Oops', [('X-A', 'a\r\nX-Injected: 1')], sys.exc_info())
            except (ValueError, TypeError) as e:
                seen['error'] = e
                raise
        return [b'x']
    srv = serve(app)
    r = request(srv.address)
    assert r.status == 500 and not r.has('x-injected')
    assert 'error' in seen


def test_non_bytes_body_chunk_is_an_error(serve):
    srv = serve(lambda e, s: (s('200 OK', []), ['text, not bytes'])[1])
    r = request(srv.address)
    assert r.status == 500
    assert b'text, not bytes' not in r.body


DATE_RE = re.compile(r'^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) '
                     r'\d{4} \d\d:\d\d:\d\d GMT$')


def test_date_header(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'x'])[1])
    r = request(srv.address)
    assert r.status == 200 and r.body == b'x', r
    dates = r.header_all('date')
    assert len(dates) == 1, r
    assert DATE_RE.match(dates[0]), dates[0]
    when = email.utils.parsedate_to_datetime(dates[0])
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 5


def test_date_header_advances(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'x'])[1])
    r1 = request(srv.address)
    time.sleep(1.2)
    r2 = request(srv.address)
    assert r1.status == r2.status == 200, (r1, r2)
    d1 = email.utils.parsedate_to_datetime(r1.header('date'))
    d2 = email.utils.parsedate_to_datetime(r2.header('date'))
    assert (d2 - d1).total_seconds() >= 1


def test_app_date_header_is_not_duplicated(serve):
    srv = serve(lambda e, s: (s('200 OK', [('Date', 'Sun, 06 Nov 1994 08:49:37 GMT')]), [b'x'])[1])
    r = request(srv.address)
    assert r.header_all('date') == ['Sun, 06 Nov 1994 08:49:37 GMT']


def test_no_server_header_by_default(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'x'])[1])
    r = request(srv.address)
    assert r.status == 200 and not r.has('server'), r


def test_server_header_option(serve):
    srv = serve(lambda e, s: (s('200 OK', []), [b'x'])[1], server_header='x')
    assert request(srv.address).header_all('server') == ['x']


def test_app_headers_kept_in_order_with_duplicates(serve):
    hdrs = [('Set-Cookie', 'a=1'), ('X-B', '2'), ('Set-Cookie', 'b=2'), ('x-lower', 'v')]
    srv = serve(lambda e, s: (s('200 OK', hdrs), [b'x'])[1])
    r = request(srv.address)
    assert r.header_all('set-cookie') == ['a=1', 'b=2']
    assert [h for h in r.headers if h[0].lower() in ('set-cookie', 'x-b', 'x-lower')] == hdrs


def test_custom_reason_phrase(serve):
    srv = serve(lambda e, s: (s('299 Very Custom Reason', []), [b'x'])[1])
    r = request(srv.address)
    assert r.status == 299 and r.reason == 'Very Custom Reason'


# -- close() of the iterable ------------------------------------------------

def test_close_called_once_normal(serve):
    its = []

    def app(environ, start_response):
        start_response('200 OK', [])
        it = CloseCounter(chunk=b'abc', n=3)
        its.append(it)
        return it
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 3)
        for _ in range(3):
            assert c.read_response().body == b'abcabcabc'
    assert wait_for(lambda: [it.closed for it in its] == [1, 1, 1], 2), [it.closed for it in its]


def test_close_called_once_for_head(serve):
    it = CloseCounter(chunk=b'abc', n=3)
    srv = serve(lambda e, s: (s('200 OK', []), it)[1])
    with Conn(srv.address) as c:
        c.send(build('HEAD', '/'))
        assert c.read_response('HEAD').body == b''
    assert wait_for(lambda: it.closed == 1, 2)
    assert it.closed == 1


def test_close_called_once_on_exception_in_iteration(serve):
    it = CloseCounter(chunk=b'abc', n=5, fail_at=2)
    srv = serve(lambda e, s: (s('200 OK', []), it)[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        with pytest.raises(IncompleteResponse):
            c.read_response()
    assert wait_for(lambda: it.closed == 1, 2)
    assert it.closed == 1


def test_close_called_once_on_exception_in_first_chunk(serve):
    it = CloseCounter(chunk=b'abc', n=5, fail_at=0)
    srv = serve(lambda e, s: (s('200 OK', []), it)[1])
    r = request(srv.address)
    assert r.status == 500  # nothing was sent yet: a clean 500
    assert wait_for(lambda: it.closed == 1, 2)
    time.sleep(0.1)
    assert it.closed == 1


@pytest.mark.timeout(30)
def test_close_called_once_when_client_disconnects_mid_stream(serve):
    it = CloseCounter(chunk=b'd' * 65536, n=100000)  # ~6.5 GB if nobody stops it

    def app(environ, start_response):
        start_response('200 OK', [])
        return [b'ok'] if environ['PATH_INFO'] == '/ok' else it
    srv = serve(app)
    c = Conn(srv.address)
    c.send(build('GET', '/'))
    got = 0
    while got < 1024 * 1024:
        got += len(c.read_some())
    c.rst_close()
    assert wait_for(lambda: it.closed >= 1, 5), 'close() not called after the client went away'
    time.sleep(0.2)
    assert it.closed == 1
    assert it.yielded < 100000
    assert request(srv.address, 'GET', '/ok').body == b'ok'


def test_close_called_with_generator_on_disconnect(serve):
    state = {'closed': 0, 'n': 0}

    def app(environ, start_response):
        start_response('200 OK', [])
        try:
            while True:
                state['n'] += 1
                yield b'g' * 65536
        finally:
            state['closed'] += 1
    srv = serve(app)
    c = Conn(srv.address)
    c.send(build('GET', '/'))
    c.read_some()
    c.close()
    assert wait_for(lambda: state['closed'] == 1, 5), state


def test_close_exception_is_contained(serve):
    class Bad(CloseCounter):
        def close(self):
            super().close()
            raise RuntimeError('close failed')
    its = []

    def app(environ, start_response):
        start_response('200 OK', [])
        it = Bad(chunk=b'x', n=2)
        its.append(it)
        return it
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        try:
            r = c.read_response()
            assert r.body == b'xx'
        except IncompleteResponse:
            pass
    assert request(srv.address).status == 200
    assert wait_for(lambda: [it.closed for it in its] == [1, 1], 2), [it.closed for it in its]


# -- wrong lengths and errors ------------------------------------------------

def test_response_shorter_than_content_length_closes(serve):
    srv = serve(lambda e, s: (s('200 OK', [('Content-Length', '100')]), [b'short'])[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/') + build('GET', '/'))
        with pytest.raises(IncompleteResponse) as ei:
            c.read_response()
        assert ei.value.response.body == b'short'
        assert c.eof


def test_response_longer_than_content_length_is_cut(serve):
    srv = serve(lambda e, s: (s('200 OK', [('Content-Length', '3')]), [b'abc', b'defgh'])[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/') + build('GET', '/'))
        r = c.read_response()
        assert r.body == b'abc'
        # the extra bytes must never be taken for a response: either a clean
        # second response or a close
        try:
            r2 = c.read_response()
            assert r2.status == 200 and r2.body == b'abc'
        except (IncompleteResponse, AssertionError):
            assert c.eof, 'extra body bytes sent on a keep-alive connection'


def test_exception_before_start_response_gives_500_without_traceback(serve):
    def app(environ, start_response):
        raise ValueError('secret-detail-xyz')
    srv = serve(app)
    r = request(srv.address)
    assert r.status == 500
    assert b'Traceback' not in r.body
    assert b'secret-detail-xyz' not in r.body
    assert b'ValueError' not in r.body
    assert b'secret' not in r.raw_head
    assert request(srv.address).status == 500


def test_app_exception_server_keeps_serving(serve):
    calls = []

    def app(environ, start_response):
        calls.append(1)
        if environ['PATH_INFO'] == '/fail':
            raise RuntimeError('boom')
        start_response('200 OK', [])
        return [b'fine']
    srv = serve(app)
    for _ in range(3):
        assert request(srv.address, 'GET', '/fail').status == 500
        assert request(srv.address, 'GET', '/ok').body == b'fine'
    with Conn(srv.address) as c:
        c.send(build('GET', '/fail') + build('GET', '/ok'))
        assert c.read_response().status == 500
        try:
            r = c.read_response()
            assert r.body == b'fine'
        except IncompleteResponse:
            pass  # closing after a 500 is allowed


def test_exception_after_start_response_before_body(serve):
    def app(environ, start_response):
        start_response('200 OK', [('X-A', '1')])
        raise RuntimeError('boom')
    srv = serve(app)
    r = request(srv.address)
    assert r.status == 500
    assert not r.has('x-a')


def test_error_mid_stream_closes_abruptly(serve):
    def app(environ, start_response):
        start_response('200 OK', [])
        if environ['PATH_INFO'] == '/ok':
            yield b'ok'
            return
        yield b'part1'
        yield b'part2'
        raise RuntimeError('mid-stream')
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') + build('GET', '/'))
        with pytest.raises(IncompleteResponse) as ei:
            c.read_response()
        resp = ei.value.response
        assert resp.status == 200 and resp.chunked
        assert resp.body == b'part1part2'
        assert c.eof
    assert request(srv.address, 'GET', '/ok').body == b'ok'


def test_error_mid_stream_with_content_length(serve):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', '10')])
        yield b'abcde'
        raise RuntimeError('mid-stream')
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/'))
        with pytest.raises(IncompleteResponse) as ei:
            c.read_response()
        assert ei.value.response.body == b'abcde'


def test_write_to_gone_client_raises_client_disconnected(serve):
    from lichen._lichen import ClientDisconnected
    seen = []

    def app(environ, start_response):
        write = start_response('200 OK', [])
        try:
            for _ in range(100000):  # 6.5 GB if nobody stops it
                write(b'w' * 65536)
        except BaseException as e:
            seen.append(e)
            raise
        seen.append('all written')
        return []
    srv = serve(app)
    c = Conn(srv.address)
    c.send(build('GET', '/'))
    c.read_some()
    c.rst_close()
    assert wait_for(lambda: seen, 5)
    assert isinstance(seen[0], ClientDisconnected), seen
    assert isinstance(seen[0], OSError)


def test_status_objects_seen_before_and_others(serve):
    # Status objects sent again and again, turn about (one of them a 204 of
    # the same length), then a bad one: each response has its own status
    # and its own framing (a 204 has no body), and the bad one is refused.
    ok, empty, bad = '200 OK', '204 OK', '20x Bad'
    order = [ok, ok, empty, ok, empty, empty, bad, ok, '201 Created', empty]
    seen = []

    def app(environ, start_response):
        status = order[len(seen)]
        try:
            start_response(status, [('Content-Type', 'text/plain')])
            seen.append(None)
        except ValueError as e:
            seen.append(e)
            raise
        return [b'body']

    def check(r, status):
        assert '%d %s' % (r.status, r.reason) == status, (r, status)
        if status is empty:
            assert r.body == b'' and not r.has('content-length'), r
        else:
            assert r.body == b'body', r

    srv = serve(app)
    with Conn(srv.address) as c:
        for status in order:
            c.send(build('GET', '/'))
            r = c.read_response()
            if status is bad:
                assert r.status == 500, r
                break
            check(r, status)
    with Conn(srv.address) as c:
        for status in order[len(seen):]:
            c.send(build('GET', '/'))
            check(c.read_response(), status)
    assert [type(e) for e in seen] == [type(None)] * 6 + [ValueError] + [type(None)] * 3
