"""PasteDeploy server runners: ``use = egg:lichen#main`` (or ``#gevent``).

A ``[server:main]`` section of a PasteDeploy configuration (Pyramid's
``development.ini``, TurboGears', anything ``pserve`` or
``paste.deploy.loadserver`` reads) serves its application with lichen::

    [server:main]
    use = egg:lichen#main
    host = 127.0.0.1
    port = 6543
    keepalive = 5
    access_log = -

Keys: ``host`` and ``port`` (as waitress and gunicorn's runner take them),
or ``bind`` (one address or several, separated by whitespace or newlines,
as ``--bind`` spells them), and every lichen option by its name
(``timeout_header``, ``access_log``, ``certfile``...; ``access-log`` too).
Values are text, checked as the command line checks its own: a bad value
or an unknown key is a ``lichen.ConfigError`` that names the key.
"""

import re

from .config import (DEFAULT_HOST, DEFAULT_PORT, OPTIONS, OPTIONS_BY_NAME,
                     ConfigError, format_host_port, parse_bind,
                     validate)
from .server import Server, run

__all__ = ["server_runner", "gevent_server_runner", "make_server"]

# Options given several times on the command line: whitespace-separated
# items here (PREFIX=DIR, EXT=TYPE).
_LISTS = ("static", "static_types")
_OWN_KEYS = ("host", "port", "bind")
_GEVENT_KEYS = ("monkey_patch",)
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}
# Options of the process, which the lichen command acts on (a pid file, the
# user to switch to): pserve's process is not lichen's to manage.
_PROCESS_OPTIONS = ("pid", "user", "group", "umask", "workers", "timeout",
                    "max_requests", "max_requests_jitter", "preload_app",
                    "reuse_port", "reload")
_FLAG_RE = re.compile(r"(?<![\w'\"-])--[a-z0-9][a-z0-9-]*(?![\w-])")


def _keys(kw, extra=()):
    """{option or own key: (value, key as written)}; unknown keys fail."""
    known = set(OPTIONS_BY_NAME) | set(_OWN_KEYS) | set(extra)
    out, unknown = {}, []
    for key, value in kw.items():
        name = key.strip().replace("-", "_")
        if name not in known:
            unknown.append(key)
        elif name in out:
            raise ConfigError(f"{out[name][1]} and {key} are the same key: "
                              "give one")
        else:
            out[name] = (value, key)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} for lichen's "
            f"server: {', '.join(sorted(unknown))} (lichen takes host, port, "
            "bind and its options by name, e.g. keepalive, access_log)")
    process = [key for name, (_, key) in out.items()
               if name in _PROCESS_OPTIONS]
    if process:
        raise ConfigError(
            f"{', '.join(process)}: the process's, set by the lichen "
            "command only; in a server section, use the tools that start "
            "pserve (a service manager) instead")
    return out


def _text(value, key):
    if not isinstance(value, str):
        # Paste passes text; a caller of ours may pass numbers or True.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        raise ConfigError(f"invalid value for {key}: {value!r} (expected "
                          "text)")
    return value.strip()


def _binds(keys):
    """The bind addresses: bind's, or host and port's, or lichen's
    default."""
    if "bind" in keys:
        if "host" in keys or "port" in keys:
            raise ConfigError("give bind, or host and port, not both")
        value, key = keys["bind"]
        binds = _text(value, key).split()
        if not binds:
            raise ConfigError(f"invalid value for {key}: empty")
        for spec in binds:
            parse_bind(spec)  # a bad one fails here, before any patching
        return binds
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if "host" in keys:
        value, key = keys["host"]
        host = _text(value, key)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or any(c.isspace() or c in "/[]" for c in host):
            raise ConfigError(f"invalid value for {key}: {value!r} "
                              "(expected a host name or IP address)")
    if "port" in keys:
        value, key = keys["port"]
        text = _text(value, key)
        if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
            raise ConfigError(f"invalid value for {key}: {value!r} "
                              "(expected a port number, 0 to 65535)")
        port = int(text)
    return [format_host_port(host, port)]


def _options(keys):
    """lichen's options, validated as the command line validates them,
    errors naming the keys as written."""
    given, written = {}, {}
    for opt in OPTIONS:
        if opt.name not in keys:
            continue
        value, key = keys[opt.name]
        written[opt.flag] = key
        value = _text(value, key)
        if opt.name in _LISTS:
            value = value.split()
        elif opt.name == "static_immutable":
            # Bare --static-immutable: a yes here; a no is none.
            value = {True: True, False: None}.get(
                _BOOL_WORDS.get(value.lower()), value)
        given[opt.name] = value
    try:
        return validate(given, cli=True)
    except ConfigError as exc:
        message = _FLAG_RE.sub(
            lambda m: written.get(m.group(0),
                                  m.group(0)[2:].replace("-", "_")),
            str(exc))
        raise ConfigError(message) from None


def make_server(wsgi_app, global_conf=None, *, gevent=False, **kw):
    """A lichen.Server for app, bound, from a server section's keys."""
    keys = _keys(kw)
    binds = _binds(keys)
    return Server(wsgi_app, bind=binds, config=_options(keys), gevent=gevent)


def server_runner(wsgi_app, global_conf=None, **kw):
    """``egg:lichen#main``: serve wsgi_app until SIGTERM (graceful) or
    SIGINT, as the ``lichen`` command does."""
    run(make_server(wsgi_app, global_conf, **kw))


def gevent_server_runner(wsgi_app, global_conf=None, **kw):
    """``egg:lichen#gevent``: gevent mode, as ``lichen --gevent``. The
    standard library is monkey-patched first, unless ``monkey_patch =
    false`` (an application that patches itself); the application was
    loaded before, as with gunicorn's paste runner and gevent worker."""
    keys = _keys(kw, _GEVENT_KEYS)
    patch = True
    if "monkey_patch" in keys:
        value, key = keys.pop("monkey_patch")
        patch = _BOOL_WORDS.get(_text(value, key).lower())
        if patch is None:
            raise ConfigError(f"invalid value for {key}: {value!r} "
                              "(expected true or false)")
    # Checked before anything is patched.
    binds = _binds(keys)
    cfg = _options(keys)
    try:
        import gevent  # noqa: F401
    except ImportError:
        raise ConfigError("egg:lichen#gevent needs gevent: pip install "
                          "'lichen[gevent]'") from None
    if patch:
        from .gevent import patch as patch_all
        patch_all()
    run(Server(wsgi_app, bind=binds, config=cfg, gevent=True))
