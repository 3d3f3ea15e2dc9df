"""A drop-in for gevent.pywsgi: ``from lichen import pywsgi`` in place of
``from gevent import pywsgi``, and the rest of the program unchanged::

    from lichen import pywsgi
    pywsgi.WSGIServer(('', 8080), application).serve_forever()

The server runs lichen's engine in gevent's hub (gevent mode): requests are
served by greenlets that are the hub's children, so gevent and everything
it patches cooperate. The constructor takes gevent.pywsgi.WSGIServer's
arguments, binds in start() (or serve_forever()) as gevent's does, logs in
its format, reports an application's error through the hub's
handle_error, and stop() closes the listener, a socket given included.

Differences, by design (docs/conformance/gevent-suite.md lists them):
requests are parsed strictly (RFC 9112), so some that pywsgi takes are
refused with a 4xx; a body given with a 304 (or 204) is left out where
pywsgi raises; ``spawn`` limits the requests served at once, where gevent
limits connections (an idle keep-alive client holds no slot here);
``handler_class`` is honoured for gevent's WSGIHandler (a subclass's
methods are not called: a warning names them) and gevent-websocket's
WebSocketHandler (the engine serves websockets itself, docs/websockets.md); an ``environ_class`` other
than dict gets the application a copy of the environ in that class; TLS
arguments are refused until lichen serves TLS.
"""

import socket
import sys
import types
import warnings

import gevent
from gevent import pywsgi as _gevent_pywsgi

from . import __version__
from .config import DEFAULTS, validate
from .server import Server

__all__ = ["WSGIServer", "WSGIHandler", "LoggingLogAdapter", "Environ",
           "SecureEnviron", "WSGISecureEnviron", "MAX_REQUEST_LINE"]

# The longest request line served (longer: 414), as gevent.pywsgi's
# constant says it; a header or trailer field has the same limit.
MAX_REQUEST_LINE = DEFAULTS["limit_request_line"]

# gevent's, so that applications and subclasses that name them work.
WSGIHandler = _gevent_pywsgi.WSGIHandler
LoggingLogAdapter = _gevent_pywsgi.LoggingLogAdapter
Environ = _gevent_pywsgi.Environ
SecureEnviron = _gevent_pywsgi.SecureEnviron
WSGISecureEnviron = _gevent_pywsgi.WSGISecureEnviron


class _NoopLog:
    """Enough of a file for wsgi.errors when error logging is off."""

    def write(self, *args, **kwargs):
        pass

    def writelines(self, *args, **kwargs):
        pass

    def flush(self):
        pass


def _make_log(log, level):
    if log == "default":
        return sys.stderr
    if log is None:
        return None
    if not hasattr(log, "write") and hasattr(log, "log"):
        return LoggingLogAdapter(log, level)
    return log


def _concurrency(spawn):
    """The most requests served at once that spawn asks for, 0 for none."""
    if spawn == "default" or spawn is None:
        return 0
    if isinstance(spawn, bool):
        raise TypeError("spawn must be 'default', an int or a pool")
    if isinstance(spawn, int):
        if spawn < 1:
            raise ValueError("spawn must be at least 1")
        return spawn
    size = getattr(spawn, "size", None)
    if hasattr(spawn, "spawn") and isinstance(size, int):
        return size
    return 0  # gevent.spawn, spawn_raw, an unbounded pool: no limit


# What a class body defines as a method (an attribute such as
# ApplicationError is not one).
_METHODS = (types.FunctionType, staticmethod, classmethod, property)


def _overridden(handler_class):
    """Methods a handler class overrides that lichen does not call."""
    if not isinstance(handler_class, type) or \
            not issubclass(handler_class, WSGIHandler):
        return ["(not a subclass of pywsgi.WSGIHandler)"]
    names = set()
    for klass in handler_class.__mro__:
        if klass is WSGIHandler or klass is object:
            break
        if klass.__module__.startswith("geventwebsocket"):
            continue  # the engine serves websockets itself
        names.update(k for k, v in vars(klass).items()
                     if isinstance(v, _METHODS) and not k.startswith("__"))
    return sorted(names)


def _with_environ_class(application, environ_class):
    """application, given its environ as an environ_class (a dict
    subclass such as SecureEnviron) where the engine makes a dict."""

    def application_with_environ_class(environ, start_response):
        return application(environ_class(environ), start_response)

    return application_with_environ_class


class _Engine(Server):
    """lichen's Server, logging as pywsgi does."""

    def __init__(self, owner, *args, **kwargs):
        self._owner = owner
        super().__init__(*args, **kwargs)

    def _engine_options(self):
        options = super()._engine_options()
        owner = self._owner
        if owner.log is not None:
            options["access_log_write"] = owner.log.write
            options["access_log_format"] = "pywsgi"
        options["app_error"] = owner._app_error
        return options


class WSGIServer:
    """gevent.pywsgi.WSGIServer's interface, lichen's engine."""

    handler_class = WSGIHandler
    environ_class = dict
    secure_environ_class = WSGISecureEnviron
    base_env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "lichen/%s Python/%d.%d" % ((__version__,)
                                                       + sys.version_info[:2]),
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    backlog = 256
    reuse_addr = 1
    stop_timeout = 1
    max_accept = 100
    application = None

    def __init__(self, listener, application=None, backlog=None,
                 spawn="default", log="default", error_log="default",
                 handler_class=None, environ=None, **ssl_args):
        self._set_ssl(ssl_args)
        if application is not None:
            self.application = application
        if backlog is not None:
            self.backlog = backlog
        if handler_class is not None:
            self.handler_class = handler_class
        self.spawn = spawn
        self.limit_concurrency = _concurrency(spawn)
        self.log = _make_log(log, 20)
        self.error_log = _make_log(error_log, 40) or _NoopLog()
        self.socket = None
        self._engine = None
        self.set_listener(listener)
        self.set_environ(environ)

    # -- gevent's configuration methods -------------------------------------

    # gevent hands these to ssl.wrap_socket; the engine's TLS needs none of
    # them (it is always the server side, handshakes in its loop, and
    # treats a missing close_notify as the end of the stream).
    _SSL_IGNORED = ("server_side", "do_handshake_on_connect",
                    "suppress_ragged_eofs", "ssl_version")
    _SSL_MAPPED = ("keyfile", "certfile", "ca_certs", "cert_reqs", "ciphers")

    def _set_ssl(self, ssl_args):
        """gevent's TLS arguments, onto lichen's options: keyfile,
        certfile, ca_certs, cert_reqs, ciphers; or ssl_context, used as it
        is."""
        ssl_args = dict(ssl_args)
        self.ssl_context = ssl_args.pop("ssl_context", None)
        for name in self._SSL_IGNORED:
            ssl_args.pop(name, None)
        unknown = sorted(set(ssl_args) - set(self._SSL_MAPPED))
        if unknown:
            raise TypeError("WSGIServer() got unexpected TLS arguments: %s"
                            % ", ".join(unknown))
        if self.ssl_context is not None and ssl_args:
            raise TypeError("give ssl_context or keyfile/certfile, not both")
        if ssl_args and "certfile" not in ssl_args:
            raise TypeError("TLS arguments need certfile")
        self.ssl_args = ssl_args

    @property
    def ssl_enabled(self):
        return self.ssl_context is not None or bool(self.ssl_args)

    def set_listener(self, listener):
        if hasattr(listener, "accept"):
            if hasattr(listener, "do_handshake"):
                raise TypeError("Expected a regular socket, not SSLSocket: "
                                "%r" % (listener,))
            self.family = listener.family
            self.address = listener.getsockname()
            self.socket = listener
        else:
            from gevent.baseserver import parse_address
            self.family, self.address = parse_address(listener)

    def set_environ(self, environ=None):
        if environ is not None:
            self.environ = environ
        update = getattr(self, "environ", None)
        self.environ = self.environ_class(self.base_env)
        self.environ["wsgi.url_scheme"] = ("https" if self.ssl_enabled
                                           else "http")
        if update is not None:
            self.environ.update(update)
        if self.environ.get("wsgi.errors") is None:
            self.environ["wsgi.errors"] = self.error_log

    def get_environ(self):
        return self.environ_class(self.environ)

    def set_spawn(self, spawn):
        self.spawn = spawn
        self.limit_concurrency = _concurrency(spawn)

    # -- state ---------------------------------------------------------------

    @property
    def server_host(self):
        if isinstance(self.address, tuple):
            return self.address[0]

    @property
    def server_port(self):
        if isinstance(self.address, tuple):
            return self.address[1]

    @property
    def started(self):
        return self._engine is not None and not self._engine._drained.is_set()

    @property
    def closed(self):
        return self.socket is None and (self._engine is None
                                        or self._engine._closed)

    def __repr__(self):
        return "<%s at %s %s>" % (type(self).__name__, hex(id(self)),
                                  self.address)

    # -- running -------------------------------------------------------------

    def init_socket(self):
        """Bind and listen, unless given a socket."""
        if self.socket is None:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                if self.reuse_addr:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,
                                    1)
                sock.bind(self.address)
                sock.listen(self.backlog)
            except BaseException:
                sock.close()
                raise
            self.socket = sock
        self.address = self.socket.getsockname()
        if self.family == socket.AF_INET6:
            self.address = self.address[:2]
        self._update_environ()

    def _update_environ(self):
        address = self.address
        if isinstance(address, tuple):
            self.environ.setdefault("SERVER_NAME", str(address[0]))
            self.environ.setdefault("SERVER_PORT", str(address[1]))
        else:
            self.environ.setdefault("SERVER_NAME", "")
            self.environ.setdefault("SERVER_PORT", "")

    def _app_error(self, environ, exc):
        """An application's exception, as pywsgi reports it: to the hub's
        handle_error, the environ (secured) as its context."""
        if isinstance(exc, gevent.GreenletExit):
            return
        context = environ
        if context is not None and not isinstance(context,
                                                  self.secure_environ_class):
            context = self.secure_environ_class(context)
        gevent.get_hub().handle_error(context, type(exc), exc,
                                      exc.__traceback__)

    def start(self):
        """Bind (if given an address) and serve from gevent's hub; returns
        at once."""
        if self.started:
            return
        if self.application is None:
            raise TypeError("WSGIServer needs an application")
        overridden = _overridden(self.handler_class)
        if overridden:
            warnings.warn(
                "lichen.pywsgi serves requests itself: the handler class "
                "%s overrides %s, which lichen does not call"
                % (self.handler_class.__name__, ", ".join(overridden)),
                RuntimeWarning, stacklevel=2)
        self.init_socket()
        try:
            # gevent.pywsgi reads no proxy headers: neither does its
            # drop-in, whatever lichen's own default.
            config = validate(limit_concurrency=self.limit_concurrency,
                              log_level="warning", forwarded_allow_ips="",
                              **self.ssl_args)
            application = self.application
            if self.environ_class is not dict:
                application = _with_environ_class(application,
                                                  self.environ_class)
            self._engine = _Engine(self, application,
                                   sockets=[self.socket], config=config,
                                   environ=self.environ, gevent=True,
                                   ssl_context=self.ssl_context)
            self._engine.start()
        except BaseException:
            self.close()
            raise

    def serve_forever(self, stop_timeout=None):
        """Start if not started, and block the calling greenlet until the
        server is stopped."""
        if not self.started:
            self.start()
        try:
            self._engine._gevent.wait()
        finally:
            gevent.spawn(self.stop, timeout=stop_timeout).join()

    def stop(self, timeout=None):
        """Stop accepting at once, let the requests in flight finish within
        timeout (default stop_timeout), close the rest and the listener."""
        if timeout is None:
            timeout = self.stop_timeout
        engine = self._engine
        if engine is not None:
            engine.stop(timeout)
            if engine.in_request:
                # From the application: its request goes on and is
                # answered; a greenlet of the hub's waits for the drain,
                # then closes.
                gevent.spawn(self.stop, timeout)
                return
        self.close()

    def close(self):
        """Stop now: connections and the listener closed."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
            self._engine = engine  # started and closed read it
        if self.socket is not None:
            try:
                self.socket.close()
            finally:
                self.socket = None

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.stop()
