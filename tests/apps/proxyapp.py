"""The application tests/test_behind_proxy.py serves behind nginx and
HAProxy.

/env          what the proxy made of the request: the keys the proxy
              headers set, the headers themselves, and which server
              answered (LICHEN_TEST_NAME in its environment)
/work?SECONDS the same after a sleep (a request that stays in flight)
/stream?GATE  "first" at once; "last" only once the file GATE exists,
              which the client makes when it has read "first"
/flood?MIB    that many MiB of zeros, 64 KiB a piece, as fast as the client
              (or the proxy) takes them; /produced: how many bytes the last
              flood has produced so far; /flood-unbuffered?MIB the same
              with "X-Accel-Buffering: no"
a websocket   echoes each message; the message "env" gets /env's answer
"""

import json
import os
import time

NAME = os.environ.get("LICHEN_TEST_NAME", "")
KEYS = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST",
        "SERVER_NAME", "SERVER_PORT", "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO", "HTTP_CONNECTION", "SERVER_PROTOCOL")
GATE_WAIT = 10.0
PIECE = b"\0" * 65536
produced = 0


def describe(environ):
    info = {k: environ.get(k) for k in KEYS}
    info["server"] = NAME
    info["pid"] = os.getpid()
    return json.dumps(info).encode()


def stream(gate):
    yield b"first\n"
    deadline = time.monotonic() + GATE_WAIT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            yield b"gate never opened\n"
            return
        time.sleep(0.01)
    yield b"last\n"


def flood(mib):
    global produced
    produced = 0
    for _ in range(mib * 16):
        yield PIECE
        produced += len(PIECE)


def echo(ws):
    while True:
        message = ws.receive()
        if message is None:
            return []
        if message == "env":
            message = describe(ws.environ).decode()
        ws.send(message)


def application(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is not None:
        return echo(ws)
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream(query)
    if path in ("/flood", "/flood-unbuffered"):
        mib = int(query)
        headers = [("Content-Type", "application/octet-stream"),
                   ("Content-Length", str(mib << 20))]
        if path == "/flood-unbuffered":
            headers.append(("X-Accel-Buffering", "no"))
        start_response("200 OK", headers)
        return flood(mib)
    if path == "/produced":
        body = b"%d" % produced
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/work":
        time.sleep(float(query or 0))
    elif path != "/env":
        start_response("404 Not Found", [("Content-Length", "0")])
        return []
    body = describe(environ)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
