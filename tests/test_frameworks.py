"""Flask and Django applications served end to end by the lichen command,
in native mode and in gevent mode (--gevent)."""

import json
import signal

import pytest

from helpers_cli import APPS, LichenProcess, request

pytest.importorskip("flask")
pytest.importorskip("django")

# Each framework's routes: the Django project wants trailing slashes.
APPS_UNDER_TEST = {
    "flask": {"spec": "flaskapp:app", "hello": "/hello", "form": "/form",
              "json": "/json", "stream": "/stream"},
    "django": {"spec": "djangoapp.wsgi", "hello": "/hello/",
               "form": "/form/", "json": "/json/", "stream": "/stream/"},
}


@pytest.fixture(scope="module",
                params=[(name, mode) for name in sorted(APPS_UNDER_TEST)
                        for mode in ("native", "gevent")],
                ids=lambda p: "-".join(p))
def framework(request):
    name, mode = request.param
    routes = APPS_UNDER_TEST[name]
    extra = ["--gevent"] if mode == "gevent" else []
    proc = LichenProcess(extra + ["--chdir", str(APPS), "-b", "127.0.0.1:0",
                                  routes["spec"]])
    yield proc, routes, name
    proc.signal(signal.SIGTERM)
    try:
        assert proc.wait(15) == 0, proc.stderr
    finally:
        proc.kill()


def test_get_with_query(framework):
    proc, routes, _ = framework
    resp = request(proc.urls[0], path=routes["hello"] + "?name=caf%C3%A9")
    assert resp.status == 200
    assert resp.text == "Hello, caf\u00e9!"
    assert resp.header("Content-Type").startswith("text/")


def test_post_form(framework):
    proc, routes, _ = framework
    body = "a=1&a=2&b=z+y&c=%E2%9C%93"
    resp = request(proc.urls[0], method="POST", path=routes["form"],
                   body=body.encode(),
                   headers={"Content-Type":
                            "application/x-www-form-urlencoded"})
    assert resp.status == 200, resp.body
    data = json.loads(resp.body)
    assert data["form"] == {"a": ["1", "2"], "b": ["z y"], "c": ["\u2713"]}
    assert data["content_type"].startswith("application/x-www-form-urlencoded")


def test_large_post_form(framework):
    proc, routes, _ = framework
    value = "x" * 200_000
    resp = request(proc.urls[0], method="POST", path=routes["form"],
                   body=f"big={value}".encode(),
                   headers={"Content-Type":
                            "application/x-www-form-urlencoded"})
    assert resp.status == 200, resp.body[:200]
    assert json.loads(resp.body)["form"] == {"big": [value]}


def test_not_found(framework):
    proc, _, _ = framework
    resp = request(proc.urls[0], path="/no/such/page")
    assert resp.status == 404


def test_json(framework):
    proc, routes, _ = framework
    resp = request(proc.urls[0], path=routes["json"])
    assert resp.status == 200
    assert resp.header("Content-Type") == "application/json"
    assert json.loads(resp.body) == {"ok": True, "items": [0, 1, 2, 3, 4],
                                     "text": "caf\u00e9"}


def test_streamed_response(framework):
    proc, routes, _ = framework
    resp = request(proc.urls[0], path=routes["stream"] + "?n=500")
    assert resp.status == 200
    # No length known in advance: chunked (HTTP/1.1) or close-delimited.
    assert resp.header("Content-Length") is None
    assert resp.text == "".join(f"chunk {i}\n" for i in range(500))


def test_keepalive_requests_on_one_connection(framework):
    from helpers_cli import connection

    proc, routes, _ = framework
    conn = connection(proc.urls[0])
    try:
        for i in range(5):
            conn.request("GET", routes["hello"] + f"?name=n{i}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert not resp.will_close, "server closed a keep-alive connection"
            assert resp.read().decode() == f"Hello, n{i}!"
    finally:
        conn.close()


def test_flask_view_error_is_500_and_logged():
    proc = LichenProcess(["--chdir", str(APPS), "-b", "127.0.0.1:0",
                          "flaskapp:app"])
    try:
        resp = request(proc.urls[0], path="/fail")
        assert resp.status == 500
        # Flask handles the error itself and logs it through its own logger.
        assert proc.wait_stderr("flask view failed on purpose"), proc.stderr
        assert request(proc.urls[0], path="/gone").status == 410
        assert proc.stop() == 0
    finally:
        proc.kill()
