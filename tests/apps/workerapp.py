"""WSGI application for the worker process tests: each answer names the
worker (its pid) that gave it."""

import os
import time

# Set at import: a worker that imported the application anew (a reload)
# has another value than one forked from a master that preloaded it.
LOADED = f"{os.getpid()}-{time.monotonic_ns()}"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        # Blocks the worker's loop (native mode): the watchdog's case.
        time.sleep(float(query or 1))
    body = f"{os.getpid()} {LOADED}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


if os.environ.get("WORKERAPP_FAIL_FILE") and \
        os.path.exists(os.environ["WORKERAPP_FAIL_FILE"]):
    raise RuntimeError("told to fail at start-up")
