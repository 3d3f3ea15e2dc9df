"""Helpers of the websocket example and framework tests: run an
application under `lichen --gevent` in a subprocess, optionally with
gevent-websocket hidden from it.

LICHEN_WS_REFERENCE=1 in the environment serves the same applications with
gevent.pywsgi instead (geventwebsocket.handler.WebSocketHandler when it may
be imported and the test wants it), printing lichen's "Listening at" line:
a reference to tell a test's mistake from lichen's."""

import os

from helpers_cli import PYTHON, REPO, LichenProcess, child_env

REFERENCE = os.environ.get("LICHEN_WS_REFERENCE", "") not in ("", "0")

# Runs as `python -c BOOT ARGS...`: ARGS are lichen's.
BOOT = r'''
import os, sys
if os.environ.get("WSBOOT_HIDE_GEVENTWEBSOCKET") == "1":
    # As if gevent-websocket were not installed: importing it raises
    # ModuleNotFoundError, importlib.util.find_spec() returns None.
    sys.modules["geventwebsocket"] = None
sys.argv[0] = "lichen"
if os.environ.get("WSBOOT_REFERENCE") != "1":
    from lichen.cli import main
    sys.exit(main())

from gevent import monkey
monkey.patch_all()
import argparse, signal
import gevent
from gevent.pywsgi import WSGIServer, WSGIHandler
p = argparse.ArgumentParser()
p.add_argument("--gevent", action="store_true")
p.add_argument("--chdir")
p.add_argument("-b", "--bind")
p.add_argument("app")
args, _ = p.parse_known_args()
if args.chdir:
    os.chdir(args.chdir)
sys.path.insert(0, os.getcwd())
from lichen.cli import load_app
app = load_app(args.app)
handler = WSGIHandler
if os.environ.get("WSBOOT_WEBSOCKET_HANDLER") == "1":
    try:
        from geventwebsocket.handler import WebSocketHandler as handler
    except ImportError:
        pass
host, port = args.bind.rsplit(":", 1)
server = WSGIServer((host, int(port)), app, handler_class=handler, log=None)
server.start()
sys.stderr.write("[reference] [%d] [INFO] Listening at: http://%s:%d (%d)\n"
                 % (os.getpid(), host, server.server_port, os.getpid()))
sys.stderr.flush()
gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(server.stop, 1))
server.serve_forever()
'''


def gevent_server(app, *args, chdir=None, hide_gevent_websocket=False,
                  reference_handler=True, env=None):
    """`lichen --gevent -b 127.0.0.1:0 [--chdir DIR] ARGS APP` in a
    subprocess (a LichenProcess); gevent-websocket hidden from it when
    hide_gevent_websocket. reference_handler: under LICHEN_WS_REFERENCE,
    whether gevent.pywsgi gets gevent-websocket's WebSocketHandler."""
    extra = dict(env or {})
    extra["WSBOOT_HIDE_GEVENTWEBSOCKET"] = "1" if hide_gevent_websocket else "0"
    extra["WSBOOT_REFERENCE"] = "1" if REFERENCE else "0"
    extra["WSBOOT_WEBSOCKET_HANDLER"] = "1" if reference_handler else "0"
    lichen_args = ["--gevent", "-b", "127.0.0.1:0"]
    if chdir:
        lichen_args += ["--chdir", str(chdir)]
    return LichenProcess([*lichen_args, *args, app],
                         command=[PYTHON, "-c", BOOT], cwd=REPO,
                         env=child_env(**extra))
