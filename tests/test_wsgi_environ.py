"""The WSGI environ built from a request."""
import wsgiref.validate

import pytest

from support import Conn, Recorder, build, client_socket, get_until_close, hello_app, request

# Every test through `serve` runs over plain HTTP and over TLS (conftest).
pytestmark = pytest.mark.transports


def environ_for(serve, raw, method='GET', **options):
    app = Recorder()
    srv = serve(app, **options)
    with Conn(srv.address) as c:
        c.send(raw)
        r = c.read_response(method)
        assert r.status == 200, r
        port = c.sock.getsockname()[1]
    assert app.calls == 1
    env = app.environs[0]
    env['_client_port'] = port
    env['_server'] = srv
    return env


def validated_app(environ, start_response):
    inp = environ['wsgi.input']
    body = b''
    if environ['REQUEST_METHOD'] == 'POST':
        first = inp.readline()
        rest = inp.read(int(environ['CONTENT_LENGTH']) - len(first))
        body = first + rest
    environ['wsgi.errors'].write('a line for the error log\n')
    environ['wsgi.errors'].writelines(['more\n'])
    environ['wsgi.errors'].flush()
    write = start_response('200 OK', [('Content-Type', 'text/plain'), ('X-Len', str(len(body)))])
    write(b'w:')
    return [b'got:', body]


@pytest.mark.parametrize('raw', [
    build('GET', '/path/x?q=1'),
    build('GET', '/'),
    build('POST', '/submit', [('Content-Type', 'application/x-www-form-urlencoded')], b'a=1\nb=2&c=3'),
    b'GET /old HTTP/1.0\r\n\r\n',
], ids=['get-query', 'get-root', 'post', 'http10'])
def test_passes_wsgiref_validator(serve, recwarn, raw):
    srv = serve(wsgiref.validate.validator(validated_app))
    with Conn(srv.address) as c:
        c.send(raw)
        r = c.read_response()
    assert r.status == 200, r
    assert r.body.startswith(b'w:got:')
    if raw.startswith(b'POST'):
        assert r.body == b'w:got:a=1\nb=2&c=3'
    bad = [str(w.message) for w in recwarn if issubclass(w.category, wsgiref.validate.WSGIWarning)]
    assert bad == []


def test_basic_cgi_keys(serve, transport):
    env = environ_for(serve, build('GET', '/a/b?x=1&y=2', [('Host', 'example.org:8080')]))
    srv = env['_server']
    assert env['REQUEST_METHOD'] == 'GET'
    assert env['PATH_INFO'] == '/a/b'
    assert env['QUERY_STRING'] == 'x=1&y=2'
    assert env['SCRIPT_NAME'] == ''
    assert env['SERVER_PROTOCOL'] == 'HTTP/1.1'
    assert env['HTTP_HOST'] == 'example.org:8080'
    assert env['SERVER_PORT'] == str(srv.address[1])
    assert isinstance(env['SERVER_NAME'], str) and env['SERVER_NAME']
    assert env['REMOTE_ADDR'] == '127.0.0.1'
    assert env['REMOTE_PORT'] == str(env['_client_port'])
    if transport == 'tls':
        assert env['wsgi.url_scheme'] == 'https'
        assert env['HTTPS'] == 'on'
    else:
        assert env['wsgi.url_scheme'] == 'http'
        assert 'HTTPS' not in env
    assert env['wsgi.version'] == (1, 0)
    assert env['wsgi.input_terminated'] is True
    assert env['wsgi.run_once'] is False
    assert isinstance(env['wsgi.multithread'], bool)
    assert isinstance(env['wsgi.multiprocess'], bool)
    assert 'CONTENT_TYPE' not in env or env['CONTENT_TYPE'] == ''
    assert 'CONTENT_LENGTH' not in env or env['CONTENT_LENGTH'] in ('', '0')
    for k, v in env.items():
        if '.' not in k and not k.startswith('_'):
            assert type(v) is str, (k, v)


def test_environ_objects(serve):
    seen = {}

    def app(environ, start_response):
        seen['input'] = all(hasattr(environ['wsgi.input'], m) for m in ('read', 'readline', 'readlines', '__iter__'))
        errors = environ['wsgi.errors']
        seen['errors'] = all(hasattr(errors, m) for m in ('write', 'writelines', 'flush'))
        seen['type'] = type(environ) is dict
        start_response('200 OK', [])
        return [b'x']
    srv = serve(app)
    request(srv.address)
    assert seen == {'input': True, 'errors': True, 'type': True}


def test_environ_is_fresh_per_request(serve):
    def app(environ, start_response):
        leaked = environ.get('x.leak')
        environ['x.leak'] = 'set by a previous request'
        environ['PATH_INFO'] = '/mutated'
        start_response('200 OK', [])
        return [repr(leaked).encode()]
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(build('GET', '/') * 3)
        for _ in range(3):
            assert c.read_response().body == b'None'


def test_http10_protocol(serve):
    env = environ_for(serve, b'GET /x HTTP/1.0\r\n\r\n')
    assert env['SERVER_PROTOCOL'] == 'HTTP/1.0'
    assert 'HTTP_HOST' not in env


def test_path_info_percent_decoded_as_latin1(serve):
    env = environ_for(serve, build('GET', '/caf%C3%A9/a%20b?q=%C3%A9&r=a+b'))
    assert env['PATH_INFO'] == '/caf\xc3\xa9/a b'
    assert env['PATH_INFO'] == b'/caf\xc3\xa9/a b'.decode('latin-1')
    assert env['RAW_URI'] == '/caf%C3%A9/a%20b?q=%C3%A9&r=a+b'
    assert env['QUERY_STRING'] == 'q=%C3%A9&r=a+b'


def test_raw_bytes_in_path_are_refused(serve):
    """Bytes >= 0x80 are not request-target characters (RFC 9112 3.2):
    clients percent-encode them, and a 400 keeps peers from disagreeing."""
    app = Recorder()
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(b'GET /\xe9t\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n')
        r = c.read_response()
        assert r.status == 400
        c.expect_close()
    assert app.paths == []


def test_percent_encoded_utf8_path_is_latin1(serve):
    env = environ_for(serve, build('GET', '/%C3%A9t%C3%A9'))
    assert env['PATH_INFO'] == '/\xc3\xa9t\xc3\xa9'


def test_percent_edge_cases(serve):
    env = environ_for(serve, build('GET', '/a%2Fb%25c%41%62'))
    assert env['RAW_URI'] == '/a%2Fb%25c%41%62'
    assert env['PATH_INFO'] in ('/a/b%cAb', '/a%2Fb%cAb')


def test_absolute_form_target(serve):
    env = environ_for(serve, b'GET http://example.org/abs/path?q=1 HTTP/1.1\r\nHost: example.org\r\n\r\n')
    assert env['PATH_INFO'] == '/abs/path'
    assert env['QUERY_STRING'] == 'q=1'


def test_empty_query_string(serve):
    env = environ_for(serve, build('GET', '/p?'))
    assert env.get('QUERY_STRING', '') == ''
    assert env['PATH_INFO'] == '/p'
    env2 = environ_for(serve, build('GET', '/p'))
    assert env2.get('QUERY_STRING', '') == ''


def test_environs_of_every_size_on_one_connection(serve):
    # No field, one, a few, and more than a browser sends, one after another
    # on one connection: each environ holds its own request's fields, and
    # the keys a request may leave out come back to their usual values.
    app = Recorder()
    srv = serve(app)
    counts = [0, 1, 2, 5, 23, 24, 25, 40, 70, 0, 1]
    with Conn(srv.address) as c:
        for i, n in enumerate(counts):
            fields = [('X-F%d' % k, 'v%d.%d' % (i, k)) for k in range(n)]
            if i % 2:
                raw = build('GET', '/r%d?i=%d' % (i, i), fields + [('Connection', 'keep-alive')],
                            version='HTTP/1.0')
            else:
                raw = build('GET', '/r%d' % i, fields)
            c.send(raw)
            assert c.read_response().status == 200
    assert app.calls == len(counts)
    for i, (env, n) in enumerate(zip(app.environs, counts)):
        http = {k: v for k, v in env.items() if k.startswith('HTTP_')}
        assert http.pop('HTTP_HOST') == 'x'
        if i % 2:
            assert http.pop('HTTP_CONNECTION') == 'keep-alive'
        assert http == {'HTTP_X_F%d' % k: 'v%d.%d' % (i, k) for k in range(n)}, (i, n)
        assert env['PATH_INFO'] == '/r%d' % i
        assert env['QUERY_STRING'] == ('i=%d' % i if i % 2 else '')
        assert env['SERVER_PROTOCOL'] == ('HTTP/1.0' if i % 2 else 'HTTP/1.1')
        assert env['wsgi.input_terminated'] is True
        assert 'CONTENT_LENGTH' not in env and 'CONTENT_TYPE' not in env


def test_content_type_and_length_without_http_prefix(serve):
    env = environ_for(serve, build('POST', '/', [('Content-Type', 'text/csv; charset=utf-8'),
                                                ('Content-Length', '3')], b'a,b'))
    assert env['CONTENT_TYPE'] == 'text/csv; charset=utf-8'
    assert env['CONTENT_LENGTH'] == '3'
    assert 'HTTP_CONTENT_TYPE' not in env
    assert 'HTTP_CONTENT_LENGTH' not in env


def test_duplicate_headers_joined_with_comma(serve):
    env = environ_for(serve, build('GET', '/', [('X-A', 'a'), ('X-B', 'z'), ('x-a', 'b'), ('X-A', 'c d')]))
    assert env['HTTP_X_A'] == 'a,b,c d'
    assert env['HTTP_X_B'] == 'z'


def test_duplicate_one_character_and_empty_values_joined(serve):
    # Python shares one object for each one-character and for the empty
    # string: a repeated field with such a value must still be joined.
    env = environ_for(serve, build('GET', '/', [('X-A', '1'), ('X-A', '1'), ('X-B', ''), ('X-B', ''),
                                                ('Cookie', 'a'), ('Cookie', 'a')]))
    assert env['HTTP_X_A'] == '1,1'
    assert env['HTTP_X_B'] == ','
    assert env['HTTP_COOKIE'] == 'a; a'


def test_headers_with_underscore_dropped(serve):
    env = environ_for(serve, build('GET', '/', [('X_Evil', 'bad'), ('X-Good', 'good'), ('X-Evil', 'real'),
                                                ('Content_Length', '99'), ('Content_Type', 'evil')]))
    assert env['HTTP_X_GOOD'] == 'good'
    assert env['HTTP_X_EVIL'] == 'real'
    assert 'bad' not in env.values()
    assert 'CONTENT_LENGTH' not in env or env['CONTENT_LENGTH'] in ('', '0')
    assert env.get('CONTENT_TYPE', '') != 'evil'


def test_header_value_whitespace_trimmed(serve):
    env = environ_for(serve, b'GET / HTTP/1.1\r\nHost: x\r\nX-A:   padded value \t \r\nX-B:\r\nX-C:tight\r\n\r\n')
    assert env['HTTP_X_A'] == 'padded value'
    assert env['HTTP_X_B'] == ''
    assert env['HTTP_X_C'] == 'tight'


def test_header_names_case_insensitive_and_mapped(serve):
    env = environ_for(serve, build('GET', '/', [('accept-ENCODING', 'gzip'), ('X-Multi-Part-Name', '1')]))
    assert env['HTTP_ACCEPT_ENCODING'] == 'gzip'
    assert env['HTTP_X_MULTI_PART_NAME'] == '1'


def test_latin1_header_values(serve):
    env = environ_for(serve, b'GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9 \xff\r\n\r\n')
    assert env['HTTP_X_A'] == 'caf\xc3\xa9 \xff'


def test_methods_passed_through(serve):
    for method in ('PUT', 'DELETE', 'OPTIONS', 'PATCH', 'PROPFIND', 'X-CUSTOM'):
        env = environ_for(serve, build(method, '/m'))
        assert env['REQUEST_METHOD'] == method


def test_head_method(serve):
    env = environ_for(serve, build('HEAD', '/h'), method='HEAD')
    assert env['REQUEST_METHOD'] == 'HEAD'


def test_options_asterisk(serve):
    app = Recorder()
    srv = serve(app)
    with Conn(srv.address) as c:
        c.send(b'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n')
        r = c.read_response()
    assert r.status in (200, 400)


def test_script_name_with_root_path(serve):
    env = environ_for(serve, build('GET', '/app/sub/page?x=1'), root_path='/app')
    assert env['SCRIPT_NAME'] == '/app'
    assert env['PATH_INFO'] == '/sub/page'
    assert env['QUERY_STRING'] == 'x=1'


def test_script_name_with_root_path_exact(serve):
    env = environ_for(serve, build('GET', '/app'), root_path='/app')
    assert env['SCRIPT_NAME'] == '/app'
    assert env['PATH_INFO'] == ''


def test_root_path_not_matching_prefix_boundary(serve):
    env = environ_for(serve, build('GET', '/application/x'), root_path='/app')
    # '/app' is not a path-segment prefix of '/application': never split inside a segment
    assert env['PATH_INFO'].startswith('/'), env['PATH_INFO']
    assert env['PATH_INFO'].endswith('/application/x'), env['PATH_INFO']


def test_server_name_and_port(serve):
    env = environ_for(serve, build('GET', '/', [('Host', 'other.example:1234')]))
    srv = env['_server']
    assert env['SERVER_PORT'] == str(srv.address[1])
    assert env['HTTP_HOST'] == 'other.example:1234'


def test_remote_port_differs_per_connection(serve):
    app = Recorder()
    srv = serve(app)
    ports = []
    for _ in range(3):
        with Conn(srv.address) as c:
            ports.append(c.sock.getsockname()[1])
            c.send(build('GET', '/'))
            c.read_response()
    assert [e['REMOTE_PORT'] for e in app.environs] == [str(p) for p in ports]


def test_repeated_request_values_then_others(serve):
    # A method, path and target sent many times in a row, then others, with
    # few and with many header fields, and an
    # application that rewrites its environ: every environ holds its own
    # request's values.
    def rewriting(environ, start_response):
        environ['REQUEST_METHOD'] = 'REWRITTEN'
        environ['PATH_INFO'] = '/rewritten'
        environ['RAW_URI'] = '/rewritten'
        return hello_app(environ, start_response)

    app = Recorder(rewriting)
    srv = serve(app)
    many = [('X-F%d' % k, 'v') for k in range(40)]
    sent = []
    for i in range(12):
        sent.append(('GET', '/same', many if i % 3 == 0 else []))
    sent += [('GET', '/same', many)] * 10 + [('GET', '/same?q=1', [])]
    sent += [('POST', '/post', [])] * 12 + [('GET', '/same', [])] + [('POST', '/post', many)]
    sent += [('PUT', '/same', [])] + [('GET', '/', [])] * 9 + [('GET', '/%61', [])] + [('DELETE', '/', many)]
    with Conn(srv.address) as c:
        for method, target, fields in sent:
            c.send(build(method, target, fields))
            assert c.read_response(method).status == 200
    assert app.calls == len(sent)
    for i, ((method, target, fields), env) in enumerate(zip(sent, app.environs)):
        assert env['REQUEST_METHOD'] == method, i
        assert env['RAW_URI'] == target, i
        assert env['PATH_INFO'] == ('/a' if target == '/%61' else target.split('?')[0]), i
        assert env['QUERY_STRING'] == ('q=1' if '?' in target else ''), i


def test_remote_addr_of_clients_taking_turns(serve):
    # Clients from two addresses (all of 127/8 is loopback), each for a run
    # of requests and then turn about: REMOTE_ADDR is each one's own.
    app = Recorder()
    srv = serve(app)
    sources = ['127.0.0.1'] * 10 + ['127.0.0.2'] * 10 + ['127.0.0.1', '127.0.0.2'] * 3
    for src in sources:
        s = client_socket(srv.address, timeout=10, source_address=(src, 0))
        try:
            data = get_until_close(s)
            assert data.startswith(b'HTTP/1.1 200'), data
        finally:
            s.close()
    assert [e['REMOTE_ADDR'] for e in app.environs] == sources


def test_repeated_header_values_then_others(serve):
    # Values of known fields sent again and again, then others of the same
    # length, then latin-1 ones: each environ holds its own request's.
    app = Recorder()
    srv = serve(app)
    sent = []
    for i in range(30):
        host = 'a.example' if i < 10 or i % 2 else 'b.example'
        agent = 'client/1.0' if i < 20 else 'caf\xe9/1.0'
        sent.append([('Host', host), ('User-Agent', agent), ('Content-Type', 'text/plain' if i % 3 else 'text/plaim'),
                     ('X-Other', 'o%d' % (i % 2))])
    with Conn(srv.address) as c:
        for fields in sent:
            c.send(build('GET', '/', fields, host=None))
            assert c.read_response().status == 200
    for fields, env in zip(sent, app.environs):
        assert env['HTTP_HOST'] == fields[0][1]
        assert env['HTTP_USER_AGENT'] == fields[1][1]
        assert env['CONTENT_TYPE'] == fields[2][1]
        assert env['HTTP_X_OTHER'] == fields[3][1]
