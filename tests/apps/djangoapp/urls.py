from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("form/", views.form),
    path("json/", views.as_json),
    path("stream/", views.stream),
]
