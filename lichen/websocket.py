"""Websockets: what the engine hands an application beside
``environ['wsgi.websocket']`` (docs/websockets.md).

``WebSocketError`` is what ``send()`` raises once the websocket is closed.
It subclasses gevent-websocket's ``WebSocketError`` when gevent-websocket
is installed, so that applications written for it keep catching it; else
``OSError``, as gevent-websocket's does.
"""

import importlib.util
import socket

__all__ = ["WebSocketError", "TakeoverSocket"]


def _base():
    if importlib.util.find_spec("geventwebsocket") is None:
        return OSError
    try:
        from geventwebsocket.exceptions import WebSocketError as base
    except Exception:  # installed but broken (no gevent): ours stands alone
        return OSError
    return base


class WebSocketError(_base()):
    """The websocket is closed, or its client went away."""


class TakeoverSocket:
    """``environ['gunicorn.socket']`` of a websocket request, for libraries
    that speak the protocol themselves (simple-websocket, Flask-Sock): its
    first use takes the connection over, the engine then sends nothing on
    it (no 101 either), and the application closes it. Until then the
    engine may still serve the request through ``wsgi.websocket``."""

    __slots__ = ("_ws", "_sock")

    def __init__(self, ws):
        self._ws = ws
        self._sock = None

    def _take(self):
        if self._sock is None:
            # socket.socket as it is now: gevent's, once monkey-patched
            sock = socket.socket(fileno=self._ws._takeover())
            sock.settimeout(None)
            self._sock = sock
        return self._sock

    def fileno(self):
        return self._take().fileno()

    def __getattr__(self, name):
        return getattr(self._take(), name)

    def __repr__(self):
        state = "taken over" if self._sock is not None else "not taken"
        return f"<lichen TakeoverSocket {state}>"
