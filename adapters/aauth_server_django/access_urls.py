"""The Access Server with sync views: ``path("", include("aauth_server_django.access_urls"))``."""

from __future__ import annotations

from django.urls import path
from django.urls.resolvers import URLPattern

from aauth_server.access import WELL_KNOWN_PATH

from .access import AccessEndpoints, access_endpoint

app_name = "aauth_access"
urlpatterns = [
    path(WELL_KNOWN_PATH.lstrip("/"), access_endpoint, name="metadata"),
    URLPattern(AccessEndpoints(), access_endpoint, name="endpoints"),
]
