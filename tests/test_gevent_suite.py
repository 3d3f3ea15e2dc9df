"""gevent's own test__pywsgi, run against lichen.pywsgi.

tests/gevent_suite/run_pywsgi.py runs the chosen tests in a subprocess (the
module monkey-patches the whole process at import), with the module's
``pywsgi`` replaced by lichen.pywsgi: each test makes its server and starts
it in gevent's hub itself. This file reads the report. A chosen test must
pass, or fail in the way its entry in EXPECTED_DIFFERENCES describes; an
expected difference that passes is a failure too, so the list stays true.
See docs/conformance/gevent-suite.md.
"""
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'gevent_suite'))

import pywsgi_selection as selection  # noqa: E402

RUNNER = os.path.join(HERE, 'gevent_suite', 'run_pywsgi.py')
RUN_TIMEOUT = 120


@pytest.fixture(scope='module')
def suite_run():
    """Runs the chosen tests once: {'results': {id: {...}}, 'end': {...}}."""
    try:
        installed = importlib.metadata.version('gevent')
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("gevent is not installed: pip install -e '.[test]'")
    if installed != selection.GEVENT_VERSION:
        pytest.fail('gevent %s installed, pywsgi_selection.py describes %s'
                    % (installed, selection.GEVENT_VERSION))
    try:
        proc = subprocess.run(
            [sys.executable, RUNNER, '--all'], cwd=os.path.dirname(HERE),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as ex:
        pytest.fail('the runner did not finish in %ss; stdout tail:\n%s'
                    % (RUN_TIMEOUT, (ex.stdout or b'')[-4000:].decode(
                        'utf-8', 'replace')))
    out = proc.stdout.decode('utf-8', 'replace')
    err = proc.stderr.decode('utf-8', 'replace')
    results, end = {}, None
    for line in out.splitlines():
        if line.startswith('GEVENT-SUITE '):
            record = json.loads(line.split(' ', 1)[1])
            results[record['id']] = record
        elif line.startswith('GEVENT-SUITE-END '):
            end = json.loads(line.split(' ', 1)[1])
    if proc.returncode != 0 or end is None:
        pytest.fail('the runner failed (exit %s)\nstdout tail:\n%s\n'
                    'stderr tail:\n%s' % (proc.returncode, out[-3000:],
                                          err[-3000:]))
    return {'results': results, 'end': end, 'stderr': err}


def test_selection_covers_every_collected_test(suite_run):
    collected = suite_run['end']['collected']
    chosen = set(selection.CHOSEN)
    assert len(chosen) == len(selection.CHOSEN), 'duplicate ids in CHOSEN'
    excluded = {t for t in collected if selection.excluded_reason(t)}
    assert not chosen & excluded, 'both chosen and excluded: %s' % sorted(
        chosen & excluded)
    unclassified = set(collected) - chosen - excluded
    assert not unclassified, ('tests neither chosen nor excluded (new in '
                              'this gevent?): %s' % sorted(unclassified))
    gone = chosen - set(collected)
    assert not gone, 'chosen tests that no longer exist: %s' % sorted(gone)
    stray = set(selection.EXPECTED_DIFFERENCES) - chosen
    assert not stray, 'expected differences not chosen: %s' % sorted(stray)


def test_each_difference_cites_the_rfc_that_allows_it():
    for test_id, (reason, evidence) in \
            selection.EXPECTED_DIFFERENCES.items():
        assert re.search(r'RFC 911[02] section \d+(\.\d+)*: "', reason), (
            '%s: the reason quotes no RFC 9110/9112 sentence: %s'
            % (test_id, reason))
        assert evidence, test_id


def test_servers_stopped_and_nothing_leaked(suite_run):
    end = suite_run['end']
    assert not end['problems'], end['problems']
    assert all(v == 0 for v in end['live_counts'].values()), end['live_counts']


@pytest.mark.parametrize('test_id', selection.CHOSEN)
def test_gevent_pywsgi(suite_run, test_id):
    record = suite_run['results'].get(test_id)
    assert record is not None, '%s did not report a result' % test_id
    outcome, detail = record['outcome'], record['detail']
    expected = selection.EXPECTED_DIFFERENCES.get(test_id)
    if expected is None:
        assert outcome == 'pass', '%s: %s\n%s' % (test_id, outcome, detail)
        return
    reason, evidence = expected
    assert outcome != 'pass', (
        '%s passes now: remove it from EXPECTED_DIFFERENCES (%s)'
        % (test_id, reason))
    assert outcome in ('fail', 'error'), '%s: %s %s' % (test_id, outcome,
                                                        detail)
    assert evidence in detail, (
        '%s fails, but not for the expected reason (%s: no %r in the '
        'report):\n%s' % (test_id, reason, evidence, detail))
