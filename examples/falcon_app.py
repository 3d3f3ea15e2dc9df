"""A Falcon application served by lichen (pip install falcon).

    lichen examples.falcon_app
    curl 'http://127.0.0.1:8000/hello?name=lichen'
    curl -d '{"title": "milk"}' -H 'Content-Type: application/json' \
         http://127.0.0.1:8000/items
"""

import falcon


class Hello:
    def on_get(self, req, resp):
        resp.media = {"greeting": f"Hello, {req.get_param('name', default='world')}!"}


class Items:
    def __init__(self):
        self.items = []

    def on_get(self, req, resp):
        resp.media = {"items": self.items}

    def on_post(self, req, resp):
        item = req.get_media()
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            raise falcon.HTTPBadRequest(description="expected {\"title\": TEXT}")
        self.items.append({"title": item["title"]})
        resp.status = falcon.HTTP_201
        resp.media = {"id": len(self.items), "title": item["title"]}


app = falcon.App()
app.add_route("/hello", Hello())
app.add_route("/items", Items())
