"""ATH with async views, for ASGI projects:
``path("", include("aauth_server_django.ath_async_urls"))``."""

from __future__ import annotations

from django.urls.resolvers import URLPattern

from .ath import ATHEndpoints, aath_endpoint

app_name = "aauth_ath"
urlpatterns = [URLPattern(ATHEndpoints(), aath_endpoint, name="endpoints")]
