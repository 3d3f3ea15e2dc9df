# --- HTTP/WSGI black-box fixtures: `serve` factory, open-files limit ---------
import os as _os
import resource as _resource
import sys as _sys
import threading as _threading

import pytest as _pytest

_sys.path.insert(0, _os.path.dirname(__file__))


@_pytest.fixture(scope='session', autouse=True)
def _raise_nofile_limit():
    soft, hard = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    if hard != soft:
        _resource.setrlimit(_resource.RLIMIT_NOFILE, (hard, hard))
    yield


@_pytest.fixture
def serve():
    """srv = serve(app, **options): a lichen.Server on 127.0.0.1:0 running
    serve_forever in a daemon thread. Teardown closes client sockets, stops
    every server, joins its thread and asserts lichen.live_counts() is all 0."""
    import lichen
    import support

    started = []

    def start(app, **options):
        options.setdefault('host', '127.0.0.1')
        options.setdefault('port', 0)
        srv = lichen.Server(app, **options)
        errors = []

        def run():
            try:
                srv.serve_forever()
            except BaseException as e:  # reported at teardown
                errors.append(e)

        t = _threading.Thread(target=run, name='lichen-serve', daemon=True)
        t.start()
        started.append((srv, t, errors))
        return srv

    yield start

    support.close_all()
    problems = []
    for srv, t, errors in reversed(started):
        srv.stop(timeout=5)
        t.join(10)
        if t.is_alive():
            problems.append('serve_forever still running after stop()')
        if errors:
            problems.append('serve_forever raised %r' % (errors[0],))
    assert not problems, problems
    if started:
        counts = lichen.live_counts()
        assert not any(counts.values()), \
            'live objects after stop: %r' % (counts,)


# --- command line / API / framework fixtures (helpers in helpers_cli.py) ----
@_pytest.fixture
def cli_server():
    """proc = cli_server(args, listeners=1, ...): lichen in a subprocess,
    started and waited for (its "listening on" lines); killed at teardown if
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
