"""Django URLconfs for the ATH adapter tests: the API's sync and async views, and ATH's own
URLs through the sync (``urlpatterns``) or the async views (``tests.ath.django_async_urls``)."""

from __future__ import annotations

import json

from aauth_server_django.ath import ath_required, ath_token
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def _answer(request: HttpRequest, kind: str) -> HttpResponse:
    token = ath_token(request)
    assert token is not None
    body = {"kind": kind, "user": token.user_id, "scopes": list(token.scopes)}
    return HttpResponse(json.dumps(body, separators=(",", ":")), content_type="application/json")


@ath_required(scopes=["products:read"])
async def products(request: HttpRequest) -> HttpResponse:
    return _answer(request, "async")


@ath_required(scopes=["cart:write"])
def cart(request: HttpRequest) -> HttpResponse:
    return _answer(request, "sync")


@ath_required()
def orders(request: HttpRequest) -> HttpResponse:
    return _answer(request, "sync")


api = [path("api/products", products), path("api/cart", cart), path("api/orders", orders)]
urlpatterns = [*api, path("", include("aauth_server_django.ath_urls"))]
