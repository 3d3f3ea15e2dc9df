"""The WSGI application every server in bench/run.py runs, identically.

Routes (anything else is 404):

    GET  /          hello: 13 bytes, Content-Length set by the app
    GET  /10k       10 KiB body, Content-Length set
    GET  /1m        1 MiB body, Content-Length set
    GET  /stream    a generator of 100 x 1 KiB, no Content-Length
                    (so HTTP/1.1 servers send it chunked)
    POST /echo      the request body read whole from wsgi.input and sent
                    back, Content-Length set
    GET  /sleep50   hello after gevent.sleep(0.05): an application waiting
                    50 ms on a slow backend (for the servers that run it in
                    a greenlet: gevent imported on this route's first call,
                    so that the other servers never load it)

The bodies are built once at import: the benchmark measures the server, not
the application.

``whitenoise_app`` is ``app`` wrapped in WhiteNoise (the static-file
scenarios of the WhiteNoise servers): ``WhiteNoise(app,
root=$BENCH_STATIC_DIR, prefix="static/")``, so that ``/static/NAME`` is the
file NAME of that directory and every other path reaches ``app``.  It is
built on first access, so that the other servers never import whitenoise.
"""
import os

HELLO = b"Hello, World!"
BODY_10K = b"x" * 10240
BODY_1M = b"x" * (1024 * 1024)
CHUNK_1K = b"y" * 1024
NOT_FOUND = b"not found\n"


def _plain(n):
    return [("Content-Type", "text/plain"), ("Content-Length", str(n))]


H_HELLO = _plain(len(HELLO))
H_10K = _plain(len(BODY_10K))
H_1M = _plain(len(BODY_1M))
H_STREAM = [("Content-Type", "text/plain")]


def _stream():
    for _ in range(100):
        yield CHUNK_1K


_sleep = None


def _sleep50():
    global _sleep
    if _sleep is None:
        from gevent import sleep as _sleep
    _sleep(0.05)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        start_response("200 OK", H_HELLO)
        return [HELLO]
    if path == "/10k":
        start_response("200 OK", H_10K)
        return [BODY_10K]
    if path == "/1m":
        start_response("200 OK", H_1M)
        return [BODY_1M]
    if path == "/stream":
        start_response("200 OK", H_STREAM)
        return _stream()
    if path == "/sleep50":
        _sleep50()
        start_response("200 OK", H_HELLO)
        return [HELLO]
    if path == "/echo":
        try:
            n = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            n = 0
        body = environ["wsgi.input"].read(n) if n > 0 else b""
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", _plain(len(NOT_FOUND)))
    return [NOT_FOUND]


application = app


def __getattr__(name):
    # PEP 562: "apps:whitenoise_app" (gunicorn's and lichen's getattr)
    if name == "whitenoise_app":
        global whitenoise_app
        from whitenoise import WhiteNoise
        whitenoise_app = WhiteNoise(app, root=os.environ["BENCH_STATIC_DIR"],
                                    prefix="static/")
        return whitenoise_app
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
