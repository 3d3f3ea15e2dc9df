"""The smallest WSGI application.

    lichen examples.hello            # or: lichen examples.hello:app
    curl http://127.0.0.1:8000/
"""


def application(environ, start_response):
    body = b"Hello, world!\n"
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


app = application
