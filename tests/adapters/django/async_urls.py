"""The same protected routes with the guard's endpoints served by the async views."""

from __future__ import annotations

from django.urls import include, path

from tests.adapters.django.urls import protected

urlpatterns = [*protected, path("", include("aauth_server_django.async_urls"))]
