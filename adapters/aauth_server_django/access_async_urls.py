"""The Access Server with async views, for ASGI projects:
``path("", include("aauth_server_django.access_async_urls"))``."""

from __future__ import annotations

from django.urls import path
from django.urls.resolvers import URLPattern

from aauth_server.access import WELL_KNOWN_PATH

from .access import AccessEndpoints, aaccess_endpoint

app_name = "aauth_access"
urlpatterns = [
    path(WELL_KNOWN_PATH.lstrip("/"), aaccess_endpoint, name="metadata"),
    URLPattern(AccessEndpoints(), aaccess_endpoint, name="endpoints"),
]
