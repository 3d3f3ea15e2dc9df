"""lichen.pywsgi, the drop-in for gevent.pywsgi, as a program sees it.

Each test runs a small program in a subprocess (gevent's hub, and the
monkey-patching a program may do, stay out of the test process): the
program serves from gevent's hub with lichen.pywsgi.WSGIServer, talks to
itself over real sockets from other greenlets, and prints one line,
``RESULT {json}``, which the test checks. Where gevent's own WSGIServer
is the reference, the same program runs with it too.
"""

import json
import re
import socket
import subprocess
import textwrap
import threading
import time
from datetime import datetime

import pytest

from helpers_cli import PYTHON, REPO, child_env, free_port

RUN_TIMEOUT = 60  # one program, start to end, on a busy machine

# What every program starts with: the server module under test (argv[1]:
# lichen or gevent), a hello-world application, a client on gevent's
# sockets (the hub keeps serving while it waits) and the report.
PRELUDE = r'''
import json
import sys
import time
import warnings

import gevent
import gevent.event
import gevent.pool
from gevent import socket

MODULE = sys.argv[1] if len(sys.argv) > 1 else 'lichen'
if MODULE == 'gevent':
    from gevent import pywsgi
else:
    from lichen import pywsgi


def hello(environ, start_response):
    if environ['PATH_INFO'] != '/':
        start_response('404 Not Found', [('Content-Type', 'text/plain')])
        return [b'not found']
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello world']


def read_response(sock):
    """One response with a Content-Length: (status, body)."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, data.decode('latin-1')
        data += chunk
    head, _, body = data.partition(b'\r\n\r\n')
    length = 0
    for line in head.split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-length':
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body.decode('latin-1')


def get(port, path='/', timeout=10):
    """GET path on a connection of its own: (status, body)."""
    with socket.create_connection(('127.0.0.1', port),
                                  timeout=timeout) as sock:
        sock.sendall(b'GET %s HTTP/1.1\r\nHost: test\r\n\r\n'
                     % path.encode())
        return read_response(sock)


def refused(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def report(**values):
    print('RESULT ' + json.dumps(values), flush=True)
'''


def run(program, *args, timeout=RUN_TIMEOUT):
    """Runs PRELUDE + program; returns (its RESULT, its stderr)."""
    source = PRELUDE + textwrap.dedent(program)
    try:
        proc = subprocess.run(
            [PYTHON, '-c', source] + list(args), cwd=str(REPO),
            env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as ex:
        pytest.fail('the program did not end in %ss; stderr:\n%s'
                    % (timeout, (ex.stderr or b'').decode('utf-8',
                                                          'replace')))
    out = proc.stdout.decode('utf-8', 'replace')
    err = proc.stderr.decode('utf-8', 'replace')
    results = [line[len('RESULT '):] for line in out.splitlines()
               if line.startswith('RESULT ')]
    assert proc.returncode == 0 and results, (
        'exit %s\nstdout:\n%s\nstderr:\n%s' % (proc.returncode, out, err))
    return json.loads(results[-1]), err


# gevent.pywsgi's access line (WSGIHandler.format_request): client, local
# time to the second, request line, status, length or '-', seconds.
ACCESS_LINE = re.compile(
    r'(?P<client>\S+) - - \[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] '
    r'"(?P<request_line>[^"]*)" (?P<status>\d{3}) (?P<length>\d+|-) '
    r'(?P<seconds>\d+\.\d{6})')


def assert_access_line(line, request_line, status):
    match = ACCESS_LINE.fullmatch(line)
    assert match, 'not an access line in pywsgi format: %r' % (line,)
    assert match['client'] == '127.0.0.1'
    assert match['request_line'] == request_line
    assert match['status'] == status
    logged = datetime.strptime(match['time'], '%Y-%m-%d %H:%M:%S')
    assert abs((datetime.now() - logged).total_seconds()) < 300, line


# -- the documented program -----------------------------------------------

HELLO_PROGRAM = '''\
import sys

from lichen import pywsgi


def application(environ, start_response):
    if environ['PATH_INFO'] == '/':
        start_response('200 OK', [('Content-Type', 'text/html')])
        return [b'<b>hello world</b>']
    start_response('404 Not Found', [('Content-Type', 'text/html')])
    return [b'<h1>Not Found</h1>']


if __name__ == '__main__':
    port = int(sys.argv[1])
    print('Serving on %d...' % port, flush=True)
    pywsgi.WSGIServer(('127.0.0.1', port), application).serve_forever()
'''


def http_get(port, path):
    """(status, body) with the standard library's client."""
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request('GET', path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_documented_program_serves_hello_world(tmp_path):
    """gevent's documented way, with lichen's module: the program binds,
    serves and writes pywsgi's access lines to stderr."""
    program = tmp_path / 'hello.py'
    program.write_text(HELLO_PROGRAM)
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(program), str(port)],
                            cwd=str(tmp_path), env=child_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    err_lines = []
    reader = threading.Thread(
        target=lambda: err_lines.extend(
            line.decode('utf-8', 'replace').rstrip('\n')
            for line in proc.stderr), daemon=True)
    reader.start()

    def access_lines():
        return [line for line in list(err_lines)
                if ACCESS_LINE.fullmatch(line)]

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), 1).close()
                break
            except OSError:
                assert proc.poll() is None, err_lines
                assert time.monotonic() < deadline, 'the program never bound'
                time.sleep(0.05)
        assert http_get(port, '/') == (200, b'<b>hello world</b>')
        assert http_get(port, '/elsewhere') == (404, b'<h1>Not Found</h1>')
        # the lines follow the responses, each at the end of its turn
        deadline = time.monotonic() + 20
        while len(access_lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(20)
        out = proc.stdout.read()
        proc.stdout.close()
        reader.join(20)
        proc.stderr.close()
    assert out.decode().startswith('Serving on %d...' % port)
    lines = access_lines()
    assert len(lines) == 2, err_lines
    assert_access_line(lines[0], 'GET / HTTP/1.1', '200')
    assert_access_line(lines[1], 'GET /elsewhere HTTP/1.1', '404')


# -- listening -------------------------------------------------------------

@pytest.mark.timeout(60)
def test_binds_in_start_not_in_the_constructor():
    result, _ = run('''
        probe = socket.socket()
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
        probe.close()
        server = pywsgi.WSGIServer(('127.0.0.1', port), hello, log=None)
        before = refused(port)
        # the port is still free: another socket may take it meanwhile
        other = socket.socket()
        other.bind(('127.0.0.1', port))
        other.close()
        server.start()
        served = get(port)
        server.stop()
        report(before=before, served=served, after=refused(port))
    ''')
    assert result == {'before': True, 'served': [200, 'hello world'],
                      'after': True}


@pytest.mark.timeout(60)
@pytest.mark.parametrize('kind', ['stdlib', 'gevent'])
def test_given_listener_is_used_and_closed_by_stop(kind):
    result, _ = run('''
        import socket as stdlib_socket
        family = stdlib_socket if sys.argv[2] == 'stdlib' else socket
        listener = family.socket()
        listener.bind(('127.0.0.1', 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        server = pywsgi.WSGIServer(listener, hello, log=None)
        known = server.server_port == port
        server.start()
        served = get(port)
        open_while_serving = listener.fileno() != -1
        server.stop()
        report(known=known, served=served, open=open_while_serving,
               closed=listener.fileno() == -1, refused=refused(port))
    ''', 'lichen', kind)
    assert result == {'known': True, 'served': [200, 'hello world'],
                      'open': True, 'closed': True, 'refused': True}


# -- spawn -----------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize('spawn', ['int', 'pool'])
def test_spawn_limits_requests_served_at_once(spawn):
    """spawn=2 (or a Pool of 2): two requests at a time; an idle
    keep-alive connection holds no slot (gevent's would hold one)."""
    result, _ = run('''
        active = [0]
        peak = [0]

        def slow(environ, start_response):
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            try:
                gevent.sleep(0.3)
            finally:
                active[0] -= 1
            start_response('200 OK', [('Content-Length', '2')])
            return [b'ok']

        spawn = 2 if sys.argv[2] == 'int' else gevent.pool.Pool(2)
        server = pywsgi.WSGIServer(('127.0.0.1', 0), slow, spawn=spawn,
                                   log=None)
        server.start()
        port = server.server_port
        idle = socket.create_connection(('127.0.0.1', port), timeout=20)
        idle.sendall(b'GET / HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n')
        first = read_response(idle)
        peak[0] = 0
        clients = [gevent.spawn(get, port, timeout=20) for _ in range(6)]
        gevent.joinall(clients, timeout=30)
        answers = [c.value if c.successful() else repr(c.exception)
                   for c in clients]
        idle_peak = peak[0]
        idle.sendall(b'GET / HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n')
        again = read_response(idle)
        idle.close()
        server.stop()
        report(first=first, answers=answers, peak=idle_peak, again=again)
    ''', 'lichen', spawn)
    assert result['first'] == [200, 'ok']
    assert result['answers'] == [[200, 'ok']] * 6
    assert result['peak'] == 2
    assert result['again'] == [200, 'ok']


# -- logs ------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize('module', ['lichen', 'gevent'])
def test_access_log_to_a_file_like_in_pywsgi_format(module):
    """The same lines as gevent's (which checks the pattern itself)."""
    result, _ = run('''
        class Collect:
            def __init__(self):
                self.writes = []

            def write(self, data):
                self.writes.append(data)

        log = Collect()
        server = pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=log)
        server.start()
        answers = [get(server.server_port, '/'),
                   get(server.server_port, '/missing?q=1')]
        deadline = time.monotonic() + 10
        while ''.join(log.writes).count('\\n') < 2 and \\
                time.monotonic() < deadline:
            gevent.sleep(0.01)
        server.stop()
        report(answers=answers, writes=log.writes)
    ''', module)
    assert result['answers'] == [[200, 'hello world'], [404, 'not found']]
    text = ''.join(result['writes'])
    assert text.endswith('\n')
    lines = text.splitlines()
    assert len(lines) == 2, result['writes']
    assert_access_line(lines[0], 'GET / HTTP/1.1', '200')
    assert_access_line(lines[1], 'GET /missing?q=1 HTTP/1.1', '404')


@pytest.mark.timeout(60)
@pytest.mark.parametrize('log', ['default', 'None'])
def test_access_log_default_is_stderr_and_none_writes_nothing(log):
    result, err = run('''
        if sys.argv[2] == 'None':
            server = pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=None)
        else:
            server = pywsgi.WSGIServer(('127.0.0.1', 0), hello)
        server.start()
        answer = get(server.server_port, '/logged')
        gevent.sleep(0.2)
        server.stop()
        report(answer=answer)
    ''', 'lichen', log)
    assert result['answer'] == [404, 'not found']
    lines = [line for line in err.splitlines()
             if ACCESS_LINE.fullmatch(line)]
    if log == 'None':
        assert lines == [] and '/logged' not in err, err
    else:
        assert len(lines) == 1, err
        assert_access_line(lines[0], 'GET /logged HTTP/1.1', '404')


@pytest.mark.timeout(60)
def test_logging_logger_as_log_and_error_log():
    result, _ = run('''
        import logging

        records = []

        class Keep(logging.Handler):
            def emit(self, record):
                records.append((record.name, record.levelno,
                                record.getMessage()))

        access = logging.getLogger('test.access')
        errors = logging.getLogger('test.errors')
        for logger in (access, errors):
            logger.setLevel(logging.DEBUG)
            logger.addHandler(Keep())
            logger.propagate = False

        def app(environ, start_response):
            environ['wsgi.errors'].write('the application speaks\\n')
            return hello(environ, start_response)

        server = pywsgi.WSGIServer(('127.0.0.1', 0), app, log=access,
                                   error_log=errors)
        adapters = [isinstance(server.log, pywsgi.LoggingLogAdapter),
                    isinstance(server.error_log, pywsgi.LoggingLogAdapter)]
        server.start()
        answer = get(server.server_port)
        deadline = time.monotonic() + 10
        while len(records) < 2 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        server.stop()
        report(adapters=adapters, answer=answer, records=records)
    ''')
    assert result['adapters'] == [True, True]
    assert result['answer'] == [200, 'hello world']
    records = sorted(result['records'])
    assert len(records) == 2, records
    (a_name, a_level, a_msg), (e_name, e_level, e_msg) = records
    assert (a_name, a_level) == ('test.access', 20)
    assert_access_line(a_msg, 'GET / HTTP/1.1', '200')
    assert (e_name, e_level, e_msg) == ('test.errors', 40,
                                        'the application speaks')


@pytest.mark.timeout(60)
def test_application_error_goes_to_the_hub_with_the_environ():
    """As gevent's: the hub's handle_error gets the exception with the
    (secured) environ as its context; the client gets a 500."""
    result, _ = run('''
        seen = []

        def handle_error(context, kind, value, tb):
            seen.append([isinstance(context, pywsgi.SecureEnviron),
                         context.get('PATH_INFO'), kind.__name__,
                         str(value), tb is not None])

        def app(environ, start_response):
            if environ['PATH_INFO'] == '/boom':
                raise ValueError('boom')
            return hello(environ, start_response)

        gevent.get_hub().handle_error = handle_error
        server = pywsgi.WSGIServer(('127.0.0.1', 0), app, log=None)
        server.start()
        boom = get(server.server_port, '/boom')
        after = get(server.server_port, '/')
        server.stop()
        report(boom=boom[0], after=after, seen=seen)
    ''')
    assert result['boom'] == 500
    assert result['after'] == [200, 'hello world']
    assert result['seen'] == [[True, '/boom', 'ValueError', 'boom', True]]


@pytest.mark.timeout(60)
def test_application_error_printed_by_the_default_hub():
    result, err = run('''
        def app(environ, start_response):
            raise ValueError('an error for the hub to print')

        server = pywsgi.WSGIServer(('127.0.0.1', 0), app, log=None)
        server.start()
        status = get(server.server_port)[0]
        server.stop()
        report(status=status)
    ''')
    assert result['status'] == 500
    assert 'Traceback' in err
    assert 'ValueError: an error for the hub to print' in err


# -- environ, handler_class, TLS -------------------------------------------

@pytest.mark.timeout(60)
def test_environ_keys_reach_the_application():
    result, _ = run('''
        import io

        seen = {}
        errors = io.StringIO()

        def app(environ, start_response):
            for key in ('example.key', 'SERVER_NAME', 'wsgi.url_scheme',
                        'SERVER_SOFTWARE'):
                seen[key] = environ.get(key)
            seen['errors is error_log'] = environ['wsgi.errors'] is errors
            return hello(environ, start_response)

        server = pywsgi.WSGIServer(
            ('127.0.0.1', 0), app, log=None, error_log=errors,
            environ={'example.key': 'a value', 'SERVER_NAME': 'example.org'})
        server.start()
        answer = get(server.server_port)
        server.stop()
        report(answer=answer, seen=seen)
    ''')
    assert result['answer'] == [200, 'hello world']
    seen = result['seen']
    assert seen['example.key'] == 'a value'
    assert seen['SERVER_NAME'] == 'example.org'
    assert seen['wsgi.url_scheme'] == 'http'
    assert seen['SERVER_SOFTWARE'].startswith('lichen/')
    assert seen['errors is error_log'] is True


@pytest.mark.timeout(60)
def test_handler_class_subclass_warns_naming_its_methods():
    result, _ = run('''
        class Attribute(pywsgi.WSGIHandler):
            ApplicationError = ValueError

        class Custom(pywsgi.WSGIHandler):
            def read_requestline(self):
                return pywsgi.WSGIHandler.read_requestline(self)

            def log_request(self):
                pass

        out = {}
        for name, handler_class in [('base', pywsgi.WSGIHandler),
                                    ('attribute', Attribute),
                                    ('custom', Custom)]:
            server = pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=None,
                                       handler_class=handler_class)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                server.start()
            answer = get(server.server_port)
            server.stop()
            out[name] = [answer, [[w.category.__name__, str(w.message),
                                   w.filename] for w in caught]]
        report(**out)
    ''')
    for name in ('base', 'attribute'):
        assert result[name] == [[200, 'hello world'], []], name
    answer, caught = result['custom']
    assert answer == [200, 'hello world']
    assert len(caught) == 1, caught
    category, message, filename = caught[0]
    assert category == 'RuntimeWarning'
    assert 'Custom' in message
    assert 'log_request' in message and 'read_requestline' in message
    assert filename == '<string>'  # the line that called start()


@pytest.mark.timeout(30)
def test_tls_arguments_lichen_cannot_honour_are_refused_clearly():
    from lichen import pywsgi

    with pytest.raises(TypeError, match='ciphersuites'):
        pywsgi.WSGIServer(('127.0.0.1', 0), lambda e, s: [],
                          certfile='server.crt', ciphersuites='x')
    with pytest.raises(TypeError, match='certfile'):
        pywsgi.WSGIServer(('127.0.0.1', 0), lambda e, s: [],
                          keyfile='server.key')
    with pytest.raises(TypeError, match='ssl_context or keyfile'):
        pywsgi.WSGIServer(('127.0.0.1', 0), lambda e, s: [],
                          certfile='server.crt', ssl_context=object())


# -- state and lifetime ----------------------------------------------------

STATES = '''
    def state(server):
        return [server.started, server.closed, list(server.address),
                server.server_host, server.server_port != 0]

    steps = []
    server = pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=None)
    steps.append(['made', server.application is hello] + state(server))
    server.start()
    port = server.server_port
    steps.append(['started'] + state(server)
                 + [server.address[1] == port, get(port)])
    server.stop()
    steps.append(['stopped'] + state(server)[:2] + [refused(port)])

    with pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=None) as server:
        server.start()
        port = server.server_port
        steps.append(['in with'] + state(server)[:2] + [get(port)])
    steps.append(['after with'] + state(server)[:2] + [refused(port)])
    report(steps=steps)
'''


@pytest.mark.timeout(60)
def test_state_attributes_and_context_manager_as_gevents():
    ours, _ = run(STATES, 'lichen')
    theirs, _ = run(STATES, 'gevent')
    assert ours['steps'] == [
        ['made', True, False, True, ['127.0.0.1', 0], '127.0.0.1', False],
        ['started', True, False, ['127.0.0.1', ours['steps'][1][3][1]],
         '127.0.0.1', True, True, [200, 'hello world']],
        ['stopped', False, True, True],
        ['in with', True, False, [200, 'hello world']],
        ['after with', False, True, True],
    ]
    assert ours['steps'][1][3][1] > 0
    # the port differs; everything else is gevent's
    theirs['steps'][1][3][1] = ours['steps'][1][3][1]
    assert ours == theirs


@pytest.mark.timeout(60)
def test_stop_lets_a_request_in_flight_finish():
    result, _ = run('''
        began = gevent.event.Event()

        def slow(environ, start_response):
            began.set()
            gevent.sleep(0.5)
            start_response('200 OK', [('Content-Length', '4')])
            return [b'done']

        server = pywsgi.WSGIServer(('127.0.0.1', 0), slow, log=None)
        server.start()
        port = server.server_port
        client = gevent.spawn(get, port, timeout=20)
        began.wait(20)
        started = time.monotonic()
        server.stop(timeout=10)
        took = time.monotonic() - started
        answer = client.get(timeout=20)
        report(answer=answer, took=took, refused=refused(port),
               started=server.started, closed=server.closed)
    ''')
    assert result['answer'] == [200, 'done']
    assert 0.3 <= result['took'] < 10, result
    assert result['refused'] and result['closed']
    assert not result['started']


@pytest.mark.timeout(60)
def test_stop_from_the_application_answers_its_request():
    # As gevent's: a view may stop its own server; its request is answered
    # and the server closes once drained.
    result, _ = run('''
        def quit(environ, start_response):
            started = time.monotonic()
            server.stop(timeout=10)
            waited = time.monotonic() - started
            start_response('200 OK', [('Content-Length', '3')])
            environ['waited'] = waited
            took.append(waited)
            return [b'bye']

        took = []
        server = pywsgi.WSGIServer(('127.0.0.1', 0), quit, log=None)
        server.start()
        port = server.server_port
        answer = get(port, timeout=20)
        gevent.sleep(0.5)
        report(answer=answer, waited=took[0], refused=refused(port),
               closed=server.closed)
    ''')
    assert result['answer'] == [200, 'bye']
    assert result['waited'] < 0.5, result
    assert result['refused'] and result['closed']


@pytest.mark.timeout(60)
def test_stop_timeout_ends_a_request_that_takes_longer():
    result, _ = run('''
        began = gevent.event.Event()
        ended = []

        def stuck(environ, start_response):
            began.set()
            try:
                gevent.sleep(30)
            except BaseException as ex:
                ended.append(type(ex).__name__)
                raise
            start_response('200 OK', [('Content-Length', '4')])
            return [b'late']

        server = pywsgi.WSGIServer(('127.0.0.1', 0), stuck, log=None)
        server.start()
        client = gevent.spawn(get, server.server_port, timeout=20)
        began.wait(20)
        started = time.monotonic()
        server.stop(timeout=0.3)
        took = time.monotonic() - started
        client.join(20)
        answer = client.value if client.successful() else None
        report(took=took, answer=answer, ended=ended,
               closed=server.closed)
    ''')
    assert result['took'] < 10, result
    assert result['answer'] in (None, [0, '']), result
    assert result['ended'] == ['GreenletExit'], result
    assert result['closed']


@pytest.mark.timeout(60)
def test_serve_forever_blocks_only_the_calling_greenlet():
    result, _ = run('''
        ticks = []
        answers = []
        server = pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=None)

        def ticker():
            for _ in range(3):
                ticks.append(time.monotonic())
                gevent.sleep(0.01)

        def client():
            tick.join(20)
            answers.append(get(server.server_port))
            server.stop()

        tick = gevent.spawn(ticker)
        gevent.spawn(client)
        called = time.monotonic()
        server.serve_forever()  # returns once the client has stopped it
        returned_at = time.monotonic()
        returned = [server.closed, answers, len(ticks),
                    all(called <= t <= returned_at for t in ticks)]

        # and from a greenlet of its own, while this one is the client
        server = pywsgi.WSGIServer(('127.0.0.1', 0), hello, log=None)
        serving = gevent.spawn(server.serve_forever)
        while not server.started:
            gevent.sleep(0.01)
        answer = get(server.server_port)
        alive = not serving.dead
        server.stop()
        serving.join(20)
        report(returned=returned, answer=answer, alive=alive,
               dead=serving.dead, error=repr(serving.exception))
    ''')
    # the other greenlets ran while serve_forever blocked this one
    assert result['returned'] == [True, [[200, 'hello world']], 3, True]
    assert result['answer'] == [200, 'hello world']
    assert result['alive'] and result['dead']
    assert result['error'] == 'None'


# -- what the gevent suite's differences rest on ---------------------------

@pytest.mark.timeout(60)
def test_body_given_with_a_304_is_not_sent():
    """RFC 9110 15.4.5: a 304 ends with its head. The body an application
    gives (returned or written) is left out, quietly; the next response
    on the connection is intact."""
    result, _ = run('''
        seen = []
        gevent.get_hub().handle_error = \\
            lambda context, kind, value, tb: seen.append(repr(value))

        def app(environ, start_response):
            if environ['PATH_INFO'] == '/written':
                write = start_response('304 Not Modified', [])
                write(b'body')
                return []
            if environ['PATH_INFO'] == '/returned':
                start_response('304 Not Modified', [])
                return [b'body']
            return hello(environ, start_response)

        server = pywsgi.WSGIServer(('127.0.0.1', 0), app, log=None)
        server.start()
        with socket.create_connection(('127.0.0.1', server.server_port),
                                      timeout=10) as sock:
            sock.sendall(b''.join(
                b'GET %s HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n' % path
                for path in (b'/returned', b'/written', b'/')))
            data = b''
            while data.count(b'\\r\\n\\r\\n') < 3 or \\
                    not data.endswith(b'hello world'):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        server.stop()
        report(data=data.decode('latin-1'), seen=seen)
    ''')
    assert result['seen'] == []
    responses = result['data'].split('HTTP/1.1 ')[1:]
    assert [r.split(' ', 1)[0] for r in responses] == ['304', '304', '200']
    for response in responses[:2]:
        assert response.endswith('\r\n\r\n'), response
        assert 'body' not in response
    assert responses[2].endswith('\r\n\r\nhello world')
