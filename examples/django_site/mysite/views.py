from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.http import require_GET, require_POST

PAGE = """<!doctype html>
<title>Django on lichen</title>
<link rel="stylesheet" href="/static/site.css">
<h1>Django on lichen</h1>
<form method="post" action="/echo/">
  <input type="hidden" name="csrfmiddlewaretoken" value="{token}">
  <input name="message"> <button>Send</button>
</form>
"""


@require_GET
def index(request):
    return HttpResponse(PAGE.format(token=get_token(request)))


@require_GET
def hello(request):
    return JsonResponse({"greeting": f"Hello, {request.GET.get('name', 'world')}!"})


@require_POST
def echo(request):  # CSRF-checked: the page's form carries the token
    form = request.POST.dict()
    form.pop("csrfmiddlewaretoken", None)
    return JsonResponse({"form": form})
