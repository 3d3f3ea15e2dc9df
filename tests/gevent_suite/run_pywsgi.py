"""Run gevent's own test__pywsgi against lichen.

    python tests/gevent_suite/run_pywsgi.py [--all] [TEST_ID ...]

The module ships in the gevent wheel (gevent/tests/test__pywsgi.py). It is
imported as it is (it monkey-patches everything at import), then one hook is
replaced: TestCase.init_server, which builds ``self.server``. Instead of a
gevent.pywsgi.WSGIServer, each test gets a lichen.Server serving the same
``self.application`` (wrapped in wsgiref's validator where the test asks for
it) in a real OS thread, started by setUp and stopped by tearDown through the
unchanged gevent code (``server.start()``, ``server.server_port``,
``server.stop()``).

gevent's tests learn about an application's exception from the hub's
``handle_error`` (``expect_one_error`` / ``assert_error``). lichen reports it
on its ``lichen.error`` logger instead, so a logging handler puts the logged
exception where ``assert_error`` looks for it, with the log message as the
"where" (pywsgi gives its environ).

Only the tests listed in pywsgi_selection.CHOSEN run (all of them with --all, or
the ids given). Every test's outcome is printed as one line:

    GEVENT-SUITE {"id": ..., "outcome": "pass"|"fail"|"error"|"skip", "detail": ...}

and the last line is ``GEVENT-SUITE-END {...}`` with the collected ids, the
lichen.live_counts() after the last test and any server that did not stop.
"""
import json
import logging
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = 'GEVENT-SUITE'
STOP_TIMEOUT = 2.0  # graceful stop of one test's server
JOIN_TIMEOUT = 10.0  # then the serving thread must have returned


def _emit(tag, payload):
    sys.stdout.write('%s %s\n' % (tag, json.dumps(payload, sort_keys=True)))
    sys.stdout.flush()


def main(argv):
    # The module patches at import; patching first keeps the real thread
    # primitives reachable through get_original.
    from gevent import monkey
    monkey.patch_all()
    start_new_thread = monkey.get_original('_thread', 'start_new_thread')
    allocate_lock = monkey.get_original('_thread', 'allocate_lock')

    sys.path.insert(0, HERE)
    import pywsgi_selection as selection

    import lichen
    from gevent.tests import test__pywsgi as suite

    problems = []  # servers that would not stop, loops that raised
    state = {'test': None}

    class LichenServer(object):
        """What the gevent tests use of a WSGIServer, backed by lichen."""

        def __init__(self, application):
            self.lichen = lichen.Server(application, host='127.0.0.1', port=0)
            self.server_port = self.lichen.address[1]
            self._done = allocate_lock()
            self._done.acquire()
            self._started = False

        def start(self):
            # Under monkey-patching threading.Thread makes greenlets; the
            # engine's loop needs a thread of its own.
            start_new_thread(self._run, ())
            self._started = True

        def _run(self):
            try:
                self.lichen.serve_forever()
            except BaseException as ex:  # reported by the end line
                problems.append('serve_forever raised %r' % (ex,))
            finally:
                self._done.release()

        def stop(self, timeout=None):
            self.lichen.stop(STOP_TIMEOUT)
            if self._started and not self._done.acquire(True, JOIN_TIMEOUT):
                problems.append('%s: serve_forever still running %ss after '
                                'stop()' % (state['test'], JOIN_TIMEOUT))
                return
            self.lichen.close()

    def init_server(self, application):
        self.logger = self.init_logger()
        self.server = LichenServer(application)

    suite.TestCase.init_server = init_server
    # lichen.Server listens on one address; pywsgi's tests bind the default
    # (dual stack) address and connect by name.
    suite.TestCase.connect_addr = '127.0.0.1'

    original_setUp = suite.TestCase.setUp

    def setUp(self):
        state['test'] = self
        original_setUp(self)

    suite.TestCase.setUp = setUp

    class ErrorBridge(logging.Handler):
        """lichen.error records with an exception -> the running test's
        error slot, as gevent's hub.handle_error would fill it."""

        def createLock(self):
            # Records come from the server's thread; a gevent lock made in
            # the main thread must not be contended from there.
            self.lock = None

        def emit(self, record):
            sys.stderr.write(self.format(record) + '\n')
            test = state['test']
            if not record.exc_info or test is None:
                return
            _, value, _ = record.exc_info
            if test._error == test._none:
                test._error = (record.getMessage(), type(value), value)

    bridge = ErrorBridge()
    bridge.setFormatter(logging.Formatter('[lichen.error] %(message)s'))
    # With a handler in place lichen adds no stderr handler of its own.
    logging.getLogger('lichen.error').addHandler(bridge)

    def flatten(tests):
        for t in tests:
            if isinstance(t, unittest.TestSuite):
                yield from flatten(t)
            else:
                yield t

    def short_id(test):
        return test.id().split('test__pywsgi.', 1)[1]

    collected = list(flatten(
        unittest.defaultTestLoader.loadTestsFromModule(suite)))
    wanted = set(argv) if argv and argv != ['--all'] else set(selection.CHOSEN)
    to_run = unittest.TestSuite(t for t in collected if short_id(t) in wanted)

    class Result(unittest.TestResult):
        def _report(self, test, outcome, detail=''):
            reported = getattr(test, '_error', (None, None, None))
            if outcome in ('fail', 'error') and reported[1] is not None:
                # What the application raised on the server side, if the
                # test did not consume it: often the real cause of a 500.
                detail += '\nserver reported (%s): %s: %s' % (
                    reported[0], reported[1].__name__, reported[2])
            _emit(MARK, {'id': short_id(test), 'outcome': outcome,
                         'detail': detail})

        def addSuccess(self, test):
            super().addSuccess(test)
            self._report(test, 'pass')

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._report(test, 'fail', self._exc_info_to_string(err, test))

        def addError(self, test, err):
            super().addError(test, err)
            self._report(test, 'error', self._exc_info_to_string(err, test))

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._report(test, 'skip', reason)

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._report(test, 'fail', self._exc_info_to_string(err, test))

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._report(test, 'pass')

    started = time.monotonic()
    to_run.run(Result())
    _emit(MARK + '-END', {
        'collected': [short_id(t) for t in collected],
        'live_counts': dict(lichen.live_counts()),
        'problems': problems,
        'seconds': round(time.monotonic() - started, 2),
    })
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
