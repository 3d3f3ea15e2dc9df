"""The access_log option: one line per request."""
from support import Conn, build, wait_for


def test_access_log_to_file(serve, tmp_path):
    path = tmp_path / 'access.log'
    srv = serve(lambda e, s: (s('201 Created', []), [b'abc'])[1], access_log=str(path))
    with Conn(srv.address) as c:
        c.send(build('GET', '/logged/one?q=1') + build('POST', '/logged/two', body=b'xyz'))
        assert c.read_response().status == 201
        assert c.read_response().status == 201

    def lines():
        return path.read_text().splitlines() if path.exists() else []
    assert wait_for(lambda: len(lines()) >= 2, 3), lines()
    one, two = lines()[:2]
    assert 'GET /logged/one?q=1' in one and ' 201 ' in one, one
    assert 'POST /logged/two' in two and ' 201 ' in two, two


def test_no_access_log_by_default(serve, capfd):
    srv = serve(lambda e, s: (s('200 OK', []), [b'abc'])[1])
    with Conn(srv.address) as c:
        c.send(build('GET', '/quiet-path'))
        assert c.read_response().status == 200
    out, err = capfd.readouterr()
    assert '/quiet-path' not in out + err


class _CallingServer:
    """A lichen.Server whose engine calls access(environ, status, sent,
    seconds) for each request instead of writing a line."""

    def __init__(self, app, access):
        import threading

        import lichen

        class Server(lichen.Server):
            def _engine_options(self):
                return dict(super()._engine_options(),
                            access_log_call=access)

        self.srv = Server(app, '127.0.0.1', 0)
        self.thread = threading.Thread(target=self.srv.serve_forever)
        self.thread.start()

    def close(self):
        self.srv.stop(5)
        self.thread.join(10)
        self.srv.close()


def test_access_log_call_gets_the_request_and_may_fail(monkeypatch):
    import sys

    import lichen
    calls, unraisable = [], []
    monkeypatch.setattr(sys, 'unraisablehook',
                        lambda u: unraisable.append(u.exc_value))

    def access(environ, status, sent, seconds):
        calls.append((environ['REQUEST_METHOD'], environ['RAW_URI'],
                      environ.get('HTTP_X_TRACE'), status, sent, seconds))
        if environ['PATH_INFO'] == '/raise':
            raise ValueError('access logger failed')

    def app(environ, start_response):
        start_response('200 OK' if environ['PATH_INFO'] != '/empty'
                       else '204 No Content', [])
        return [b'abc'] if environ['PATH_INFO'] != '/empty' else []

    server = _CallingServer(app, access)
    try:
        with Conn(server.srv.address) as c:
            for path in ('/one?q=1', '/raise', '/empty'):
                c.send(build('GET', path, [('X-Trace', 't1')]))
                assert c.read_response().status in (200, 204)
    finally:
        server.close()
    assert [call[:5] for call in calls] == [
        ('GET', '/one?q=1', 't1', 200, 3),
        ('GET', '/raise', 't1', 200, 3),
        ('GET', '/empty', 't1', 204, None)]
    assert all(0 <= call[5] < 5 for call in calls)
    # A logger that raises is reported and the connection went on.
    assert [str(e) for e in unraisable] == ['access logger failed']
    assert not any(lichen.live_counts().values()), lichen.live_counts()
