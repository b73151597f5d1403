"""``@aauth_required``: protect a Django view (sync or async, function or class-based)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from aauth_server.errors import AAuthError
from aauth_server.resource import (
    AGENT_TOKEN,
    AgentIdentity,
    Identity,
    PersonIdentity,
    Protection,
    SessionIdentity,
)
from aauth_server.resource.config import protection_label

from .conf import get_guard
from .convert import to_django, to_neutral
from .redispatch import redispatched_identity

ViewT = TypeVar("ViewT", bound=Callable[..., Any])

#: Every ``@aauth_required(...)`` in the process, with a label naming its view: the system
#: check (``aauth.E005``) and :func:`aauth_server_django.startup` check them against the
#: configuration (a Django project has one guard, but the settings are read later than
#: views are decorated, and tests swap them).
PROTECTIONS: list[tuple[Protection, str]] = []


class AAuthRequest(HttpRequest):
    """For annotations only: the request an agent-token view receives."""

    aauth: AgentIdentity | None


class AAuthPersonRequest(HttpRequest):
    """For annotations only: a person-token or auth-token view (not optional)."""

    aauth: PersonIdentity


class AAuthSessionRequest(HttpRequest):
    """For annotations only: a session-token view (not optional)."""

    aauth: SessionIdentity


def aauth_required(
    mode: str = AGENT_TOKEN,
    *,
    scope: str | None = None,
    optional: bool = False,
    deferred: bool = False,
) -> Callable[[ViewT], ViewT]:
    """Verify the AAuth request before the view runs; the identity lands on ``request.aauth``.

    ``mode`` is the endpoint's access mode: ``agent-token`` (:class:`AgentIdentity`),
    ``person-token`` or ``auth-token`` with ``scope="..."`` (:class:`PersonIdentity`),
    ``session-token`` (:class:`SessionIdentity`).  ``deferred=True`` (auth-token) holds
    the invocation and answers ``202``; the view runs when the agent polls with an auth
    token, through ``include("aauth_server_django.urls")``.  ``optional=True`` lets
    unsigned requests through with ``request.aauth = None`` (a signed request must still
    verify).  For class-based views use ``method_decorator`` on the handler
    (``name="get"``), or on ``dispatch`` for sync views.
    """
    protection = Protection(mode, scope=scope, optional=optional, deferred=deferred)

    def decorator(view: ViewT) -> ViewT:
        PROTECTIONS.append((protection, protection_label(protection, view, "aauth_required")))
        wrapper: Callable[..., Any]
        if iscoroutinefunction(view):
            async_view = cast(Callable[..., Awaitable[HttpResponseBase]], view)

            @wraps(view)
            async def async_wrapper(
                request: HttpRequest, *args: Any, **kwargs: Any
            ) -> HttpResponseBase:
                identity: Identity | None = redispatched_identity(request, protection)
                if identity is None:
                    guard = get_guard()
                    try:
                        identity = await guard.acheck(to_neutral(request, guard), protection)
                    except AAuthError as error:
                        return to_django(error.to_response())
                request.aauth = identity  # type: ignore[attr-defined]
                return await async_view(request, *args, **kwargs)

            wrapper = async_wrapper
        else:

            @wraps(view)
            def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                identity: Identity | None = redispatched_identity(request, protection)
                if identity is None:
                    guard = get_guard()
                    try:
                        identity = guard.check(to_neutral(request, guard), protection)
                    except AAuthError as error:
                        return to_django(error.to_response())
                request.aauth = identity  # type: ignore[attr-defined]
                return cast(HttpResponseBase, view(request, *args, **kwargs))

            wrapper = sync_wrapper
        if not optional:
            # Every request that reaches such a view carries a verified signature over its
            # method, authority and path, which a cross-site form cannot forge; and the CSRF
            # middleware would otherwise consume a multipart body before we can read it.
            # The mark csrf_exempt sets, on the wrapper itself: csrf_exempt(wrapper) would
            # wrap it once more, a further call (and coroutine) on every request.
            cast(Any, wrapper).csrf_exempt = True
        return cast(ViewT, wrapper)

    return decorator
