"""Starts one peer server on bench/apps.py:app (run with the peers' venv):

    python launch.py SERVER HOST PORT [WORKERS]

SERVER is one of bjoern, fastwsgi, meinheld, gevent, gevent-nodelay,
waitress.  (gunicorn, granian and pyuwsgi are started from their own
command lines by run.py.)  Every server runs with its defaults, except:
access logging off where a server has it on by default, and limits on
connections raised where a default would refuse the 1,000 concurrent
connections of the connection-per-request scenario or the 5,000 idle ones.

gevent-nodelay is gevent.pywsgi with TCP_NODELAY set on each accepted
socket, nothing else changed: pywsgi sends the head and the body of a small
response in two send calls, and with Nagle's algorithm on (the default) the
second one waits for the client's delayed ACK (~40 ms on Linux).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apps import app  # noqa: E402


def main(argv):
    server, host, port = argv[1], argv[2], int(argv[3])
    workers = int(argv[4]) if len(argv) > 4 else 1
    if workers != 1 and server != "fastwsgi":
        sys.exit("%s: one worker only" % server)
    if server == "bjoern":
        import bjoern
        bjoern.run(app, host, port)
    elif server == "fastwsgi":
        import fastwsgi
        if workers > 1:
            fastwsgi.run(wsgi_app=app, host=host, port=port, workers=workers)
        else:
            fastwsgi.run(wsgi_app=app, host=host, port=port)
    elif server == "meinheld":
        from meinheld import server as m
        m.set_access_logger(None)
        m.set_backlog(4096)
        m.set_max_content_length(64 * 1024 * 1024)
        m.listen((host, port))
        m.run(app)
    elif server in ("gevent", "gevent-nodelay"):
        import socket
        from gevent.pywsgi import WSGIServer

        cls = WSGIServer
        if server == "gevent-nodelay":
            class NoDelayServer(WSGIServer):
                def handle(self, sock, address):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return super().handle(sock, address)
            cls = NoDelayServer
        # log=None so that access logging is not measured
        cls((host, port), app, log=None).serve_forever()
    elif server == "waitress":
        import waitress
        # default 4 threads; connection_limit raised from 100; poll()
        # instead of select(), which fails past 1024 descriptors
        waitress.serve(app, host=host, port=port, connection_limit=10000,
                       backlog=4096, asyncore_use_poll=True, _quiet=True)
    else:
        sys.exit("unknown server %r" % server)


if __name__ == "__main__":
    main(sys.argv)
