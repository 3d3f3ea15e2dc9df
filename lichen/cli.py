"""The command line: lichen [OPTIONS] MODULE:APP

Every start-up error is one line on stderr ("lichen: ...") and exit status
2 for a usage error or 1 for anything else; --traceback adds the full
traceback where there is one.
"""

import argparse
import ast
import importlib
import os
import re
import sys
import traceback

from . import __version__, _logging, configfile, deploy
from .config import DEFAULT_BIND, OPTIONS, ConfigError, validate
from .configfile import ConfigFileError
from .server import BindError, EngineMissing, Server, open_listeners, run

PROG = "lichen"


class StartupError(Exception):
    """Ends the start-up with one line of message and exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _Parser(
        prog=PROG,
        description="Serve a WSGI application with lichen.",
        epilog="APP is MODULE (its 'application', else 'app'), MODULE:NAME, "
               "MODULE:NAME.ATTR or MODULE:FACTORY(ARGS) with literal "
               "arguments. Bind addresses: HOST:PORT, [IPv6]:PORT, "
               "unix:PATH, fd://N; with --certfile each speaks TLS unless "
               "spelt plain:ADDRESS. Sockets passed by systemd's socket "
               "activation (LISTEN_FDS) are served too.",
    )
    parser.add_argument("app", metavar="APP", nargs="?",
                        help="the WSGI application (or wsgi_app in the "
                             "configuration file)")
    parser.add_argument(
        "-c", "--config", metavar="FILE",
        help="a configuration file, Python as gunicorn's: settings by the "
             "options' names (keepalive = 5, bind = [...]); the command "
             "line's flags override it; python:MODULE for a module")
    parser.add_argument(
        "-b", "--bind", action="append", metavar="ADDRESS",
        help=f"address to listen on, repeatable (default: {DEFAULT_BIND})")
    by_name = {o.name: o for o in OPTIONS}
    for name in ["backlog", "defer_accept", "keepalive", "timeout_header",
                 "timeout_body", "timeout_write", "graceful_timeout",
                 "limit_request_line",
                 "limit_request_fields", "limit_request_field_size",
                 "limit_request_body", "limit_concurrency"]:
        opt = by_name[name]
        parser.add_argument(opt.flag, dest=name, metavar=opt.metavar,
                            help=f"{opt.help} (default: {opt.default:g})"
                            if isinstance(opt.default, float) else
                            f"{opt.help} (default: {opt.default})")
    opt = by_name["access_log"]
    parser.add_argument("--access-log", "--access-logfile", dest="access_log",
                        metavar=opt.metavar, help=opt.help)
    opt = by_name["log_level"]
    parser.add_argument("--log-level", dest="log_level", metavar=opt.metavar,
                        help=f"{opt.help} (default: {opt.default})")
    opt = by_name["server_header"]
    parser.add_argument("--server-header", dest="server_header",
                        metavar=opt.metavar, help=opt.help)
    opt = by_name["root_path"]
    parser.add_argument("--root-path", dest="root_path", metavar=opt.metavar,
                        help=opt.help + " (default: '')")
    opt = by_name["static"]
    parser.add_argument("--static", dest="static", action="append",
                        metavar=opt.metavar, help=opt.help)
    opt = by_name["static_max_age"]
    parser.add_argument("--static-max-age", dest="static_max_age",
                        metavar=opt.metavar, help=opt.help)
    opt = by_name["static_immutable"]
    parser.add_argument("--static-immutable", dest="static_immutable",
                        nargs="?", const=True, metavar=opt.metavar,
                        help=opt.help)
    opt = by_name["static_index"]
    parser.add_argument("--static-index", dest="static_index",
                        metavar=opt.metavar, help=opt.help)
    parser.add_argument("--static-dotfiles", dest="static_dotfiles",
                        action="store_const", const=True,
                        help=by_name["static_dotfiles"].help)
    opt = by_name["static_types"]
    parser.add_argument("--static-type", dest="static_types",
                        action="append", metavar=opt.metavar, help=opt.help)
    opt = by_name["static_cache"]
    parser.add_argument("--static-cache", dest="static_cache",
                        metavar=opt.metavar,
                        help=f"{opt.help} (default: {opt.default})")
    for name in ["ws_max_message", "ws_max_queue"]:
        opt = by_name[name]
        parser.add_argument(opt.flag, dest=name, metavar=opt.metavar,
                            help=f"{opt.help} (default: {opt.default})")
    parser.add_argument("--no-ws-compression", dest="ws_compression",
                        action="store_const", const=False,
                        help="websockets: never compress (permessage-deflate "
                             "offers are declined)")
    for name in ["certfile", "keyfile", "keyfile_password",
                 "keyfile_password_file", "ca_certs"]:
        opt = by_name[name]
        parser.add_argument(opt.flag, dest=name, metavar=opt.metavar,
                            help=opt.help)
    opt = by_name["cert_reqs"]
    parser.add_argument(opt.flag, dest="cert_reqs",
                        choices=["none", "optional", "required", "0", "1",
                                 "2"],
                        metavar=opt.metavar,
                        help=opt.help + " (default: none)")
    opt = by_name["ciphers"]
    parser.add_argument(opt.flag, dest="ciphers", metavar=opt.metavar,
                        help=opt.help)
    opt = by_name["tls_min_version"]
    parser.add_argument(opt.flag, dest="tls_min_version",
                        choices=["1.2", "1.3"], metavar=opt.metavar,
                        help=opt.help + " (default: 1.2)")
    opt = by_name["tls_handshake_timeout"]
    parser.add_argument(opt.flag, dest="tls_handshake_timeout",
                        metavar=opt.metavar,
                        help=f"{opt.help} (default: {opt.default:g})")
    opt = by_name["forwarded_allow_ips"]
    parser.add_argument(opt.flag, dest="forwarded_allow_ips",
                        metavar=opt.metavar,
                        help=f"{opt.help} (default: {','.join(opt.default)})")
    parser.add_argument("--proxy-protocol", dest="proxy_protocol",
                        action="store_const", const=True,
                        help=by_name["proxy_protocol"].help)
    opt = by_name["pid"]
    parser.add_argument("-p", "--pid", dest="pid", metavar=opt.metavar,
                        help=opt.help)
    for short, name in [("-u", "user"), ("-g", "group"), ("-m", "umask"),
                        (None, "unix_socket_mode")]:
        opt = by_name[name]
        flags = [short, opt.flag] if short else [opt.flag]
        parser.add_argument(*flags, dest=name, metavar=opt.metavar,
                            help=opt.help)
    _worker_flags(parser, by_name)
    parser.add_argument(
        "--gevent", action="store_true",
        help="gevent mode: serve from gevent's hub, so that applications "
             "using gevent (sleep, sockets, queues, spawned greenlets) "
             "cooperate; the standard library is monkey-patched first")
    parser.add_argument(
        "-k", "--worker-class", dest="worker_class", metavar="CLASS",
        help="gunicorn's spelling: '-k gevent' is --gevent")
    parser.add_argument(
        "--no-monkey-patch", action="store_true",
        help="with --gevent: leave the standard library as it is (for "
             "applications that patch it themselves)")
    parser.add_argument("--factory", action="store_true",
                        help="APP is a callable that returns the application")
    parser.add_argument("--chdir", metavar="DIR",
                        help="change to DIR before loading the application")
    parser.add_argument("--traceback", action="store_true",
                        help="show full tracebacks of start-up errors")
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {__version__}")
    return parser


def _worker_flags(parser, by_name):
    """The worker processes' flags (lichen.master)."""
    opt = by_name["workers"]
    parser.add_argument("-w", "--workers", dest="workers",
                        metavar=opt.metavar,
                        help=f"{opt.help} (default: {opt.default})")
    opt = by_name["timeout"]
    parser.add_argument("-t", "--timeout", dest="timeout",
                        metavar=opt.metavar,
                        help=f"{opt.help} (default: {opt.default:g})")
    for name in ("max_requests", "max_requests_jitter"):
        opt = by_name[name]
        parser.add_argument(opt.flag, dest=name, metavar=opt.metavar,
                            help=f"{opt.help} (default: {opt.default})")
    for flag, name in (("--preload", "preload_app"),
                       ("--reuse-port", "reuse_port"),
                       ("--reload", "reload")):
        parser.add_argument(flag, dest=name, action="store_const",
                            const=True, help=by_name[name].help)


_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _import(module_name):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing
                        or module_name.startswith(missing + ".")):
            raise StartupError(
                f"cannot import {module_name!r}: no module named "
                f"{missing!r} (not in the current directory nor on "
                "sys.path)") from exc
        raise StartupError(f"error while importing {module_name!r}: "
                           f"{exc}") from exc
    except SyntaxError as exc:
        raise StartupError(f"error while importing {module_name!r}: "
                           f"syntax error in {exc.filename}, line "
                           f"{exc.lineno}: {exc.msg}") from exc
    except (Exception, SystemExit) as exc:
        raise StartupError(f"error while importing {module_name!r}: "
                           f"{type(exc).__name__}: {exc}") from exc


def _parse_target(spec, text):
    """NAME, NAME.ATTR or NAME(literal args) -> (names, args, kwargs)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        node = None
    call = None
    if isinstance(node, ast.Call):
        call, node = node, node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise StartupError(f"invalid APP {spec!r}: expected MODULE:NAME or "
                           "MODULE:FACTORY(ARGS)")
    names.append(node.id)
    names.reverse()
    if call is None:
        return names, None, None
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        if None in kwargs:
            raise ValueError
    except ValueError:
        raise StartupError(f"invalid APP {spec!r}: factory arguments must be "
                           "literals") from None
    return names, args, kwargs


def load_app(spec, factory=False):
    """Import and return the WSGI application that spec names."""
    module_name, sep, target = spec.partition(":")
    module_name = module_name.strip()
    if not _MODULE_RE.fullmatch(module_name) or (sep and not target.strip()):
        raise StartupError(f"invalid APP {spec!r}: expected MODULE, "
                           "MODULE:NAME or MODULE:FACTORY()")
    module = _import(module_name)
    if not sep:
        for name in ("application", "app"):
            if hasattr(module, name):
                names, args, kwargs = [name], None, None
                break
        else:
            raise StartupError(f"module {module_name!r} has no attribute "
                               "'application' or 'app' (name one: "
                               f"{module_name}:NAME)")
    else:
        names, args, kwargs = _parse_target(spec, target)
    obj = module
    where = module_name
    for name in names:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            owner = (f"module {module_name!r}" if obj is module
                     else repr(where))
            raise StartupError(f"{owner} has no attribute {name!r}") from None
        where = f"{where}.{name}" if obj is not module and ":" in where \
            else f"{module_name}:{name}"
    if args is None and factory:
        args, kwargs = [], {}
    if args is not None:
        if not callable(obj):
            raise StartupError(f"app factory {where!r} is not callable "
                               f"(it is a {type(obj).__name__})")
        try:
            obj = obj(*args, **kwargs)
        except (Exception, SystemExit) as exc:
            raise StartupError(f"app factory {where!r} failed: "
                               f"{type(exc).__name__}: {exc}") from exc
        where = f"{where}()"
    if not callable(obj):
        raise StartupError(f"application {where!r} is not callable (it is "
                           f"a {type(obj).__name__})")
    return obj


def _fail(message, exc, show_traceback):
    if show_traceback and exc is not None:
        cause = exc.__cause__ or exc
        traceback.print_exception(type(cause), cause, cause.__traceback__)
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()
    return 1


# Worker classes of gunicorn's spelling that name lichen's two modes.
_WORKER_CLASSES = {
    "sync": "sync", "gevent": "gevent",
    "lichen.gunicorn.Worker": "sync",
    "lichen.gunicorn.GeventWorker": "gevent",
}


def _gevent_mode(args, parser, conf=None, patch_now=True):
    """Whether to serve in gevent mode; patches the standard library then
    (unless patch_now is false: a worker does), before the application is
    imported."""
    if args.worker_class is not None:
        mode = _WORKER_CLASSES.get(args.worker_class)
        if mode is None and conf is not None and \
                conf.settings.get("worker_class") == args.worker_class:
            parser.exit(2, f"{PROG}: {conf.label}: invalid value for "
                           f"worker_class: {args.worker_class!r} (expected "
                           "gevent or sync)\n")
        if mode is None:
            parser.error(f"unknown worker class {args.worker_class!r} "
                         "(gevent or sync)")
        args.worker_class = mode
    if not (args.gevent or args.worker_class == "gevent"):
        if args.no_monkey_patch:
            parser.error("--no-monkey-patch goes with --gevent")
        return False
    try:
        import gevent  # noqa: F401
    except ImportError:
        parser.exit(2, f"{PROG}: --gevent needs gevent: pip install "
                       "'lichen[gevent]'\n")
    if not args.no_monkey_patch and patch_now:
        from .gevent import patch
        patch()
    return True


def _merge_file(args, conf):
    """The configuration file's command-line settings, under the flags."""
    settings = conf.settings
    if args.app is None:
        args.app = settings.get("wsgi_app")
    for name in ("bind", "chdir", "worker_class"):
        if getattr(args, name) is None:
            setattr(args, name, settings.get(name))
    for name in ("gevent", "no_monkey_patch", "factory"):
        setattr(args, name, getattr(args, name) or settings.get(name, False))


def _options(args, conf):
    """The options of the flags over those of the file, and validate()'s
    origin for those of the file."""
    given = {o.name: getattr(args, o.name) for o in OPTIONS
             if getattr(args, o.name, None) is not None}
    if conf is None:
        return given, {}
    from_file = {k: v for k, v in conf.options.items() if k not in given}
    return {**from_file, **given}, dict.fromkeys(from_file, conf.label)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    conf = None
    if args.config is not None:
        try:
            conf = configfile.load(args.config)
        except ConfigFileError as exc:
            return _fail(str(exc), exc, args.traceback)
        _merge_file(args, conf)
    if args.app is None:
        parser.error("the following arguments are required: APP (or "
                     "wsgi_app in the configuration file)")
    given, origin = _options(args, conf)
    workers = _master_wanted(given)
    # With workers, gevent patches each worker, unless the master imports
    # the application.
    gevent_mode = _gevent_mode(args, parser, conf,
                               patch_now=workers != "master")
    listeners, pidfile = [], None
    try:
        cfg = validate(given, cli=True, origin=origin)
        account = deploy.account(cfg)
        log = _logging.configure(cfg["log_level"])
        for warning in conf.warnings if conf is not None else ():
            log.warning("%s", warning)
        deploy.apply_umask(cfg["umask"])
        if args.chdir:
            try:
                os.chdir(args.chdir)
            except OSError as exc:
                raise StartupError(f"cannot change directory to "
                                   f"{args.chdir}: {exc.strerror}") from exc
        activated = deploy.listen_fds()
        if cfg["pid"] is not None:
            pidfile = deploy.PidFile(cfg["pid"])
            pidfile.check()
        # Bound (as root, for a port below 1024) before the switch to the
        # user, which comes before the application is imported.
        listeners = open_listeners(
            args.bind or ([] if activated else [DEFAULT_BIND]), cfg,
            tls=cfg["certfile"] is not None, activated=activated,
            unix_owner=account.owner if account else None)
        if pidfile is not None:
            pidfile.write()
        deploy.drop_privileges(account)
        deploy.check_files(cfg, account)
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        if workers:
            return _run_master(args, argv, listeners, cfg, gevent_mode,
                               pidfile)
        app = load_app(args.app, factory=args.factory)
        server = Server(app, listeners=listeners, config=cfg,
                        gevent=gevent_mode)
    except (StartupError, ConfigError, BindError, EngineMissing,
            deploy.DeployError) as exc:
        _cleanup(listeners, pidfile)
        return _fail(str(exc), exc, args.traceback)
    except Exception as exc:
        _cleanup(listeners, pidfile)
        return _fail(f"start-up failed: {type(exc).__name__}: {exc}", exc,
                     args.traceback)
    try:
        run(server)
    finally:
        if pidfile is not None:
            pidfile.remove(server.log)
    return 0


def _master_wanted(given):
    """Whether workers are wanted: "preload" when the master imports the
    application, "master" when the workers do, "" for one process (-w 1,
    the default, without --timeout, --max-requests or --reload)."""
    names = ("workers", "timeout", "max_requests", "reload", "preload_app")
    try:
        cfg = validate({k: given[k] for k in names if k in given}, cli=True)
    except ConfigError:
        return ""  # said once the options are checked
    if cfg["workers"] == 1 and not ("timeout" in given and cfg["timeout"]) \
            and not cfg["max_requests"] and not cfg["reload"]:
        return ""
    return "preload" if cfg["preload_app"] else "master"


def _run_master(args, argv, listeners, cfg, gevent_mode, pidfile):
    """The pre-fork master (lichen.master) on the listeners bound."""
    from . import master

    def boot():
        try:
            return load_app(args.app, factory=args.factory)
        except StartupError as exc:
            if args.traceback:
                traceback.print_exception(exc)
            raise master.BootError(str(exc)) from None

    def prepare():
        if gevent_mode and not args.no_monkey_patch:
            from .gevent import patch
            patch()

    def reconfigure():
        """HUP: the flags and the configuration file read anew."""
        new = build_parser().parse_args(argv)
        conf = None
        if new.config is not None:
            conf = configfile.load(new.config)
            _merge_file(new, conf)
        given, origin = _options(new, conf)
        return validate(given, cli=True, origin=origin)

    app = None
    try:
        if cfg["preload_app"]:
            app = load_app(args.app, factory=args.factory)
    except StartupError as exc:
        _cleanup(listeners, pidfile)
        return _fail(str(exc), exc, args.traceback)
    try:
        return master.Master(listeners, cfg, boot, app=app,
                             gevent=gevent_mode, prepare=prepare,
                             reconfigure=reconfigure).run()
    finally:
        if pidfile is not None:
            pidfile.remove(_logging.configure(cfg["log_level"]))


def _cleanup(listeners, pidfile):
    """A start-up that failed half-way: its sockets and pid file go."""
    for listener in listeners:
        listener.close()
    if pidfile is not None:
        pidfile.remove()


if __name__ == "__main__":
    sys.exit(main())
