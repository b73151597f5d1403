"""Deferred auth-token delivery: run a held invocation through the app's own routing.

The first poll with a valid auth token gets a :class:`Redispatch` from the guard.  The
original request is replayed as a fresh ASGI call into the same Starlette app, carrying the
verified identity under an ASGI scope key.  Only code in this process can put a key into a
scope (a client controls headers, never scope keys), so the protected endpoint can trust
it and skip verification for that one internal call.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
from starlette.requests import Request

from aauth_server.errors import Forbidden, ServerError
from aauth_server.http import HttpResponse
from aauth_server.resource import AUTH_TOKEN, PersonIdentity, Protection, Redispatch, ResourceGuard

#: The ASGI scope key marking an internal re-dispatch of a held invocation.
SCOPE_KEY = "aauth_server_starlette.held"
#: Scope keys of the poll that the replayed call keeps (connection, server, lifespan state).
_KEPT = ("type", "asgi", "http_version", "server", "client", "root_path", "extensions")

log = logging.getLogger("aauth_server_starlette")


@dataclass(frozen=True, slots=True)
class HeldCall:
    guard: ResourceGuard
    identity: PersonIdentity


def held_identity(
    request: Request, guard: ResourceGuard, protection: Protection
) -> PersonIdentity | None:
    """The identity of a re-dispatched held invocation, or None for an ordinary request."""
    held = request.scope.get(SCOPE_KEY)
    if not isinstance(held, HeldCall) or held.guard is not guard:
        return None
    person = held.identity
    # The poll was checked against the scope held with the invocation; the endpoint the
    # replayed request lands on must not need more.
    if protection.mode != AUTH_TOKEN or not protection.scopes <= person.scopes:
        raise Forbidden("the auth token does not cover this endpoint", error="insufficient_scope")
    return person


async def redispatch(poll: Request, guard: ResourceGuard, held: Redispatch) -> HttpResponse:
    """Run ``held.request`` through the app that received ``poll``; store and return the
    answer via ``guard.afinish`` (a 500 problem when the endpoint fails)."""
    try:
        response = await _call(poll, guard, held)
    except Exception:
        log.exception("the held invocation %s failed", held.held_id)
        response = ServerError().to_response()
    return await guard.afinish(held, response)


async def _call(poll: Request, guard: ResourceGuard, held: Redispatch) -> HttpResponse:
    original = held.request
    parts = urlsplit(original.url)
    raw_path = parts.path or "/"
    scope: MutableMapping[str, Any] = {k: poll.scope[k] for k in _KEPT if k in poll.scope}
    scope.update(
        {
            "method": original.method,
            "scheme": parts.scheme,
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1"),
            "query_string": parts.query.encode("latin-1"),
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in original.headers
            ],
            # Lifespan state is shared; per-request state starts empty.
            "state": dict(poll.scope.get("state", {})),
            SCOPE_KEY: HeldCall(guard, held.identity),
        }
    )
    finished = anyio.Event()
    body_sent = False
    status: int | None = None
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def receive() -> MutableMapping[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": original.body, "more_body": False}
        # Answering "disconnect" at once would cancel streaming responses.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.extend(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    try:
        await poll.scope["app"](scope, receive, send)
    finally:
        finished.set()
    if status is None:
        raise RuntimeError("the application sent no response for the held invocation")
    return HttpResponse(status, headers, b"".join(chunks))
