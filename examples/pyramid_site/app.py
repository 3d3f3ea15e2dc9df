"""A Pyramid application served by lichen (pip install pyramid pastedeploy).

    cd examples/pyramid_site && PYTHONPATH=. pserve development.ini
    lichen --chdir examples/pyramid_site 'app:main({})'    # or without paste
    curl 'http://127.0.0.1:6543/hello?name=lichen'
"""

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest
from pyramid.view import view_config


@view_config(route_name="home", renderer="string")
def home(request):
    return f"Hello from Pyramid on lichen! ({request.registry.settings['greeting']})\n"


@view_config(route_name="hello", renderer="json", request_method="GET")
def hello(request):
    return {"greeting": f"Hello, {request.params.get('name', 'world')}!"}


@view_config(route_name="echo", renderer="json", request_method="POST")
def echo(request):
    try:
        return {"echo": request.json_body}
    except ValueError:
        raise HTTPBadRequest("expected a JSON body")


def main(global_config, **settings):
    """The application factory PasteDeploy calls with [app:main]'s keys."""
    settings.setdefault("greeting", "no settings")
    with Configurator(settings=settings) as config:
        config.add_route("home", "/")
        config.add_route("hello", "/hello")
        config.add_route("echo", "/echo")
        config.scan(__name__)
        return config.make_wsgi_app()
