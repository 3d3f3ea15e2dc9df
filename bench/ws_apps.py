"""The websocket applications of bench/ws.py, one for each kind of server,
doing the same thing:

    /echo       every message is sent back as it came (text as text)
    /broadcast  the socket joins CLIENTS, a global set; a text message
                that starts with "broadcast" is sent to every member of the
                set (the sender too); other messages are ignored
    GET /       (not a websocket) hello, 13 bytes

``app`` is the WSGI application (gevent-websocket's interface:
``environ['wsgi.websocket']``), for lichen in both modes and for
gevent-websocket on gevent.pywsgi; ``handler`` is the same for the
``websockets`` library's asyncio server.

Run as a script (with the peers' venv) it starts a peer server:

    python ws_apps.py gevent-websocket|websockets HOST PORT

gevent-websocket: gevent.pywsgi.WSGIServer with
handler_class=geventwebsocket.handler.WebSocketHandler, log=None.
websockets: websockets.asyncio.server.serve, compression=None (the clients
offer none anyway), ping_interval=None (no keep-alive pings: the other
servers send none), on asyncio's default event loop; the broadcast uses the
library's own websockets.broadcast (non-blocking writes to every socket).
"""
import sys

HELLO = b"Hello, World!"
CLIENTS = set()


# --------------------------------------------------------------- WSGI

def _echo(ws):
    while True:
        msg = ws.receive()
        if msg is None:
            return
        ws.send(msg)


def _broadcast(ws):
    CLIENTS.add(ws)
    try:
        while True:
            msg = ws.receive()
            if msg is None:
                return
            if isinstance(msg, str) and msg.startswith("broadcast"):
                for other in list(CLIENTS):
                    try:
                        other.send(msg)
                    except Exception:
                        CLIENTS.discard(other)
    finally:
        CLIENTS.discard(ws)


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    path = environ.get("PATH_INFO", "")
    if ws is None:
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(HELLO)))])
            return [HELLO]
        start_response("404 Not Found", [("Content-Length", "0")])
        return []
    try:
        if path == "/echo":
            _echo(ws)
        elif path == "/broadcast":
            _broadcast(ws)
        else:
            ws.close(1008, b"no such route")
    except Exception:
        # a client gone with a reset (the load tool's way of closing): some
        # servers raise from receive() then
        pass
    return []


# --------------------------------------------------------------- asyncio

async def handler(ws):
    import websockets
    path = ws.request.path
    try:
        if path == "/echo":
            async for msg in ws:
                await ws.send(msg)
        elif path == "/broadcast":
            CLIENTS.add(ws)
            try:
                async for msg in ws:
                    if isinstance(msg, str) and msg.startswith("broadcast"):
                        websockets.broadcast(CLIENTS, msg)
            finally:
                CLIENTS.discard(ws)
        else:
            await ws.close(1008, "no such route")
    except websockets.ConnectionClosed:
        pass


# --------------------------------------------------------------- launcher

def main(argv):
    server, host, port = argv[1], argv[2], int(argv[3])
    if server == "gevent-websocket":
        from gevent.pywsgi import WSGIServer
        from geventwebsocket.handler import WebSocketHandler
        WSGIServer((host, port), app, handler_class=WebSocketHandler,
                   log=None, backlog=4096).serve_forever()
    elif server == "websockets":
        import asyncio
        from websockets.asyncio.server import serve

        async def run():
            async with serve(handler, host, port, compression=None,
                             ping_interval=None, backlog=4096) as srv:
                await srv.serve_forever()
        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            pass
    else:
        sys.exit("unknown server %r" % server)


if __name__ == "__main__":
    main(sys.argv)
