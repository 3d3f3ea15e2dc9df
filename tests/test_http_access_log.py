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
