"""The hello-world WSGI app every server in bench/hello.py runs, and the
launchers of the peer servers (run with the peers' interpreter):

    python hello_app.py bjoern HOST PORT
    python hello_app.py gevent HOST PORT
    python hello_app.py gevent-nodelay HOST PORT

gevent-nodelay is gevent.pywsgi with TCP_NODELAY set on each accepted
socket, nothing else changed: pywsgi sends the head and the body of this
response in two send calls, and with Nagle's algorithm on (the default) the
second one waits for the client's delayed ACK (~40 ms on Linux).
"""
import sys

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


def main(argv):
    server, host, port = argv[1], argv[2], int(argv[3])
    if server == "bjoern":
        import bjoern
        bjoern.run(app, host, port)
    elif server == "gevent":
        from gevent.pywsgi import WSGIServer
        # default settings; log=None so that access logging is not measured
        WSGIServer((host, port), app, log=None).serve_forever()
    elif server == "gevent-nodelay":
        import socket
        from gevent.pywsgi import WSGIServer

        class NoDelayServer(WSGIServer):
            def handle(self, sock, address):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return super().handle(sock, address)

        NoDelayServer((host, port), app, log=None).serve_forever()
    else:
        sys.exit("unknown server %r" % server)


if __name__ == "__main__":
    main(sys.argv)
