"""Flask application for the end-to-end framework tests."""

from flask import Flask, Response, abort, jsonify, request

app = Flask(__name__)


@app.get("/hello")
def hello():
    return f"Hello, {request.args.get('name', 'world')}!"


@app.post("/form")
def form():
    return jsonify(form=request.form.to_dict(flat=False),
                   content_type=request.content_type)


@app.get("/json")
def as_json():
    return jsonify(ok=True, items=list(range(5)), text="caf\u00e9")


@app.get("/stream")
def stream():
    count = int(request.args.get("n", 10))

    def chunks():
        for i in range(count):
            yield f"chunk {i}\n"

    return Response(chunks(), mimetype="text/plain")


@app.get("/gone")
def gone():
    abort(410)


@app.get("/fail")
def fail():
    raise RuntimeError("flask view failed on purpose")
