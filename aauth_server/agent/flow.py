"""The agent's requirement loop: request, read ``AAuth-Requirement``, satisfy it, retry.

:class:`AgentFlow` drives one agent against resources and its Person Server (three-party):

- ``401 requirement=person-token``: ask the PS person token endpoint, retry with the person
  token in ``Signature-Key``;
- ``401 requirement=auth-token`` (or the deferred ``202``): take the resource token and the
  token just presented to the PS auth token endpoint, retry (or poll) with the auth token;
- ``202`` from the PS: poll ``Location`` (long polls with ``Prefer: wait``), answering a
  clarification question through a callback the caller supplies;
- ``requirement=interaction``: relay it to the PS interaction endpoint first and direct the
  user itself (a callback) when the PS answers ``424 interaction_unavailable`` (digest 6.3).

Chaining and sub-agents (digest 9): ``upstream_token`` (an intermediary's flow) is sent with
every person- and auth-token request; a sub-agent's flow gets its tokens through its parent
(``mediator=ParentMediated(parent_flow, subagent)``), which asks its PS with
``subagent_token``.

Choices the digest leaves open, made here: an interaction URL on the PS's own origin is not
relayed back to that PS (its pending URL is authoritative and it already knows the person must
act); a long poll that comes back ``202`` is followed by the next long poll at once (the
server's wait paces it), unless it came back unchanged in under a second; plain polls wait
``Retry-After`` (5 s when absent), ``429`` adds 5 s each time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx

from ..clock import SYSTEM_CLOCK, Clock
from ..fields import FieldError, Requirement, parse_aauth_requirement, parse_signature_error
from ..tokens.jwt import TokenError, decode_unverified
from .client import AAuthSigner, Agent

PS_METADATA_PATH = "/.well-known/aauth-person.json"
DEFAULT_RETRY_AFTER = 5
SLOW_DOWN_STEP = 5
#: A resource asks at most agent -> person -> auth token, then maybe a deferred delivery.
MAX_REQUIREMENTS = 6

#: ``observe(note, request, response)``: every exchange the flow makes, for logs and demos.
Observer = Callable[[str, httpx.Request, httpx.Response], None]


@dataclass(frozen=True, slots=True)
class Interaction:
    """Somebody must bring the person to ``url`` with ``code`` (digest 6.1)."""

    url: str
    code: str

    @property
    def link(self) -> str:
        return f"{self.url}?{urlencode({'code': self.code})}"


@dataclass(frozen=True, slots=True)
class Clarification:
    """A question the PS asks the agent while a request is pending (digest 7)."""

    question: str
    timeout: int | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """``relayed``: the PS took the interaction (``location`` is its relay URL); otherwise it
    answered ``424`` and the agent directed the user itself."""

    relayed: bool
    response: httpx.Response
    location: str | None = None


class FlowError(Exception):
    """An answer the flow cannot satisfy (a denial, an error, a requirement it cannot meet)."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response

    @property
    def error(self) -> str | None:
        """The AAuth error code: ``Signature-Error`` on a 401, else the problem body's."""
        if self.response is None:
            return None
        header = self.response.headers.get("signature-error")
        if header:
            try:
                return parse_signature_error(header).code
            except FieldError:
                return None
        body = _json(self.response)
        code = body.get("error") if isinstance(body, dict) else None
        return code if isinstance(code, str) else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def requirement_of(response: httpx.Response) -> Requirement | None:
    value = response.headers.get("aauth-requirement")
    if not value:
        return None
    try:
        return parse_aauth_requirement(value)
    except FieldError:
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else float(DEFAULT_RETRY_AFTER)


class AgentFlow:
    """One agent's requirement loop.  ``interact`` directs the person to an interaction
    (open a browser, show a QR code...); ``clarify`` answers a clarification question.
    ``wait`` is the ``Prefer: wait`` of every poll (``None``: plain polls); ``sleep`` and
    ``clock`` are injectable so tests run on a fixed clock."""

    def __init__(
        self,
        agent: Agent,
        client: httpx.Client | None = None,
        *,
        interact: Callable[[Interaction], None],
        clarify: Callable[[Clarification], str] | None = None,
        ps: str | None = None,
        capabilities: Sequence[str] = ("interaction", "clarification"),
        justification: str | None = None,
        observe: Observer | None = None,
        wait: int | None = 10,
        max_polls: int = 60,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Clock = SYSTEM_CLOCK,
        upstream_token: str | None = None,
        mediator: TokenSource | None = None,
    ) -> None:
        self.agent = agent
        #: Call chaining: the token the caller presented to this intermediary (digest 9).
        self.upstream_token = upstream_token
        #: A sub-agent's parent, which gets its person and auth tokens (parent-mediated).
        self.mediator = mediator
        #: Transport only: the flow passes its own ``auth`` on every send (see the module doc).
        self.client = client if client is not None else httpx.Client(timeout=30)
        self._owns_client = client is None
        self.interact = interact
        self.clarify = clarify
        if ps is None and mediator is not None:
            ps = mediator.ps  # a mediated sub-agent never calls a PS itself
        self.ps = (ps or _ps_claim(agent.token)).rstrip("/")
        self.capabilities = list(capabilities)
        if clarify is None and "clarification" in self.capabilities:
            self.capabilities.remove("clarification")
        self.justification = justification
        self.observe = observe
        self.wait = wait
        self.max_polls = max_polls
        self.sleep = sleep
        self.monotonic = monotonic
        self.person_tokens: dict[str, str] = {}
        self.auth_tokens: dict[str, str] = {}
        self.clock = clock
        self._ps_metadata: dict[str, Any] | None = None
        self._slow_down = 0
        self._quick = False

    def close(self) -> None:
        """Close the httpx client the flow made itself (one passed in is the caller's)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> AgentFlow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resources -----------------------------------------------------------------------------

    def request(
        self, method: str, url: str, *, json_body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """Call a resource, satisfying each requirement it states, and return its last answer."""
        resource = _origin(url)
        fresh: set[str] = set()  # tokens obtained during this call: asked again means refused
        for _ in range(MAX_REQUIREMENTS):
            token = self._token_for(resource)
            response = self._send(f"resource {method}", method, url, token, json_body)
            req = requirement_of(response)
            if req is None:
                return response
            status, name = response.status_code, req.requirement
            if name == "person-token" and status == 401:
                self.auth_tokens.pop(resource, None)
                if self.person_tokens.get(resource) in fresh:
                    return response
                source = self.mediator or self
                self.person_tokens[resource] = source.person_token(resource)
                fresh.add(self.person_tokens[resource])
            elif name == "auth-token" and status in (401, 202):
                refused_again = token in fresh and token == self.auth_tokens.get(resource)
                if token == self.agent.token or refused_again:
                    return response
                if not req.resource_token:
                    raise FlowError("auth-token requirement without a resource token", response)
                source = self.mediator or self
                self.auth_tokens[resource] = source.auth_token(req.resource_token, token)
                fresh.add(self.auth_tokens[resource])
                if status == 202:
                    return self._poll_resource(response, self.auth_tokens[resource])
            elif name == "interaction" and status == 202:
                if not (req.url and req.code):
                    raise FlowError("interaction requirement without url and code", response)
                self.direct(Interaction(req.url, req.code))
                return self._poll_resource(response, token)
            else:
                return response
        raise FlowError(f"{url} kept stating requirements", response)

    def _token_for(self, resource: str) -> str:
        return (
            self.auth_tokens.get(resource) or self.person_tokens.get(resource) or self.agent.token
        )

    def _poll_resource(self, first: httpx.Response, token: str) -> httpx.Response:
        # The resource's pending URL is authoritative; its final answer is the caller's.
        response, location = first, self._location(first)
        for _ in range(self.max_polls):
            response = self._poll("resource poll", location, token, response)
            if response.status_code == 202:
                location = self._location(response)
            if response.status_code not in (202, 429):
                return response
        raise FlowError("the resource kept answering 202", response)

    # -- the Person Server ---------------------------------------------------------------------

    def ps_metadata(self) -> dict[str, Any]:
        if self._ps_metadata is None:
            request = self.client.build_request("GET", self.ps + PS_METADATA_PATH)
            response = self._exchange("PS metadata", request, _UNSIGNED)
            body = _json(response)
            if response.status_code != 200 or not isinstance(body, dict):
                raise FlowError("cannot read the PS metadata", response)
            self._ps_metadata = body
        return self._ps_metadata

    def person_token(self, resource: str, *, subagent_token: str | None = None) -> str:
        """A person token for ``resource`` (for the sub-agent of ``subagent_token``)."""
        body: dict[str, Any] = {"resource": resource, **self._hints(subagent_token)}
        return self._token("person_token_endpoint", "person_token", body)

    def auth_token(
        self, resource_token: str, presented_token: str, *, subagent_token: str | None = None
    ) -> str:
        body: dict[str, Any] = {
            "resource_token": resource_token,
            "presented_token": presented_token,
            **self._hints(subagent_token),
        }
        return self._token("auth_token_endpoint", "auth_token", body)

    def _hints(self, subagent_token: str | None = None) -> dict[str, Any]:
        hints: dict[str, Any] = {"capabilities": self.capabilities}
        if self.upstream_token is not None:
            hints["upstream_token"] = self.upstream_token
        if subagent_token is not None:
            hints["subagent_token"] = subagent_token
        if self.justification:
            hints["justification"] = self.justification
        return hints

    def _token(self, endpoint: str, field: str, body: Mapping[str, Any]) -> str:
        url = self.ps_metadata().get(endpoint)
        if not isinstance(url, str):
            raise FlowError(f"the PS metadata names no {endpoint}")
        response = self._send(f"PS {field}", "POST", url, self.agent.token, body)
        if response.status_code == 202:
            response = self._settle_ps(response)
        data = _json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise FlowError(f"the PS refused the {field} request", response)
        token = data.get(field)
        if not isinstance(token, str):
            raise FlowError(f"the PS answer holds no {field}", response)
        return token

    def _settle_ps(self, response: httpx.Response) -> httpx.Response:
        """Follow a PS pending request to its end: the 200 answer, or FlowError."""
        directed = False
        location = self._location(response)
        for _ in range(self.max_polls):
            req = requirement_of(response)
            if response.status_code == 202:
                location = self._location(response)
            if req is not None and req.requirement == "interaction" and not directed:
                if not (req.url and req.code):
                    raise FlowError("interaction requirement without url and code", response)
                self.direct(Interaction(req.url, req.code))
                directed = True
            if req is not None and req.requirement == "clarification":
                response = self._answer(location, response)
                if response.status_code not in (202, 429):
                    return response
                if requirement_of(response) is not None:
                    # The answer's 202 may ask again (the PS policy's next question) or send
                    # the person to the consent page: read it before polling on.
                    continue
            response = self._poll("PS poll", location, self.agent.token, response)
            if response.status_code not in (202, 429):
                return response
        raise FlowError("the PS request stayed pending", response)

    def _answer(self, location: str, response: httpx.Response) -> httpx.Response:
        body = _json(response)
        question = body.get("clarification") if isinstance(body, dict) else None
        if self.clarify is None or not isinstance(question, str):
            raise FlowError("the PS asked a clarification the agent cannot answer", response)
        timeout = body.get("timeout")
        options = body.get("options")
        asked = Clarification(
            question,
            timeout if isinstance(timeout, int) else None,
            tuple(str(o) for o in options) if isinstance(options, list) else (),
        )
        answer = {"action": "clarification_response", "clarification_response": self.clarify(asked)}
        return self._send("clarification answer", "POST", location, self.agent.token, answer)

    # -- interactions (digest 6.3, 6.4) --------------------------------------------------------

    def direct(self, interaction: Interaction) -> RelayOutcome | None:
        """Get the person to ``interaction``: relay via the PS, or direct them ourselves."""
        if _origin(interaction.url) == _origin(self.ps):
            self.interact(interaction)
            return None
        return self.relay(interaction)

    def relay(self, interaction: Interaction, *, description: str | None = None) -> RelayOutcome:
        """POST the interaction to the PS interaction endpoint; on ``424`` (or no endpoint)
        fall back to ``interact``.  Any other refusal raises FlowError."""
        endpoint = self.ps_metadata().get("interaction_endpoint")
        if not isinstance(endpoint, str):
            self.interact(interaction)
            return RelayOutcome(False, httpx.Response(424))
        body: dict[str, Any] = {
            "type": "interaction",
            "url": interaction.url,
            "code": interaction.code,
            "capabilities": self.capabilities,
        }
        if description:
            body["description"] = description
        response = self._send("PS relay", "POST", endpoint, self.agent.token, body)
        if response.status_code == 202:
            return RelayOutcome(True, response, response.headers.get("location"))
        if response.status_code == 424:
            self.interact(interaction)
            return RelayOutcome(False, response)
        raise FlowError("the PS refused to relay the interaction", response)

    # -- HTTP ------------------------------------------------------------------------------

    def _poll(
        self, note: str, location: str, token: str, previous: httpx.Response
    ) -> httpx.Response:
        pause = 0.0
        if previous.status_code == 429:
            self._slow_down += SLOW_DOWN_STEP
            pause = _retry_after(previous) + self._slow_down
        elif not self.wait or self._quick:
            pause = _retry_after(previous)
        if pause:
            self.sleep(pause)
        headers = {} if self.wait is None else {"Prefer": f"wait={self.wait}"}
        started = self.monotonic()
        response = self._send(note, "GET", location, token, None, headers)
        if response.status_code != 429:
            self._slow_down = 0
        # A long poll answered at once with nothing new: pace the next one by Retry-After.
        self._quick = (
            response.status_code == 202
            and self.monotonic() - started < 1.0
            and response.content == previous.content
        )
        return response

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise FlowError("a 202 without Location", response)
        return str(response.url.join(location))

    def _send(
        self,
        note: str,
        method: str,
        url: str,
        token: str,
        body: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        all_headers = dict(headers or {})
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        request = self.client.build_request(method, url, content=content, headers=all_headers)
        return self._exchange(note, request, AAuthSigner(self.agent.key, token, clock=self.clock))

    def _exchange(self, note: str, request: httpx.Request, auth: httpx.Auth) -> httpx.Response:
        # ``auth=`` replaces the client's own auth for this send: an AAuthSigner on the client
        # would otherwise sign again, with the agent token, over the token this step needs.
        response = self.client.send(request, auth=auth)
        response.read()
        if self.observe is not None:
            self.observe(note, response.request, response)
        return response


class TokenSource(Protocol):
    """Who gets a flow's person and auth tokens: the flow itself, or a sub-agent's parent."""

    @property
    def ps(self) -> str: ...

    def person_token(self, resource: str) -> str: ...

    def auth_token(self, resource_token: str, presented_token: str) -> str: ...


class ParentMediated:
    """A sub-agent's token source: its parent asks the parent's PS with ``subagent_token``
    (digest 9, parent-mediated).  The sub-agent presents the tokens and signs its own
    requests to resources; the PS refuses token requests the sub-agent would sign."""

    def __init__(self, parent: AgentFlow, subagent: Agent) -> None:
        self.parent = parent
        self.subagent = subagent

    @property
    def ps(self) -> str:
        return self.parent.ps

    def person_token(self, resource: str) -> str:
        return self.parent.person_token(resource, subagent_token=self.subagent.token)

    def auth_token(self, resource_token: str, presented_token: str) -> str:
        return self.parent.auth_token(
            resource_token, presented_token, subagent_token=self.subagent.token
        )


#: No signature (the PS metadata is public), whatever auth the client carries.
_UNSIGNED = httpx.Auth()


def _ps_claim(agent_token: str) -> str:
    try:
        ps = decode_unverified(agent_token).payload.get("ps")
    except TokenError as exc:
        raise ValueError("the agent token cannot be read") from exc
    if not isinstance(ps, str):
        raise ValueError("no PS given and the agent token names none (ps claim)")
    return ps


__all__ = [
    "AgentFlow",
    "Clarification",
    "FlowError",
    "Interaction",
    "Observer",
    "ParentMediated",
    "RelayOutcome",
    "TokenSource",
    "requirement_of",
]
