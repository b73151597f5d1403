"""Routes for the Django adapter tests and the cross-adapter harness."""

from __future__ import annotations

from typing import Any

from aauth_server_django import AAuthRequest, aauth_required
from django.http import HttpResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views import View

from aauth_server.http import json_bytes


def _json(payload: Any) -> HttpResponse:
    # The core's serialisation, so the harness answers byte-for-byte like the other adapters.
    return HttpResponse(json_bytes(payload), content_type="application/json")


def _agent(request: AAuthRequest) -> str | None:
    return request.aauth.agent if request.aauth is not None else None


@aauth_required()
def whoami(request: AAuthRequest) -> HttpResponse:
    return _json({"agent": _agent(request)})


@aauth_required(optional=True)
async def optional(request: AAuthRequest) -> HttpResponse:
    return _json({"agent": _agent(request)})


@aauth_required()
async def whoami_async(request: AAuthRequest) -> HttpResponse:
    return _json({"agent": _agent(request), "view": "async"})


@aauth_required()
def identity(request: AAuthRequest) -> HttpResponse:
    assert request.aauth is not None
    return _json(
        {**request.aauth.as_dict(), "body": request.body.decode(), "post": request.POST.dict()}
    )


@method_decorator(aauth_required(), name="dispatch")
class WhoAmIView(View):
    def get(self, request: AAuthRequest) -> HttpResponse:
        return _json({"agent": _agent(request), "view": "class"})


class AsyncWhoAmIView(View):
    @method_decorator(aauth_required())
    async def get(self, request: AAuthRequest) -> HttpResponse:
        return _json({"agent": _agent(request), "view": "async-class"})


urlpatterns = [
    path("whoami", whoami),
    path("optional", optional),
    path("whoami-async", whoami_async),
    path("identity", identity),
    path("whoami-class", WhoAmIView.as_view()),
    path("whoami-async-class", AsyncWhoAmIView.as_view()),
    path("", include("aauth_server_django.urls")),
]
