"""The configuration file (lichen -c FILE): Python, as gunicorn's.

The file is run as a module and its module-level names are the settings,
spelt as the options' Python names (keepalive = 5, certfile = "...",
static = ["/static=./public"]) or the command line's other settings (bind,
chdir, wsgi_app, worker_class, ...). As gunicorn does, names that are no
setting are left alone (the file's imports, helpers and variables); a
gunicorn setting that lichen does not have is ignored with a warning, and
so is a name that looks like a misspelt setting. Values are checked by
lichen.config.validate(), whose messages name the file and the setting.
"""

import difflib
import importlib
import os
import runpy
import types

from .config import OPTIONS_BY_NAME

__all__ = ["ConfigFileError", "ConfigFile", "load", "COMMAND_LINE_SETTINGS"]

# The command line's settings that are not server options: name -> what
# the value must be.
COMMAND_LINE_SETTINGS = {
    "bind": "an address or a list of addresses",
    "wsgi_app": "MODULE:NAME",
    "chdir": "a directory",
    "worker_class": "gevent or sync",
    "gevent": "True or False",
    "no_monkey_patch": "True or False",
    "factory": "True or False",
}

# gunicorn's names for lichen's options.
ALIASES = {
    "accesslog": "access_log",
    "loglevel": "log_level",
    "pidfile": "pid",
    "worker_connections": "limit_concurrency",
}

# gunicorn's settings (release 23 and later): those lichen has under the
# same name or an alias are taken, the others warned about.
GUNICORN_SETTINGS = frozenset("""
access_log_format accesslog asgi_disconnect_grace_period asgi_lifespan
asgi_loop backlog bind ca_certs capture_output casefold_http_method
cert_reqs certfile chdir check_config child_exit ciphers config
control_socket control_socket_disable control_socket_mode daemon
default_proc_name dirty_apps dirty_graceful_timeout dirty_post_fork
dirty_threads dirty_timeout dirty_worker_exit dirty_worker_init
dirty_workers disable_redirect_access_to_syslog do_handshake_on_connect
dogstatsd_tags enable_backlog_metric enable_stdio_inheritance errorlog
forwarded_allow_ips forwarder_headers graceful_timeout group header_map
http2_cleartext http2_initial_window_size http2_max_concurrent_streams
http2_max_frame_size http2_max_header_list_size http_parser
http_protocols initgroups keepalive keyfile limit_request_field_size
limit_request_fields limit_request_line logconfig logconfig_dict
logconfig_json logger_class loglevel max_requests max_requests_jitter
nworkers_changed on_dirty_starting on_exit on_reload on_starting paste
permit_obsolete_folding permit_unconventional_http_method
permit_unconventional_http_version pidfile post_fork post_request
post_worker_init pre_exec pre_fork pre_request preload_app print_config
proc_name protocol proxy_allow_ips proxy_protocol pythonpath raw_env
raw_paste_global_conf reload reload_engine reload_extra_files reuse_port
root_path secure_scheme_headers sendfile spew ssl_context ssl_version
statsd_host statsd_prefix strip_header_spaces suppress_ragged_eofs
syslog syslog_addr syslog_facility syslog_prefix threads timeout
tmp_upload_dir umask user uwsgi_allow_ips websocket_max_message_size
when_ready worker_abort worker_class worker_connections worker_exit
worker_int worker_tmp_dir workers wsgi_app
""".split())

# What to say of some gunicorn settings lichen does not have.
_HINTS = {
    "errorlog": "lichen's error log goes to stderr",
    "config": "a configuration file does not name another",
}


class ConfigFileError(Exception):
    """The file cannot be read or run, or a setting's value has the wrong
    shape; str() is one line naming the file."""


class ConfigFile:
    """What a file set: options (name -> value, for validate()), the
    command line's settings, and one warning line per ignored setting."""

    def __init__(self, label):
        self.label = label  # the file as given, for messages
        self.options = {}
        self.settings = {}
        self.warnings = []


def _run(location):
    """The module-level names of the file (or python:MODULE)."""
    if location.startswith("python:"):
        name = location[len("python:"):]
        try:
            return vars(importlib.import_module(name))
        except Exception as exc:
            raise ConfigFileError(f"cannot load configuration {location}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    path = location[len("file:"):] if location.startswith("file:") \
        else location
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise ConfigFileError(f"cannot read configuration file {path}: "
                              f"{what}")
    try:
        return runpy.run_path(path, run_name="__config__")
    except SyntaxError as exc:
        raise ConfigFileError(f"syntax error in configuration file "
                              f"{path}, line {exc.lineno}: {exc.msg}"
                              ) from exc
    except OSError as exc:
        raise ConfigFileError(f"cannot read configuration file {path}: "
                              f"{(exc.strerror or str(exc)).lower()}"
                              ) from exc
    except (Exception, SystemExit) as exc:
        raise ConfigFileError(f"error in configuration file {path}: "
                              f"{type(exc).__name__}: {exc}") from exc


def _ignorable(value):
    """A helper rather than a setting: modules, functions, classes."""
    return isinstance(value, (types.ModuleType, type, types.FunctionType,
                              types.BuiltinFunctionType))


def load(location):
    """Run the configuration file at location ("python:MODULE" for a
    module) and sort its names. Raises ConfigFileError."""
    label = location
    if location.startswith("file:"):
        label = location[len("file:"):]
    result = ConfigFile(label)
    known = set(OPTIONS_BY_NAME) | set(COMMAND_LINE_SETTINGS)
    spelt = {}  # setting -> the name the file gave it
    for name, value in _run(location).items():
        if name.startswith("_") or name != name.lower():
            continue
        target = ALIASES.get(name, name)
        if target in known:
            if target in spelt:
                first, second = sorted((spelt[target], name))
                raise ConfigFileError(f"{label}: {first} and {second} are "
                                      "one setting: give one of them")
            spelt[target] = name
            if target in OPTIONS_BY_NAME:
                result.options[target] = value
            else:
                result.settings[target] = _setting(label, target, value)
        elif name in GUNICORN_SETTINGS:
            if value in (None, False, "", (), [], {}, 0) or (
                    name == "errorlog" and value == "-"):
                continue  # gunicorn's default, or off: nothing ignored
            hint = _HINTS.get(name, "a gunicorn server hook lichen does not "
                                    "call" if callable(value) else
                                    "a gunicorn setting lichen does not "
                                    "have")
            result.warnings.append(f"{label}: {name}: {hint}; ignored")
        elif not _ignorable(value):
            close = difflib.get_close_matches(
                name, sorted(known | set(ALIASES)), n=1, cutoff=0.8)
            if close:
                result.warnings.append(f"{label}: {name} is not a setting "
                                       f"(did you mean {close[0]}?); "
                                       "ignored")
    return result


def _setting(label, name, value):
    """A command-line setting's value, checked for its shape."""
    def bad():
        raise ConfigFileError(f"{label}: invalid value for {name}: "
                              f"{value!r} (expected "
                              f"{COMMAND_LINE_SETTINGS[name]})")

    if name == "bind":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value or not all(
                isinstance(v, str) for v in value):
            bad()
        return list(value)
    if name in ("gevent", "no_monkey_patch", "factory"):
        if not isinstance(value, bool):
            bad()
        return value
    if name == "chdir":
        if not isinstance(value, (str, os.PathLike)) or not value:
            bad()
        return os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        bad()
    return value
