"""Websocket applications written for gevent, served by `lichen --gevent`
in tests/test_websocket_frameworks.py. Nothing here knows it runs under
lichen: the code is what the frameworks' documentation shows.

sock_app: Flask-Sock (simple-websocket takes the connection over).
sio_app: Flask-SocketIO with async_mode='gevent' (python-engineio uses
gevent-websocket's environ['wsgi.websocket'] when geventwebsocket can be
imported, else simple-websocket on the socket it takes over)."""

from flask import Flask, request
from flask_sock import Sock
from flask_socketio import SocketIO, emit

# -- Flask-Sock ---------------------------------------------------------------

sock_app = Flask("sock_app")
sock = Sock(sock_app)


@sock.route("/echo")
def echo(ws):
    while True:
        data = ws.receive()
        ws.send(data)


@sock_app.get("/")
def sock_index():
    return "plain HTTP beside the websocket\n"


# -- Flask-SocketIO -------------------------------------------------------------

sio_app = Flask("sio_app")
socketio = SocketIO(sio_app, async_mode="gevent")


@sio_app.get("/info")
def sio_info():
    """Which websocket implementation python-engineio chose."""
    from engineio.async_drivers import gevent as driver
    return {
        "async_mode": socketio.async_mode,
        "websocket": ("gevent-websocket" if driver.SimpleWebSocketWSGI is None
                      else "simple-websocket"),
    }


@socketio.on("connect")
def on_connect():
    emit("welcome", {"sid": request.sid})


@socketio.on("echo")
def on_echo(data):
    emit("echoed", data)


@socketio.on("say")
def on_say(data):
    emit("said", data, broadcast=True)


@socketio.on("double")
def on_double(number):
    return number * 2


# -- gevent-websocket's style (examples/chat's) -----------------------------------

gws_app = Flask("gws_app")


@gws_app.route("/shout", websocket=True)
def shout():
    """One message back in capitals, then the view ends the websocket and
    returns a response, as Flask views written for gevent-websocket do
    (gevent-websocket ignores it: its start_response does nothing)."""
    ws = request.environ["wsgi.websocket"]
    message = ws.receive()
    ws.send(message.upper())
    return ""
