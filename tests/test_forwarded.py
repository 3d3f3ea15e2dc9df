"""Proxy headers: Forwarded and X-Forwarded-* from the peers of
forwarded_allow_ips set REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme,
HTTP_HOST, SERVER_NAME and SERVER_PORT; from any other peer, or malformed,
they change nothing."""
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from support import Conn, Recorder, build

# The keys the proxy headers may change, and what they are without them.
KEYS = ('REMOTE_ADDR', 'REMOTE_PORT', 'wsgi.url_scheme', 'HTTP_HOST',
        'SERVER_NAME', 'SERVER_PORT')


def environ_of(serve, headers, source=None, **options):
    """The environ of one GET / with these headers, from 127.0.0.1 (or
    source), served with these options; and the client's port."""
    app = Recorder()
    srv = serve(app, **options)
    src = (source, 0) if source else None
    with Conn(srv.address, source_address=src) as c:
        c.send(build('GET', '/', headers, host='app.example'))
        r = c.read_response()
        assert r.status == 200, r
        port = c.sock.getsockname()[1]
    assert app.calls == 1
    env = app.environs[0]
    env['_port'] = str(port)
    env['_server_port'] = str(srv.address[1])
    return env


def unchanged(env, source='127.0.0.1'):
    """The keys as the connection sets them."""
    return (env['REMOTE_ADDR'] == source and env['REMOTE_PORT'] == env['_port']
            and env['wsgi.url_scheme'] == 'http'
            and env['HTTP_HOST'] == 'app.example'
            and env['SERVER_PORT'] == env['_server_port']
            and env['SERVER_NAME'] not in ('app.example', 'example.com'))


def test_no_proxy_headers_change_nothing(serve):
    env = environ_of(serve, [('X-Real-IP', '203.0.113.1')])
    assert unchanged(env), env


def test_forwarded_from_the_default_trusted_peer(serve):
    env = environ_of(serve, [(
        'Forwarded', 'for=203.0.113.60;proto=https;host=example.com')])
    assert env['REMOTE_ADDR'] == '203.0.113.60'
    assert env['REMOTE_PORT'] == env['_port']  # no port given: left
    assert env['wsgi.url_scheme'] == 'https'
    assert env['HTTP_HOST'] == 'example.com'
    assert env['SERVER_NAME'] == 'example.com'
    assert env['SERVER_PORT'] == '443'
    # the header itself stays as it came
    assert env['HTTP_FORWARDED'] == \
        'for=203.0.113.60;proto=https;host=example.com'


def test_forwarded_ipv6_with_port_and_any_case(serve):
    env = environ_of(serve, [(
        'Forwarded',
        'For="[2001:DB8:cafe::17]:4711";PROTO=http;Host="example.com:8080"')])
    assert env['REMOTE_ADDR'] == '2001:db8:cafe::17'
    assert env['REMOTE_PORT'] == '4711'
    assert env['wsgi.url_scheme'] == 'http'
    assert env['HTTP_HOST'] == 'example.com:8080'
    assert env['SERVER_NAME'] == 'example.com'
    assert env['SERVER_PORT'] == '8080'


def test_x_forwarded_headers(serve):
    headers = [('X-Forwarded-For', '198.51.100.7'),
               ('X-Forwarded-Proto', 'https'),
               ('X-Forwarded-Host', 'example.com'),
               ('X-Forwarded-Port', '8443')]
    env = environ_of(serve, headers)
    assert env['REMOTE_ADDR'] == '198.51.100.7'
    assert env['REMOTE_PORT'] == env['_port']
    assert env['wsgi.url_scheme'] == 'https'
    assert env['HTTP_HOST'] == 'example.com'
    assert env['SERVER_PORT'] == '8443'
    assert env['HTTP_X_FORWARDED_FOR'] == '198.51.100.7'
    assert env['HTTP_X_FORWARDED_PROTO'] == 'https'
    assert env['HTTP_X_FORWARDED_HOST'] == 'example.com'
    assert env['HTTP_X_FORWARDED_PORT'] == '8443'


def test_x_forwarded_proto_alone_gives_the_default_port(serve):
    env = environ_of(serve, [('X-Forwarded-Proto', 'https')])
    assert env['wsgi.url_scheme'] == 'https'
    assert env['SERVER_PORT'] == '443'
    assert env['REMOTE_ADDR'] == '127.0.0.1'
    assert env['HTTP_HOST'] == 'app.example'


def test_forwarded_wins_over_x_forwarded(serve):
    env = environ_of(serve, [('X-Forwarded-For', '198.51.100.7'),
                             ('X-Forwarded-Proto', 'https'),
                             ('Forwarded', 'for=203.0.113.5')])
    assert env['REMOTE_ADDR'] == '203.0.113.5'
    assert env['wsgi.url_scheme'] == 'http'
    assert env['SERVER_PORT'] == env['_server_port']
    assert env['HTTP_X_FORWARDED_FOR'] == '198.51.100.7'


@pytest.mark.parametrize('headers', [
    [('X-Forwarded-For', '203.0.113.9, 198.51.100.1, 10.1.2.3, 127.0.0.1')],
    [('X-Forwarded-For', '203.0.113.9, 198.51.100.1'),
     ('X-Forwarded-For', '10.1.2.3')],
    [('Forwarded', 'for=203.0.113.9, for=198.51.100.1, for="10.1.2.3:80"')],
], ids=['xff', 'xff-two-fields', 'forwarded'])
def test_chain_skips_trusted_proxies(serve, headers):
    env = environ_of(serve, headers,
                     forwarded_allow_ips='127.0.0.1, 10.0.0.0/8')
    assert env['REMOTE_ADDR'] == '198.51.100.1'


def test_chain_of_trusted_proxies_only_gives_the_leftmost(serve):
    env = environ_of(serve, [('X-Forwarded-For', '10.0.0.3, 10.0.0.2')],
                     forwarded_allow_ips='127.0.0.1,10.0.0.0/8')
    assert env['REMOTE_ADDR'] == '10.0.0.3'


def test_x_forwarded_for_ipv6_forms(serve):
    env = environ_of(serve, [('X-Forwarded-For', '[2001:db8::8]:1234')])
    assert (env['REMOTE_ADDR'], env['REMOTE_PORT']) == ('2001:db8::8', '1234')
    env = environ_of(serve, [('X-Forwarded-For', '2001:db8::9')])
    assert (env['REMOTE_ADDR'], env['REMOTE_PORT']) == \
        ('2001:db8::9', env['_port'])


@pytest.mark.parametrize('value', [
    'for=unknown;proto=https', 'for=_hidden;proto=https',
    'for=198.51.100.1, for="unknown:8080";proto=https'])
def test_unknown_or_obfuscated_client_keeps_the_address(serve, value):
    """The walk stops at a node that is no address: REMOTE_ADDR stays the
    peer's, what the node's element says of the scheme counts."""
    env = environ_of(serve, [('Forwarded', value)])
    assert env['REMOTE_ADDR'] == '127.0.0.1'
    assert env['REMOTE_PORT'] == env['_port']
    assert env['wsgi.url_scheme'] == 'https'


@pytest.mark.parametrize('headers', [
    [('Forwarded', 'for=[2001:db8::1]')],            # IPv6 must be quoted
    [('Forwarded', 'for=203.0.113.1:80')],           # so must a port
    [('Forwarded', 'for=203.0.113.1;for=203.0.113.2')],
    [('Forwarded', 'for=203.0.113.1;proto=ftp')],
    [('Forwarded', 'for=203.0.113.1;host="a b"')],
    [('Forwarded', 'for="203.0.113.1')],
    [('Forwarded', 'for=203.0.113.256')],
    # a malformed Forwarded still wins: X-Forwarded-* are not used either
    [('Forwarded', 'for=nonsense'), ('X-Forwarded-For', '198.51.100.1'),
     ('X-Forwarded-Proto', 'https')],
    [('X-Forwarded-For', '198.51.100.1, nonsense')],
    [('X-Forwarded-For', '198.51.100.1:0')],
    [('X-Forwarded-Proto', 'ftp')],
    [('X-Forwarded-Proto', 'https, ftp')],
    [('X-Forwarded-Host', 'a/b')],
    [('X-Forwarded-Host', 'example.com:99999')],
    [('X-Forwarded-Port', '0')],
    [('X-Forwarded-Port', 'https')],
    # an underscore makes another header name: dropped, as ever
    [('X-Forwarded_For', '198.51.100.1')],
], ids=lambda h: '|'.join('%s: %s' % f for f in h))
def test_malformed_changes_nothing(serve, headers):
    env = environ_of(serve, headers)
    assert unchanged(env), env
    for name, value in headers:
        if '_' not in name:
            key = 'HTTP_' + name.upper().replace('-', '_')
            assert env[key] == value


def test_one_malformed_x_forwarded_field_leaves_the_others(serve):
    env = environ_of(serve, [('X-Forwarded-For', 'nonsense'),
                             ('X-Forwarded-Proto', 'https')])
    assert env['REMOTE_ADDR'] == '127.0.0.1'
    assert env['wsgi.url_scheme'] == 'https'


ALL = [('Forwarded', 'for=203.0.113.60;proto=https;host=example.com'),
       ('X-Forwarded-For', '198.51.100.7'), ('X-Forwarded-Proto', 'https'),
       ('X-Forwarded-Host', 'example.com'), ('X-Forwarded-Port', '8443')]


@pytest.mark.parametrize('allow', ['10.0.0.0/8', '127.0.0.2', '::1', '',
                                   'unix'])
def test_untrusted_peer_changes_nothing(serve, allow):
    env = environ_of(serve, ALL, forwarded_allow_ips=allow)
    assert unchanged(env), env
    assert env['HTTP_FORWARDED'] == ALL[0][1]
    assert env['HTTP_X_FORWARDED_FOR'] == '198.51.100.7'


def test_peer_matched_by_its_own_address(serve):
    """From 127.0.0.2: not trusted by 127.0.0.1, trusted by 127.0.0.0/30
    and by '*'."""
    hdr = [('X-Forwarded-For', '198.51.100.7')]
    env = environ_of(serve, hdr, source='127.0.0.2')
    assert env['REMOTE_ADDR'] == '127.0.0.2'
    for allow in ('127.0.0.0/30', '*', ['127.0.0.5', '127.0.0.2']):
        env = environ_of(serve, hdr, source='127.0.0.2',
                         forwarded_allow_ips=allow)
        assert env['REMOTE_ADDR'] == '198.51.100.7', allow


def test_keep_alive_requests_each_read_their_own(serve):
    app = Recorder()
    srv = serve(app)
    with Conn(srv.address) as c:
        for headers in ([('X-Forwarded-For', '198.51.100.1')], [],
                        [('X-Forwarded-For', '198.51.100.2')],
                        [('X-Forwarded-For', '198.51.100.2')], []):
            c.send(build('GET', '/', headers))
            assert c.read_response().status == 200
    assert [e['REMOTE_ADDR'] for e in app.environs] == [
        '198.51.100.1', '127.0.0.1', '198.51.100.2', '198.51.100.2',
        '127.0.0.1']


def test_access_log_shows_the_client(serve, tmp_path):
    from support import request, wait_for

    log = tmp_path / 'access.log'
    srv = serve(Recorder(), access_log=str(log))
    request(srv.address, headers=[('X-Forwarded-For', '198.51.100.4')])
    request(srv.address, headers=[('X-Forwarded-For', '198.51.100.4')],
            path='/other')
    assert wait_for(lambda: log.exists() and
                    log.read_text().count('\n') == 2)
    first, second = log.read_text().splitlines()
    assert first.startswith('198.51.100.4 - - [') and ' "GET / ' in first
    assert second.startswith('198.51.100.4 ')


def unix_environ(serve, tmp_path, headers, **options):
    app = Recorder()
    path = str(tmp_path / 'l.sock')
    serve(app, bind=['unix:' + path], **options)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(build('GET', '/', headers + [('Connection', 'close')]))
        data = b''
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b'HTTP/1.1 200 '), data
    return app.environs[0]


def test_unix_socket_peer(serve, tmp_path):
    headers = [('X-Forwarded-For', '198.51.100.9'),
               ('X-Forwarded-Proto', 'https')]
    env = unix_environ(serve, tmp_path, headers)  # trusted by default
    assert env['REMOTE_ADDR'] == '198.51.100.9'
    assert env['wsgi.url_scheme'] == 'https'
    assert env['REMOTE_PORT'] == ''
    os.unlink(tmp_path / 'l.sock')
    env = unix_environ(serve, tmp_path, headers,
                       forwarded_allow_ips='127.0.0.1')
    assert env['REMOTE_ADDR'] == ''
    assert env['wsgi.url_scheme'] == 'http'
    assert env['HTTP_X_FORWARDED_FOR'] == '198.51.100.9'


@pytest.mark.parametrize('value, text', [
    ('10.0.0.1/8', 'has host bits set'),
    ('127.0.0.1, localhost', "'localhost'"),
    ('fe80::1%eth0', 'zone'),
    ('127.0.0.1,,::1', 'expected addresses or networks'),
    (42, 'expected addresses or networks'),
])
def test_bad_allow_list_is_refused(value, text):
    import lichen
    from lichen.config import ConfigError

    with pytest.raises(ConfigError) as e:
        lichen.Server(lambda e, s: [], port=0, forwarded_allow_ips=value)
    assert 'forwarded_allow_ips' in str(e.value) and text in str(e.value)


def test_engine_refuses_what_it_cannot_read():
    """The engine checks the list itself (for callers of the engine)."""
    from lichen import _lichen

    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen()
    try:
        with pytest.raises(ValueError, match='10.0.0.1/8'):
            _lichen.Server(lambda e, s: [], [(sock.fileno(), {}, False)], {
                'keepalive': 5.0, 'timeout_header': 30.0,
                'timeout_body': 60.0, 'timeout_write': 60.0,
                'limit_request_line': 8190, 'limit_request_fields': 100,
                'limit_request_field_size': 8190,
                'limit_request_body': 0, 'access_log_fd': -1,
                'forwarded_allow_ips': '127.0.0.1,10.0.0.1/8'})
    finally:
        sock.close()


def test_gunicorn_setting_maps_onto_the_option():
    pytest.importorskip('gunicorn')
    from gunicorn.config import Config

    from lichen.gunicorn import options_from

    cfg = Config()
    cfg.set('forwarded_allow_ips', '10.0.0.0/8, 192.0.2.1')
    options, _ = options_from(cfg)
    assert options['forwarded_allow_ips'] == ('10.0.0.0/8', '192.0.2.1',
                                              'unix')
    cfg.set('forwarded_allow_ips', '*')
    assert options_from(cfg)[0]['forwarded_allow_ips'] == ('*', 'unix')


# -- the command line ------------------------------------------------------

ECHO_APP = '''
import json

KEYS = ('REMOTE_ADDR', 'wsgi.url_scheme', 'HTTP_HOST', 'SERVER_PORT',
        'HTTP_X_FORWARDED_FOR', 'HTTP_X_FORWARDED_PROTO')


def app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in KEYS}).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]
'''


def test_command_line_flag(cli_server, tmp_path):
    import helpers_cli

    (tmp_path / 'echoapp.py').write_text(ECHO_APP)
    proc = cli_server(['--chdir', str(tmp_path), '-b', '127.0.0.1:0',
                       '--forwarded-allow-ips', '10.0.0.0/8', 'echoapp:app'])
    r = helpers_cli.request(proc.urls[0],
                            headers={'X-Forwarded-For': '198.51.100.3'})
    assert json.loads(r.body)['REMOTE_ADDR'] == '127.0.0.1'
    proc = cli_server(['--chdir', str(tmp_path), '-b', '127.0.0.1:0',
                       '--forwarded-allow-ips', '127.0.0.0/8',
                       'echoapp:app'])
    r = helpers_cli.request(proc.urls[0],
                            headers={'X-Forwarded-For': '198.51.100.3'})
    assert json.loads(r.body)['REMOTE_ADDR'] == '198.51.100.3'


def test_command_line_bad_value():
    import helpers_cli

    r = helpers_cli.run_lichen(['--forwarded-allow-ips', '10.0.0.1/8',
                                'examples.hello'])
    assert r.returncode == 1, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('lichen: '), r.stderr
    assert '--forwarded-allow-ips' in lines[0] and '10.0.0.1/8' in lines[0]


# -- behind nginx --------------------------------------------------------------

NGINX_CONF = '''
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx(tmp_path):
    """start(upstream_port) -> nginx's port: Debian's nginx as a reverse
    proxy on 127.0.0.1 in front of that port."""
    exe = shutil.which('nginx') or ('/usr/sbin/nginx'
                                    if os.path.exists('/usr/sbin/nginx')
                                    else None)
    if exe is None:
        pytest.skip('nginx is not installed (apt-get install nginx)')
    procs = []

    def start(upstream):
        port = free_port()
        conf = tmp_path / 'nginx.conf'
        conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port,
                                          upstream=upstream))
        proc = subprocess.Popen([exe, '-p', str(tmp_path), '-c', str(conf)],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
                return port
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        proc.kill()
        pytest.fail('nginx did not start: %s' % proc.communicate()[1])

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_behind_nginx(serve, nginx):
    app = Recorder()
    srv = serve(app)
    port = nginx(srv.address[1])
    # a client at 127.0.0.2 that claims to be someone else: nginx appends
    # the address it saw, which lichen takes (10.0.0.1 is not trusted)
    for headers in ([], [('X-Forwarded-For', '10.0.0.1')]):
        with Conn(('127.0.0.1', port), source_address=('127.0.0.2', 0)) as c:
            c.send(build('GET', '/p?q=1', headers, host='site.example'))
            r = c.read_response()
            assert r.status == 200, r
    first, second = app.environs
    assert first['REMOTE_ADDR'] == '127.0.0.2'
    assert first['HTTP_X_FORWARDED_FOR'] == '127.0.0.2'
    assert first['wsgi.url_scheme'] == 'http'
    assert first['HTTP_HOST'] == 'site.example'
    assert first['PATH_INFO'] == '/p' and first['QUERY_STRING'] == 'q=1'
    assert second['HTTP_X_FORWARDED_FOR'] == '10.0.0.1, 127.0.0.2'
    assert second['REMOTE_ADDR'] == '127.0.0.2'
    assert second['HTTP_X_FORWARDED_PROTO'] == 'http'
