"""A chat over websockets: Flask serves the page, /ws is the websocket.

    lichen --gevent --bind 127.0.0.1:8000 examples.chat.app:app

then open http://127.0.0.1:8000/ in two browser windows (see README.md).

The websocket view is written in gevent-websocket's style: the server puts
the connection in request.environ['wsgi.websocket'] and the view loops on
receive(). It runs unchanged under lichen --gevent and under gevent.pywsgi
with geventwebsocket.handler.WebSocketHandler.

Every message a client sends is broadcast to every connected client
(itself included) as {"type": "message", "text": ...}; whenever a client
joins or leaves, everybody gets {"type": "presence", "online": N}.
"""

import json

from flask import Flask, render_template, request

try:
    from geventwebsocket.exceptions import WebSocketError
except ImportError:  # lichen's WebSocketError is an OSError then
    WebSocketError = OSError

MAX_TEXT = 1000  # characters of one chat message

app = Flask(__name__)
clients = set()  # the open websockets


def broadcast(payload):
    data = json.dumps(payload)
    for ws in list(clients):
        try:
            ws.send(data)
        except WebSocketError:
            clients.discard(ws)


@app.get("/")
def index():
    return render_template("index.html")


@app.get("/online")
def online():
    """How many websockets the server holds (for monitoring, and tests)."""
    return {"online": len(clients)}


# websocket=True: Werkzeug's routing matches a request carrying
# "Upgrade: websocket" only against rules marked so (else: 400).
@app.route("/ws", websocket=True)
def chat():
    ws = request.environ.get("wsgi.websocket")
    if ws is None:
        return "a websocket handshake was expected\n", 400
    clients.add(ws)
    try:
        broadcast({"type": "presence", "online": len(clients)})
        while True:
            try:
                message = ws.receive()
            except WebSocketError:
                break
            if message is None:  # the client closed, or went away
                break
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            text = message.strip()[:MAX_TEXT]
            if text:
                broadcast({"type": "message", "text": text})
    finally:
        clients.discard(ws)
        broadcast({"type": "presence", "online": len(clients)})
    return ""
