"""Static files served by the engine (docs/static.md), black-box: a real
lichen.Server on 127.0.0.1, real sockets, raw request bytes wherever the
exact path matters (a client library would normalize it).

The tree (static_support.make_tree) has secret.txt and outside/ BESIDE the
static root; no response ever carries the secret."""
import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import lichen
from conftest import DRIVERS
from helpers_cli import run_lichen
from helpers_cli import request as cli_request
from static_support import (A_TXT, CSS, DOCS_INDEX, EVIL_JS, JS, JS_BR,
                            JS_GZ, MTIME, PNG, ROOT_INDEX, SECRET, MarkerApp,
                            etag_size, http_date, make_tree, norm_type,
                            parse_http_date, tool_env)
from support import Conn, Response, build, request, wait_for

pytestmark = pytest.mark.timeout(60)

JS_TYPES = ('application/javascript', 'application/javascript;charset=utf-8',
            'text/javascript', 'text/javascript;charset=utf-8')


# -- fixtures and helpers ----------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path)


class Static:
    """A server with the tree's root under /static, and its app."""

    def __init__(self, srv, app, tree):
        self.srv, self.app, self.tree = srv, app, tree

    @property
    def address(self):
        return self.srv.address

    def req(self, target, method='GET', headers=(), body=b''):
        """One request (raw target bytes, latin-1) on a fresh connection."""
        return request(self.srv.address, method, target, headers, body)

    def get(self, target, *headers):
        return self.req(target, 'GET', headers)


@pytest.fixture
def static(serve, tree):
    def start(**options):
        app = MarkerApp()
        options.setdefault('static', {'/static': str(tree.root)})
        return Static(serve(app, **options), app, tree)
    return start


def ctype(r):
    return norm_type(r.header('content-type'))


def check_file_head(r, data, types):
    """The head every 200 for a whole file has (docs/static.md, GET and
    HEAD)."""
    assert r.status == 200, r
    assert ctype(r) in types, r
    assert r.header('content-length') == str(len(data)), r
    etag = r.header('etag')
    assert etag and etag.startswith('"') and etag.endswith('"'), r
    assert etag_size(etag) == len(data), r
    lm = r.header('last-modified')
    assert lm == http_date(MTIME), r
    assert parse_http_date(lm) == MTIME
    assert r.header('accept-ranges') == 'bytes', r
    assert not r.has('content-encoding'), r
    assert r.has('date'), r                   # RFC 9110 6.6.1


def assert_open(c, note=''):
    """The connection still serves: a GET on it gets a.txt."""
    c.send(build('GET', '/static/a.txt'))
    r = c.read_response()
    assert r.status == 200 and r.body == A_TXT, (note, r)


BASIC = [
    ('a.txt', A_TXT, ('text/plain;charset=utf-8',)),
    ('style.css', CSS, ('text/css;charset=utf-8',)),
    ('app.js', JS, JS_TYPES),
    ('img.png', PNG, ('image/png',)),
    ('data.xyz', None, ('application/octet-stream',)),
    ('noext', None, ('application/octet-stream',)),
    ('page.html', None, ('text/html;charset=utf-8',)),
]


# -- 1, 2, 15: GET, HEAD, keep-alive, pipelining, under every driver ----------

@pytest.mark.parametrize('driver', DRIVERS)
def test_get_head_keepalive_every_driver(static, tree, driver):
    s = static()
    with Conn(s.address) as c:
        for name, data, types in BASIC:
            data = tree.files[name] if data is None else data
            c.send(build('GET', '/static/' + name))
            r = c.read_response()
            check_file_head(r, data, types)
            assert r.body == data, name
            c.send(build('HEAD', '/static/' + name))
            h = c.read_response('HEAD')
            check_file_head(h, data, types)
            for k in ('content-type', 'content-length', 'etag',
                      'last-modified', 'accept-ranges'):
                assert h.header(k) == r.header(k), (k, r, h)
        # Many more on the same connection, static and application mixed
        # (HEAD above sent no body: these still parse).
        for i in range(40):
            if i % 3 == 0:
                c.send(build('GET', '/app/%d' % i))
                r = c.read_response()
                assert r.status == 200 and r.body == b'APP:/app/%d' % i
            else:
                c.send(build('GET', '/static/sub/b.txt'))
                r = c.read_response()
                assert r.status == 200 and r.body == b'bee\n', r
    assert s.app.calls == 14, s.app.paths


@pytest.mark.parametrize('driver', DRIVERS)
def test_pipelined_static_and_app_in_one_write(static, tree, driver):
    s = static()
    etag = s.get('/static/a.txt').header('etag')
    smuggled = build('GET', '/app/smuggled')
    reqs = [
        ('GET', build('GET', '/static/a.txt')),
        ('GET', build('GET', '/app/one')),
        ('HEAD', build('HEAD', '/static/style.css')),
        ('GET', build('GET', '/static/a.txt', [('Range', 'bytes=0-9')])),
        ('GET', build('GET', '/static/nope.txt')),
        ('POST', build('POST', '/static/a.txt', body=smuggled)),
        ('GET', build('GET', '/static/a.txt', [('If-None-Match', etag)])),
        ('GET', build('GET', '/app/two')),
        ('GET', build('GET', '/static/img.png')),
        ('GET', build('GET', '/static/app.js',
                      [('Accept-Encoding', 'gzip')])),
    ]
    with Conn(s.address) as c:
        c.send(b''.join(raw for _, raw in reqs))
        rs = [c.read_response(m) for m, _ in reqs]
        assert c.is_open(0.1)
    got = [(r.status, r.body) for r in rs]
    expected = [(200, A_TXT), (200, b'APP:/app/one'), (200, b''),
                (206, A_TXT[:10]), (404, None), (405, None), (304, b''),
                (200, b'APP:/app/two'), (200, PNG), (200, JS_GZ)]
    for i, ((gs, gb), (es, eb)) in enumerate(zip(got, expected)):
        assert gs == es, (i, reqs[i][1][:60], rs[i])
        if eb is not None:
            assert gb == eb, (i, reqs[i][1][:60], rs[i])
    assert rs[2].header('content-length') == str(len(CSS))
    assert rs[5].header('allow') == 'GET, HEAD'
    assert s.app.paths == ['/app/one', '/app/two']


def test_outside_the_prefix_reaches_the_app(static):
    s = static()
    for target, path in [('/', '/'), ('/staticx', '/staticx'),
                         ('/staticx/a.txt', '/staticx/a.txt'),
                         ('/stat', '/stat'), ('/STATIC/a.txt', '/STATIC/a.txt'),
                         ('/other/static/a.txt', '/other/static/a.txt'),
                         ('/static.txt', '/static.txt')]:
        r = s.get(target)
        assert r.status == 200 and r.body == b'APP:' + path.encode(), \
            (target, r)
    assert s.app.calls == 7
    # and the prefix itself, and everything under it, never does
    for target in ('/static', '/static/', '/static/a.txt', '/static/nope',
                   '/static/sub/', '/static/a.txt?v=3'):
        r = s.get(target)
        assert not r.body.startswith(b'APP:'), (target, r)
    assert s.app.calls == 7, s.app.paths


def test_query_string_is_not_part_of_the_file_name(static):
    s = static()
    r = s.get('/static/a.txt?v=3&x=%2e%2e')
    assert r.status == 200 and r.body == A_TXT, r


def test_percent_encoded_prefix_is_static_not_the_app(static):
    # docs/static.md: "/%73tatic/x is never handed to the application as
    # /static/x" -- the decoded path matches the prefix.
    s = static()
    r = s.get('/%73tatic/a.txt')
    assert s.app.calls == 0, (s.app.paths, r)
    assert r.status == 200 and r.body == A_TXT, r


def test_absolute_form_request_target_is_static(static):
    """RFC 9112 3.2.2: the path of "GET http://x/static/a.txt" is
    /static/a.txt, a static request; and its dot segments get the static
    answers, never the application."""
    s = static()
    r = s.get('http://x/static/a.txt')
    assert (r.status, r.body, s.app.paths) == (200, A_TXT, []), r
    for target in ('http://x/static/../secret.txt',
                   'http://x/static/%2e%2e/secret.txt'):
        r = s.get(target)
        assert r.status == 400 and SECRET not in r.body, (target, r)
    assert s.app.calls == 0, s.app.paths


def test_encoded_names_are_decoded_once(static, tree):
    s = static()
    r = s.get('/static/caf%C3%A9.txt')
    assert r.status == 200 and r.body == tree.files['caf\u00e9.txt'], r
    r = s.get('/static/with%20space.txt')
    assert r.status == 200 and r.body == tree.files['with space.txt'], r
    r = s.get('/static/%61.txt')
    assert r.status == 200 and r.body == A_TXT, r
    # %252e%252e decodes once to the name "%2e%2e", a file of the tree
    r = s.get('/static/%252e%252e')
    assert r.status == 200 and r.body == tree.files['%2e%2e'], r
    assert s.app.calls == 0


def test_empty_file(static):
    s = static()
    r = s.get('/static/empty.txt')
    assert r.status == 200 and r.body == b''
    assert r.header('content-length') == '0', r
    assert etag_size(r.header('etag')) == 0


@pytest.mark.parametrize('ext, types', [
    ('.html', ('text/html;charset=utf-8',)),
    ('.htm', ('text/html;charset=utf-8',)),
    ('.css', ('text/css;charset=utf-8',)),
    ('.js', JS_TYPES),
    ('.mjs', JS_TYPES),
    ('.txt', ('text/plain;charset=utf-8',)),
    ('.json', ('application/json', 'application/json;charset=utf-8')),
    ('.svg', ('image/svg+xml', 'image/svg+xml;charset=utf-8')),
    ('.xml', ('application/xml', 'application/xml;charset=utf-8',
              'text/xml;charset=utf-8')),
    ('.png', ('image/png',)),
    ('.jpg', ('image/jpeg',)),
    ('.jpeg', ('image/jpeg',)),
    ('.gif', ('image/gif',)),
    ('.webp', ('image/webp',)),
    ('.ico', ('image/x-icon', 'image/vnd.microsoft.icon')),
    ('.woff', ('font/woff', 'application/font-woff')),
    ('.woff2', ('font/woff2',)),
    ('.wasm', ('application/wasm',)),
    ('.pdf', ('application/pdf',)),
    ('.mp4', ('video/mp4',)),
    ('.unknownext', ('application/octet-stream',)),
])
def test_common_web_types(static, tree, ext, types):
    """docs/static.md: "a built-in table of the common web types, text types
    with ; charset=utf-8" (a text/* type without the charset fails)."""
    tree.write('t/file' + ext, b'x')
    s = static()
    r = s.get('/static/t/file' + ext)
    assert r.status == 200 and r.body == b'x'
    assert ctype(r) in types, r.header('content-type')


def test_static_types_add_and_override(static):
    s = static(static_types={'.foo': 'application/x-foo',
                             '.png': 'image/x-custom'})
    assert ctype(s.get('/static/plain.foo')) == 'application/x-foo'
    assert ctype(s.get('/static/img.png')) == 'image/x-custom'
    assert ctype(s.get('/static/style.css')) == 'text/css;charset=utf-8'


def test_several_prefixes(static, tree, tmp_path):
    other = tmp_path / 'assets'
    other.mkdir()
    (other / 'a.txt').write_bytes(b'assets a\n')
    s = static(static={'/static': str(tree.root), '/assets': str(other)})
    assert s.get('/static/a.txt').body == A_TXT
    assert s.get('/assets/a.txt').body == b'assets a\n'
    assert s.get('/assetsx/a.txt').body == b'APP:/assetsx/a.txt'


def test_missing_directory_is_refused_by_server(tmp_path):
    with pytest.raises(Exception) as e:
        lichen.Server(MarkerApp(), '127.0.0.1', 0,
                      static={'/static': str(tmp_path / 'nonexistent')})
    assert not isinstance(e.value, TypeError), e.value


def test_server_header_option_applies(static):
    s = static(server_header='lichen-test')
    assert s.get('/static/a.txt').header('server') == 'lichen-test'
    assert s.get('/static/nope').header('server') == 'lichen-test'


def test_head_of_an_error_has_no_body(static):
    s = static()
    with Conn(s.address) as c:
        c.send(build('HEAD', '/static/nope.txt') +
               build('HEAD', '/static/%2e%2e/secret.txt') +
               build('GET', '/static/a.txt'))
        assert c.read_response('HEAD').status == 404
        assert c.read_response('HEAD').status == 400
        r = c.read_response()
        assert r.status == 200 and r.body == A_TXT, r


def test_http10_request(static):
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/a.txt', version='HTTP/1.0'))
        r = c.read_response()
        assert r.status == 200 and r.body == A_TXT
        c.expect_close(2.0)


# -- 3: methods --------------------------------------------------------------

@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH',
                                    'OPTIONS'])
def test_other_methods_405_connection_stays(static, method):
    s = static()
    with Conn(s.address) as c:
        c.send(build(method, '/static/a.txt'))
        r = c.read_response()
        assert r.status == 405, r
        assert r.header('allow') == 'GET, HEAD', r
        assert r.has('content-length') or r.chunked, r
        assert 'close' not in r.tokens('connection'), r
        assert_open(c, method)
    assert s.app.calls == 0


@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
@pytest.mark.parametrize('method', ['POST', 'PUT'])
def test_405_with_a_body_never_parses_the_body_as_a_request(static, method,
                                                            framing):
    """The body is a request for the application: the server either
    discards it and keeps the connection, or closes; never runs it."""
    s = static()
    body = build('GET', '/app/smuggled')
    if framing == 'chunked':
        raw = build(method, '/static/a.txt',
                    [('Transfer-Encoding', 'chunked')], auto_length=False)
        raw += b'%x\r\n%s\r\n0\r\n\r\n' % (len(body), body)
    else:
        raw = build(method, '/static/a.txt', body=body)
    with Conn(s.address) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 405 and r.header('allow') == 'GET, HEAD', r
        if 'close' in r.tokens('connection'):
            c.expect_close(2.0)
        else:
            assert_open(c, 'after a %s %s body' % (method, framing))
    assert s.app.calls == 0, s.app.paths


@pytest.mark.parametrize('framing', ['content-length', 'chunked'])
@pytest.mark.parametrize('method', ['GET', 'HEAD'])
def test_get_with_a_body_never_parses_the_body_as_a_request(static, method,
                                                            framing):
    s = static()
    body = build('GET', '/app/smuggled')
    if framing == 'chunked':
        raw = build(method, '/static/a.txt',
                    [('Transfer-Encoding', 'chunked')], auto_length=False)
        raw += b'%x\r\n%s\r\n0\r\n\r\n' % (len(body), body)
    else:
        raw = build(method, '/static/a.txt', body=body)
    with Conn(s.address) as c:
        c.send(raw)
        r = c.read_response(method)
        assert r.status in (200, 400), r
        if r.status == 200:
            assert r.body == (A_TXT if method == 'GET' else b''), r
        if 'close' in r.tokens('connection'):
            c.expect_close(2.0)
        else:
            c.send(build('GET', '/static/sub/b.txt'))
            r = c.read_response()
            assert r.status == 200 and r.body == b'bee\n', r
    assert s.app.calls == 0, s.app.paths


def test_connection_close_is_honoured(static):
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/a.txt', [('Connection', 'close')]))
        r = c.read_response()
        assert r.status == 200 and r.body == A_TXT
        assert 'close' in r.tokens('connection'), r
        c.expect_close(2.0)


# -- 4: conditional requests -------------------------------------------------

LM = http_date(MTIME)
OLDER = http_date(MTIME - 86400)
NEWER = http_date(MTIME + 10)


def _cond_cases(etag):
    weak = 'W/' + etag
    return [
        # (headers, expected status)
        ([('If-None-Match', etag)], 304),
        ([('If-None-Match', '"nope", %s, "other"' % etag)], 304),
        ([('If-None-Match', '"nope",%s' % etag)], 304),
        ([('If-None-Match', '*')], 304),
        ([('If-None-Match', weak)], 304),              # weak comparison
        ([('If-None-Match', '"0-0"')], 200),
        ([('If-None-Match', '"nope", W/"0-0"')], 200),
        ([('If-Modified-Since', LM)], 304),
        ([('If-Modified-Since', NEWER)], 304),
        ([('If-Modified-Since', OLDER)], 200),
        ([('If-Modified-Since', 'not a date')], 200),
        ([('If-None-Match', '"0-0"'), ('If-Modified-Since', LM)], 200),
        ([('If-None-Match', etag), ('If-Modified-Since', OLDER)], 304),
        ([('If-Match', '"0-0"')], 412),
        ([('If-Match', etag)], 200),
        ([('If-Match', '"x", %s' % etag)], 200),
        ([('If-Match', '*')], 200),
        ([('If-Match', weak)], 412),                    # strong comparison
        ([('If-Unmodified-Since', OLDER)], 412),
        ([('If-Unmodified-Since', LM)], 200),
        ([('If-Unmodified-Since', NEWER)], 200),
        ([('If-Match', etag), ('If-Unmodified-Since', OLDER)], 200),
        ([('If-Match', '"0-0"'), ('If-Unmodified-Since', NEWER)], 412),
    ]


def test_conditional_requests(static):
    s = static()
    etag = s.get('/static/a.txt').header('etag')
    failures = []
    for headers, status in _cond_cases(etag):
        for method in ('GET', 'HEAD'):
            with Conn(s.address) as c:
                c.send(build(method, '/static/a.txt', headers))
                r = c.read_response(method)
                if r.status != status:
                    failures.append((method, headers, status, r))
                    continue
                if status == 200 and method == 'GET' and r.body != A_TXT:
                    failures.append((method, headers, 'body', r))
                if r.status == 304 and r.header('etag') != etag:
                    failures.append((method, headers, '304 without ETag', r))
                if 'close' in r.tokens('connection'):
                    failures.append((method, headers, 'closed', r))
                    continue
                c.send(build('GET', '/static/a.txt'))
                r2 = c.read_response()
                if r2.status != 200 or r2.body != A_TXT:
                    failures.append((method, headers, 'next request', r2))
    assert not failures, '\n'.join(map(repr, failures))


@pytest.mark.parametrize('date', [
    'Tuesday, 14-Nov-23 22:13:20 GMT',    # RFC 850
    'Tue Nov 14 22:13:20 2023',           # asctime
])
def test_if_modified_since_obsolete_date_forms(static, date):
    # RFC 9110 5.6.7: a recipient MUST accept all three date formats.
    s = static()
    r = s.get('/static/a.txt', ('If-Modified-Since', date))
    assert r.status == 304, r


def test_sub_second_mtime_compares_at_the_second_of_last_modified(static,
                                                                   tree):
    """Last-Modified has whole seconds; a file modified at .7 of a second
    is not "modified since" its own Last-Modified, nor does it fail an
    If-Unmodified-Since of that value."""
    p = tree.write('frac.txt', b'fractional mtime\n', mtime=None)
    os.utime(p, ns=(MTIME * 10**9 + 700_000_000,) * 2)
    s = static()
    r = s.get('/static/frac.txt')
    assert r.header('last-modified') == LM, r
    r = s.get('/static/frac.txt', ('If-Modified-Since', LM))
    assert r.status == 304, r
    r = s.get('/static/frac.txt', ('If-Unmodified-Since', LM))
    assert r.status == 200, r
    r = s.get('/static/frac.txt', ('Range', 'bytes=0-3'), ('If-Range', LM))
    assert r.status in (200, 206), r
    assert r.body == (b'frac' if r.status == 206 else b'fractional mtime\n')


def test_304_carries_etag_cache_control_and_vary(static):
    # RFC 9110 15.4.5: a 304 has the ETag, Cache-Control and Vary a 200
    # would have.
    s = static(static_max_age=3600)
    r200 = s.get('/static/app.js')
    r = s.get('/static/app.js', ('If-None-Match', r200.header('etag')))
    assert r.status == 304 and r.body == b''
    assert r.header('etag') == r200.header('etag')
    assert r.tokens('cache-control') == ['public', 'max-age=3600'], r
    assert 'accept-encoding' in r.tokens('vary'), r


def test_412_and_304_keep_the_connection(static):
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/a.txt', [('If-Match', '"0-0"')]))
        assert c.read_response().status == 412
        c.send(build('GET', '/static/a.txt', [('If-None-Match', '*')]))
        assert c.read_response().status == 304
        assert_open(c)


# -- 5: ranges ---------------------------------------------------------------

SIZE = len(A_TXT)


@pytest.mark.parametrize('spec, first, last', [
    ('bytes=0-9', 0, 9),
    ('bytes=10-', 10, SIZE - 1),
    ('bytes=-5', SIZE - 5, SIZE - 1),
    ('bytes=5-5', 5, 5),
    ('bytes=%d-' % (SIZE - 1), SIZE - 1, SIZE - 1),
    ('bytes=0-999999', 0, SIZE - 1),       # last past the end: clipped
    ('bytes=-999999', 0, SIZE - 1),        # suffix longer than the file
    ('bytes=20-29', 20, 29),
])
def test_single_range_206(static, spec, first, last):
    s = static()
    r = s.get('/static/a.txt', ('Range', spec))
    assert r.status == 206, r
    assert r.body == A_TXT[first:last + 1], r
    assert r.header('content-range') == 'bytes %d-%d/%d' % (first, last,
                                                            SIZE), r
    assert r.header('content-length') == str(last - first + 1), r
    assert ctype(r) == 'text/plain;charset=utf-8'
    assert r.has('etag'), r


@pytest.mark.parametrize('spec', ['bytes=%d-' % SIZE, 'bytes=%d-' % (SIZE + 1),
                                  'bytes=1000-2000'])
def test_range_past_the_end_416(static, spec):
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/a.txt', [('Range', spec)]))
        r = c.read_response()
        assert r.status == 416, r
        assert r.header('content-range') == 'bytes */%d' % SIZE, r
        assert A_TXT not in r.body
        assert_open(c)


def test_range_on_an_empty_file_416(static):
    s = static()
    r = s.get('/static/empty.txt', ('Range', 'bytes=0-'))
    assert r.status == 416 and r.header('content-range') == 'bytes */0', r


@pytest.mark.parametrize('spec', [
    'bytes=0-1,3-4', 'bytes=0-1, 5-', 'bytes=-1,0-0',      # several ranges
    'bytes=abc', 'bytes=', 'bytes=--5', 'bytes=1-2-3', 'bytes=5-2',
    'items=0-5', 'bytes 0-5', '0-5', 'bytes=0x10-', 'bytes=-', 'bytes=1.5-3',
])
def test_several_ranges_or_garbage_get_the_whole_file(static, spec):
    s = static()
    r = s.get('/static/a.txt', ('Range', spec))
    assert r.status == 200 and r.body == A_TXT, (spec, r)
    assert not r.has('content-range'), r


@pytest.mark.parametrize('spec, statuses', [
    ('bytes=99999999999999999999999999-', (200, 416)),
    ('bytes=0-99999999999999999999999999', (200, 206)),
    ('bytes=-99999999999999999999999999', (200, 206)),
    ('bytes=18446744073709551615-', (200, 416)),
    ('bytes=9223372036854775807-', (200, 416)),
    ('bytes=9223372036854775808-9223372036854775809', (200, 416)),
    ('bytes=-0', (200, 416)),       # RFC 9110 14.1.1: not satisfiable
])
def test_absurd_ranges_are_ignored_or_unsatisfiable(static, spec, statuses):
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/a.txt', [('Range', spec)]))
        r = c.read_response()
        assert r.status in statuses, (spec, r)
        if r.status == 200:
            assert r.body == A_TXT and not r.has('content-range'), r
        elif r.status == 206:
            assert r.body == A_TXT and r.header('content-range') == \
                'bytes 0-%d/%d' % (SIZE - 1, SIZE), r
        else:
            assert r.header('content-range') == 'bytes */%d' % SIZE, r
        assert_open(c)


def test_range_206_has_the_files_etag(static):
    s = static()
    whole = s.get('/static/a.txt')
    r = s.get('/static/a.txt', ('Range', 'bytes=1-2'))
    assert r.status == 206 and r.header('etag') == whole.header('etag'), r
    assert r.header('last-modified') == LM, r


def test_head_ignores_range(static):
    # RFC 9110 14.2: range handling is defined for GET only.
    s = static()
    r = s.req('/static/a.txt', 'HEAD', [('Range', 'bytes=0-9')])
    assert r.status == 200 and r.header('content-length') == str(SIZE), r


def test_if_range(static):
    s = static()
    etag = s.get('/static/a.txt').header('etag')
    rng = ('Range', 'bytes=0-9')
    cases = [
        ([('If-Range', etag)], 206),
        ([('If-Range', '"0-0"')], 200),                 # an old ETag
        ([('If-Range', 'W/' + etag)], 200),             # strong comparison
        ([('If-Range', LM)], 206),                       # exact date
        ([('If-Range', OLDER)], 200),
    ]
    for headers, status in cases:
        r = s.req('/static/a.txt', 'GET', [rng] + headers)
        assert r.status == status, (headers, r)
        assert r.body == (A_TXT[:10] if status == 206 else A_TXT), r


def test_if_none_match_wins_over_range(static):
    s = static()
    etag = s.get('/static/a.txt').header('etag')
    r = s.get('/static/a.txt', ('Range', 'bytes=0-9'), ('If-None-Match', etag))
    assert r.status == 304 and r.body == b'', r


# -- 6: precompressed siblings -----------------------------------------------

@pytest.mark.parametrize('accept, variant', [
    ('gzip', 'gzip'),
    ('br, gzip', 'br'),
    ('gzip, br', 'br'),                 # br preferred
    ('br', 'br'),
    ('gzip;q=0', None),
    ('gzip; q=0', None),
    ('gzip;q=0.0, br;q=0', None),
    ('br;q=0, *', 'gzip'),
    ('br;q=0, gzip', 'gzip'),
    ('*', 'br'),
    ('*;q=0', None),
    ('identity', None),
    ('deflate', None),
    ('GZIP', 'gzip'),                   # content-codings are case-insensitive
    ('br;q=0.001', 'br'),               # any q above 0 accepts
    ('gzip;q=0.000', None),
    ('*, br;q=0', 'gzip'),
    ('gzip;q=0, *', 'br'),
    ('br;q=0, gzip;q=0, *', None),
    (None, None),
])
def test_precompressed_choice(static, accept, variant):
    s = static()
    headers = [('Accept-Encoding', accept)] if accept is not None else []
    identity = s.get('/static/app.js')
    r = s.req('/static/app.js', 'GET', headers)
    want = {None: JS, 'gzip': JS_GZ, 'br': JS_BR}[variant]
    assert r.status == 200 and r.body == want, (accept, r)
    assert r.header('content-length') == str(len(want)), r
    assert ctype(r) in JS_TYPES, r
    assert ctype(r) == ctype(identity)          # the original's type
    assert 'accept-encoding' in r.tokens('vary'), (accept, r)
    if variant is None:
        assert not r.has('content-encoding'), r
        assert r.header('etag') == identity.header('etag')
    else:
        assert r.header('content-encoding') == variant, r
        etag = r.header('etag')
        assert etag and etag.startswith('"') and etag.endswith('"'), r
        assert etag != identity.header('etag'), r


def test_precompressed_etags_are_distinct_and_revalidate(static):
    s = static()
    tags = {}
    for enc in ('identity', 'gzip', 'br'):
        tags[enc] = s.get('/static/app.js', ('Accept-Encoding', enc)).header(
            'etag')
    assert len(set(tags.values())) == 3, tags
    r = s.get('/static/app.js', ('Accept-Encoding', 'gzip'),
              ('If-None-Match', tags['gzip']))
    assert r.status == 304, r
    assert r.header('etag') == tags['gzip'], r
    assert 'accept-encoding' in r.tokens('vary'), r
    # the gzip tag does not validate the identity representation
    r = s.get('/static/app.js', ('If-None-Match', tags['gzip']))
    assert r.status == 200 and r.body == JS, r
    r = s.get('/static/app.js', ('Accept-Encoding', 'br'),
              ('If-None-Match', tags['identity']))
    assert r.status == 200 and r.body == JS_BR, r


def test_precompressed_head_and_range(static):
    s = static()
    h = s.req('/static/app.js', 'HEAD', [('Accept-Encoding', 'gzip')])
    assert h.status == 200 and h.header('content-encoding') == 'gzip', h
    assert h.header('content-length') == str(len(JS_GZ)), h
    assert 'accept-encoding' in h.tokens('vary'), h
    r = s.get('/static/app.js', ('Accept-Encoding', 'gzip'),
              ('Range', 'bytes=0-9'))
    assert r.status == 206, r
    assert 'accept-encoding' in r.tokens('vary'), r
    # the range is of whichever representation was chosen, consistently
    if r.header('content-encoding') == 'gzip':
        assert r.body == JS_GZ[:10], r
        assert r.header('content-range') == 'bytes 0-9/%d' % len(JS_GZ), r
    else:
        assert not r.has('content-encoding'), r
        assert r.body == JS[:10], r
        assert r.header('content-range') == 'bytes 0-9/%d' % len(JS), r


def test_single_sibling_and_no_sibling(static, tree):
    s = static()
    r = s.get('/static/only_gz.css', ('Accept-Encoding', 'br, gzip'))
    assert r.header('content-encoding') == 'gzip', r
    assert r.body == tree.files['only_gz.css.gz']
    assert ctype(r) == 'text/css;charset=utf-8', r
    r = s.get('/static/only_br.js', ('Accept-Encoding', 'gzip'))
    assert not r.has('content-encoding') and \
        r.body == tree.files['only_br.js'], r
    assert 'accept-encoding' in r.tokens('vary'), r
    r = s.get('/static/only_br.js', ('Accept-Encoding', 'gzip, br'))
    assert r.header('content-encoding') == 'br', r
    assert r.body == tree.files['only_br.js.br']
    # a file without siblings
    r = s.get('/static/style.css', ('Accept-Encoding', 'br, gzip'))
    assert r.status == 200 and r.body == CSS and \
        not r.has('content-encoding'), r


def test_sibling_symlink_out_of_the_root_is_never_served(static):
    s = static()
    r = s.get('/static/evil.js', ('Accept-Encoding', 'gzip'))
    assert SECRET not in r.body, r
    assert r.status in (200, 403, 404), r
    if r.status == 200:
        assert r.body == EVIL_JS and not r.has('content-encoding'), r


def test_sibling_asked_for_by_name(static):
    s = static()
    r = s.get('/static/app.js.gz')
    assert r.status == 200 and r.body == JS_GZ, r


# -- 7: Cache-Control --------------------------------------------------------

def test_no_cache_control_by_default(static):
    s = static()
    for path in ('/static/a.txt', '/static/app.0123abcd.js'):
        r = s.get(path)
        assert r.status == 200 and not r.has('cache-control'), r


def test_max_age(static):
    s = static(static_max_age=3600)
    r = s.get('/static/a.txt')
    assert r.header('cache-control') == 'public, max-age=3600', r
    r = s.get('/static/a.txt', ('Range', 'bytes=0-1'))
    assert r.status == 206 and \
        r.header('cache-control') == 'public, max-age=3600', r


IMMUTABLE = {'public', 'max-age=31536000', 'immutable'}


@pytest.mark.parametrize('path, hashed', [
    ('app.0123abcd.js', True),
    ('app-0123abcd.js', True),
    ('main.3f2a9c1b7d4e.css', True),
    ('sub/app.0123abcd.js', True),
    ('app.js', False),
    ('app.0123abc.js', False),            # 7 hex digits
    ('app.0123ABCD.js', False),           # [0-9a-f] only
    ('a.txt', False),
])
def test_immutable_default_pattern(static, path, hashed):
    s = static(static_immutable=True)
    r = s.get('/static/' + path)
    assert r.status == 200, r
    if hashed:
        assert set(r.tokens('cache-control')) == IMMUTABLE, r
    else:
        assert 'immutable' not in r.tokens('cache-control'), r
        assert not r.has('cache-control'), r


def test_immutable_with_max_age(static):
    s = static(static_immutable=True, static_max_age=60)
    r = s.get('/static/app.0123abcd.js')
    assert set(r.tokens('cache-control')) == IMMUTABLE, r
    r = s.get('/static/app.js')
    assert r.tokens('cache-control') == ['public', 'max-age=60'], r


def test_immutable_custom_regex(static):
    s = static(static_immutable=r'(^|/)v[0-9]+/')
    assert set(s.get('/static/v1/x.js').tokens('cache-control')) == IMMUTABLE
    assert not s.get('/static/x.js').has('cache-control')
    assert not s.get('/static/app.0123abcd.js').has('cache-control')


# -- 8: directories and the index --------------------------------------------

def test_index(static):
    s = static(static_index='index.html')
    r = s.get('/static/docs/')
    assert r.status == 200 and r.body == DOCS_INDEX, r
    assert ctype(r) == 'text/html;charset=utf-8'
    r = s.get('/static/docs/?x=1')
    assert r.status == 200 and r.body == DOCS_INDEX, r
    h = s.req('/static/docs/', 'HEAD')
    assert h.status == 200 and h.header('content-length') == \
        str(len(DOCS_INDEX)), h
    with Conn(s.address) as c:
        c.send(build('GET', '/static/docs'))
        r = c.read_response()
        assert r.status == 301, r
        assert r.header('location', '').endswith('/static/docs/'), r
        assert_open(c)
    r = s.get('/static/emptydir/')
    assert r.status == 404, r
    assert s.get('/static/docs/index.html').body == DOCS_INDEX
    assert s.app.calls == 0


def test_index_of_the_root(static):
    s = static(static_index='index.html')
    r = s.get('/static/')
    assert r.status == 200 and r.body == ROOT_INDEX, r
    r = s.get('/static')
    assert r.status == 301 and r.header('location', '').endswith('/static/'), r


def test_index_never_leaves_the_root(static, tree):
    tree.link('evil/index.html', '../../secret.txt')
    (tree.root / 'trap' / 'index.html').mkdir(parents=True)
    s = static(static_index='index.html')
    for target in ('/static/evil/', '/static/trap/'):
        r = s.get(target)
        assert r.status in OUT and SECRET not in r.body, (target, r)


def test_redirect_location_is_encoded_and_never_injects(static, tree):
    (tree.root / 'sp ace').mkdir()
    tree.write('sp ace/index.html', b'space index\n')
    s = static(static_index='index.html')
    r = s.get('/static/sp%20ace')
    assert r.status == 301, r
    loc = r.header('location')
    assert not any(ch in loc for ch in ' \t\r\n"<>'), loc
    from urllib.parse import unquote, urlsplit
    assert unquote(urlsplit(loc).path).endswith('/static/sp ace/'), loc
    r = s.get(loc)
    assert r.status == 200 and r.body == b'space index\n', r
    try:
        (tree.root / 'inj\r\nX-Injected: yes').mkdir()
    except OSError:
        return
    r = s.get('/static/inj%0d%0aX-Injected:%20yes')
    assert r.status == 400, r
    assert not r.has('x-injected'), r


def test_directories_without_index_are_404_never_listed(static, tree):
    s = static()
    names = [b'index.html', b'other.txt', b'a.txt', b'b.txt']
    for target in ('/static/docs/', '/static/docs', '/static/', '/static',
                   '/static/sub/', '/static/emptydir/'):
        r = s.get(target)
        assert r.status == 404, (target, r)
        assert ctype(r).startswith('text/plain'), r
        for name in names:
            assert name not in r.body, (target, r)
    assert s.app.calls == 0


# -- 9: paths that never leave the directory ---------------------------------

E400 = (400,)
E404 = (404,)
OUT = (403, 404)

TRAVERSAL = [
    ('/static/../secret.txt', E400),
    ('/static/%2e%2e/secret.txt', E400),
    ('/static/%2E%2E/secret.txt', E400),
    ('/static/.%2e/secret.txt', E400),
    ('/static/%2e./secret.txt', E400),
    ('/static/.%2E/secret.txt', E400),
    ('/static/..%2fsecret.txt', E400),
    ('/static/..%2Fsecret.txt', E400),
    ('/static/%2e%2e%2fsecret.txt', E400),
    ('/static/%2e%2e%5csecret.txt', E400),
    ('/static/..\\secret.txt', E400),
    ('/static/..%5csecret.txt', E400),
    ('/static/..%5Csecret.txt', E400),
    ('/static/a%00.txt', E400),
    ('/static/..%00/secret.txt', E400),
    ('/static/%c0%ae%c0%ae/secret.txt', E400),     # overlong UTF-8 '.'
    ('/static/%e0%80%ae%e0%80%ae/secret.txt', E400),
    ('/static/%c0%afsecret.txt', E400),              # overlong '/'
    ('/static/%ff.txt', E400),
    ('/static/%ed%a0%80.txt', E400),                 # a UTF-16 surrogate
    ('/static/./a.txt', E400),
    ('/static/%2e/a.txt', E400),
    ('/static/sub/../a.txt', E400),
    ('/static/sub/%2e%2e/a.txt', E400),
    ('/static/sub/..', E400),
    ('/static/sub/.', E400),
    ('/static/..', E400),
    ('/static/%2e%2e', E400),
    ('/static/sub/..%2f..%2fsecret.txt', E400),
    ('/static/sub%2fb.txt', E400),                   # an encoded slash
    ('/static/%2fetc/passwd', E400),
    ('/static/%zz', E400),
    ('/static/a%2', E400),
    ('/static/a%', E400),
    ('/static/a%01b', E400),
    ('/static/a%0a', E400),
    ('/static/a%0d%0a', E400),
    ('/static/a%1f', E400),
    ('/static/a%7f', E400),
    ('/static/../static/a.txt', E400),
    ('/static/.env', E404),
    ('/static/.git/config', E404),
    ('/static/.git/', E404),
    ('/static/sub/.hidden', E404),
    ('/static/%2eenv', E404),
    ('/static/%2Egit/config', E404),
    ('/static/..;/secret.txt', E404),                # "..;" is a name
    ('/static/secret.txt', E404),
    ('/static/nope.txt', E404),
    ('/static/pipe.txt', E404),
    ('/static/a.txt/', E404),                        # a file is no directory
    ('/static/a.txt/x', E404),
    ('/static/' + 'n' * 300 + '.txt', (400, 404)),   # longer than NAME_MAX
    ('/static/' + 'd/' * 3000 + 'x.txt', (400, 404)),
    ('/static/link_out.txt', OUT),
    ('/static/link_out_abs.txt', OUT),
    ('/static/link_dir_out/secret.txt', OUT),
    ('/static/devnull', OUT),
    ('/static/loop', OUT),
    ('/static//etc/passwd', (400, 403, 404)),
    ('/%73tatic/../secret.txt', (400, 403, 404)),
    ('/%73tatic/%2e%2e/secret.txt', (400, 403, 404)),
    ('/static%2f..%2fsecret.txt', (400, 403, 404)),
]


@pytest.mark.parametrize('target, statuses', TRAVERSAL,
                         ids=[t for t, _ in TRAVERSAL])
def test_traversal_and_forbidden_names(static, target, statuses):
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', target))
        r = c.read_response()
        assert SECRET not in r.body, r
        assert b'root:' not in r.body, r
        assert r.status in statuses, (target, r, r.body[:200])
        assert ctype(r).startswith('text/plain'), r
        assert 'close' not in r.tokens('connection'), r
        assert_open(c, target)
        assert SECRET not in c.buf
    assert s.app.calls == 0, s.app.paths


def test_dotfiles_served_when_enabled_but_dot_segments_never(static, tree):
    s = static(static_dotfiles=True)
    for target, rel in [('/static/.env', '.env'),
                        ('/static/.git/config', '.git/config'),
                        ('/static/sub/.hidden', 'sub/.hidden'),
                        ('/static/%2eenv', '.env')]:
        r = s.get(target)
        assert r.status == 200 and r.body == tree.files[rel], (target, r)
    for target in ('/static/../secret.txt', '/static/%2e%2e/secret.txt',
                   '/static/.%2e/secret.txt', '/static/./a.txt',
                   '/static/sub/../a.txt', '/static/..%2fsecret.txt'):
        r = s.get(target)
        assert r.status == 400, (target, r)
        assert SECRET not in r.body
    for target in ('/static/link_out.txt', '/static/link_dir_out/secret.txt'):
        r = s.get(target)
        assert r.status in OUT and SECRET not in r.body, (target, r)
    assert s.app.calls == 0


def test_symlinks_inside_the_root_are_followed(static):
    s = static()
    for target in ('/static/link_in.txt', '/static/sub/up.txt'):
        r = s.get(target)
        assert r.status == 200 and r.body == A_TXT, (target, r)


def test_fifo_is_404_at_once_and_blocks_nothing(static, tree):
    s = static()
    t0 = time.monotonic()
    with Conn(s.address, timeout=3) as c:
        c.send(build('GET', '/static/pipe.txt'))
        r = c.read_response()
        assert r.status == 404, r
        assert time.monotonic() - t0 < 1.0
        # the same connection, and another one, are answered right after
        assert_open(c)
    t1 = time.monotonic()
    r = request(s.address, 'GET', '/static/a.txt', timeout=2)
    assert r.status == 200 and time.monotonic() - t1 < 1.0
    r = request(s.address, 'GET', '/app/after-fifo', timeout=2)
    assert r.body == b'APP:/app/after-fifo'


def test_socket_and_directory_are_404(static, tree):
    if tree.socket_path is None:
        pytest.skip('tmp path too long for a unix socket')
    s = static()
    for target in ('/static/sock.txt', '/static/sub', '/static/emptydir'):
        r = s.get(target)
        assert r.status == 404, (target, r)


def test_unreadable_file_is_403(static, tree):
    if os.geteuid() == 0:
        pytest.skip('root reads every file')
    p = tree.write('locked.txt', b'locked\n')
    p.chmod(0)
    s = static()
    r = s.get('/static/locked.txt')
    assert r.status == 403 and b'locked' not in r.body, r


# -- the open-file cache -----------------------------------------------------

def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _fds_into(root):
    root = os.path.realpath(root) + os.sep
    n = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink('/proc/self/fd/' + fd)
        except OSError:
            continue
        if target.startswith(root):
            n += 1
    return n


@pytest.mark.parametrize('cache', [0, 4])
def test_open_file_cache_is_bounded(static, tree, cache):
    for i in range(40):
        tree.write('many/f%02d.txt' % i, b'file %d\n' % i)
    s = static(static_cache=cache)
    with Conn(s.address) as c:
        for i in range(40):
            c.send(build('GET', '/static/many/f%02d.txt' % i))
            r = c.read_response()
            assert r.status == 200 and r.body == b'file %d\n' % i
    assert wait_for(lambda: _fds_into(tree.root) <= cache, 2), \
        _fds_into(tree.root)
    s.srv.stop(5)
    s.srv.close()
    assert _fds_into(tree.root) == 0


def test_close_releases_the_static_root(static, tree):
    """After stop() and close(), nothing of the tree is held open: not a
    cached file, not the root directory opened at start-up."""
    s = static()
    assert s.get('/static/a.txt').body == A_TXT
    s.srv.stop(5)
    s.srv.close()
    assert _fds_into(tree.root) == 0
    root = os.path.realpath(tree.root)
    assert not [fd for fd in os.listdir('/proc/self/fd')
                if _readlink('/proc/self/fd/' + fd) == root], \
        'the static root is still open after close()'


STRACE = shutil.which('strace')


@pytest.mark.skipif(not STRACE, reason='strace is not installed')
def test_many_requests_one_open_beneath_the_root(tree, tmp_path):
    """docs/static.md: 10,000 requests for one file are one open, and the
    open is openat2(RESOLVE_BENEATH) with O_NONBLOCK (where the kernel has
    openat2). Counted with strace on a lichen subprocess."""
    import re
    import signal

    from helpers_cli import PYTHON, LichenProcess
    trace = tmp_path / 'trace.txt'
    proc = LichenProcess(
        ['-b', '127.0.0.1:0', '--static', '/static=%s' % tree.root,
         'examples.hello'],
        command=[STRACE, '-f', '-qq', '--seccomp-bpf', '-e',
                 'trace=openat,openat2', '-o', str(trace), PYTHON, '-m',
                 'lichen'])
    m = re.search(r'\[(\d+)\] \[INFO\] Starting lichen', proc.stderr)
    pid = int(m.group(1))
    try:
        port = int(proc.urls[0].rsplit(':', 1)[1])
        with Conn(('127.0.0.1', port)) as c:
            for _ in range(20):
                c.send(build('GET', '/static/a.txt') * 100)
                for _ in range(100):
                    assert c.read_response().body == A_TXT
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        finally:
            proc.kill()
    opens = [l for l in trace.read_text().splitlines()
             if '"a.txt"' in l or '/a.txt"' in l]
    assert len(opens) == 1, opens
    if 'openat2(' in opens[0]:
        assert 'RESOLVE_BENEATH' in opens[0], opens
    assert 'O_NONBLOCK' in opens[0], opens


# -- 10: a file replaced, deleted, created, changed in place -----------------

def test_replaced_file_is_served_new_and_whole_within_a_second(static, tree):
    old = b'the old version\n'
    new = b'the NEW version, which is longer than the old one\n' * 3
    path = tree.write('r.txt', old, mtime=None)
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/r.txt'))
        assert c.read_response().body == old
        tmp = tree.tmp / 'r.tmp'
        tmp.write_bytes(new)
        os.replace(tmp, path)
        t0 = time.monotonic()
        while True:
            c.send(build('GET', '/static/r.txt'))
            r = c.read_response()
            elapsed = time.monotonic() - t0
            assert r.status == 200 and r.body in (old, new), r
            assert r.header('content-length') == str(len(r.body)), r
            assert etag_size(r.header('etag')) == len(r.body), r
            if r.body == new:
                break
            assert elapsed < 1.3, 'still the old file %.2fs after the ' \
                'rename' % elapsed
            time.sleep(0.02)
        for _ in range(10):
            c.send(build('GET', '/static/r.txt'))
            assert c.read_response().body == new


def test_replacement_of_the_same_size_and_mtime_is_seen(static, tree):
    """A rename over the file by one of the same length and the same mtime
    (a deploy that preserves mtimes) is still a new file."""
    old, new = b'version one\n', b'VERSION TWO\n'
    path = tree.write('same.txt', old)
    s = static()
    assert s.get('/static/same.txt').body == old
    tmp = tree.tmp / 'same.tmp'
    tmp.write_bytes(new)
    os.utime(tmp, (MTIME, MTIME))
    os.replace(tmp, path)
    t0 = time.monotonic()
    while True:
        r = s.get('/static/same.txt')
        assert r.body in (old, new), r
        if r.body == new:
            break
        assert time.monotonic() - t0 < 1.3, 'still the old file'
        time.sleep(0.02)


def test_symlink_retargeted_outside_is_refused_within_a_second(static, tree):
    tree.link('moving.txt', 'a.txt')
    s = static()
    assert s.get('/static/moving.txt').body == A_TXT
    tmp = tree.root / 'moving.tmp'
    os.symlink('../secret.txt', tmp)
    os.replace(tmp, tree.root / 'moving.txt')
    t0 = time.monotonic()
    while True:
        r = s.get('/static/moving.txt')
        assert SECRET not in r.body, r
        if r.status in OUT:
            break
        assert r.status == 200 and r.body == A_TXT, r
        assert time.monotonic() - t0 < 1.3, 'the old target still served'
        time.sleep(0.02)
    time.sleep(1.1)
    r = s.get('/static/moving.txt')
    assert r.status in OUT and SECRET not in r.body, r


def test_static_cache_0_sees_a_replacement_at_once(static, tree):
    path = tree.write('r.txt', b'one\n', mtime=None)
    s = static(static_cache=0)
    assert s.get('/static/r.txt').body == b'one\n'
    tmp = tree.tmp / 'r.tmp'
    tmp.write_bytes(b'two, longer\n')
    os.replace(tmp, path)
    assert s.get('/static/r.txt').body == b'two, longer\n'


def test_replaced_repeatedly_under_load_is_always_whole(static, tree):
    """Every response is one version written, whole, at its own length,
    while a thread renames new versions over the file every few ms. Each
    version is unique (a serial number first), so a reopen after the
    cache's one second always shows as a new body."""
    written = {}

    def version(k):
        return b'%08d:' % k + bytes([65 + k % 26]) * (1000 + 7777 * (k % 4))

    written[0] = version(0)
    path = tree.write('r.bin', written[0], mtime=None)
    s = static()
    stop = threading.Event()
    errors = []

    def replacer():
        k = 0
        try:
            while not stop.is_set():
                k += 1
                written[k] = version(k)
                tmp = tree.tmp / 'r.tmp'
                tmp.write_bytes(written[k])
                os.replace(tmp, path)
                time.sleep(0.003)
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=replacer)
    t.start()
    seen = set()
    n = 0
    try:
        with Conn(s.address) as c:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                c.send(build('GET', '/static/r.bin'))
                r = c.read_response()
                n += 1
                assert r.status == 200, r
                assert r.header('content-length') == str(len(r.body)), r
                k = int(r.body[:8]) if r.body[:8].isdigit() else -1
                assert written.get(k) == r.body, \
                    'a body that is no version (%d bytes, starts %r)' % (
                        len(r.body), r.body[:20])
                assert etag_size(r.header('etag')) == len(r.body), r
                seen.add(k)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert len(seen) >= 2, 'one version in %d requests over 1.5 s' % n


def test_deleted_file_is_404_within_a_second(static, tree):
    path = tree.write('gone.txt', b'soon gone\n', mtime=None)
    s = static()
    assert s.get('/static/gone.txt').status == 200
    path.unlink()
    t0 = time.monotonic()
    while True:
        r = s.get('/static/gone.txt')
        if r.status == 404:
            break
        assert r.status == 200 and r.body == b'soon gone\n', r
        assert time.monotonic() - t0 < 1.3, 'deleted, still served'
        time.sleep(0.02)


def test_created_file_is_served_at_once(static, tree):
    s = static()
    assert s.get('/static/later.txt').status == 404
    tree.write('later.txt', b'now here\n', mtime=None)
    r = s.get('/static/later.txt')
    assert r.status == 200 and r.body == b'now here\n', r


def test_file_changed_in_place_is_announced_at_its_current_length(static,
                                                                  tree):
    """docs/static.md: a file larger than the snapshot bound (16 KiB) is
    sent from its descriptor, which each request fstats."""
    big = b'x' * 20000
    path = tree.write('grow.txt', big, mtime=None)
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/grow.txt'))
        first = c.read_response()
        assert first.body == big
        with open(path, 'ab') as f:
            f.write(b'67890\n')
        c.send(build('GET', '/static/grow.txt'))
        r = c.read_response()
        assert r.body == big + b'67890\n', r
        assert r.header('etag') != first.header('etag'), r
        with open(path, 'r+b') as f:
            f.truncate(3)
        c.send(build('GET', '/static/grow.txt'))
        r = c.read_response()
        assert r.body == b'xxx' and r.header('content-length') == '3', r


def test_small_file_changed_in_place_is_whole_and_new_within_a_second(
        static, tree):
    """docs/static.md: a small file is sent from a snapshot kept with its
    cache entry: whole, the old version or the new, and the new one within
    a second of the change."""
    path = tree.write('small.txt', b'12345\n', mtime=None)
    s = static()
    versions = {b'12345\n', b'12345\n67890\n'}
    with Conn(s.address) as c:
        c.send(build('GET', '/static/small.txt'))
        assert c.read_response().body == b'12345\n'
        with open(path, 'ab') as f:
            f.write(b'67890\n')
        deadline = time.monotonic() + 1.5
        while True:
            c.send(build('GET', '/static/small.txt'))
            r = c.read_response()
            assert r.body in versions, r
            assert int(r.header('content-length')) == len(r.body), r
            if r.body == b'12345\n67890\n':
                break
            assert time.monotonic() < deadline, 'not seen within a second'
            time.sleep(0.05)


# -- 11: a file that shrinks or grows while it is sent -----------------------

def _read_head(c):
    resp = Response()
    c._read_head(resp)
    return resp


def test_file_that_shrinks_while_sent_ends_the_connection(static, tree):
    path = tree.root / 'shrink.bin'
    size = 64 << 20
    with open(path, 'wb') as f:
        f.write(b'x' * 65536)
        f.truncate(size)
    s = static()
    c = Conn(s.address, rcvbuf=16384)
    c.send(build('GET', '/static/shrink.bin'))
    head = _read_head(c)
    assert head.status == 200 and head.header('content-length') == str(size)
    time.sleep(0.2)                     # the client reads slowly at first
    os.truncate(path, 1 << 20)
    received = len(c.buf)
    c.buf.clear()
    t0 = time.monotonic()
    c.sock.settimeout(5)
    while True:
        try:
            data = c.sock.recv(1 << 20)
        except ConnectionResetError:
            break
        except socket.timeout:
            pytest.fail('no close 5 s after the truncation (%d of %d bytes)'
                        % (received, size))
        if not data:
            break
        received += len(data)
    assert received < size, received
    assert time.monotonic() - t0 < 5
    c.close()
    r = request(s.address, 'GET', '/static/a.txt', timeout=2)
    assert r.status == 200 and r.body == A_TXT


def test_file_that_grows_while_sent_is_sent_at_the_announced_length(static,
                                                                    tree):
    data = os.urandom(8 << 20)
    path = tree.write('growing.bin', data, mtime=None)
    s = static()
    with Conn(s.address, rcvbuf=16384) as c:
        c.send(build('GET', '/static/growing.bin'))
        head = _read_head(c)
        assert head.header('content-length') == str(len(data))
        time.sleep(0.1)
        with open(path, 'ab') as f:
            f.write(os.urandom(1 << 20))
        body = c.read_exact(len(data))
        assert body == data
        # nothing more was sent: the next response parses on this connection
        c.send(build('GET', '/static/a.txt'))
        r = c.read_response()
        assert r.status == 200 and r.body == A_TXT, r


# -- 12: a large file --------------------------------------------------------

@pytest.mark.parametrize('driver', DRIVERS)
def test_large_file_whole_and_a_range(static, tree, driver):
    data = os.urandom(16 << 20)
    tree.write('large.bin', data)
    s = static()
    with Conn(s.address) as c:
        c.send(build('GET', '/static/large.bin'))
        r = c.read_response()
        assert r.status == 200 and r.header('content-length') == str(len(data))
        assert hashlib.sha256(r.body).hexdigest() == \
            hashlib.sha256(data).hexdigest()
        a, b = 5_000_001, 9_876_543
        c.send(build('GET', '/static/large.bin',
                     [('Range', 'bytes=%d-%d' % (a, b))]))
        r = c.read_response()
        assert r.status == 206, r
        assert r.header('content-range') == 'bytes %d-%d/%d' % (a, b,
                                                                len(data))
        assert r.body == data[a:b + 1]
        c.send(build('GET', '/static/large.bin', [('Range', 'bytes=-1000')]))
        assert c.read_response().body == data[-1000:]
        # a large body in a pipeline, between two others
        c.send(build('GET', '/app/before') + build('GET', '/static/large.bin')
               + build('GET', '/app/after') + build('HEAD', '/static/large.bin')
               + build('GET', '/static/a.txt'))
        assert c.read_response().body == b'APP:/app/before'
        assert c.read_response().body == data
        assert c.read_response().body == b'APP:/app/after'
        assert c.read_response('HEAD').header('content-length') == \
            str(len(data))
        assert c.read_response().body == A_TXT


def test_offsets_past_4_gib(static, tree):
    path = tree.root / 'huge.bin'
    size = 5 * 2**30 + 12345
    mark = b'-- past four gibibytes --'
    at = 4 * 2**30 + 999
    with open(path, 'wb') as f:
        f.truncate(size)
        f.seek(at)
        f.write(mark)
    os.utime(path, (MTIME, MTIME))
    s = static()
    h = s.req('/static/huge.bin', 'HEAD')
    assert h.status == 200 and h.header('content-length') == str(size), h
    assert etag_size(h.header('etag')) == size
    r = s.get('/static/huge.bin',
              ('Range', 'bytes=%d-%d' % (at, at + len(mark) - 1)))
    assert r.status == 206 and r.body == mark, r
    assert r.header('content-range') == 'bytes %d-%d/%d' % (
        at, at + len(mark) - 1, size)
    r = s.get('/static/huge.bin', ('Range', 'bytes=-10'))
    assert r.status == 206 and r.body == b'\0' * 10 and \
        r.header('content-range') == 'bytes %d-%d/%d' % (size - 10, size - 1,
                                                         size), r
    r = s.get('/static/huge.bin', ('Range', 'bytes=%d-' % size))
    assert r.status == 416 and \
        r.header('content-range') == 'bytes */%d' % size, r


def test_many_clients_at_once(static, tree):
    data = os.urandom(4 << 20)
    tree.write('shared.bin', data)
    s = static(static_cache=2)
    digest = hashlib.sha256(data).digest()
    results = []

    def client(i):
        with Conn(s.address, timeout=10) as c:
            for j in range(3):
                c.send(build('GET', '/static/shared.bin') +
                       build('GET', '/app/%d/%d' % (i, j)))
                r = c.read_response()
                a = c.read_response()
                results.append((hashlib.sha256(r.body).digest() == digest,
                                a.body == b'APP:/app/%d/%d' % (i, j)))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 36 and all(a and b for a, b in results), results


def test_a_stalled_download_blocks_no_one(static, tree):
    tree.write('large.bin', os.urandom(16 << 20))
    s = static()
    stalled = Conn(s.address, rcvbuf=16384)
    stalled.send(build('GET', '/static/large.bin'))
    assert _read_head(stalled).status == 200      # and then reads no more
    t0 = time.monotonic()
    r = request(s.address, 'GET', '/static/a.txt', timeout=2)
    assert r.status == 200 and r.body == A_TXT
    r = request(s.address, 'GET', '/app/meanwhile', timeout=2)
    assert r.body == b'APP:/app/meanwhile'
    assert time.monotonic() - t0 < 1.0
    stalled.close()


def test_graceful_stop_finishes_a_download(static, tree):
    data = os.urandom(16 << 20)
    tree.write('large.bin', data)
    s = static()
    c = Conn(s.address, rcvbuf=16384, timeout=10)
    c.send(build('GET', '/static/large.bin'))
    head = _read_head(c)
    assert head.status == 200
    stopper = threading.Thread(target=s.srv.stop, args=(10,))
    stopper.start()
    time.sleep(0.2)
    body = c.read_exact(len(data))
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    c.expect_close(3.0)
    stopper.join(10)
    assert not stopper.is_alive()


def test_aborted_downloads_release_their_files(static, tree):
    tree.write('large.bin', os.urandom(16 << 20))
    s = static(static_cache=0)
    for i in range(10):
        c = Conn(s.address, rcvbuf=16384)
        c.send(build('GET', '/static/large.bin'))
        assert _read_head(c).status == 200
        if i % 2:
            c.rst_close()
        else:
            c.close()
    assert wait_for(lambda: _fds_into(tree.root) == 0, 3), \
        '%d files of the tree still open' % _fds_into(tree.root)
    r = request(s.address, 'GET', '/static/a.txt', timeout=2)
    assert r.status == 200 and r.body == A_TXT


# -- 13: the access log ------------------------------------------------------

def test_access_log_lines(static, tmp_path):
    log = tmp_path / 'access.log'
    s = static(access_log=str(log))
    with Conn(s.address) as c:
        c.send(build('GET', '/static/a.txt') +
               build('GET', '/static/a.txt', [('Range', 'bytes=0-9')]) +
               build('GET', '/static/nope.txt') +
               build('GET', '/static/a.txt', [('If-None-Match', '*')]) +
               build('DELETE', '/static/a.txt') +
               build('HEAD', '/static/a.txt?q=1'))
        for m in ('GET',) * 5 + ('HEAD',):
            c.read_response(m)

    def lines():
        return log.read_text().splitlines() if log.exists() else []
    assert wait_for(lambda: len(lines()) >= 6, 3), lines()
    got = lines()[:6]
    for line, want in zip(got, [
            '"GET /static/a.txt HTTP/1.1" 200 %d ' % SIZE,
            '"GET /static/a.txt HTTP/1.1" 206 10 ',
            '"GET /static/nope.txt HTTP/1.1" 404 ',
            '"GET /static/a.txt HTTP/1.1" 304 ',
            '"DELETE /static/a.txt HTTP/1.1" 405 ',
            '"HEAD /static/a.txt?q=1 HTTP/1.1" 200 ']):
        assert want in line, (want, line)
    assert s.app.calls == 0


def test_access_log_call_gets_an_environ_for_a_static_request(tree):
    """docs/static.md: with an access_log_call hook the hook gets an environ
    built for the line (the only Python a static request runs)."""
    calls = []

    def access(environ, status, sent, seconds):
        calls.append((environ.get('REQUEST_METHOD'), environ.get('PATH_INFO'),
                      environ.get('QUERY_STRING'), environ.get('HTTP_X_TRACE'),
                      status, sent))

    class Server(lichen.Server):
        def _engine_options(self):
            return dict(super()._engine_options(), access_log_call=access)

    app = MarkerApp()
    srv = Server(app, '127.0.0.1', 0, static={'/static': str(tree.root)})
    t = threading.Thread(target=srv.serve_forever)
    t.start()
    try:
        with Conn(srv.address) as c:
            c.send(build('GET', '/static/a.txt?v=1', [('X-Trace', 't1')]))
            assert c.read_response().body == A_TXT
            c.send(build('GET', '/static/a.txt', [('Range', 'bytes=0-9')]))
            assert c.read_response().status == 206
            c.send(build('GET', '/static/nope.txt'))
            assert c.read_response().status == 404
        assert wait_for(lambda: len(calls) >= 3, 3), calls
    finally:
        srv.stop(5)
        t.join(10)
        srv.close()
    assert calls[0] == ('GET', '/static/a.txt', 'v=1', 't1', 200, SIZE), calls
    assert calls[1][4:] == (206, 10), calls
    assert calls[2][1] == '/static/nope.txt' and calls[2][4] == 404, calls
    assert app.calls == 0


# -- 14: the command line ----------------------------------------------------

def test_cli_static(cli_server, tree, tmp_path):
    other = tmp_path / 'assets'
    other.mkdir()
    (other / 'x.txt').write_bytes(b'assets x\n')
    proc = cli_server(['-b', '127.0.0.1:0',
                       '--static', '/static=%s' % tree.root,
                       '--static', '/assets=%s' % other,
                       'examples.hello'])
    url = proc.urls[0]
    r = cli_request(url, path='/static/a.txt')
    assert r.status == 200 and r.body == A_TXT, (r.status, r.body)
    assert norm_type(r.header('content-type')) == 'text/plain;charset=utf-8'
    assert r.header('cache-control') is None
    assert cli_request(url, path='/assets/x.txt').body == b'assets x\n'
    assert cli_request(url, path='/static/.env').status == 404
    assert cli_request(url, path='/').body == b'Hello, world!\n'
    assert proc.stop() == 0


def test_cli_static_options(cli_server, tree):
    proc = cli_server(['-b', '127.0.0.1:0',
                       '--static', '/static=%s' % tree.root,
                       '--static-max-age', '60',
                       '--static-immutable',
                       '--static-index', 'index.html',
                       '--static-dotfiles',
                       '--static-cache', '0',
                       '--static-type', '.foo=application/x-foo',
                       'examples.hello'])
    url = proc.urls[0]
    r = cli_request(url, path='/static/a.txt')
    assert r.header('cache-control') == 'public, max-age=60'
    r = cli_request(url, path='/static/app.0123abcd.js')
    assert {t.strip() for t in r.header('cache-control').split(',')} == \
        IMMUTABLE
    assert cli_request(url, path='/static/docs/').body == DOCS_INDEX
    assert cli_request(url, path='/static/.env').status == 200
    r = cli_request(url, path='/static/plain.foo')
    assert r.header('content-type') == 'application/x-foo'
    assert proc.stop() == 0


def _assert_one_line(stderr, *texts):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert 'Traceback' not in stderr
    assert lines[0].startswith('lichen: '), lines[0]
    for text in texts:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize('value', ['/static=/nonexistent-dir-xyz',
                                   'nonsense', 'FILE'])
def test_cli_static_bad_value_exits_1(tree, value):
    if value == 'FILE':
        value = '/static=%s' % (tree.root / 'a.txt')      # not a directory
    r = run_lichen(['-b', '127.0.0.1:0', '--static', value, 'examples.hello'])
    # as every bad option value (docs/static.md)
    assert r.returncode == 1, (r.returncode, r.stderr)
    _assert_one_line(r.stderr, '--static')


# -- 16: curl ----------------------------------------------------------------

CURL = shutil.which('curl')


@pytest.mark.skipif(not CURL, reason='curl is not installed')
def test_curl(static, tree):
    real = b'console.log("from the real gzip sibling");\n' * 20
    tree.write('real.js', b'console.log("identity");\n')
    tree.write('real.js.gz', gzip.compress(real))
    s = static()
    base = 'http://127.0.0.1:%d/static/' % s.address[1]

    def curl(*args):
        p = subprocess.run([CURL, '-sS', '--max-time', '10'] + list(args),
                           capture_output=True, timeout=20, env=tool_env())
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert curl('-r', '0-9', base + 'a.txt') == A_TXT[:10]
    assert curl(base + 'a.txt') == A_TXT
    etag = s.get('/static/a.txt').header('etag')
    assert curl('-o', '/dev/null', '-w', '%{http_code}',
                '-H', 'If-None-Match: ' + etag, base + 'a.txt') == b'304'
    assert curl('-o', '/dev/null', '-w', '%{http_code}',
                '-H', 'If-None-Match: "0-0"', base + 'a.txt') == b'200'
    out = curl('--compressed', '-D', '-', base + 'real.js')
    head, _, body = out.partition(b'\r\n\r\n')
    assert b'\r\ncontent-encoding: gzip' in head.lower(), head
    assert body == real
    assert SECRET not in curl('--path-as-is', base + '../secret.txt')


def test_snapshot_being_sent_survives_a_change_of_the_file(static, tree):
    """A small file's snapshot still being sent to a client that does not
    read (its socket full) is not freed when the file changes and another
    client asks for it: both get whole responses, the stalled one the old
    bytes, the other the new ones (under the sanitizer run, a use after
    free would abort)."""
    old = b'o' * 15000
    new = b'n' * 9000
    path = tree.write('snap.txt', old, mtime=None)
    s = static()
    req = build('GET', '/static/snap.txt')
    n = 600  # 9 MB of responses: more than the socket buffers hold
    with Conn(s.address, rcvbuf=4096) as stalled:
        stalled.send(req * n)
        time.sleep(0.3)  # the server is now waiting to write to it
        with open(path, 'r+b') as f:  # in place: the same entry, new bytes
            f.truncate(0)
            f.write(new)
        time.sleep(1.1)
        with Conn(s.address) as other:
            other.send(req)
            r = other.read_response()
            assert r.body == new, r
        bodies = set()
        for _ in range(n):
            r = stalled.read_response()
            assert int(r.header('content-length')) == len(r.body), r
            bodies.add(r.body)
        assert bodies <= {old, new}, [b[:20] for b in bodies]
