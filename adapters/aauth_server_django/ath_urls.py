"""ATH with sync views: ``path("", include("aauth_server_django.ath_urls"))``."""

from __future__ import annotations

from django.urls.resolvers import URLPattern

from .ath import ATHEndpoints, ath_endpoint

app_name = "aauth_ath"
urlpatterns = [URLPattern(ATHEndpoints(), ath_endpoint, name="endpoints")]
