"""The Person Server with sync views: ``path("", include("aauth_server_django.person_urls"))``."""

from __future__ import annotations

from django.urls import path
from django.urls.resolvers import URLPattern

from aauth_server.person import WELL_KNOWN_PATH

from .person import PersonEndpoints, person_endpoint

app_name = "aauth_person"
urlpatterns = [
    path(WELL_KNOWN_PATH.lstrip("/"), person_endpoint, name="metadata"),
    URLPattern(PersonEndpoints(), person_endpoint, name="endpoints"),
]
