"""A Flask application served by lichen (pip install flask).

    lichen examples.flask_app:app
    curl 'http://127.0.0.1:8000/hello?name=lichen'
"""

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask on lichen!\n"


@app.get("/hello")
def hello():
    return jsonify(greeting=f"Hello, {request.args.get('name', 'world')}!")


@app.post("/echo")
def echo():
    return jsonify(form=request.form.to_dict(), length=request.content_length)


@app.get("/stream")
def stream():
    def lines():
        for i in range(5):
            yield f"line {i}\n"

    return Response(lines(), mimetype="text/plain")
