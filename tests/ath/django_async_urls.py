"""The same API views, with ATH's URLs on the async views (ASGI projects)."""

from __future__ import annotations

from django.urls import include, path

from tests.ath.django_urls import api

urlpatterns = [*api, path("", include("aauth_server_django.ath_async_urls"))]
