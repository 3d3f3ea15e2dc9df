"""Applications written for gevent, served by `lichen --gevent` in the
gevent mode tests. Nothing here knows it runs under lichen: the code is
what it would be under gevent.pywsgi or gunicorn -k gevent."""

import os
import socket
import threading
import time
import urllib.request

import gevent
from gevent.queue import Queue

DELAY = float(os.environ.get("GEVENT_APP_DELAY", "0.5"))


def sleepy(environ, start_response):
    """Long-poll: the answer comes after DELAY seconds of gevent.sleep."""
    gevent.sleep(DELAY)
    body = b"slept\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def blocking(environ, start_response):
    """time.sleep, threads and urllib: they cooperate only because the
    standard library was monkey-patched before this module was imported."""
    path = environ["PATH_INFO"]
    if path == "/patched":
        body = ("%s %s" % (time.sleep.__module__,
                           socket.socket.__module__)).encode()
    elif path == "/thread":
        done = []
        worker = threading.Thread(target=lambda: (time.sleep(DELAY),
                                                  done.append(1)))
        worker.start()
        worker.join()
        body = b"slept\n" if done else b"not joined\n"
    elif path == "/urllib":
        with urllib.request.urlopen(os.environ["BACKEND_URL"] + "/?u",
                                    timeout=30) as r:
            body = r.read() + b" slept\n"
    else:
        time.sleep(DELAY)
        body = b"slept\n"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def slow_service(environ, start_response):
    """The slow backend of the Flask application below."""
    gevent.sleep(DELAY)
    body = ("backend %s" % environ["QUERY_STRING"]).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def make_flask():
    """A Flask view calling a slow backend with requests (monkey-patched
    sockets): BACKEND_URL in the environment."""
    import requests
    from flask import Flask, request

    app = Flask(__name__)
    session = requests.Session()
    backend = os.environ["BACKEND_URL"]

    @app.get("/proxy")
    def proxy():
        r = session.get(backend, params={"q": request.args.get("q", "")},
                        timeout=30)
        return "view got: " + r.text

    return app


# -- a publish/subscribe chat over long-polling -----------------------------
_subscribers = []


def chat(environ, start_response):
    """GET /wait blocks until a message is posted; POST /post with the
    message as the body hands it to every waiting client."""
    path = environ["PATH_INFO"]
    if path == "/wait":
        q = Queue()
        _subscribers.append(q)
        try:
            message = q.get(timeout=30)
        finally:
            _subscribers.remove(q)
        start_response("200 OK", [("Content-Length", str(len(message)))])
        return [message]
    if path == "/waiting":
        body = str(len(_subscribers)).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/post":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        message = environ["wsgi.input"].read(length)
        for q in list(_subscribers):
            q.put(message)
        body = b"sent to %d" % len(_subscribers)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
