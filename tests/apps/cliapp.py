"""WSGI application for the command line and API tests."""

import json
import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/slow":
        # Sleeps without yielding to the loop: the request stays in flight.
        time.sleep(float(environ.get("QUERY_STRING") or 1))
        body = b"slow done\n"
    elif path == "/environ":
        keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
                "SERVER_PORT", "SERVER_SOFTWARE", "REQUEST_METHOD",
                "wsgi.url_scheme")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
    elif path == "/error":
        raise RuntimeError("deliberate failure for the error log")
    else:
        body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


app = application

not_callable = 42


def make_app():
    """A factory for --factory and MODULE:make_app()."""
    return application


def broken_factory():
    raise ValueError("factory says no")
