"""The pre-fork master (lichen -w N): it holds the listeners the command
line bound, forks the workers, each of which builds its own Server (its
own engine, native or gevent mode) on the inherited sockets and serves;
the master itself never accepts a connection.

It restarts a worker that dies (after a pause that doubles while workers
die before they are ready), replaces a worker that has served
--max-requests, kills one whose loop has not turned for --timeout seconds
(the watchdog), and takes gunicorn's signals: TERM graceful, INT and QUIT
fast, HUP new workers first and the old ones drained, TTIN and TTOU one
worker more or less, USR1 the access logs reopened.

Each worker shares a small page with the master (an anonymous shared
mmap made before the fork): the time of its loop's last turn, whether it
is ready, and the method and path of the request it began last, which the
master logs when the watchdog fires.
"""

import errno
import mmap
import os
import random
import select
import signal
import socket
import struct
import sys
import time

from . import __version__, _logging
from .server import Server, _Listener

__all__ = ["Master", "BootError", "worker_count", "WORKER_BOOT_ERROR"]

# A worker's exit status when it could not start (the application would
# not load, the server could not be made).
WORKER_BOOT_ERROR = 3

# How often the master looks at its workers when nothing wakes it, and the
# longest a worker's loop waits between two beats.
_MASTER_TICK = 0.25
_WORKER_TICK = 1.0
# The restart pause while workers die before they are ready: doubling from
# the first to the last.
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 10.0
# A fast stop (INT, QUIT): the workers' time to close before they are
# killed.
_FAST_STOP = 1.0

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
            signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGCHLD)


class BootError(Exception):
    """The application cannot be loaded in a worker; str() is one line."""


def worker_count(value):
    """The --workers option's value as a number of processes: 0 is one
    per core this process may run on."""
    if value:
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Slot:
    """The page a worker and the master share: beat (monotonic seconds, a
    clock all processes share), ready flag, the last request begun."""

    _HEAD = struct.Struct("=dII")  # beat, ready, length of the request text
    SIZE = 1024
    _TEXT_MAX = SIZE - _HEAD.size

    def __init__(self):
        self.map = mmap.mmap(-1, self.SIZE)  # MAP_SHARED | MAP_ANONYMOUS
        self._HEAD.pack_into(self.map, 0, time.monotonic(), 0, 0)

    def beat(self, ready=True):
        self._HEAD.pack_into(self.map, 0, time.monotonic(), int(ready), 0)

    def request(self, text):
        data = text.encode("utf-8", "replace")[:self._TEXT_MAX]
        self.map[self._HEAD.size:self._HEAD.size + len(data)] = data
        struct.pack_into("=I", self.map, 12, len(data))

    def read(self):
        beat, ready, length = self._HEAD.unpack_from(self.map, 0)
        text = bytes(self.map[self._HEAD.size:self._HEAD.size + length])
        return beat, bool(ready), text.decode("utf-8", "replace")

    def close(self):
        self.map.close()


class _Worker:
    """The master's record of one worker process."""

    def __init__(self, pid, generation, slot, born):
        self.pid = pid
        self.generation = generation
        self.slot = slot
        self.born = born
        self.ready = False
        self.stopping = None  # when TERM (or QUIT) was sent
        self.killed = None  # why the master killed it


class Master:
    """Runs the workers until a stop. boot() (in a worker) returns the
    application or raises BootError; app is the application already
    loaded (--preload). reconfigure() (on HUP) returns the options anew,
    or raises with a one-line message, the old options then kept."""

    def __init__(self, listeners, cfg, boot=None, *, app=None,
                 gevent=False, prepare=None, reconfigure=None):
        self.listeners = listeners
        self.cfg = cfg
        self.boot = boot
        self.app = app
        self.gevent = gevent
        self.prepare = prepare  # in a worker, before the application loads
        self.reconfigure = reconfigure
        self.log = _logging.configure(cfg["log_level"])
        self.workers = {}  # pid -> _Worker
        self.target = worker_count(cfg["workers"])
        self.generation = 0
        self.signals = []
        self.stopping = None  # None, "graceful" or "fast"
        self.deadline = None
        self.failures = 0  # workers that died before ready, in a row
        self.next_spawn = 0.0
        self.ever_ready = False
        self.boot_failed = False
        self.watch_next = True  # --reload: the next worker watches files
        self.pid = os.getpid()
        self._pipe = None

    # -- the master's loop ---------------------------------------------

    def run(self):
        """Serve until a stop; returns the exit status."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pipe = (r, w)
        old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        old = {s: signal.signal(s, self._on_signal) for s in _SIGNALS}
        try:
            if self.cfg["reuse_port"]:
                self._reserve_ports()
            self._announce()
            while True:
                self._turn()
                if self.stopping is not None and not self.workers:
                    break
                self._wait()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in old.items():
                signal.signal(s, handler)
            os.close(r)
            os.close(w)
            self._pipe = None
            for listener in self.listeners:
                listener.close()
        if self.boot_failed:
            self.log.error("A worker failed to boot: stopping")
            return 1
        return 0

    def _announce(self):
        log = self.log
        log.info("Starting lichen %s%s", __version__,
                 " (gevent mode)" if self.gevent else "")
        for listener in self.listeners:
            if listener.activation is not None:
                fd, name = listener.activation
                log.info("Socket activation: fd %d%s is %s", fd,
                         f" ({name})" if name else "", listener.url)
            log.info("Listening at: %s (%d)", listener.url, self.pid)
        log.info("Master %d: %d worker%s%s", self.pid, self.target,
                 "s" if self.target != 1 else "",
                 ", application preloaded" if self.app is not None else "")

    def _reserve_ports(self):
        """--reuse-port: each TCP listener becomes a socket bound with
        SO_REUSEPORT but not listening (no connection is queued for the
        master): it keeps the port while each worker listens on a socket
        of its own."""
        for listener in self.listeners:
            if listener.family not in (socket.AF_INET, socket.AF_INET6) \
                    or listener.activation is not None:
                continue
            sock = socket.socket(listener.family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if listener.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6,
                                    socket.IPV6_V6ONLY, 1)
                address = listener.sock.getsockname()
                listener.sock.close()
                sock.bind(address)
            except OSError:
                sock.close()
                raise
            listener.sock = sock
            listener.owned = True
            listener.reuse_port = True

    def _on_signal(self, signum, frame):
        self.signals.append(signum)

    def _wait(self):
        timeout = _MASTER_TICK
        if self.deadline is not None:
            timeout = max(0.0, min(timeout,
                                   self.deadline - time.monotonic()))
        try:
            select.select([self._pipe[0]], [], [], timeout)
        except InterruptedError:
            pass
        try:
            while os.read(self._pipe[0], 512):
                pass
        except BlockingIOError:
            pass

    def _turn(self):
        while self.signals:
            self._handle(self.signals.pop(0))
        self._reap()
        now = time.monotonic()
        self._look(now)
        if self.stopping is not None:
            if self.deadline is not None and now >= self.deadline:
                for worker in self.workers.values():
                    self._kill(worker, "the stop's time is up")
                self.deadline = None
            return
        self._replace_old()
        self._spawn_missing(now)

    # -- signals ------------------------------------------------------

    def _handle(self, signum):
        if signum == signal.SIGCHLD:
            return
        name = signal.Signals(signum).name
        if signum == signal.SIGTERM:
            if self.stopping is None:
                timeout = self.cfg["graceful_timeout"]
                self.log.info("Received SIGTERM: stopping gracefully, "
                              "timeout %gs", timeout)
                self._stop("graceful", signal.SIGTERM, timeout)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            if self.stopping != "fast":
                self.log.info("Received %s: stopping", name)
                self._stop("fast", signal.SIGQUIT, _FAST_STOP)
        elif self.stopping is not None:
            return
        elif signum == signal.SIGHUP:
            self._reload()
        elif signum == signal.SIGTTIN:
            self.target += 1
            self.log.info("Received SIGTTIN: %d workers", self.target)
        elif signum == signal.SIGTTOU:
            if self.target > 1:
                self.target -= 1
            self.log.info("Received SIGTTOU: %d worker%s", self.target,
                          "s" if self.target != 1 else "")
            self._trim()
        elif signum == signal.SIGUSR1:
            self.log.info("Received SIGUSR1: reopening the access logs")
            for worker in self.workers.values():
                self._send(worker, signal.SIGUSR1)

    def _stop(self, how, signum, timeout):
        self.stopping = how
        self.deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.stopping = time.monotonic()
            self._send(worker, signum)

    def _reload(self):
        """HUP: the options read anew, a new generation of workers (the
        application imported anew in them unless preloaded); each old
        worker is drained once a new one is ready in its place."""
        if self.reconfigure is not None:
            try:
                cfg = self.reconfigure()
            except Exception as exc:
                self.log.error("Reload: %s; keeping the old configuration",
                               exc)
            else:
                self.cfg = cfg
                _logging.configure(cfg["log_level"])
                self.target = worker_count(cfg["workers"])
        self.generation += 1
        self.failures = 0
        self.next_spawn = 0.0
        self.watch_next = True
        self.log.info("Received SIGHUP: starting %d new worker%s, then "
                      "draining the old", self.target,
                      "s" if self.target != 1 else "")

    def _trim(self):
        """TTOU: the oldest workers beyond the target stop gracefully."""
        current = sorted((w for w in self._serving()
                          if w.generation == self.generation),
                         key=lambda w: w.born)
        for worker in current[:max(0, len(current) - self.target)]:
            self._retire(worker, "one worker fewer")

    # -- the workers ----------------------------------------------------

    def _serving(self):
        return [w for w in self.workers.values() if w.stopping is None]

    def _send(self, worker, signum):
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass

    def _retire(self, worker, why):
        self.log.info("Worker %d: stopping gracefully (%s)", worker.pid, why)
        worker.stopping = time.monotonic()
        self._send(worker, signal.SIGTERM)

    def _kill(self, worker, why):
        if worker.killed is None:
            worker.killed = why
            self._send(worker, signal.SIGKILL)

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            worker.slot.close()
            code = os.waitstatus_to_exitcode(status)
            if worker.killed is not None:
                self.log.warning("Worker %d killed: %s", pid, worker.killed)
            elif worker.stopping is None or code != 0:
                self.log.warning(
                    "Worker %d exited %s%s", pid,
                    f"with status {code}" if code >= 0 else
                    f"on signal {signal.Signals(-code).name}",
                    "" if worker.ready else " before it was ready")
            if not worker.ready and worker.stopping is None:
                if code == WORKER_BOOT_ERROR and not self.ever_ready:
                    # The very first workers cannot start: a start-up
                    # error, as without workers.
                    self.boot_failed = True
                    if self.stopping is None:
                        self._stop("fast", signal.SIGQUIT, _FAST_STOP)
                    continue
                self.failures += 1
                pause = min(_BACKOFF_MAX,
                            _BACKOFF_FIRST * 2 ** (self.failures - 1))
                self.next_spawn = time.monotonic() + pause
                if self.stopping is None:
                    self.log.error("Worker %d died at start-up; next start "
                                   "in %.1fs", pid, pause)

    def _look(self, now):
        """Ready workers noted; the watchdog."""
        timeout = self.cfg["timeout"]
        for worker in list(self.workers.values()):
            beat, ready, text = worker.slot.read()
            if ready and not worker.ready:
                worker.ready = True
                self.ever_ready = True
                self.failures = 0
            if timeout and worker.killed is None and now - beat > timeout:
                what = f"; it was serving {text}" if text else ""
                self.log.error("Worker %d timed out: its loop has not "
                               "turned for %gs%s", worker.pid, timeout, what)
                self._kill(worker, f"timeout, blocked in {text}" if text
                           else "timeout")

    def _replace_old(self):
        """Old workers (of a reload) drained as new ones are ready."""
        serving = self._serving()
        new_ready = sum(1 for w in serving
                        if w.generation == self.generation and w.ready)
        old = sorted((w for w in serving if w.generation != self.generation),
                     key=lambda w: w.born)
        if not old:
            return
        surplus = new_ready + len(old) - self.target
        if new_ready >= self.target:
            surplus = len(old)
        for worker in old[:max(0, surplus)]:
            self._retire(worker, "replaced by a reload")

    def _spawn_missing(self, now):
        current = [w for w in self._serving()
                   if w.generation == self.generation]
        missing = self.target - len(current)
        while missing > 0 and now >= self.next_spawn:
            self._spawn()
            missing -= 1
            if self.failures:
                break  # one at a time while they die at start-up

    def _spawn(self):
        slot = _Slot()
        pid = -1
        watch = self.cfg["reload"] and self.watch_next
        sys.stdout.flush()
        sys.stderr.flush()
        # Blocked across the fork: a signal for the new worker waits until
        # it has its own handlers, rather than reaching the master's.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        if pid == 0:
            code = 1
            try:
                code = self._worker(slot, watch)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        self.watch_next = False
        self.workers[pid] = _Worker(pid, self.generation, slot,
                                    time.monotonic())
        self.log.info("Booting worker with pid: %d", pid)

    # -- in a worker ----------------------------------------------------

    def _worker(self, slot, watch):
        """The worker's life, after the fork; returns its exit status."""
        signal.set_wakeup_fd(-1)
        for fd in self._pipe:
            os.close(fd)
        for worker in self.workers.values():
            worker.slot.close()
        self.workers = {}
        for s in _SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        # The master's signals: a worker ignores what is the master's.
        for s in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(s, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        random.seed()
        slot.beat(ready=False)
        app = self.app
        if app is None:
            if self.prepare is not None:
                self.prepare()
            try:
                app = self.boot()
            except BootError as exc:
                sys.stderr.write(f"lichen: {exc}\n")
                return WORKER_BOOT_ERROR
        return _WorkerProcess(self, slot, app, watch).run()


class _WorkerProcess:
    """One worker: its Server on the master's sockets, driven a turn at a
    time (native mode) or from gevent's hub, beating between turns."""

    def __init__(self, master, slot, app, watch):
        self.master = master
        self.cfg = master.cfg
        self.slot = slot
        self.app = app
        self.watch = watch
        self.log = master.log
        self.ppid = master.pid
        self.server = None
        self.stopping = False
        cfg = self.cfg
        self.limit = 0
        if cfg["max_requests"]:
            self.limit = cfg["max_requests"] + random.randint(
                0, cfg["max_requests_jitter"])
        self._mtimes = None
        self._checked = 0.0

    def _app(self, environ, start_response):
        # What the watchdog tells of a blocked worker: the request that
        # entered the application last.
        self.slot.request(f"{environ.get('REQUEST_METHOD', '')} "
                          f"{environ.get('PATH_INFO', '')}")
        return self.app(environ, start_response)

    def run(self):
        listeners = []
        try:
            for l in self.master.listeners:
                if getattr(l, "reuse_port", False):
                    copy = _Listener(_reuse_port_socket(
                        l.sock, self.cfg["backlog"]), l.name, owned=True)
                else:
                    # The master's sockets, not the worker's to close or
                    # unlink.
                    copy = _Listener(l.sock, l.name, owned=False)
                copy.tls = l.tls
                listeners.append(copy)
            self.server = Server(
                self._app, listeners=listeners, config=self.cfg,
                gevent=self.master.gevent,
                environ={"wsgi.multiprocess": True})
        except Exception as exc:
            sys.stderr.write(f"lichen: {exc}\n")
            for listener in listeners:
                listener.close()
            return WORKER_BOOT_ERROR
        self.slot.beat(ready=True)
        try:
            if self.server.gevent:
                self._run_gevent()
            else:
                self._run_native()
        finally:
            self.server.close()
        return 0

    def _stop(self, timeout):
        self.stopping = True
        self.server._engine.stop(timeout)

    def _check(self):
        """Between turns: the beat, max-requests, the master gone, the
        files of --reload."""
        self.slot.beat()
        server = self.server
        if self.stopping:
            return
        if self.limit and server.served >= self.limit:
            self.log.info("Worker %d: %d requests served (max-requests): "
                          "stopping gracefully", os.getpid(), server.served)
            self._stop(self.cfg["graceful_timeout"])
        elif os.getppid() != self.ppid:
            self.log.info("Worker %d: the master is gone: stopping",
                          os.getpid())
            self._stop(self.cfg["graceful_timeout"])
        elif self.watch:
            self._watch_files()

    def _on_term(self, *args):
        if not self.stopping:
            self._stop(self.cfg["graceful_timeout"])

    def _on_quit(self, *args):
        self.stopping = True
        self.server._engine.stop(0)

    def _on_usr1(self, *args):
        reopen_access_log(self.server)

    def _run_native(self):
        engine = self.server._engine
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_quit)
        signal.signal(signal.SIGQUIT, self._on_quit)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        # A signal's byte on the engine's wake-up pipe ends the turn, so
        # the handler runs at once.
        signal.set_wakeup_fd(engine.wakeup_fd, warn_on_full_buffer=False)
        tick = _WORKER_TICK
        if self.cfg["timeout"]:
            tick = min(tick, self.cfg["timeout"] / 4)
        server = self.server
        while server.run_once(tick):
            self._check()

    def _run_gevent(self):
        import gevent
        tick = _WORKER_TICK
        if self.cfg["timeout"]:
            tick = min(tick, self.cfg["timeout"] / 4)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                  signal.SIGUSR1):
            signal.signal(s, signal.SIG_DFL)
        watchers = [gevent.signal_handler(signal.SIGTERM, self._on_term),
                    gevent.signal_handler(signal.SIGINT, self._on_quit),
                    gevent.signal_handler(signal.SIGQUIT, self._on_quit),
                    gevent.signal_handler(signal.SIGUSR1, self._on_usr1)]

        def beat():
            while True:
                self._check()
                gevent.sleep(tick)

        beater = gevent.spawn(beat)
        try:
            self.server.serve_forever()
        finally:
            beater.kill()
            for w in watchers:
                w.cancel()

    def _watch_files(self):
        """--reload: once a second, the application's source files; one
        changed, the master is asked to reload (SIGHUP)."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        mtimes = {}
        for path in _source_files():
            try:
                mtimes[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
        if self._mtimes is None:
            self._mtimes = mtimes
            return
        changed = [p for p, t in mtimes.items()
                   if self._mtimes.get(p, t) != t]
        if changed:
            self.log.info("Reload: %s changed", changed[0])
            self.watch = False
            os.kill(self.ppid, signal.SIGHUP)


def _reuse_port_socket(reserved, backlog):
    """A worker's own listening socket at the address the master keeps
    (--reuse-port)."""
    sock = socket.socket(reserved.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if reserved.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(reserved.getsockname())
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"--reuse-port: cannot listen at "
                      f"{reserved.getsockname()[:2]}: {exc.strerror}"
                      ) from None
    return sock


def _source_files():
    """The .py files of the modules loaded, but the standard library's and
    the installed packages'."""
    skip = tuple({os.path.join(p, "lib") for p in
                  (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py") and not path.startswith(skip):
            yield path


def reopen_access_log(server):
    """USR1: the access log file opened anew (logrotate moved it) under
    the same descriptor the engine writes to."""
    path = server.options["access_log"]
    if not server._access_log_owned or path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                     | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        server.log.error("cannot reopen access log %s: %s", path,
                         (exc.strerror or str(exc)).lower())
        return
    try:
        os.dup2(fd, server._access_log_fd, inheritable=False)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
    finally:
        os.close(fd)
