# --- HTTP/WSGI black-box fixtures: `serve` factory, open-files limit ---------
import collections as _collections
import os as _os
import resource as _resource
import selectors as _selectors
import sys as _sys
import threading as _threading

import pytest as _pytest

_sys.path.insert(0, _os.path.dirname(__file__))

# The ways to drive the engine: serve_forever in a thread; a plain selectors
# loop that calls run_once(0) only when fileno() is readable, in a thread's
# main greenlet, or in a greenlet of its own; gevent mode, the thread's
# gevent hub driving it.
DRIVERS = ('serve_forever', 'selectors', 'selectors-greenlet', 'gevent')


@_pytest.fixture(scope='session', autouse=True)
def _raise_nofile_limit():
    soft, hard = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    if hard != soft:
        _resource.setrlimit(_resource.RLIMIT_NOFILE, (hard, hard))
    yield


def drive_with_selectors(srv, stats):
    """Run srv from a selectors loop: run_once(0) when the engine's fd is
    readable, and never otherwise (a select that times out is counted:
    only the fd may wake this loop)."""
    sel = _selectors.DefaultSelector()
    sel.register(srv.fileno(), _selectors.EVENT_READ)
    try:
        while True:
            if not sel.select(60.0):
                stats['select timeouts'] += 1
                continue
            stats['wakeups'] += 1
            if not srv.run_once(0):
                return
    finally:
        sel.close()


def _run_driver(driver, srv, stats):
    if driver in ('serve_forever', 'gevent'):
        srv.serve_forever()
    elif driver == 'selectors':
        drive_with_selectors(srv, stats)
    elif driver == 'selectors-greenlet':
        import greenlet
        greenlet.greenlet(drive_with_selectors).switch(srv, stats)
    else:
        raise ValueError(driver)


@_pytest.fixture
def driver():
    """How the `serve` fixture drives its servers; a module parametrizes
    this fixture to run its tests under every driver (DRIVERS). The
    environment's LICHEN_TEST_DRIVER runs the whole suite under one."""
    return _os.environ.get('LICHEN_TEST_DRIVER', 'serve_forever')


# What the `serve` fixture's servers speak: plain HTTP, or HTTP in TLS.
TRANSPORTS = ('plain', 'tls')


def pytest_configure(config):
    config.addinivalue_line(
        'markers',
        'transports(*names, reason=None): run the tests through `serve` '
        'under each transport named (all of TRANSPORTS if none); a test '
        'that names fewer than the module says why (reason=)')


def pytest_generate_tests(metafunc):
    # A module with `pytestmark = pytest.mark.transports` runs its tests
    # under every transport; one test may narrow that with its own mark.
    # LICHEN_TEST_TRANSPORT=plain|tls runs them under that one only (a
    # test marked for the other still runs under its own).
    mark = metafunc.definition.get_closest_marker('transports')
    if mark is None or 'transport' not in metafunc.fixturenames:
        return
    names = mark.args or TRANSPORTS
    assert set(names) <= set(TRANSPORTS), names
    assert len(names) == len(TRANSPORTS) or mark.kwargs.get('reason'), \
        '%s: say why it runs under %s only' % (metafunc.function.__name__,
                                               names)
    forced = _os.environ.get('LICHEN_TEST_TRANSPORT')
    if forced:
        assert forced in TRANSPORTS, 'LICHEN_TEST_TRANSPORT=%s' % forced
        names = [n for n in names if n == forced] or names
    metafunc.parametrize('transport', names)


@_pytest.fixture
def transport():
    """What the `serve` fixture's servers speak, and support's clients
    with them: 'plain', unless the module runs its tests under each of
    TRANSPORTS (pytest_generate_tests)."""
    return 'plain'


@_pytest.fixture(scope='session')
def tls_server_files(tmp_path_factory):
    """(certfile, keyfile, cafile): a certificate for 127.0.0.1 and
    localhost, and the CA that issued it, made once per session."""
    import trustme

    d = tmp_path_factory.mktemp('serve-tls')
    ca = trustme.CA()
    cert = ca.issue_cert('127.0.0.1', 'localhost')
    certfile, keyfile, cafile = (str(d / n) for n in
                                 ('server.pem', 'server.key', 'ca.pem'))
    with open(certfile, 'wb') as f:
        for pem in cert.cert_chain_pems:
            f.write(pem.bytes())
    cert.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(cafile)
    return certfile, keyfile, cafile


@_pytest.fixture
def serve(driver, transport, request):
    """srv = serve(app, **options): a lichen.Server on 127.0.0.1:0 driven in
    a daemon thread (see `driver`), speaking `transport`: with 'tls' it
    gets the certificate of tls_server_files, and support's clients
    (Conn, request, client_socket) speak TLS trusting its CA. Teardown
    closes client sockets, stops every server, joins its thread and
    asserts lichen.live_counts() is all 0 (and, under a selectors driver,
    that only the fd woke the loop)."""
    import lichen
    import support

    started = []
    tls = None
    if transport == 'tls':
        tls = request.getfixturevalue('tls_server_files')
    support.use_transport(transport, tls and tls[2])

    def start(app, **options):
        options.setdefault('host', '127.0.0.1')
        options.setdefault('port', 0)
        if driver == 'gevent':
            options.setdefault('gevent', True)
        if tls:
            options.setdefault('certfile', tls[0])
            options.setdefault('keyfile', tls[1])
        srv = lichen.Server(app, **options)
        errors = []
        stats = _collections.Counter()

        def run():
            try:
                _run_driver(driver, srv, stats)
            except BaseException as e:  # reported at teardown
                errors.append(e)

        t = _threading.Thread(target=run, name='lichen-' + driver,
                              daemon=True)
        t.start()
        srv.driver_stats = stats
        started.append((srv, t, errors, stats))
        return srv

    try:
        yield start
    finally:
        support.use_transport('plain')

    support.close_all()
    problems = []
    for srv, t, errors, stats in reversed(started):
        srv.stop(timeout=5)
        t.join(10)
        if t.is_alive():
            problems.append('the loop still runs after stop()')
        if errors:
            problems.append('the driver raised %r' % (errors[0],))
        if stats['select timeouts']:
            problems.append('the selectors loop woke on its own timeout')
    assert not problems, problems
    if started:
        counts = lichen.live_counts()
        assert not any(counts.values()), \
            'live objects after stop: %r' % (counts,)


# --- command line / API / framework fixtures (helpers in helpers_cli.py) ----
@_pytest.fixture
def cli_server():
    """proc = cli_server(args, listeners=1, ...): lichen in a subprocess,
    started and waited for (its "Listening at" lines); killed at teardown if
    the test left it running."""
    import helpers_cli

    procs = []

    def start(args, **kwargs):
        proc = helpers_cli.LichenProcess(args, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


# --- the differential tests' counts, in pytest's summary --------------------
def pytest_terminal_summary(terminalreporter):
    compare = _sys.modules.get('differential.compare')
    stats = getattr(compare, 'STATS', None)
    if not stats:
        return
    terminalreporter.section('differential parsing')
    terminalreporter.write_line(
        '%d inputs compared, %d agreed with both peers, %d unexplained'
        % (stats['inputs'], stats['agree'], stats['unexplained']))
    for k, v in sorted(stats.items()):
        if k.startswith('known'):
            terminalreporter.write_line('  %-45s %d' % (k, v))
