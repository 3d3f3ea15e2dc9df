"""The example projects of examples/, each served by the lichen command as
its README line says, and asked what a user would ask: a page, a GET with
a query, a POST with a form or JSON body, a page that does not exist."""

import json
import re
import signal

import pytest

from helpers_cli import REPO, LichenProcess, connection, request

EXAMPLES = REPO / "examples"


def _start(args, cwd=REPO):
    return LichenProcess(["-b", "127.0.0.1:0"] + args, cwd=cwd)


def _stop(proc):
    """SIGTERM ends the server cleanly: exit 0, no traceback."""
    try:
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
    finally:
        proc.kill()


def _json(resp):
    assert resp.header("Content-Type").startswith("application/json"), \
        resp.headers
    return json.loads(resp.body)


def _post_form(url, path, body, headers=None):
    return request(url, method="POST", path=path, body=body.encode(),
                   headers={"Content-Type":
                            "application/x-www-form-urlencoded",
                            **(headers or {})})


def _post_json(url, path, data):
    return request(url, method="POST", path=path,
                   body=json.dumps(data).encode(),
                   headers={"Content-Type": "application/json"})


# --- Django: examples/django_site ------------------------------------------

@pytest.fixture(scope="module")
def django_site():
    pytest.importorskip("django")
    # The README's command, from the project's directory.
    proc = _start(["--static", "/static=static", "mysite.wsgi"],
                  cwd=EXAMPLES / "django_site")
    yield proc.urls[0]
    _stop(proc)


def test_django_page_with_csrf_form_and_post(django_site):
    page = request(django_site, path="/")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert b'href="/static/site.css"' in page.body
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"',
                      page.body).group(1).decode()
    cookie = re.match(r"csrftoken=([^;]+)",
                      page.header("Set-Cookie")).group(1)
    resp = _post_form(django_site, "/echo/",
                      f"csrfmiddlewaretoken={token}&message=caf%C3%A9+ok",
                      headers={"Cookie": f"csrftoken={cookie}"})
    assert resp.status == 200, resp.body[:300]
    assert _json(resp) == {"form": {"message": "caf\u00e9 ok"}}


def test_django_post_without_csrf_token_is_refused(django_site):
    resp = _post_form(django_site, "/echo/", "message=hi")
    assert resp.status == 403


def test_django_get_with_query(django_site):
    resp = request(django_site, path="/hello/?name=lichen")
    assert resp.status == 200
    assert _json(resp) == {"greeting": "Hello, lichen!"}


def test_django_static_file_from_the_engine(django_site):
    resp = request(django_site, path="/static/site.css")
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/css")
    assert resp.body == (EXAMPLES / "django_site" / "static" /
                         "site.css").read_bytes()
    assert resp.header("ETag")


def test_django_not_found(django_site):
    assert request(django_site, path="/no/such/page/").status == 404
    assert request(django_site, path="/static/nope.css").status == 404


# --- Flask: examples/flask_app.py ------------------------------------------

@pytest.fixture(scope="module")
def flask_app():
    pytest.importorskip("flask")
    proc = _start(["examples.flask_app:app"])
    yield proc.urls[0]
    _stop(proc)


def test_flask_get(flask_app):
    resp = request(flask_app, path="/")
    assert (resp.status, resp.text) == (200, "Hello from Flask on lichen!\n")
    resp = request(flask_app, path="/hello?name=caf%C3%A9")
    assert resp.status == 200
    assert _json(resp) == {"greeting": "Hello, caf\u00e9!"}


def test_flask_post_form(flask_app):
    resp = _post_form(flask_app, "/echo", "a=1&b=two+words")
    assert resp.status == 200
    assert _json(resp) == {"form": {"a": "1", "b": "two words"},
                           "length": 15}


def test_flask_streamed_on_a_keepalive_connection(flask_app):
    conn = connection(flask_app)
    try:
        for _ in range(2):
            conn.request("GET", "/stream")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Transfer-Encoding") == "chunked"
            assert resp.read() == b"".join(b"line %d\n" % i
                                           for i in range(5))
    finally:
        conn.close()


def test_flask_not_found(flask_app):
    assert request(flask_app, path="/nope").status == 404
    # A route that exists, with a method it does not take.
    assert request(flask_app, method="POST", path="/hello").status == 405


# --- Falcon: examples/falcon_app.py ----------------------------------------

@pytest.fixture(scope="module")
def falcon_app():
    pytest.importorskip("falcon")
    proc = _start(["examples.falcon_app"])
    yield proc.urls[0]
    _stop(proc)


def test_falcon_get(falcon_app):
    resp = request(falcon_app, path="/hello?name=lichen")
    assert resp.status == 200
    assert _json(resp) == {"greeting": "Hello, lichen!"}


def test_falcon_post_json_then_list(falcon_app):
    resp = _post_json(falcon_app, "/items", {"title": "milk"})
    assert resp.status == 201
    assert _json(resp) == {"id": 1, "title": "milk"}
    resp = request(falcon_app, path="/items")
    assert _json(resp) == {"items": [{"title": "milk"}]}


def test_falcon_bad_json_is_400(falcon_app):
    resp = request(falcon_app, method="POST", path="/items",
                   body=b"{not json", headers={"Content-Type":
                                               "application/json"})
    assert resp.status == 400
    resp = _post_json(falcon_app, "/items", {"name": "no title"})
    assert resp.status == 400
    assert "title" in _json(resp)["description"]


def test_falcon_not_found(falcon_app):
    assert request(falcon_app, path="/nope").status == 404


# --- Bottle: examples/bottle_app.py ----------------------------------------

@pytest.fixture(scope="module")
def bottle_app():
    pytest.importorskip("bottle")
    proc = _start(["examples.bottle_app"])
    yield proc.urls[0]
    _stop(proc)


def test_bottle_get(bottle_app):
    resp = request(bottle_app, path="/")
    assert (resp.status, resp.text) == (200, "Hello from Bottle on lichen!\n")
    resp = request(bottle_app, path="/hello/lichen")
    assert resp.status == 200
    assert _json(resp) == {"greeting": "Hello, lichen!"}


def test_bottle_post_form(bottle_app):
    resp = _post_form(bottle_app, "/greet", "name=caf%C3%A9")
    assert resp.status == 200
    assert _json(resp) == {"greeting": "Hello, caf\u00e9!"}
    assert _post_form(bottle_app, "/greet", "other=1").status == 400


def test_bottle_not_found(bottle_app):
    assert request(bottle_app, path="/nope").status == 404


# --- Pyramid: examples/pyramid_site, by the command line -------------------
# (pserve development.ini is in test_paste.py)

@pytest.fixture(scope="module")
def pyramid_site():
    pytest.importorskip("pyramid")
    proc = _start(["--chdir", str(EXAMPLES / "pyramid_site"),
                   "app:main({}, greeting='from the command line')"])
    yield proc.urls[0]
    _stop(proc)


def test_pyramid_get(pyramid_site):
    resp = request(pyramid_site, path="/")
    assert resp.status == 200
    assert resp.text == ("Hello from Pyramid on lichen! (from the command "
                         "line)\n")
    resp = request(pyramid_site, path="/hello?name=lichen")
    assert _json(resp) == {"greeting": "Hello, lichen!"}


def test_pyramid_post_json(pyramid_site):
    resp = _post_json(pyramid_site, "/echo", {"n": [1, 2], "s": "caf\u00e9"})
    assert resp.status == 200
    assert _json(resp) == {"echo": {"n": [1, 2], "s": "caf\u00e9"}}
    resp = request(pyramid_site, method="POST", path="/echo", body=b"{",
                   headers={"Content-Type": "application/json"})
    assert resp.status == 400


def test_pyramid_not_found(pyramid_site):
    assert request(pyramid_site, path="/nope").status == 404
    # /hello takes GET only: no view matches a POST there.
    assert _post_json(pyramid_site, "/hello", {}).status == 404
