"""Routes for the Django adapter tests and the cross-adapter harness."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aauth_server_django import (
    AAuthPersonRequest,
    AAuthRequest,
    AAuthSessionRequest,
    aauth_required,
)
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


#: How often each held-invocation view actually ran (deferred delivery runs it once).
CALLS: Counter[str] = Counter()


@aauth_required("person-token")
def profile(request: AAuthPersonRequest) -> HttpResponse:
    return _json({"ps": request.aauth.ps, "sub": request.aauth.sub})


class DataView(View):
    @method_decorator(aauth_required("auth-token", scope="data.read"))
    def get(self, request: AAuthPersonRequest) -> HttpResponse:
        return _json({"scope": request.aauth.scope})

    @method_decorator(aauth_required("auth-token", scope="data.write"))
    def post(self, request: AAuthPersonRequest) -> HttpResponse:
        return _json({"scope": request.aauth.scope, "written": True})


class AsyncDataView(View):
    @method_decorator(aauth_required("auth-token", scope="data.read"))
    async def get(self, request: AAuthPersonRequest) -> HttpResponse:
        return _json({"scope": request.aauth.scope, "view": "async"})

    @method_decorator(aauth_required("auth-token", scope="data.write"))
    async def post(self, request: AAuthPersonRequest) -> HttpResponse:
        return _json({"scope": request.aauth.scope, "written": True, "view": "async"})


@aauth_required("auth-token", scope="data.read", deferred=True)
def deferred(request: AAuthPersonRequest) -> HttpResponse:
    CALLS["deferred"] += 1
    return _json({"scope": request.aauth.scope, "deferred": True})


@aauth_required("auth-token", scope="data.read", deferred=True)
async def deferred_async(request: AAuthPersonRequest) -> HttpResponse:
    CALLS["deferred-async"] += 1
    return _json({"scope": request.aauth.scope, "deferred": True, "view": "async"})


@aauth_required("auth-token", scope="data.write", deferred=True)
def deferred_post(request: AAuthPersonRequest) -> HttpResponse:
    CALLS["deferred-post"] += 1
    return _json({"scope": request.aauth.scope, "body": request.body.decode()})


@aauth_required("auth-token", scope="data.read", deferred=True)
def deferred_broken(request: AAuthPersonRequest) -> HttpResponse:
    CALLS["deferred-broken"] += 1
    raise RuntimeError("the held view failed")


@aauth_required("session-token")
def session(request: AAuthSessionRequest) -> HttpResponse:
    return _json({"agent": request.aauth.agent.agent, "account": request.aauth.account})


#: The protected routes; the guard's endpoints come last (sync here, async in async_urls).
protected = [
    path("whoami", whoami),
    path("optional", optional),
    path("whoami-async", whoami_async),
    path("identity", identity),
    path("whoami-class", WhoAmIView.as_view()),
    path("whoami-async-class", AsyncWhoAmIView.as_view()),
    path("profile", profile),
    path("data", DataView.as_view()),
    path("data-async", AsyncDataView.as_view()),
    path("deferred", deferred),
    path("deferred-async", deferred_async),
    path("deferred-post", deferred_post),
    path("deferred-broken", deferred_broken),
    path("session", session),
]
urlpatterns = [*protected, path("", include("aauth_server_django.urls"))]
