"""The guard's endpoints with async views, for ASGI projects:
``path("", include("aauth_server_django.async_urls"))``."""

from __future__ import annotations

from django.urls import path
from django.urls.resolvers import URLPattern

from aauth_server.resource import WELL_KNOWN_PATH

from . import views
from .routing import GuardEndpoints

app_name = "aauth"
urlpatterns = [
    path(WELL_KNOWN_PATH.lstrip("/"), views.aendpoint, name="metadata"),
    URLPattern(GuardEndpoints(), views.aendpoint),
]
