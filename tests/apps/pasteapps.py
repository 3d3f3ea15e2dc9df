"""PasteDeploy application factories for tests/test_paste.py
(``use = call:pasteapps:NAME`` in an [app:main] section)."""

import json
import time

DELAY = 1.0  # seconds a sleeping request waits (the key delay: another)


def echo(global_conf, **settings):
    """Answers JSON: the path, the method, the body and [app:main]'s keys."""
    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.dumps({
            "path": environ["PATH_INFO"],
            "method": environ["REQUEST_METHOD"],
            "body": environ["wsgi.input"].read(length).decode(),
            "settings": settings,
            "server": environ["SERVER_SOFTWARE"],
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def sleepy(global_conf, **settings):
    """/gevent-sleep waits in gevent.sleep, /time-sleep in time.sleep
    (which cooperates only once the standard library is patched), /fast
    answers at once."""
    import gevent

    delay = float(settings.get("delay", DELAY))

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/gevent-sleep":
            gevent.sleep(delay)
        elif path == "/time-sleep":
            time.sleep(delay)
        body = path.encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app
