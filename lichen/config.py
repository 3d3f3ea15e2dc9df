"""Options of the server: names, defaults, validation.

One table serves the Python API (keyword arguments of ``lichen.Server``) and
the command line (``lichen --keepalive 5``): the names are gunicorn's where
the meaning is the same. Validation turns every bad value into one
``ConfigError`` whose message names the option the way the user spelled it.
"""

import ipaddress
import logging
import math
import os
import re

__all__ = [
    "ConfigError",
    "Config",
    "OPTIONS",
    "DEFAULTS",
    "DEFAULT_BIND",
    "LOG_LEVELS",
    "BindSpec",
    "parse_bind",
    "format_host_port",
    "validate",
    "engine_options",
    "tls_options",
]


class ConfigError(ValueError):
    """A bad option value or bind address; the message is one line."""


LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Large enough for anything sane, small enough to catch a typo (and to fit
# in the engine's C types).
_MAX_SECONDS = 86400.0 * 365
_MAX_INT = 2**62


class Option:
    """One option: its kind says how a value is parsed and checked."""

    def __init__(self, name, default, kind, help, minimum=None, maximum=None,
                 metavar=None):
        self.name = name
        self.default = default
        self.kind = kind  # a key of KINDS
        self.help = help
        self.minimum = minimum
        self.maximum = maximum
        self.metavar = metavar

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


OPTIONS = [
    Option("backlog", 2048, "int", "maximum number of pending connections",
           minimum=1, metavar="INT"),
    Option("defer_accept", 0.0, "seconds",
           "on Linux, accept a TCP connection only once its first bytes "
           "came, or after about this many seconds (0: at once)",
           minimum=0.0, maximum=3600.0, metavar="SECONDS"),
    Option("keepalive", 5.0, "seconds",
           "seconds an idle keep-alive connection is kept open "
           "(0 disables keep-alive)", minimum=0.0, metavar="SECONDS"),
    Option("timeout_header", 30.0, "seconds",
           "seconds within which a request head must arrive, in full",
           minimum=0.001, metavar="SECONDS"),
    Option("timeout_body", 60.0, "seconds",
           "seconds within which reading a request body must make progress",
           minimum=0.001, metavar="SECONDS"),
    Option("timeout_write", 60.0, "seconds",
           "seconds within which writing a response must make progress",
           minimum=0.001, metavar="SECONDS"),
    Option("graceful_timeout", 30.0, "seconds",
           "seconds in-flight requests get to finish on a graceful stop",
           minimum=0.0, metavar="SECONDS"),
    Option("limit_request_line", 8190, "int",
           "maximum bytes of the request line (longer: 414)",
           minimum=16, maximum=1 << 24, metavar="BYTES"),
    Option("limit_request_fields", 100, "int",
           "maximum number of header fields (more: 431)",
           minimum=1, maximum=10000, metavar="INT"),
    Option("limit_request_field_size", 8190, "int",
           "maximum bytes of one header field (larger: 431)",
           minimum=16, maximum=1 << 24, metavar="BYTES"),
    Option("limit_request_body", 1073741824, "int",
           "maximum bytes of a request body, 0 for no limit (larger: 413)",
           minimum=0, metavar="BYTES"),
    Option("limit_concurrency", 0, "int",
           "the most requests served at once, 0 for no limit (an idle "
           "keep-alive connection does not count; the others wait)",
           minimum=0, metavar="INT"),
    Option("access_log", None, "file",
           "write an access log line per request: '-' for stdout or a file "
           "path (appended to); default none", metavar="FILE"),
    Option("log_level", "info", "log_level",
           "level of the error log on stderr: " + ", ".join(LOG_LEVELS),
           metavar="LEVEL"),
    Option("server_header", None, "text",
           "value of the Server response header; default none is sent",
           metavar="TEXT"),
    Option("root_path", "", "url_path",
           "SCRIPT_NAME of the application when it is mounted below '/' "
           "(e.g. /api behind a proxy)", metavar="PATH"),
    Option("static", (), "static",
           "serve the files of DIR under the URL path PREFIX from the "
           "engine, repeatable", metavar="PREFIX=DIR"),
    Option("static_max_age", None, "optional_int",
           "static files: Cache-Control max-age in seconds (default: no "
           "Cache-Control)", minimum=0, metavar="SECONDS"),
    Option("static_immutable", None, "immutable",
           "static files whose path below the prefix matches REGEX (POSIX "
           "extended; bare: hashed names such as app.0123abcd.css) are "
           "cached a year, immutable", metavar="REGEX"),
    Option("static_index", None, "file_name",
           "static files: a directory's index file, e.g. index.html "
           "(default: none; directories are never listed)", metavar="NAME"),
    Option("static_dotfiles", False, "bool",
           "static files: serve names that begin with a dot"),
    Option("static_types", (), "static_types",
           "static files: Content-Type of an extension, repeatable",
           metavar="EXT=TYPE"),
    Option("static_cache", 256, "int",
           "static files: open files kept, 0 to open each time",
           minimum=0, maximum=1 << 20, metavar="INT"),
    Option("ws_max_message", 16 * 1024 * 1024, "int",
           "websockets: bytes of one message (the client is closed with "
           "1009 past it), 0 for no limit", minimum=0, metavar="BYTES"),
    Option("ws_max_queue", 1024 * 1024, "int",
           "websockets: bytes queued for one slow client before send() "
           "waits", minimum=0, metavar="BYTES"),
    Option("ws_compression", True, "bool",
           "websockets: accept permessage-deflate when the client offers "
           "it"),
    Option("certfile", None, "tls_file",
           "TLS: the certificate (PEM, then its chain); every bind address "
           "speaks TLS with it unless spelt plain:ADDRESS", metavar="FILE"),
    Option("keyfile", None, "tls_file",
           "TLS: the private key (PEM; default: in the certificate file)",
           metavar="FILE"),
    Option("keyfile_password", None, "secret",
           "TLS: the password of an encrypted private key (visible to "
           "other users in the process list: prefer "
           "--keyfile-password-file)", metavar="TEXT"),
    Option("keyfile_password_file", None, "tls_file",
           "TLS: a file whose first line is the private key's password",
           metavar="FILE"),
    Option("ca_certs", None, "tls_file",
           "TLS: the CA certificates (PEM) client certificates must chain "
           "to", metavar="FILE"),
    Option("cert_reqs", 0, "cert_reqs",
           "TLS: client certificates: none, optional or required (mutual "
           "TLS); 0, 1, 2 as gunicorn's", metavar="WHEN"),
    Option("ciphers", None, "text",
           "TLS: OpenSSL's cipher list for TLS 1.2 (default: ECDHE with "
           "AES-GCM or ChaCha20-Poly1305 only)", metavar="LIST"),
    Option("tls_min_version", "1.2", "tls_version",
           "TLS: the oldest version accepted, 1.2 or 1.3",
           metavar="VERSION"),
    Option("tls_handshake_timeout", 10.0, "seconds",
           "TLS: seconds from accept within which the handshake must end",
           minimum=0.001, metavar="SECONDS"),
    Option("pid", None, "path",
           "write the server's process id to FILE once it listens; removed "
           "at exit", metavar="FILE"),
    Option("user", None, "user",
           "switch to this user (name or uid) once the listeners are bound, "
           "before the application is loaded", metavar="USER"),
    Option("group", None, "group",
           "switch to this group (name or gid) with --user or alone "
           "(default: the user's own group)", metavar="GROUP"),
    Option("umask", None, "mode",
           "the process's umask, octal (e.g. 022), set at start (default: "
           "as inherited)", metavar="MODE"),
    Option("unix_socket_mode", None, "mode",
           "unix sockets: the socket file's mode, octal (e.g. 660; "
           "default: from the umask)", metavar="MODE"),
    Option("forwarded_allow_ips", ("127.0.0.1", "::1", "unix"),
           "forwarded_ips",
           "peers whose Forwarded and X-Forwarded-* headers set the "
           "client's address, scheme, host and port: addresses and "
           "networks (10.0.0.0/8), 'unix' for unix socket peers, '*' for "
           "every peer, '' for none; comma separated", metavar="LIST"),
    Option("workers", 1, "workers",
           "worker processes a master forks (0 or auto: one per core); 1 "
           "serves from this one process, without a master",
           metavar="N"),
    Option("timeout", 30.0, "seconds",
           "workers: a worker whose loop has not turned for this long (an "
           "application blocking it) is killed and replaced; 0: never",
           minimum=0.0, metavar="SECONDS"),
    Option("max_requests", 0, "int",
           "workers: a worker stops gracefully after this many requests "
           "and is replaced (0: never)", minimum=0, metavar="INT"),
    Option("max_requests_jitter", 0, "int",
           "workers: a random 0 to this many more, so that workers do not "
           "restart together", minimum=0, metavar="INT"),
    Option("preload_app", False, "bool",
           "workers: import the application in the master, before the "
           "fork"),
    Option("reuse_port", False, "bool",
           "workers: each worker binds its own socket of each TCP address "
           "(SO_REUSEPORT), the kernel spreading connections among them"),
    Option("reload", False, "bool",
           "development: restart the workers when a source file of the "
           "application changes"),
    Option("proxy_protocol", False, "bool",
           "every connection begins with a PROXY protocol header (v1 or "
           "v2, as HAProxy and cloud load balancers send), whose client "
           "address is used; only from the forwarded_allow_ips peers, and a "
           "connection without one is closed"),
]

# What a bare --static-immutable matches: a hash of 8 or more hex digits
# before the extension, as Django's ManifestStaticFilesStorage and
# webpack's [contenthash] name files.
DEFAULT_IMMUTABLE = r"[.-][0-9a-f]{8,}\.[A-Za-z0-9]+$"

OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}
DEFAULTS = {o.name: o.default for o in OPTIONS}


def _label(opt, cli):
    return opt.flag if cli else opt.name


def _fail(opt, value, expected, cli):
    raise ConfigError(
        f"invalid value for {_label(opt, cli)}: {value!r} ({expected})")


def _check_seconds(opt, value, cli):
    expected = f"expected seconds, a number >= {opt.minimum:g}"
    if opt.maximum is not None:
        expected += f" and <= {opt.maximum:g}"
    if isinstance(value, str) and cli:
        try:
            value = float(value.strip())
        except ValueError:
            _fail(opt, value, expected, cli)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(opt, value, expected, cli)
    value = float(value)
    if (math.isnan(value) or value < opt.minimum or
            value > (_MAX_SECONDS if opt.maximum is None else opt.maximum)):
        _fail(opt, value, expected, cli)
    return value


def _check_int(opt, value, cli):
    maximum = _MAX_INT if opt.maximum is None else opt.maximum
    expected = (f"expected an integer >= {opt.minimum}" if opt.maximum is None
                else f"expected an integer from {opt.minimum} to {maximum}")
    if isinstance(value, str) and cli:
        text = value.strip().replace("_", "")
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            _fail(opt, value, expected, cli)
        value = int(text)
    elif isinstance(value, bool) or not isinstance(value, int):
        _fail(opt, value, expected, cli)
    if value < opt.minimum or value > maximum:
        _fail(opt, value, expected, cli)
    return int(value)


def _check_log_level(opt, value, cli):
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        _fail(opt, value, "expected one of " + ", ".join(LOG_LEVELS), cli)
    return value.lower()


def _check_text(opt, value, cli):
    """Printable ASCII, or None for none (an empty text too)."""
    if value is None or value == "":
        return None
    if (not isinstance(value, str) or not value.isprintable()
            or not value.isascii()):
        _fail(opt, value, "expected printable ASCII text", cli)
    return value


def _check_url_path(opt, value, cli):
    """A path such as /api, without the trailing slash; '' for none."""
    if value is None:
        return ""
    if not isinstance(value, str):
        _fail(opt, value, "expected a path such as '/api'", cli)
    value = value.rstrip("/")
    if value and (not value.startswith("/") or not value.isprintable()
                  or "?" in value or "#" in value):
        _fail(opt, value, "expected a path such as '/api'", cli)
    return value


def _check_file(opt, value, cli):
    """'-' (stdout) or a file path; None for none."""
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        _fail(opt, value, "expected '-' or a file path", cli)
    return os.fspath(value)


def _pairs(opt, value, cli, what):
    """PREFIX=DIR strings, (a, b) pairs or a dict, as a list of pairs."""
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        _fail(opt, value, f"expected {what}", cli)
    out = []
    for item in value:
        if isinstance(item, str):
            a, sep, b = item.partition("=")
            if not sep:
                _fail(opt, item, f"expected {what}", cli)
            item = (a.strip(), b.strip())
        if (not isinstance(item, (list, tuple)) or len(item) != 2):
            _fail(opt, item, f"expected {what}", cli)
        out.append(tuple(item))
    return out


def _check_static(opt, value, cli):
    """(prefix, directory) pairs; each directory must exist."""
    what = "PREFIX=DIR, PREFIX a URL path such as /static"
    mounts = []
    for prefix, directory in _pairs(opt, value, cli, what):
        shown = f"{prefix}={directory}"
        if (not isinstance(prefix, str) or not prefix.startswith("/")
                or not prefix.isprintable() or not prefix.isascii()
                or any(c in prefix for c in "?#% ")):
            _fail(opt, shown, what, cli)
        if not isinstance(directory, (str, os.PathLike)) or not directory:
            _fail(opt, shown, what, cli)
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            _fail(opt, shown, f"no such directory: {directory}", cli)
        if not os.access(directory, os.R_OK | os.X_OK):
            _fail(opt, shown, f"directory not readable: {directory}", cli)
        prefix = prefix.rstrip("/")
        if any(p == prefix for p, _ in mounts):
            _fail(opt, shown, f"prefix {prefix or '/'} given twice", cli)
        mounts.append((prefix, os.path.abspath(directory)))
    # The longest prefix first, so that /static/img can sit inside /static.
    mounts.sort(key=lambda m: -len(m[0]))
    return tuple(mounts)


def _check_static_types(opt, value, cli):
    what = "EXT=TYPE, e.g. .webmanifest=application/manifest+json"
    out = []
    for ext, ctype in _pairs(opt, value, cli, what):
        if (not isinstance(ext, str) or not isinstance(ctype, str)
                or not re.fullmatch(r"\.?[A-Za-z0-9_+-]{1,32}", ext)
                or not re.fullmatch(r"[!-~][ -~]{0,199}", ctype)):
            _fail(opt, f"{ext}={ctype}", what, cli)
        out.append((ext.lstrip(".").lower(), ctype))
    return tuple(out)


def _check_optional_int(opt, value, cli):
    if value is None or value == "":
        return None
    return _check_int(opt, value, cli)


def _check_immutable(opt, value, cli):
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_IMMUTABLE
    if not isinstance(value, str) or not value or not value.isprintable():
        _fail(opt, value, "expected a regular expression", cli)
    try:  # the engine's is POSIX's, close enough to catch the usual slips
        re.compile(value)
    except re.error as exc:
        _fail(opt, value, f"not a regular expression: {exc}", cli)
    return value


def _check_file_name(opt, value, cli):
    if value is None or value == "":
        return None
    if (not isinstance(value, str) or "/" in value or "\0" in value
            or value in (".", "..") or not value.isprintable()):
        _fail(opt, value, "expected a file name such as index.html", cli)
    return value


def _check_bool(opt, value, cli):
    if isinstance(value, bool):
        return value
    if cli and isinstance(value, str) and value.lower() in (
            "1", "0", "true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    _fail(opt, value, "expected true or false", cli)


def _check_tls_file(opt, value, cli):
    """A readable file's path, or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        _fail(opt, value, "expected a file path", cli)
    path = os.fspath(value)
    if not os.path.isfile(path):
        _fail(opt, path, "no such file", cli)
    if not os.access(path, os.R_OK):
        _fail(opt, path, "file not readable", cli)
    return os.path.abspath(path)


def _check_secret(opt, value, cli):
    if value is None:
        return None
    if not isinstance(value, str) or "\0" in value:
        raise ConfigError(f"invalid value for {_label(opt, cli)} (expected "
                          "text)")
    return value


_CERT_REQS = {"none": 0, "optional": 1, "required": 2}


def _check_cert_reqs(opt, value, cli):
    expected = "expected none, optional or required (or 0, 1, 2)"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _CERT_REQS:
            return _CERT_REQS[text]
        if text in ("0", "1", "2"):
            return int(text)
        _fail(opt, value, expected, cli)
    if isinstance(value, bool) or not isinstance(value, int) or not (
            0 <= value <= 2):
        _fail(opt, value, expected, cli)
    return int(value)  # ssl.CERT_NONE/OPTIONAL/REQUIRED are 0, 1, 2


def _check_tls_version(opt, value, cli):
    text = str(getattr(value, "name", value)).strip()
    text = {"TLSv1_2": "1.2", "TLSv1_3": "1.3", "TLSv1.2": "1.2",
            "TLSv1.3": "1.3"}.get(text, text)
    if text not in ("1.2", "1.3"):
        _fail(opt, value, "expected 1.2 or 1.3", cli)
    return text


def _check_path(opt, value, cli):
    """A file path (not '-'), or None."""
    if value is None or value == "":
        return None
    if (not isinstance(value, (str, os.PathLike)) or value == "-"
            or "\0" in os.fspath(value)):
        _fail(opt, value, "expected a file path", cli)
    return os.fspath(value)


def _check_mode(opt, value, cli):
    """A file mode or umask: text is octal (022, 0o660, 7), an int the mode
    itself; None for none."""
    if value is None or value == "":
        return None
    expected = "expected an octal mode such as 022 or 0o660, at most 0o777"
    if isinstance(value, str):
        text = value.strip().lower().replace("_", "")
        if text.startswith("0o"):
            text = text[2:]
        if not re.fullmatch(r"[0-7]{1,4}", text):
            _fail(opt, value, expected, cli)
        value = int(text, 8)
    elif isinstance(value, bool) or not isinstance(value, int):
        _fail(opt, value, expected, cli)
    if not 0 <= value <= 0o777:
        _fail(opt, value, expected, cli)
    return value


def _account_id(opt, value, cli, what, lookup):
    """A name or a number: the number (uid or gid)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}",
                                                 value.strip()):
        number = int(value.strip())
    elif isinstance(value, str) and value.strip():
        try:
            return lookup(value.strip())
        except KeyError:
            _fail(opt, value, f"no such {what}", cli)
    else:
        _fail(opt, value, f"expected a {what} name or number", cli)
    if not 0 <= number < 2**32 - 1:
        _fail(opt, value, f"expected a {what} name or number", cli)
    return number


def _check_user(opt, value, cli):
    import pwd
    return _account_id(opt, value, cli, "user",
                       lambda name: pwd.getpwnam(name).pw_uid)


def _check_group(opt, value, cli):
    import grp
    return _account_id(opt, value, cli, "group",
                       lambda name: grp.getgrnam(name).gr_gid)



def _check_forwarded_ips(opt, value, cli):
    """Addresses and networks, '*' (every peer), 'unix' (unix socket
    peers): a comma-separated str or a list. A tuple of the entries as the
    engine reads them."""
    expected = ("expected addresses or networks such as 10.0.0.0/8, 'unix' "
                "or '*', separated by commas")
    if value is None:
        return ()
    if isinstance(value, str):
        items = value.split(",") if value.strip() else []
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        _fail(opt, value, expected, cli)
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            _fail(opt, item, expected, cli)
        text = item.strip()
        if text == "*" or text.lower() == "unix":
            out.append(text.lower())
            continue
        try:
            if "%" in text:  # a zone: peers' addresses have none
                raise ValueError(f"{text!r} has a zone")
            net = ipaddress.ip_network(text)  # no bit set past the prefix
        except ValueError as exc:
            _fail(opt, text, f"not an address or a network: {exc}", cli)
        out.append(str(net.network_address)
                   if net.prefixlen == net.max_prefixlen else str(net))
    return tuple(dict.fromkeys(out))

def _check_workers(opt, value, cli):
    """A number of processes, 0 or 'auto' for one per core (0)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return 0
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,4}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 <= value <= 4096:
        _fail(opt, value, "expected a number of processes, 0 or auto for "
                          "one per core", cli)
    return value


KINDS = {
    "workers": _check_workers,
    "forwarded_ips": _check_forwarded_ips,
    "path": _check_path,
    "mode": _check_mode,
    "user": _check_user,
    "group": _check_group,
    "tls_file": _check_tls_file,
    "secret": _check_secret,
    "cert_reqs": _check_cert_reqs,
    "tls_version": _check_tls_version,
    "static": _check_static,
    "static_types": _check_static_types,
    "optional_int": _check_optional_int,
    "immutable": _check_immutable,
    "file_name": _check_file_name,
    "bool": _check_bool,
    "seconds": _check_seconds,
    "int": _check_int,
    "log_level": _check_log_level,
    "text": _check_text,
    "url_path": _check_url_path,
    "file": _check_file,
}


class Config(dict):
    """Checked options, every name present: what validate() returns, and
    what lichen.Server(config=...) takes without checking again."""


def validate(values=None, *, cli=False, origin=None, **kwargs):
    """Return a complete, checked dict of options.

    ``values`` (and keyword arguments) may hold any subset of the option
    names. With cli=True numbers may be given as text and messages name
    the flags (--keepalive). ``origin`` maps names whose value came from
    a configuration file to that file: a message about one names the file
    and the setting ("FILE: invalid value for keepalive: ..."). Unknown
    names and bad values raise ConfigError.
    """
    given = dict(values or {})
    given.update(kwargs)
    unknown = sorted(set(given) - set(OPTIONS_BY_NAME))
    if unknown:
        raise ConfigError("unknown option: " + ", ".join(unknown))
    cfg = Config()
    for opt in OPTIONS:
        value = given.get(opt.name, opt.default)
        where = (origin or {}).get(opt.name)
        try:
            cfg[opt.name] = KINDS[opt.kind](opt, value, cli)
        except ConfigError as exc:
            if where is None:
                raise
            # Said with the setting's name, as the file spells it.
            message = str(exc).replace(opt.flag, opt.name, 1)
            raise ConfigError(f"{where}: {message}") from None
    _check_tls(cfg, cli)
    return cfg


def _check_tls(cfg, cli):
    """The TLS options that only make sense with a certificate."""
    def label(name):
        return OPTIONS_BY_NAME[name].flag if cli else name

    if cfg["certfile"] is None:
        for name in ("keyfile", "keyfile_password", "keyfile_password_file",
                     "ca_certs", "ciphers"):
            if cfg[name] is not None:
                raise ConfigError(f"{label(name)} needs {label('certfile')}")
        if cfg["cert_reqs"]:
            raise ConfigError(f"{label('cert_reqs')} needs "
                              f"{label('certfile')}")
        return
    if cfg["keyfile_password"] is not None and cfg["keyfile_password_file"]:
        raise ConfigError(f"give {label('keyfile_password')} or "
                          f"{label('keyfile_password_file')}, not both")
    if cfg["cert_reqs"] and cfg["ca_certs"] is None:
        raise ConfigError(f"{label('cert_reqs')} "
                          f"{['none', 'optional', 'required'][cfg['cert_reqs']]}"
                          f" needs {label('ca_certs')}")


def tls_options(cfg):
    """The engine's "tls" option: None without a certificate. Reads the
    password file (each time: a reload reads it anew)."""
    if cfg["certfile"] is None:
        return None
    password = cfg["keyfile_password"]
    if cfg["keyfile_password_file"] is not None:
        try:
            with open(cfg["keyfile_password_file"], encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the key's password file "
                              f"{cfg['keyfile_password_file']}: "
                              f"{getattr(exc, 'strerror', None) or exc}"
                              ) from None
    return {
        "certfile": cfg["certfile"],
        "keyfile": cfg["keyfile"],
        "password": password,
        "ca_certs": cfg["ca_certs"],
        "cert_reqs": cfg["cert_reqs"],
        "ciphers": cfg["ciphers"],
        "min_version": 13 if cfg["tls_min_version"] == "1.3" else 12,
        "handshake_timeout": cfg["tls_handshake_timeout"],
    }


def engine_options(cfg, access_log_fd, log):
    """The exact options dict the C engine takes."""
    return {
        "keepalive": cfg["keepalive"],
        "timeout_header": cfg["timeout_header"],
        "timeout_body": cfg["timeout_body"],
        "timeout_write": cfg["timeout_write"],
        "limit_request_line": cfg["limit_request_line"],
        "limit_request_fields": cfg["limit_request_fields"],
        "limit_request_field_size": cfg["limit_request_field_size"],
        "limit_request_body": cfg["limit_request_body"],
        "limit_concurrency": cfg["limit_concurrency"],
        "access_log_fd": access_log_fd,
        "server_header": cfg["server_header"],
        "static": static_options(cfg),
        "log": log,
        "ws_max_message": cfg["ws_max_message"],
        "ws_max_queue": cfg["ws_max_queue"],
        "ws_compression": cfg["ws_compression"],
        "tls": tls_options(cfg),
        "forwarded_allow_ips": ",".join(cfg["forwarded_allow_ips"]),
        "proxy_protocol": cfg["proxy_protocol"],
    }


def static_options(cfg):
    """The engine's "static" option: None without a mount."""
    if not cfg["static"]:
        return None
    return {
        "mounts": [tuple(m) for m in cfg["static"]],
        "max_age": cfg["static_max_age"],
        "immutable": cfg["static_immutable"],
        "index": cfg["static_index"],
        "dotfiles": cfg["static_dotfiles"],
        "types": [tuple(t) for t in cfg["static_types"]],
        "cache": cfg["static_cache"],
    }


class BindSpec:
    """A parsed bind address: kind is 'tcp', 'unix' or 'fd'; plain when
    spelt plain:ADDRESS (no TLS there, whatever the certificate)."""

    __slots__ = ("text", "kind", "host", "port", "path", "fd", "plain")

    def __init__(self, text, kind, host=None, port=None, path=None, fd=None,
                 plain=False):
        self.plain = plain
        self.text = text
        self.kind = kind
        self.host = host
        self.port = port
        self.path = path
        self.fd = fd

    def __repr__(self):
        return f"BindSpec({self.text!r})"

    def __eq__(self, other):
        if not isinstance(other, BindSpec):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_BIND = f"{DEFAULT_HOST}:{DEFAULT_PORT}"


def _parse_port(text, spec):
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
        raise ConfigError(
            f"invalid bind address {spec!r}: port must be 0-65535")
    return int(text)


def format_host_port(host, port):
    """HOST:PORT as --bind spells it ([HOST]:PORT for IPv6)."""
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_bind(spec):
    """Parse HOST:PORT, [IPv6]:PORT, HOST, unix:PATH or fd://N, each maybe
    behind plain: (that address does not speak TLS)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"invalid bind address {spec!r}")
    text = spec.strip()
    if text.startswith("plain:"):
        if not text[len("plain:"):].strip():
            raise ConfigError(f"invalid bind address {spec!r}: missing the "
                              "address after plain:")
        inner = parse_bind(text[len("plain:"):])
        inner.text, inner.plain = text, True
        return inner
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigError(
                f"invalid bind address {spec!r}: missing unix socket path")
        if "\0" in path:
            raise ConfigError(f"invalid bind address {spec!r}: NUL in path")
        return BindSpec(text, "unix", path=path)
    if text.startswith("fd://"):
        num = text[len("fd://"):]
        if not re.fullmatch(r"[0-9]{1,9}", num):
            raise ConfigError(
                f"invalid bind address {spec!r}: expected fd://N, "
                "N a file descriptor number")
        return BindSpec(text, "fd", fd=int(num))
    if text.startswith("["):
        m = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z_-]+)\](?::(.*))?", text)
        if not m:
            raise ConfigError(
                f"invalid bind address {spec!r}: expected [IPv6]:PORT")
        host = m.group(1)
        port = DEFAULT_PORT if m.group(2) is None else _parse_port(
            m.group(2), spec)
        if ":" not in host:
            raise ConfigError(
                f"invalid bind address {spec!r}: brackets are for IPv6 "
                "addresses")
        return BindSpec(text, "tcp", host=host, port=port)
    if "/" in text or " " in text:
        raise ConfigError(
            f"invalid bind address {spec!r}: expected HOST:PORT, "
            "[IPv6]:PORT, unix:PATH or fd://N")
    if text.count(":") > 1:
        raise ConfigError(
            f"invalid bind address {spec!r}: put IPv6 addresses in "
            "brackets, e.g. [::1]:8000")
    host, sep, port = text.partition(":")
    if not host:
        raise ConfigError(f"invalid bind address {spec!r}: missing host")
    port = _parse_port(port, spec) if sep else DEFAULT_PORT
    return BindSpec(text, "tcp", host=host, port=port)
