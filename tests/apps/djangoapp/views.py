from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST


@require_GET
def hello(request):
    return HttpResponse(f"Hello, {request.GET.get('name', 'world')}!",
                        content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_POST
def form(request):
    return JsonResponse({"form": {k: request.POST.getlist(k)
                                  for k in request.POST},
                         "content_type": request.content_type})


def as_json(request):
    return JsonResponse({"ok": True, "items": list(range(5)),
                         "text": "caf\u00e9"})


def stream(request):
    count = int(request.GET.get("n", 10))
    return StreamingHttpResponse((f"chunk {i}\n" for i in range(count)),
                                 content_type="text/plain")
