"""The application of bench/tls.py, and its launcher of gevent.pywsgi.

``app`` is bench/apps.py's application (the same bytes: ``GET /`` is
``Hello, World!``, ``GET /1m`` one bytes object of 1 MiB) with one more
route:

    GET /file1m   the file $BENCH_TLS_FILE (1 MiB) opened for the request
                  and handed to wsgi.file_wrapper (read and sent in blocks
                  of 64 KiB where a server has no wrapper of its own)

As a script it runs gevent.pywsgi over TLS, with one SSLContext for all
connections:

    python tls_apps.py gevent.pywsgi HOST PORT CERTFILE KEYFILE

the context being ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)``
with the certificate and key loaded, handed to
``WSGIServer(..., ssl_context=ctx, log=None)``.  ``gevent.pywsgi+nodelay``
is the same with TCP_NODELAY set on each accepted socket (as in
bench/launch.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402

FILE = os.environ.get("BENCH_TLS_FILE", "")
BLOCK = 65536


def _blocks(f):
    try:
        while True:
            data = f.read(BLOCK)
            if not data:
                return
            yield data
    finally:
        f.close()


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/file1m":
        f = open(FILE, "rb")
        size = os.fstat(f.fileno()).st_size
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(f, BLOCK) if wrapper else _blocks(f)
    return apps.app(environ, start_response)


application = app


def main(argv):
    name, host, port, certfile, keyfile = argv[1:6]
    if name not in ("gevent.pywsgi", "gevent.pywsgi+nodelay"):
        sys.exit("unknown server %r" % name)
    import socket
    import ssl

    from gevent.pywsgi import WSGIServer

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    cls = WSGIServer
    if name.endswith("+nodelay"):
        class NoDelayServer(WSGIServer):
            def wrap_socket_and_handle(self, client_socket, address):
                client_socket.setsockopt(socket.IPPROTO_TCP,
                                         socket.TCP_NODELAY, 1)
                return super().wrap_socket_and_handle(client_socket, address)
        cls = NoDelayServer
    cls((host, int(port)), app, log=None, ssl_context=ctx,
        backlog=4096).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
