"""The guard's own endpoints: metadata, JWKS, authorization, revocation, pending URLs.

``endpoint`` is the sync view (``aauth_server_django.urls``), ``aendpoint`` the async one
(``aauth_server_django.async_urls``, for ASGI projects).  Both hand the request to the
guard; a held invocation the guard releases is run through the project's own routing.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponseNotAllowed
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from aauth_server.errors import RequestRejected
from aauth_server.resource import Redispatch, ResourceGuard

from .conf import get_guard
from .convert import to_django, to_neutral
from .redispatch import arun_held, run_held
from .routing import methods_for


def _refused(guard: ResourceGuard, request: HttpRequest) -> HttpResponseBase | None:
    allowed = methods_for(guard, request.path)
    if not allowed:
        raise Http404("not an AAuth endpoint")
    return None if request.method in allowed else HttpResponseNotAllowed(sorted(allowed))


# Exempt from CSRF: the POST endpoints take only signed requests (a person token or a
# server's own key), which a cross-site form cannot produce.
@csrf_exempt
def endpoint(request: HttpRequest) -> HttpResponseBase:
    guard = get_guard()
    refused = _refused(guard, request)
    if refused is not None:
        return refused
    try:
        answer = guard.handle(to_neutral(request, guard))
    except RequestRejected as rejected:
        return to_django(rejected.to_response())
    if answer is None:
        raise Http404("not an AAuth endpoint")
    if isinstance(answer, Redispatch):
        answer = guard.finish(answer, run_held(answer, request))
    return to_django(answer)


@csrf_exempt
async def aendpoint(request: HttpRequest) -> HttpResponseBase:
    guard = get_guard()
    refused = _refused(guard, request)
    if refused is not None:
        return refused
    try:
        answer = await guard.ahandle(to_neutral(request, guard))
    except RequestRejected as rejected:
        return to_django(rejected.to_response())
    if answer is None:
        raise Http404("not an AAuth endpoint")
    if isinstance(answer, Redispatch):
        answer = await guard.afinish(answer, await arun_held(answer, request))
    return to_django(answer)


#: The pre-endpoints name, kept for code that imported it.
metadata = endpoint
