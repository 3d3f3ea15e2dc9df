"""lichen.Server: listening sockets, options and the C engine together."""

import errno
import math
import os
import signal
import socket
import stat
import sys
import threading
import warnings

from . import __version__, _logging
from .config import (DEFAULT_HOST, DEFAULT_PORT, OPTIONS_BY_NAME, BindSpec,
                     Config, ConfigError, engine_options, format_host_port,
                     parse_bind, tls_options, validate)

__all__ = ["Server", "serve", "BindError", "EngineMissing", "live_counts",
           "open_listeners"]

# Options of the process rather than of a server: the command line acts on
# them (lichen.deploy); Server() refuses them as keyword arguments.
_PROCESS_OPTIONS = frozenset({"pid", "user", "group", "umask", "workers",
                              "timeout", "max_requests",
                              "max_requests_jitter", "preload_app",
                              "reuse_port", "reload"})

class BindError(OSError):
    """A listening socket could not be set up; str() is one line."""

    def __str__(self):
        return self.strerror or super().__str__()


class EngineMissing(ImportError):
    """The C extension lichen._lichen is not built."""


def _engine_module():
    try:
        from . import _lichen
    except ImportError as exc:
        raise EngineMissing(
            f"the C engine lichen._lichen is not available ({exc}); "
            "build it with 'make build' or 'pip install -e .'") from exc
    return _lichen


def live_counts():
    """Live engine objects in this process: connections, buffers,
    greenlets."""
    return _engine_module().live_counts()


def _strerror(exc):
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


class _Listener:
    """One listening socket and what the engine needs to know about it."""

    def __init__(self, sock, name, owned, unix_path=None):
        self.sock = sock
        self.name = name  # how the user wrote it, for messages
        self.owned = owned
        self.unix_path = unix_path
        self.unix_ino = None
        if unix_path is not None:
            try:
                self.unix_ino = os.stat(unix_path).st_ino
            except OSError:
                pass
        self.family = sock.family
        self.tls = False  # its connections speak TLS
        self.activation = None  # (fd, name): passed by socket activation
        name = sock.getsockname()
        self.address = name if self.family == socket.AF_UNIX else name[:2]

    @property
    def url(self):
        if self.family == socket.AF_UNIX:
            return "unix:" + str(self.address)
        host, port = self.address
        if self.family == socket.AF_INET6:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def environ(self, root_path, file_wrapper):
        if self.family == socket.AF_UNIX:
            # As gunicorn does: no host and port to tell, so the path and the
            # default port; applications should use HTTP_HOST.
            server_name, server_port = str(self.address) or "localhost", "80"
        else:
            server_name, server_port = self.address[0], str(self.address[1])
        tls = {"HTTPS": "on"} if self.tls else {}
        return {
            **tls,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SCRIPT_NAME": root_path,
            "SERVER_SOFTWARE": "lichen/" + __version__,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.tls else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": file_wrapper,
        }

    def close(self):
        if self.owned:
            self.sock.close()
        if self.unix_path is not None and self.unix_ino is not None:
            # Remove our socket file, but not one another server has put at
            # the same path since.
            try:
                if os.stat(self.unix_path).st_ino == self.unix_ino:
                    os.unlink(self.unix_path)
            except OSError:
                pass
            self.unix_path = None


def _bind_tcp(spec, backlog, defer_accept=0.0):
    try:
        infos = socket.getaddrinfo(spec.host, spec.port, socket.AF_UNSPEC,
                                   socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(errno.EINVAL,
                        f"cannot bind {spec.text}: unknown host "
                        f"{spec.host!r} ({exc.strerror})") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        if defer_accept > 0 and hasattr(socket, "TCP_DEFER_ACCEPT"):
            # The kernel finishes the handshake but hands the connection
            # over only with its first bytes (or after that long): one
            # wake-up per connection, with the request there to read.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT,
                            max(1, math.ceil(defer_accept)))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno,
                        f"cannot bind {spec.text}: {_strerror(exc)}") from None
    return _Listener(sock, spec.text, owned=True)


def _bind_unix(spec, backlog, mode=None, owner=None):
    """A unix socket at spec.path: a stale socket file there is replaced.
    mode: the file's permissions (None: from the umask); owner: (uid, gid)
    to give the file to (-1: unchanged)."""
    path = spec.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise BindError(exc.errno,
                        f"cannot bind {spec.text}: {_strerror(exc)}") from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise BindError(errno.EEXIST,
                            f"cannot bind {spec.text}: {path} exists and is "
                            "not a socket")
        # A socket file: stale, unless a server still answers on it.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BindError(exc.errno,
                                f"cannot bind {spec.text}: cannot remove "
                                f"stale socket: {_strerror(exc)}") from None
        else:
            raise BindError(errno.EADDRINUSE,
                            f"cannot bind {spec.text}: address already in "
                            "use")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The file is made with its mode: never open wider for a moment.
    old_umask = None if mode is None else os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno,
                        f"cannot bind {spec.text}: {_strerror(exc)}") from None
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    listener = _Listener(sock, spec.text, owned=True, unix_path=path)
    if owner is not None and owner != (-1, -1):
        try:
            os.chown(path, *owner)
        except OSError as exc:
            listener.close()
            raise BindError(exc.errno,
                            f"cannot bind {spec.text}: cannot give the "
                            f"socket file to uid {owner[0]} gid {owner[1]}: "
                            f"{_strerror(exc)}") from None
    return listener


def _adopt(sock, name, owned):
    """A socket made elsewhere (fd://N, sockets=[...]): check it listens."""
    try:
        if sock.type != socket.SOCK_STREAM:
            raise BindError(errno.EINVAL,
                            f"cannot use {name}: not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise BindError(errno.EINVAL,
                            f"cannot use {name}: socket is not listening")
        sock.setblocking(False)
    except BindError:
        if owned:
            sock.close()
        raise
    except OSError as exc:
        if owned:
            sock.close()
        raise BindError(exc.errno,
                        f"cannot use {name}: {_strerror(exc)}") from None
    return _Listener(sock, name, owned=owned)


def _bind_fd(spec):
    try:
        sock = socket.socket(fileno=spec.fd)
    except OSError as exc:
        raise BindError(exc.errno,
                        f"cannot use {spec.text}: {_strerror(exc)}") from None
    return _adopt(sock, spec.text, owned=True)


def open_listeners(bind, options, *, tls=False, activated=(),
                   unix_owner=None):
    """Bind the addresses of bind (as --bind spells them, or BindSpecs) and
    adopt the sockets of socket activation (activated: (fd, name) pairs,
    lichen.deploy.listen_fds()); an activated fd that bind names as fd://N
    is that address's. options: validate()'s (backlog, defer_accept,
    unix_socket_mode). tls: whether they speak TLS (not those spelt
    plain:). unix_owner: (uid, gid) unix socket files are given to.
    Returns the listeners, which Server(listeners=...) takes over; on
    failure none is left open."""
    specs = [b if isinstance(b, BindSpec) else parse_bind(b)
             for b in bind or ()]
    names = dict(activated)
    named = {spec.fd for spec in specs if spec.kind == "fd"}
    listeners = []
    try:
        for fd, name in activated:
            if fd in named:
                continue
            label = f"socket activation's fd {fd}" + (
                f" ({name})" if name else "")
            listener = _bind_fd(BindSpec(label, "fd", fd=fd))
            listener.tls = tls
            listener.activation = (fd, name)
            listeners.append(listener)
        for spec in specs:
            if spec.kind == "unix":
                listener = _bind_unix(spec, options["backlog"],
                                      options["unix_socket_mode"], unix_owner)
            elif spec.kind == "fd":
                listener = _bind_fd(spec)
                if spec.fd in names:
                    listener.activation = (spec.fd, names[spec.fd])
            else:
                listener = _bind_tcp(spec, options["backlog"],
                                     options["defer_accept"])
            listener.tls = tls and not spec.plain
            listeners.append(listener)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _open_access_log(target):
    if target is None:
        return -1, False
    if target == "-":
        sys.stdout.flush()
        return sys.stdout.fileno(), False
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                     | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot open access log {target}: "
                          f"{_strerror(exc)}") from None
    return fd, True


class Server:
    """A WSGI server bound at construction; run it with serve_forever(),
    or drive it from another event loop with fileno() and run_once()."""

    _closed = True  # until __init__ has made everything

    def __init__(self, app, host=None, port=None, *, bind=None, sockets=None,
                 listeners=None, config=None, gevent=False, environ=None,
                 ssl_context=None, **options):
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, not "
                            f"{type(app).__name__}")
        self.app = app
        unknown = sorted(set(options) - set(OPTIONS_BY_NAME))
        if unknown:
            raise TypeError(f"Server() got an unexpected keyword argument "
                            f"{unknown[0]!r}")
        process = sorted(set(options) & _PROCESS_OPTIONS)
        if process:
            raise TypeError(f"Server() does not take {process[0]!r}: it is "
                            "the process's, set by the command line (or "
                            "lichen.deploy)")
        if config is None:
            config = validate(options)
        elif options or not isinstance(config, Config):
            raise TypeError("config= takes what lichen.config.validate() "
                            "returns, and no other option beside it")
        self.options = config
        self._ssl_context = ssl_context
        if ssl_context is not None and config["certfile"] is not None:
            raise ConfigError("give ssl_context or certfile, not both")
        tls = ssl_context is not None or config["certfile"] is not None
        if isinstance(bind, str):
            bind = [bind]
        specs = [parse_bind(b) for b in (bind or [])]
        if not specs and not sockets and not listeners:
            specs = [parse_bind(format_host_port(
                DEFAULT_HOST if host is None else host,
                DEFAULT_PORT if port is None else port))]

        self.log = _logging.configure(self.options["log_level"])
        self._gevent = None
        if gevent:
            try:
                from . import gevent as gevent_mode
            except ImportError:
                raise ConfigError("gevent mode needs gevent: pip install "
                                  "'lichen[gevent]'") from None
        self._engine = None
        self._listeners = []
        self._access_log_fd, self._access_log_owned = -1, False
        self._drained = threading.Event()  # the loop ended after a stop
        try:
            for sock in sockets or ():
                self._listeners.append(
                    _adopt(sock, f"socket {sock.fileno()}", owned=False))
                self._listeners[-1].tls = tls
            # Made by open_listeners(): this server's from now on.
            self._listeners.extend(listeners or ())
            self._listeners.extend(open_listeners(specs, self.options,
                                                  tls=tls))
            self._access_log_fd, self._access_log_owned = _open_access_log(
                self.options["access_log"])
            engine = _engine_module()
            listeners = [
                (l.sock.fileno(),
                 dict(l.environ(self.options["root_path"],
                                engine.FileWrapper), **(environ or {})),
                 l.tls)
                for l in self._listeners
            ]
            try:
                self._engine = engine.Server(
                    app, listeners, self._engine_options())
            except ValueError as exc:
                # A static option the engine refused (a regex it cannot
                # compile): a bad option like any other.
                if str(exc).startswith("lichen: static"):
                    raise ConfigError("invalid value for static_immutable: "
                                      + str(exc).split(": ", 2)[-1]) from None
                if str(exc).startswith("lichen: tls: "):
                    raise ConfigError("TLS: " + str(exc)[len("lichen: tls: "):]
                                      ) from None
                raise
            if gevent:
                self._gevent = gevent_mode.HubDriver(self._engine,
                                                     self._ended)
        except BaseException:
            self._release()
            raise
        self._closed = False

    # -- introspection -----------------------------------------------------

    @property
    def address(self):
        """The first listener's address: (host, port), or a unix path."""
        return self._listeners[0].address

    @property
    def addresses(self):
        return [l.address for l in self._listeners]

    @property
    def urls(self):
        """One printable URL per listener (http://HOST:PORT or unix:PATH)."""
        return [l.url for l in self._listeners]

    @property
    def connections(self):
        return self._engine.connections if self._engine is not None else 0

    @property
    def in_request(self):
        """Whether the calling greenlet is one of this server's requests'
        own."""
        return self._engine is not None and self._engine.in_request

    @property
    def served(self):
        """Requests answered so far (those the application was called
        for)."""
        return self._engine.served if self._engine is not None else 0

    def fileno(self):
        """The engine's poll fd: readable whenever run_once(0) has work to
        do (an event, a timer due, work queued)."""
        self._check_open()
        return self._engine.fileno()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"<lichen.Server {' '.join(self.urls) or '-'} {state}>"

    # -- running -----------------------------------------------------------

    def _engine_options(self):
        from .websocket import TakeoverSocket, WebSocketError
        opts = engine_options(self.options, self._access_log_fd,
                              _logging.engine_log)
        if self._ssl_context is not None:
            opts["tls"] = {
                "ssl_context": self._ssl_context,
                "handshake_timeout": self.options["tls_handshake_timeout"]}
        opts["ws_error"] = WebSocketError
        opts["ws_socket"] = TakeoverSocket
        return opts

    @property
    def tls(self):
        """Whether some listener speaks TLS."""
        return any(l.tls for l in self._listeners)

    def reload_tls(self):
        """Load the certificate and key anew from their files (SIGHUP does
        this under the command line). New connections get them; those
        made keep theirs. A bad new certificate raises ConfigError and the
        old one stays."""
        self._check_open()
        if self._ssl_context is not None:
            raise ConfigError("TLS: the certificate is the ssl_context's: "
                              "load it anew there")
        opts = tls_options(self.options)
        if opts is None:
            raise ConfigError("TLS: this server has no certificate")
        try:
            self._engine.reload_tls(opts)
        except ValueError as exc:
            raise ConfigError("TLS: " + str(exc).replace("lichen: tls: ", "",
                                                         1)) from None

    @property
    def gevent(self):
        """Whether the engine runs in gevent's hub (gevent mode)."""
        return self._gevent is not None

    def _check_open(self):
        if self._closed:
            raise RuntimeError("the server is closed")

    def _check_serving(self):
        self._check_open()
        if self._drained.is_set():
            raise RuntimeError("the server has been stopped")

    def start(self):
        """Gevent mode: serve from gevent's hub and return at once; the
        caller's greenlet goes on with its work."""
        self._check_serving()
        if self._gevent is None:
            raise RuntimeError("start() serves from gevent's hub: make the "
                               "server with gevent=True, or call "
                               "serve_forever()")
        self._gevent.start()

    def serve_forever(self):
        """Serve until stop() (from a signal handler, the application or
        another thread) has drained the in-flight requests. In gevent mode
        it blocks only the calling greenlet."""
        self._check_serving()
        if self._gevent is not None:
            self._gevent.start()
            self._gevent.wait()
            return
        in_main = threading.current_thread() is threading.main_thread()
        old_wakeup = None
        if in_main:
            old_wakeup = signal.set_wakeup_fd(self._engine.wakeup_fd,
                                              warn_on_full_buffer=False)
        try:
            # A signal handler that raises (KeyboardInterrupt) leaves the
            # loop as it is: the caller may still stop() or close().
            self._engine.serve_forever()
        finally:
            if in_main:
                signal.set_wakeup_fd(old_wakeup)
        self._ended()

    def run_once(self, timeout=None):
        """One turn of the loop, waiting at most timeout seconds (None:
        until something happens). True while serving, False once stopped.
        The greenlet that first drives the loop drives it for good."""
        if self._drained.is_set():
            return False
        self._check_open()
        if self._gevent is not None:
            raise RuntimeError("in gevent mode, gevent's hub drives the "
                               "loop")
        if self._engine.run_once(timeout):
            return True
        self._ended()
        return False

    def _ended(self):
        """The loop ended after a stop: the engine has closed its
        connections and greenlets; the listeners go too."""
        self._close_listeners()
        self._drained.set()

    def stop(self, timeout=None):
        """Graceful stop: stop accepting, close idle connections, give
        in-flight requests timeout seconds (None: graceful_timeout) to
        finish, then close them. Returns once the loop has ended, unless
        called from inside it (an application's greenlet, a signal
        handler), which ends once drained."""
        if self._closed or self._drained.is_set():
            return
        if timeout is None:
            timeout = self.options["graceful_timeout"]
        timeout = max(0.0, float(timeout))
        engine = self._engine
        engine.stop(timeout)
        if engine.in_request or (
                engine.running and
                engine.driver_thread == threading.get_ident()):
            # From inside the loop or a request of its own: waiting here
            # would wait for this very turn or request.
            return
        if self._gevent is not None:
            hub = self._gevent
            if not hub.started:
                hub.close(0)
            elif hub.other_thread():
                self._wait_drained(timeout + 5.0)
            elif not hub.in_hub():
                hub.wait(timeout + 5.0)
            return
        driver = engine.driver_thread
        if driver is None:
            # Never driven, so nothing was accepted: done at once, unless a
            # thread has just begun to drive it.
            try:
                engine.close()
            except RuntimeError:
                driver = engine.driver_thread
            else:
                self._ended()
                return
        if driver != threading.get_ident():
            # Another thread drives the loop: it ends the stop.
            self._wait_drained(timeout + 5.0)
        elif not engine.running:
            # This thread drives it, and is not inside it: drive it to the
            # end from here.
            try:
                while self.run_once(None):
                    pass
            except RuntimeError as exc:
                if "driven by another greenlet" not in str(exc):
                    raise
                # That greenlet ends the stop as it drives the loop.

    def _wait_drained(self, timeout):
        if not self._drained.wait(timeout):
            self.log.warning("stop: the loop did not end within %.1fs",
                             timeout)

    def close(self):
        """Immediate stop: every connection closed, sockets released."""
        if self._closed:
            return
        engine = self._engine
        driver = engine.driver_thread
        if engine.in_request or (engine.running and
                                 driver == threading.get_ident()):
            raise RuntimeError("close() called from inside the loop or a "
                               "request of its own; use stop()")
        if self._gevent is not None:
            if self._gevent.other_thread():
                self.stop(0)  # its hub tears it down
            else:
                self._gevent.close(5.0)
        elif driver is not None and driver != threading.get_ident():
            self.stop(0)  # its thread tears it down
        self._release()

    def _close_listeners(self):
        for listener in self._listeners:
            listener.close()

    def _release(self):
        self._closed = True
        if self._engine is not None:
            self._engine.close()
        self._close_listeners()
        if self._access_log_owned:
            os.close(self._access_log_fd)
            self._access_log_owned = False
        self._access_log_fd = -1

    def __del__(self):
        if self._closed or self._engine.running or sys.is_finalizing():
            return
        if self._gevent is not None and self._gevent.started and \
                not self._gevent.done:
            return  # its watcher holds it while it serves
        if not self._drained.is_set():
            # Still listening, maybe serving: said as an unclosed file says
            # it. (A server whose stop has drained only holds its access
            # log, released quietly.)
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _reload_tls(server):
    """SIGHUP: the certificate and key anew, one log line either way."""
    try:
        server.reload_tls()
    except ConfigError as exc:
        server.log.error("TLS reload failed: %s; keeping the old "
                         "certificate", str(exc).replace("TLS: ", "", 1))
    else:
        server.log.info("Reloaded the TLS certificate %s",
                        server.options["certfile"])


def run(server):
    """Run server in this (the main) thread until SIGTERM (graceful stop)
    or SIGINT (immediate stop), then close it; SIGHUP reloads the TLS
    certificate. Returns the signal that ended it."""
    received = []

    def on_term(*args):
        if not received:
            received.append(signal.SIGTERM)
            server.log.info("Received SIGTERM: stopping gracefully, "
                            "timeout %gs", server.options["graceful_timeout"])
            server.stop()

    reload_tls = server.options["certfile"] is not None
    if server.gevent:
        return _run_gevent(server, received, on_term, reload_tls)
    old_term = signal.signal(signal.SIGTERM, on_term)
    old_hup = (signal.signal(signal.SIGHUP, lambda *a: _reload_tls(server))
               if reload_tls else None)
    # Whatever was inherited: a shell starts background jobs, and nohup
    # its command, with SIGINT ignored, and Python then leaves it so.
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            _announce(server)
            _serve(server, received)
        except KeyboardInterrupt:
            received.append(signal.SIGINT)
            server.log.info("Received SIGINT: stopping")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        if old_hup is not None:
            signal.signal(signal.SIGHUP, old_hup)
        server.close()
    return received[0] if received else None


def _announce(server):
    """The start-up lines, once the signals are handled: whoever reads
    them (or the pid file) may stop the server gracefully at once."""
    server.log.info("Starting lichen %s%s", __version__,
                    " (gevent mode)" if server.gevent else "")
    for listener in server._listeners:
        if listener.activation is not None:
            fd, name = listener.activation
            server.log.info("Socket activation: fd %d%s is %s", fd,
                            f" ({name})" if name else "", listener.url)
        server.log.info("Listening at: %s (%d)", listener.url, os.getpid())


def _serve(server, received):
    """serve_forever(), unless a signal has stopped the server already."""
    try:
        server.serve_forever()
    except RuntimeError:
        if not (received and server._drained.is_set()):
            raise


def _run_gevent(server, received, on_term, reload_tls):
    """run() in gevent mode: the signals are watched by gevent's loop (a
    Python handler would wait for the hub to come back from libev)."""
    import gevent

    def on_int():
        if not received:
            received.append(signal.SIGINT)
            server.log.info("Received SIGINT: stopping")
            server.stop(0)

    watchers = [gevent.signal_handler(signal.SIGTERM, on_term),
                gevent.signal_handler(signal.SIGINT, on_int)]
    if reload_tls:
        watchers.append(gevent.signal_handler(signal.SIGHUP, _reload_tls,
                                              server))
    try:
        _announce(server)
        _serve(server, received)
    finally:
        for w in watchers:
            w.cancel()
        server.close()
    return received[0] if received else None


def serve(app, host=None, port=None, **options):
    """Serve app until SIGTERM (graceful) or Ctrl-C."""
    server = Server(app, host, port, **options)
    run(server)
