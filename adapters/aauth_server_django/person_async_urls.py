"""The Person Server with async views, for ASGI projects (long polls then hold no thread):
``path("", include("aauth_server_django.person_async_urls"))``."""

from __future__ import annotations

from django.urls import path
from django.urls.resolvers import URLPattern

from aauth_server.person import WELL_KNOWN_PATH

from .person import PersonEndpoints, aperson_endpoint

app_name = "aauth_person"
urlpatterns = [
    path(WELL_KNOWN_PATH.lstrip("/"), aperson_endpoint, name="metadata"),
    URLPattern(PersonEndpoints(), aperson_endpoint, name="endpoints"),
]
