"""A Bottle application served by lichen (pip install bottle).

    lichen examples.bottle_app
    curl http://127.0.0.1:8000/hello/lichen
    curl -d 'name=lichen' http://127.0.0.1:8000/greet
"""

import bottle

app = bottle.Bottle()


@app.get("/")
def index():
    return "Hello from Bottle on lichen!\n"


@app.get("/hello/<name>")
def hello(name):
    return {"greeting": f"Hello, {name}!"}  # a dict is sent as JSON


@app.post("/greet")
def greet():
    name = bottle.request.forms.getunicode("name")
    if not name:
        bottle.abort(400, "the form needs a name")
    return {"greeting": f"Hello, {name}!"}
