"""gunicorn worker classes that serve with lichen's engine::

    gunicorn -k lichen.gunicorn.Worker myapp:app
    gunicorn -k lichen.gunicorn.GeventWorker myapp:app

gunicorn's master stays what it is: it binds, forks, watches the workers'
heartbeat, handles the signals (HUP reloads, TERM stops gracefully, QUIT
and INT at once, TTIN/TTOU) and runs the hooks. In each worker lichen's
engine serves on the sockets the master bound.

``Worker`` drives the engine's loop itself (lichen's native mode), a turn
at a time, notifying the master between turns. ``GeventWorker`` first
monkey-patches the standard library, as gunicorn's gevent worker does, then
serves from gevent's hub (lichen's gevent mode), so that gevent.sleep and
patched I/O in applications cooperate.

gunicorn's settings map to lichen's options where lichen has the same
thing (keepalive, graceful_timeout, the request limits); worker_connections
bounds the requests served at once. docs/gunicorn.md lists what maps to
what and what is not supported. A subclass can set lichen options that
gunicorn has no setting for::

    class Worker(lichen.gunicorn.Worker):
        lichen_options = {"timeout_header": 10, "limit_request_body": 0}
"""

import datetime
import importlib.util
import os
import signal
import sys
import time

import greenlet
from gunicorn import glogging
from gunicorn.arbiter import Arbiter
from gunicorn.workers import base

from .config import LOG_LEVELS, OPTIONS_BY_NAME, ConfigError, validate
from .server import Server

__all__ = ["Worker", "GeventWorker", "options_from"]

# What gunicorn itself makes of its request limits (gunicorn/http/
# message.py): the request line is capped at 8190 bytes and 0 means its
# "unlimited", 1 MiB; at most 32768 header fields, 0 or less meaning that
# many; a field size of 0 or less means 8190.
_GUNICORN_LINE_MAX = 8190
_GUNICORN_LINE_UNLIMITED = 1 << 20
_GUNICORN_FIELDS_MAX = 32768
_GUNICORN_FIELD_SIZE_DEFAULT = 8190

# The heartbeat is given at most this often, and a turn of the native loop
# waits at most _TICK_MAX seconds, so that the master hears from an idle
# worker and signals are seen promptly.
_BEAT_INTERVAL = 0.1
_TICK_MAX = 1.0


def _refusal(cfg):
    """Why lichen's workers cannot serve this configuration, or None."""
    protocol = getattr(cfg, "protocol", "http")
    if protocol not in (None, "http"):
        return (f"lichen's worker classes speak HTTP only, not "
                f"{protocol!r} (protocol)")
    return None


def _proxy_protocol(cfg):
    """Whether gunicorn's proxy_protocol is on: off, v1, v2 or auto (a
    bool in older releases). lichen takes either version on each
    connection."""
    value = getattr(cfg, "proxy_protocol", False)
    if isinstance(value, str):
        return value.strip().lower() not in ("off", "false", "0", "")
    return bool(value)


def _in_range(name, value, given, notes):
    """value within what lichen's option name takes; a note if not."""
    opt = OPTIONS_BY_NAME[name]
    kept = value
    if opt.minimum is not None and kept < opt.minimum:
        kept = opt.minimum
    if opt.maximum is not None and kept > opt.maximum:
        kept = opt.maximum
    if kept != value:
        notes.append(f"{name} = {given}: lichen takes {opt.minimum} to "
                     f"{opt.maximum}, {kept} is used")
    return kept


def options_from(cfg, extra=None):
    """lichen's options for gunicorn's configuration cfg, then the options
    in extra (a worker class's lichen_options) over them. Returns the
    options checked by lichen.config.validate() and a list of notes on the
    settings lichen takes otherwise than gunicorn. Raises ConfigError."""
    notes = []
    line = cfg.limit_request_line
    if line == 0:
        line = _GUNICORN_LINE_UNLIMITED
    elif line < 0 or line > _GUNICORN_LINE_MAX:
        line = _GUNICORN_LINE_MAX
    fields = cfg.limit_request_fields
    if fields <= 0 or fields > _GUNICORN_FIELDS_MAX:
        fields = _GUNICORN_FIELDS_MAX
    field_size = cfg.limit_request_field_size
    if field_size <= 0:
        field_size = _GUNICORN_FIELD_SIZE_DEFAULT
    level = str(cfg.loglevel or "info").lower()
    options = {
        "keepalive": float(cfg.keepalive),
        "graceful_timeout": float(cfg.graceful_timeout),
        "limit_request_line": _in_range(
            "limit_request_line", line, cfg.limit_request_line, notes),
        "limit_request_fields": _in_range(
            "limit_request_fields", fields, cfg.limit_request_fields, notes),
        "limit_request_field_size": _in_range(
            "limit_request_field_size", field_size,
            cfg.limit_request_field_size, notes),
        "limit_concurrency": cfg.worker_connections,
        "log_level": level if level in LOG_LEVELS else "info",
        # gunicorn takes the application's mount point from the
        # environment (raw_env included, set before the workers start).
        "root_path": os.environ.get("SCRIPT_NAME", ""),
        # gunicorn's addresses and networks, and as gunicorn, unix socket
        # peers always.
        "forwarded_allow_ips": list(cfg.forwarded_allow_ips) + ["unix"],
    }
    if _proxy_protocol(cfg):
        # One list of peers for both: gunicorn's proxy_allow_ips join them.
        options["proxy_protocol"] = True
        extra_peers = [ip for ip in getattr(cfg, "proxy_allow_ips", ())
                       if ip not in options["forwarded_allow_ips"]]
        if extra_peers:
            options["forwarded_allow_ips"] += extra_peers
            notes.append(f"proxy_allow_ips = {','.join(extra_peers)}: "
                         f"lichen trusts one list of peers with the PROXY "
                         f"protocol and the proxy headers, "
                         f"forwarded_allow_ips; these are added to it")
    if cfg.is_ssl:
        # gunicorn's TLS settings, served by the engine's TLS; ssl_version
        # and the handshake/EOF switches have no meaning there.
        options.update(certfile=cfg.certfile, keyfile=cfg.keyfile,
                       ca_certs=cfg.ca_certs, cert_reqs=int(cfg.cert_reqs),
                       ciphers=cfg.ciphers or None)
    options.update(extra or {})
    return validate(options), notes


class _Response:
    """What gunicorn's logger reads of a response."""

    __slots__ = ("status", "headers", "sent")

    def __init__(self, status, sent):
        self.status = status
        self.headers = []
        self.sent = sent


class _Server(Server):
    """lichen's Server, logging through the gunicorn worker's logger."""

    def __init__(self, worker, *args, **kwargs):
        self._worker = worker
        super().__init__(*args, **kwargs)
        self.log = worker.log

    def _engine_options(self):
        options = super()._engine_options()
        worker = self._worker
        options["log"] = worker._engine_log
        if worker._access_log_wanted():
            options["access_log_call"] = worker._access
        return options


class Worker(base.Worker):
    """A gunicorn worker whose requests lichen's engine serves, its loop
    driven from this worker's main greenlet (lichen's native mode)."""

    #: lichen options (lichen.Server's keyword arguments) over those made
    #: from gunicorn's settings, for a subclass to set.
    lichen_options = {}

    gevent_mode = False
    server = None
    _quit = False
    _loop_greenlet = None
    _beaten = -_BEAT_INTERVAL

    # -- in the master -----------------------------------------------------

    @classmethod
    def check_config(cls, cfg, log):
        """In the master at start-up: refuse what lichen cannot serve, say
        what it takes otherwise than gunicorn."""
        problem = _refusal(cfg)
        if problem is None and cls.gevent_mode and \
                importlib.util.find_spec("gevent") is None:
            problem = ("lichen.gunicorn.GeventWorker needs gevent: pip "
                       "install 'lichen[gevent]'")
        if problem is None:
            try:
                _, notes = options_from(cfg, cls.lichen_options)
            except ConfigError as exc:
                problem = f"lichen: {exc}"
            else:
                for note in notes:
                    log.warning("lichen: %s", note)
        if problem is not None:
            raise RuntimeError(problem)
        if "h2" in (getattr(cfg, "http_protocols", None) or ()):
            log.warning("lichen: HTTP/2 is not served; HTTP/1.1 only")
        for hook in ("pre_request", "post_request"):
            setting = cfg.settings.get(hook)
            if setting is not None and setting.get() is not setting.default:
                log.warning("lichen: the %s hook is not called by lichen's "
                            "worker classes", hook)

    # -- in the worker -----------------------------------------------------

    def init_process(self):
        # check_config ran in the master at its start, not after a reload.
        problem = _refusal(self.cfg)
        if problem is not None:
            self.log.error("%s", problem)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        self._prepare()
        super().init_process()

    def _prepare(self):
        """Before the application is loaded (GeventWorker patches)."""

    def load_wsgi(self):
        super().load_wsgi()
        # The server is made here, before the worker counts as booted: an
        # error is then a boot error, which stops the master, rather than
        # a crash it would restart the worker after, again and again.
        try:
            config, _ = options_from(self.cfg, self.lichen_options)
            self.server = _Server(
                self, self._engine_app(),
                sockets=[getattr(s, "sock", s) for s in self.sockets],
                config=config, gevent=self.gevent_mode,
                environ={"wsgi.multiprocess": self.cfg.workers > 1})
        except (ConfigError, OSError) as exc:
            self.log.error("lichen: %s", exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _engine_app(self):
        """The WSGI callable the engine calls."""
        return self.wsgi

    @property
    def _tick(self):
        """The longest wait between two looks at the worker's state."""
        return min(_TICK_MAX, self.timeout) if self.timeout > 0 else \
            _TICK_MAX

    def _heartbeat(self):
        """Tell the master this worker is alive (at most every 0.1 s);
        stop if the master is gone."""
        now = time.monotonic()
        if now - self._beaten < _BEAT_INTERVAL:
            return
        self._beaten = now
        self.notify()
        if self.alive and self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False

    def run(self):
        server = self.server
        self._loop_greenlet = greenlet.getcurrent()
        # A signal's byte on the engine's own wake-up pipe ends the turn
        # waiting in the engine, so that the handler runs at once.
        old_wakeup = signal.set_wakeup_fd(server._engine.wakeup_fd,
                                          warn_on_full_buffer=False)
        try:
            self._serve(server)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            server.close()
            self.nr = server.served

    def _serve(self, server):
        tick = self._tick
        while self.alive:
            self._heartbeat()
            if not server.run_once(tick):
                return
            served = self.nr = server.served
            if served >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after %d requests.",
                              served)
                self.alive = False
        if self._quit:
            return
        # The graceful stop, the heartbeat going on: the master is not
        # necessarily stopping (max_requests, a reload). Server.stop() would
        # drive the loop to its end itself, with no heartbeat; the engine's
        # stop() only asks, and the turns below end it.
        engine = server._engine
        engine.stop(server.options["graceful_timeout"])
        quitting = False
        while server.run_once(tick):
            self._heartbeat()
            if self._quit and not quitting:
                quitting = True
                engine.stop(0)

    def handle_quit(self, sig, frame):
        """SIGQUIT, SIGINT: stop at once."""
        if self._loop_greenlet is None:
            return super().handle_quit(sig, frame)
        self.alive = False
        self._quit = True
        self.cfg.worker_int(self)
        if greenlet.getcurrent() is not self._loop_greenlet:
            # The handler interrupted an application: its request ends
            # here, as under gunicorn's sync worker, and the engine raises
            # this again from its loop, which then closes the server.
            raise SystemExit(0)

    # -- the logs ------------------------------------------------------------

    def _engine_log(self, level, message, exc):
        """The engine's messages (application errors with their
        exception) to gunicorn's error log."""
        if exc is not None:
            self.log.log(level, message,
                         exc_info=(type(exc), exc, exc.__traceback__))
        else:
            self.log.log(level, message)

    def _access_log_wanted(self):
        """Whether gunicorn's logger wants access() calls: its access log
        is on, or its class has an access() of its own (statsd's)."""
        log = self.log
        if type(log).access is not glogging.Logger.access:
            return True
        enabled = getattr(log, "access_log_enabled", None)
        if enabled is not None:
            return bool(enabled)
        cfg = self.cfg
        return bool(
            getattr(cfg, "accesslog", None)
            or getattr(cfg, "logconfig", None)
            or getattr(cfg, "logconfig_dict", None)
            or getattr(cfg, "logconfig_json", None)
            or (getattr(cfg, "syslog", False)
                and not getattr(cfg, "disable_redirect_access_to_syslog",
                                False)))

    def _access(self, environ, status, sent, seconds):
        """A request the engine answered, through gunicorn's logger: its
        access_log_format applies, with the request's environ."""
        headers = [(key[5:].replace("_", "-"), value)
                   for key, value in environ.items()
                   if key.startswith("HTTP_")]
        for key, name in (("CONTENT_TYPE", "Content-Type"),
                          ("CONTENT_LENGTH", "Content-Length")):
            if key in environ:
                headers.append((name, environ[key]))
        self.log.access(_Response(str(status), sent), headers, environ,
                        datetime.timedelta(seconds=seconds))


class GeventWorker(Worker):
    """A gunicorn worker whose requests lichen's engine serves from gevent's
    hub (lichen's gevent mode), the standard library monkey-patched."""

    gevent_mode = True
    _draining = False

    def _prepare(self):
        # As gunicorn's gevent worker: patched in the worker, before the
        # application is imported. With preload_app it was imported in the
        # master, unpatched.
        from . import gevent as gevent_mode
        gevent_mode.patch()
        import gevent
        gevent.reinit()
        if self.cfg.preload_app:
            self.log.warning(
                "lichen: preload_app with GeventWorker: the application was "
                "imported before gevent patched the standard library")

    def load_wsgi(self):
        from gevent.event import Event
        self._wake = Event()
        self._calls = 0
        super().load_wsgi()

    def _engine_app(self):
        app = self.wsgi
        if self.max_requests >= sys.maxsize:
            return app

        # The loop runs in the hub, out of the main greenlet's sight: the
        # requests are counted as they come, as gunicorn's workers do.
        def counted(environ, start_response):
            self._calls += 1
            if self._calls >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after %d requests.",
                              self._calls)
                self.alive = False
                self._wake.set()
            return app(environ, start_response)

        return counted

    def run(self):
        import gevent
        server = self.server
        watchers = [gevent.signal_handler(signal.SIGTERM, self._on_term),
                    gevent.signal_handler(signal.SIGQUIT, self._on_quit),
                    gevent.signal_handler(signal.SIGINT, self._on_quit)]
        try:
            server.start()
            while self.alive:
                self._heartbeat()
                self.nr = server.served
                self._wake.wait(self._tick)
                self._wake.clear()
            if not self._quit:
                self._draining = True
                beat = gevent.spawn(self._beat_on)
                try:
                    server.stop(server.options["graceful_timeout"])
                finally:
                    beat.kill()
        finally:
            for watcher in watchers:
                watcher.cancel()
            server.close()
            self.nr = server.served

    def _beat_on(self):
        import gevent
        while True:
            self.notify()
            gevent.sleep(self._tick / 2)

    def _on_term(self):
        self.alive = False
        self._wake.set()

    def _on_quit(self):
        import gevent
        # Out of the hub: the worker_int hook may block.
        gevent.spawn(self._quit_now)

    def _quit_now(self):
        if self._quit:
            return
        self.alive = False
        self._quit = True
        self._wake.set()
        try:
            self.cfg.worker_int(self)
        finally:
            if self._draining:
                self.server.stop(0)

    def handle_usr1(self, sig, frame):
        import gevent
        # Reopening the log files takes locks: not in the hub.
        gevent.spawn(super().handle_usr1, sig, frame)
