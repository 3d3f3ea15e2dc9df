"""Run gevent's own test__pywsgi against lichen.pywsgi.

    python tests/gevent_suite/run_pywsgi.py [--all] [TEST_ID ...]

The module ships in the gevent wheel (gevent/tests/test__pywsgi.py). It is
imported as it is (it monkey-patches everything at import), then its
module-level ``pywsgi`` (``from gevent import pywsgi``) is replaced by
``lichen.pywsgi``, the drop-in. Nothing else of the module changes: its
``TestCase.init_server`` builds ``pywsgi.WSGIServer((listen_addr, 0),
application, log=..., error_log=..., handler_class=...)``, setUp calls
``server.start()`` in the test's own greenlet and tearDown ``server.stop()``,
so each server runs in gevent's hub, as gevent runs its own. An
application's exception reaches the hub's ``handle_error`` (lichen.pywsgi
reports it there, with the environ as context), where gevent's
``expect_one_error`` / ``assert_error`` and its ``error_fatal`` look.

The module also took ``Input`` from gevent.pywsgi at import; only
TestInputRaw, a unit test of that class (excluded), uses it. The handler
classes the module defines subclass ``pywsgi.WSGIHandler``, which is the
same class in lichen.pywsgi (checked below).

Only the tests listed in pywsgi_selection.CHOSEN run (all of them with
--all, or the ids given). Every test's outcome is printed as one line:

    GEVENT-SUITE {"id": ..., "outcome": "pass"|"fail"|"error"|"skip", ...}

and the last line is ``GEVENT-SUITE-END {...}`` with the collected ids, the
lichen.live_counts() after the last test and any server left running.
"""
import gc
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = 'GEVENT-SUITE'


def _emit(tag, payload):
    sys.stdout.write('%s %s\n' % (tag, json.dumps(payload, sort_keys=True)))
    sys.stdout.flush()


def main(argv):
    # The module patches at import; patching first, as a program using
    # gevent.pywsgi would, makes lichen's imports see the patched modules.
    from gevent import monkey
    monkey.patch_all()

    sys.path.insert(0, HERE)
    import pywsgi_selection as selection

    import gevent
    import lichen
    import lichen.pywsgi
    from gevent.tests import test__pywsgi as suite

    assert suite.pywsgi.WSGIHandler is lichen.pywsgi.WSGIHandler
    suite.pywsgi = lichen.pywsgi

    problems = []  # servers left running, servers not lichen's

    original_setUp = suite.TestCase.setUp
    original_tearDown = suite.TestCase.tearDown

    def setUp(self):
        original_setUp(self)
        if not isinstance(self.server, lichen.pywsgi.WSGIServer):
            problems.append('%s: not served by lichen.pywsgi: %r'
                            % (short_id(self), self.server))

    def tearDown(self):
        server = self.server
        try:
            original_tearDown(self)
        finally:
            if server is not None and (server.started or not server.closed):
                problems.append('%s: server still %s after tearDown'
                                % (short_id(self), 'serving'
                                   if server.started else 'open'))
                server.close()

    suite.TestCase.setUp = setUp
    suite.TestCase.tearDown = tearDown

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
                detail += '\nserver reported: %s: %s' % (
                    reported[1].__name__, reported[2])
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
    # Let the hub finish what the last stop() began (greenlets unwinding),
    # then count what the engine still holds.
    gevent.sleep(0.01)
    gc.collect()
    _emit(MARK + '-END', {
        'collected': [short_id(t) for t in collected],
        'live_counts': dict(lichen.live_counts()),
        'problems': problems,
        'seconds': round(time.monotonic() - started, 2),
    })
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
