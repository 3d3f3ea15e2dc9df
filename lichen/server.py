"""lichen.Server: listening sockets, options and the C engine together."""

import errno
import math
import os
import signal
import socket
import stat
import sys
import threading
import time

from . import __version__, _logging
from .config import ConfigError, engine_options, parse_bind, validate

__all__ = ["Server", "serve", "BindError", "EngineMissing", "live_counts"]

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

    @property
    def address(self):
        if self.family == socket.AF_UNIX:
            return self.sock.getsockname()
        return self.sock.getsockname()[:2]

    @property
    def url(self):
        if self.family == socket.AF_UNIX:
            return "unix:" + str(self.address)
        host, port = self.address
        if self.family == socket.AF_INET6:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def environ(self, root_path, file_wrapper):
        if self.family == socket.AF_UNIX:
            # As gunicorn does: no host and port to tell, so the path and the
            # default port; applications should use HTTP_HOST.
            server_name, server_port = str(self.address) or "localhost", "80"
        else:
            server_name, server_port = self.address[0], str(self.address[1])
        return {
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SCRIPT_NAME": root_path,
            "SERVER_SOFTWARE": "lichen/" + __version__,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
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


def _bind_unix(spec, backlog):
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
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno,
                        f"cannot bind {spec.text}: {_strerror(exc)}") from None
    return _Listener(sock, spec.text, owned=True, unix_path=path)


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

    def __init__(self, app, host="127.0.0.1", port=8000, *, bind=None,
                 sockets=None, backlog=2048, defer_accept=0.0, root_path="",
                 keepalive=5.0,
                 timeout_header=30.0, timeout_body=60.0, timeout_write=60.0,
                 graceful_timeout=30.0, limit_request_line=8190,
                 limit_request_fields=100, limit_request_field_size=8190,
                 limit_request_body=1073741824, access_log=None,
                 log_level="info", server_header=None):
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, not "
                            f"{type(app).__name__}")
        self.app = app
        self.options = validate(
            backlog=backlog, defer_accept=defer_accept, root_path=root_path,
            keepalive=keepalive,
            timeout_header=timeout_header, timeout_body=timeout_body,
            timeout_write=timeout_write, graceful_timeout=graceful_timeout,
            limit_request_line=limit_request_line,
            limit_request_fields=limit_request_fields,
            limit_request_field_size=limit_request_field_size,
            limit_request_body=limit_request_body, access_log=access_log,
            log_level=log_level, server_header=server_header)
        if isinstance(bind, str):
            bind = [bind]
        specs = [parse_bind(b) for b in (bind or [])]
        if not specs and not sockets:
            host_text = f"[{host}]" if ":" in str(host) else str(host)
            specs = [parse_bind(f"{host_text}:{port}")]

        self.log = _logging.configure(self.options["log_level"])
        self._engine = None
        self._listeners = []
        self._access_log_fd, self._access_log_owned = -1, False
        self._lock = threading.Lock()
        self._running = False  # a thread is inside serve_forever
        self._loop_thread = None
        self._owner = threading.get_ident()
        self._torn_down = threading.Event()
        self._closed = False
        try:
            for sock in sockets or ():
                self._listeners.append(
                    _adopt(sock, f"socket {sock.fileno()}", owned=False))
            for spec in specs:
                if spec.kind == "unix":
                    listener = _bind_unix(spec, self.options["backlog"])
                elif spec.kind == "fd":
                    listener = _bind_fd(spec)
                else:
                    listener = _bind_tcp(spec, self.options["backlog"],
                                         self.options["defer_accept"])
                self._listeners.append(listener)
            self._access_log_fd, self._access_log_owned = _open_access_log(
                self.options["access_log"])
            engine = _engine_module()
            listeners = [
                (l.sock.fileno(),
                 l.environ(self.options["root_path"], engine.FileWrapper))
                for l in self._listeners
            ]
            self._engine = engine.Server(
                app, listeners,
                engine_options(self.options, self._access_log_fd,
                               _logging.engine_log))
        except BaseException:
            self._release()
            raise

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

    def fileno(self):
        """The engine's poll fd: readable when run_once() has work."""
        self._check_open()
        return self._engine.fileno()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"<lichen.Server {' '.join(self.urls) or '-'} {state}>"

    # -- running -----------------------------------------------------------

    def _check_open(self):
        if self._closed or self._engine is None:
            raise RuntimeError("the server is closed")

    def serve_forever(self):
        """Serve until stop() (from a signal handler, the application or
        another thread) has drained the in-flight requests."""
        with self._lock:
            self._check_open()
            if self._running:
                raise RuntimeError("serve_forever() is already running")
            if self._torn_down.is_set():
                raise RuntimeError("the server has been stopped")
            self._running = True
            self._loop_thread = self._owner = threading.get_ident()
        in_main = threading.current_thread() is threading.main_thread()
        old_wakeup = None
        try:
            if in_main:
                old_wakeup = signal.set_wakeup_fd(self._engine.wakeup_fd,
                                                  warn_on_full_buffer=False)
            try:
                self._engine.serve_forever()
            finally:
                if in_main:
                    signal.set_wakeup_fd(old_wakeup)
        except BaseException:
            # A signal handler raised (KeyboardInterrupt): the loop is left
            # as it is, so a caller may still stop() gracefully or close().
            with self._lock:
                self._running = False
                self._loop_thread = None
            raise
        self._engine.close()
        with self._lock:
            self._running = False
            self._loop_thread = None
            self._torn_down.set()

    def run_once(self, timeout=None):
        """One loop iteration, waiting at most timeout seconds (None: until
        something happens). True while serving, False once stopped."""
        with self._lock:
            self._check_open()
            if self._running:
                raise RuntimeError("serve_forever() is running")
            if self._torn_down.is_set():
                return False
            self._owner = threading.get_ident()
        if self._engine.run_once(timeout):
            return True
        self._engine.close()
        self._torn_down.set()
        return False

    def stop(self, timeout=None):
        """Graceful stop: stop accepting, close idle connections, give
        in-flight requests timeout seconds (None: graceful_timeout) to finish,
        then close them. Waits for the loop to end when it runs in another
        thread or when this thread owns the loop and nothing runs it."""
        if timeout is None:
            timeout = self.options["graceful_timeout"]
        timeout = max(0.0, float(timeout))
        me = threading.get_ident()
        with self._lock:
            if self._closed:
                return
            running, loop_thread = self._running, self._loop_thread
            engine = self._engine
        if not self._torn_down.is_set():
            engine.stop(timeout)
        if running and loop_thread == me:
            # Called from inside the loop (an application or a signal
            # handler): serve_forever() returns once drained.
            return
        if running or me != self._owner:
            # Another thread runs (or drives) the loop: wait for it.
            if not self._torn_down.wait(timeout + 5.0):
                self.log.warning("stop: the loop did not end within %.1fs",
                                 timeout + 5.0)
                return
        else:
            deadline = time.monotonic() + timeout + 5.0
            while not self._torn_down.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.run_once(min(left, 0.5))
            if not self._torn_down.is_set():
                self._engine.close()
                self._torn_down.set()
        self._close_listeners()

    def close(self):
        """Immediate stop: every connection closed, sockets released."""
        with self._lock:
            if self._closed:
                return
            running, loop_thread = self._running, self._loop_thread
        if running:
            if loop_thread == threading.get_ident():
                raise RuntimeError("close() called from inside the loop; "
                                   "use stop()")
            self.stop(0)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._release()

    def _close_listeners(self):
        for listener in self._listeners:
            listener.close()
        self._listeners_closed = True

    def _release(self):
        if self._engine is not None:
            if not self._torn_down.is_set():
                self._engine.close()
                self._torn_down.set()
        self._close_listeners()
        if self._access_log_owned:
            os.close(self._access_log_fd)
            self._access_log_owned = False
        self._access_log_fd = -1
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def run(server, *, announce=True):
    """Run server in the main thread until SIGTERM (graceful stop) or SIGINT
    (immediate stop), then close it. Returns the signal that ended it."""
    if announce:
        for url in server.urls:
            server.log.info("Listening at: %s (%d)", url, os.getpid())
    received = []

    def on_term(signum, frame):
        if not received:
            received.append(signum)
            server.log.info("Received SIGTERM: stopping gracefully, "
                            "timeout %gs", server.options["graceful_timeout"])
            server.stop()

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            received.append(signal.SIGINT)
            server.log.info("Received SIGINT: stopping")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        server.close()
    return received[0] if received else None


def serve(app, host="127.0.0.1", port=8000, **options):
    """Serve app until SIGTERM (graceful) or Ctrl-C."""
    server = Server(app, host, port, **options)
    run(server)
