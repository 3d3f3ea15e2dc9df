"""WSGI application for the gunicorn worker class tests."""

import os
import time


def _mark(name):
    """Leave a file in GUNICORN_TEST_DIR: the tests wait for it."""
    directory = os.environ.get("GUNICORN_TEST_DIR")
    if directory:
        with open(os.path.join(directory, f"{name}-{os.getpid()}"), "w"):
            pass


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/peer":
        body = f"{os.getpid()} {environ.get('REMOTE_PORT')}".encode()
    elif path == "/sleep":
        # time.sleep: blocks the native worker, cooperates in the gevent
        # worker (monkey-patched).
        _mark("inflight")
        time.sleep(float(query or 1))
        body = b"slept\n"
    elif path == "/echo":
        # Reads the whole body: the request waits on its client meanwhile.
        _mark("reading")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = str(len(environ["wsgi.input"].read(size))).encode()
    elif path == "/gsleep":
        import gevent
        gevent.sleep(float(query or 0.5))
        body = b"slept\n"
    elif path == "/error":
        raise RuntimeError("deliberate failure for the error log")
    else:
        body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
