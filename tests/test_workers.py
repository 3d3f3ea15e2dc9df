"""Worker processes (lichen -w N): the master, its workers and its signals,
with real lichen processes on 127.0.0.1."""

import http.client
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from helpers_cli import REPO, child_env, request, run_lichen

APP = "tests.apps.workerapp"


def children(pid):
    """The pids of the process's children, from /proc."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.update(int(p) for p in
                       (task / "children").read_text().split())
        except OSError:
            pass
    return out


def wait_for(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def answer(url, path="/"):
    """(worker pid, load stamp) of one request on a new connection. With
    --reuse-port a worker listens once it is up: until the first has,
    the port refuses (for a few seconds at most)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            resp = request(url, path=path, timeout=10)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert resp.status == 200
    pid, loaded = resp.text.split()
    return int(pid), loaded


def start(cli_server, *args, **kwargs):
    proc = cli_server(["-b", "127.0.0.1:0", *args, APP], **kwargs)
    master = proc.proc.pid
    assert wait_for(lambda: proc.wait_stderr("Booting worker", 5))
    return proc, master


def test_each_worker_answers_and_the_master_serves_none(cli_server):
    # A shared listener lets whichever worker wakes first take a lone
    # connection (the same one, often): --reuse-port spreads them by their
    # addresses, so 300 connections reach every worker.
    proc, master = start(cli_server, "-w", "3", "--reuse-port")
    seen = set()
    for _ in range(300):
        seen.add(answer(proc.urls[0])[0])
        if len(seen) == 3:
            break
    assert master not in seen
    assert seen == children(master)
    assert proc.stop() == 0
    assert "Master" in proc.stderr


def test_reuse_port_spreads_the_load_over_the_workers(cli_server):
    proc, master = start(cli_server, "-w", "3", "--reuse-port")
    assert wait_for(lambda: len(children(master)) == 3)
    counts = {}
    lock = threading.Lock()

    def client():
        for _ in range(100):
            pid = answer(proc.urls[0])[0]
            with lock:
                counts[pid] = counts.get(pid, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts.values()) == 600
    assert len(counts) == 3
    assert min(counts.values()) >= 600 / 3 / 3, counts


def test_killed_worker_is_replaced_and_others_lose_nothing(cli_server):
    proc, master = start(cli_server, "-w", "2")
    before = wait_for(lambda: len(children(master)) == 2 and
                      children(master))
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    answers = [answer(proc.urls[0])[0] for _ in range(50)]
    assert victim not in answers
    after = wait_for(lambda: len(children(master)) == 2 and
                     victim not in children(master) and children(master))
    assert len(after) == 2 and victim not in after
    assert proc.wait_stderr(f"Worker {victim} exited on signal SIGKILL")
    assert proc.stop() == 0


def test_term_answers_the_request_in_flight(cli_server):
    proc, master = start(cli_server, "-w", "2")
    result = {}

    def slow():
        result["resp"] = request(proc.urls[0], path="/sleep",
                                 headers={}, timeout=10)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    thread.join(10)
    assert result["resp"].status == 200
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert wait_for(lambda: not os.path.exists(f"/proc/{master}"), 5)


def test_int_stops_fast(cli_server):
    proc, master = start(cli_server, "-w", "2")
    workers = wait_for(lambda: len(children(master)) == 2 and
                       children(master))
    t0 = time.monotonic()
    proc.signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 3
    assert not any(os.path.exists(f"/proc/{p}/stat") and
                   open(f"/proc/{p}/stat").read().split()[2] != "Z"
                   for p in workers)


def test_hup_replaces_the_workers_without_losing_a_request(cli_server):
    proc, master = start(cli_server, "-w", "2")
    old = wait_for(lambda: len(children(master)) == 2 and children(master))
    old_loads = {answer(proc.urls[0])[1] for _ in range(20)}
    stop = threading.Event()
    counts = {"ok": 0, "failed": []}
    loads = set()

    def client():
        while not stop.is_set():
            try:
                _, loaded = answer(proc.urls[0])
                counts["ok"] += 1
                loads.add(loaded)
            except Exception as exc:  # a lost request
                counts["failed"].append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    proc.signal(signal.SIGHUP)
    new = wait_for(lambda: (lambda c: len(c) == 2 and not c & old and c)(
        children(master)), 15)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(10)
    assert new and not new & old
    assert counts["failed"] == []
    assert counts["ok"] > 50
    # The application was imported anew in the new workers.
    assert loads - old_loads
    assert proc.stop() == 0


def test_ttin_and_ttou_change_the_worker_count(cli_server):
    proc, master = start(cli_server, "-w", "2")
    assert wait_for(lambda: len(children(master)) == 2)
    proc.signal(signal.SIGTTIN)
    assert wait_for(lambda: len(children(master)) == 3)
    proc.signal(signal.SIGTTOU)
    time.sleep(0.2)
    proc.signal(signal.SIGTTOU)
    assert wait_for(lambda: len(children(master)) == 1)
    answer(proc.urls[0])
    assert proc.stop() == 0


def test_max_requests_replaces_workers(cli_server):
    proc, master = start(cli_server, "-w", "1", "--max-requests", "5")
    pids = [answer(proc.urls[0])[0] for _ in range(17)]
    assert len(set(pids)) >= 3
    assert pids[:5] == [pids[0]] * 5
    assert proc.wait_stderr("requests served (max-requests)")
    assert proc.stop() == 0


def test_watchdog_kills_a_blocked_worker(cli_server):
    proc, master = start(cli_server, "-w", "1", "--timeout", "1")
    first = answer(proc.urls[0])[0]
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    t0 = time.monotonic()
    conn.request("GET", "/sleep?8")
    with pytest.raises((http.client.RemoteDisconnected,
                        ConnectionResetError)):
        conn.getresponse()
    conn.close()
    assert time.monotonic() - t0 < 4
    assert proc.wait_stderr(f"Worker {first} timed out")
    assert "serving GET /sleep" in proc.stderr
    assert answer(proc.urls[0])[0] != first
    assert proc.stop() == 0


def test_first_workers_that_cannot_start_stop_the_master(tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("")
    import subprocess
    import sys
    result = subprocess.run(
        [sys.executable, "-m", "lichen", "-w", "2", "-b", "127.0.0.1:0",
         APP], cwd=str(REPO), capture_output=True, text=True, timeout=30,
        env=child_env(WORKERAPP_FAIL_FILE=str(flag)))
    assert result.returncode == 1
    assert "told to fail at start-up" in result.stderr
    assert "failed to boot" in result.stderr


def test_workers_dying_at_start_up_are_restarted_with_backoff(
        cli_server, tmp_path):
    flag = tmp_path / "fail"
    proc, master = start(cli_server, "-w", "2",
                         env=child_env(WORKERAPP_FAIL_FILE=str(flag)))
    workers = set()
    while len(workers) < 2:  # both ready
        workers.add(answer(proc.urls[0])[0])
    victim = min(workers)
    flag.write_text("")
    os.kill(victim, signal.SIGKILL)
    assert proc.wait_stderr("died at start-up; next start in 0.2s", 10), \
        proc.stderr
    # The other worker serves meanwhile.
    assert answer(proc.urls[0])[0] == max(workers)
    flag.unlink()
    assert wait_for(lambda: len(children(master) - workers) == 1, 15)
    assert proc.stop() == 0


def _answers(url):
    try:
        return answer(url)[0]
    except Exception:
        return None


def test_usr1_reopens_the_access_log(cli_server, tmp_path):
    log = tmp_path / "access.log"
    proc, master = start(cli_server, "-w", "2", "--access-log", str(log))
    answer(proc.urls[0], "/before")
    assert wait_for(lambda: log.exists() and "/before" in log.read_text())
    log.rename(tmp_path / "access.log.1")
    proc.signal(signal.SIGUSR1)
    assert proc.wait_stderr("reopening the access logs")
    time.sleep(0.3)
    for _ in range(6):
        answer(proc.urls[0], "/after")
    assert wait_for(lambda: log.exists() and "/after" in log.read_text())
    assert "/after" not in (tmp_path / "access.log.1").read_text()
    assert proc.stop() == 0


def test_preload_imports_the_application_once(cli_server):
    proc, master = start(cli_server, "-w", "2", "--preload", "--reuse-port")
    loads = set()
    pids = set()
    for _ in range(200):
        pid, loaded = answer(proc.urls[0])
        pids.add(pid)
        loads.add(loaded)
        if len(pids) == 2:
            break
    assert len(pids) == 2
    # Imported by the master: one stamp, the master's pid in it.
    assert loads == {loads.copy().pop()}
    assert loads.pop().startswith(f"{master}-")
    assert proc.stop() == 0


def test_reload_restarts_workers_when_a_source_changes(cli_server, tmp_path):
    src = tmp_path / "reloadapp.py"
    src.write_text(_RELOAD_APP.format(text="one"))
    proc = cli_server(["-b", "127.0.0.1:0", "--reload", "--chdir",
                       str(tmp_path), "reloadapp"])
    assert wait_for(lambda: _text(proc.urls[0]) == "one", 10)
    time.sleep(1.2)  # the first look at the files is taken
    src.write_text(_RELOAD_APP.format(text="two"))
    assert wait_for(lambda: _text(proc.urls[0]) == "two", 10)
    assert proc.wait_stderr("Reload: ")
    assert proc.stop() == 0


_RELOAD_APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{text}"]
'''


def _text(url):
    try:
        return request(url, timeout=5).text
    except Exception:
        return None


def test_bad_workers_value_is_a_usage_error():
    result = run_lichen(["-w", "many", APP])
    assert result.returncode == 1
    assert "invalid value for --workers: 'many'" in result.stderr
