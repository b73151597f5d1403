"""PS federation to an Access Server: the four-party flow at the PS (digest 3.5, 5.3, 5.4, 5.5, 7).

A resource token whose ``aud`` is an Access Server the PS trusts
(``PersonServerConfig.trusted_access_servers`` or its ``trust_access_server`` hook) is verified
as in the three-party flow (the pair, the person, the mission), the PS's own policy decides
(and may ask the person), and then the PS calls the AS as a server: it discovers
``/.well-known/aauth-access.json`` and POSTs ``{resource_token, agent_token,
presented_token}`` to its ``auth_token_endpoint``, signed with the ``jwks_uri`` scheme as
``aauth-person.json``, through the egress policy (``access_timeout`` for the whole exchange).

While the AS defers (``202``), the agent's request waits in the PS pending store in state
``approved`` with the AS exchange in ``data["federation"]``; the agent gets the PS's own
``202`` and polls the PS.  Each agent poll due after the AS's ``Retry-After`` polls the AS
``Location`` once (restart-safe: everything lives in the store; one poll at a time wins the
record's compare-and-set).  What the AS asks:

* ``requirement=claims``: the PS answers with a signed ``POST {"action": "claims", "claims":
  {...}}`` to ``Location`` from its own records of the person (``access_claims`` hook), never
  ``sub``; a claim it cannot provide ends the request (``403 denied``) and cancels at the AS.
* ``requirement=clarification``: the ``access_clarification`` hook may answer; otherwise the
  question is passed to the agent (if it declared ``clarification``) as the PS's own ``202
  requirement=clarification``, and the agent's ``clarification_response`` (or
  ``updated_request``, re-verified) is relayed to the AS.
* ``requirement=interaction``: relayed to an agent with the ``interaction`` capability (the
  person goes to the AS's url and code); ``approval``: the PS keeps polling.

Outcomes: an AS token passes the delivery checks of digest 3.5 ("PS check before returning an
AS-issued token") or the agent gets ``502 as_unreachable``, as for an AS that cannot be
reached, is slower than ``access_timeout`` or answers garbage.  A well-formed AS error
(problem+json with an ``error`` code, and a status of digest 5.6: 400, 403, 408, 410 or 500)
is relayed with the AS's status and code.  ``user_unreachable`` (403) when the AS needs the
person or the agent and neither can be reached.

PS-AS collapse: ``local_access_server`` (an in-process AS, typically with the same issuer)
is called without the network hop.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..errors import AAuthError, Deferred
from ..fields import FieldError, parse_aauth_requirement
from ..http import HttpRequest, HttpResponse, json_bytes
from ..identifiers import is_server_identifier
from ..keys.egress import EgressPolicy
from ..keys.fetcher import FetchError, FetchResponse
from ..keys.jwk import PublicKey
from ..outbound import AsyncOutboundClient, OutboundClient, ServerSigner
from ..revocation import problem
from ..steps import Call, Steps, StoreOp
from ..storage.base import RecordNotFound, VersionConflict
from ..tokens.aauth import DWK_ACCESS, DWK_PERSON, TYP_AUTH, check_claims, check_header
from ..tokens.jwt import TokenError, decode_unverified, verify_jwt_signature
from ..verifier import KeyNeed, VerifiedRequest
from .chained import bound_key
from .lifecycle import Event, State
from .pending import KIND_PENDING, Refused, fire_steps
from .tokens import TokenPair, _same_key

if TYPE_CHECKING:
    from ..storage.base import Record
    from .server import PersonServer

ACCESS_WELL_KNOWN = "/.well-known/aauth-access.json"
#: An AS ``error`` code we relay: a short snake_case word.
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: AS statuses whose well-formed error the PS relays: the token endpoint's and the polling
#: errors (digest 5.6).  Anything else (a 401 about the PS's own signature, a 404 of a pending
#: URL the AS lost, a 402 we cannot settle) is the AS failing us: ``as_unreachable``.
_RELAYED = frozenset({400, 403, 408, 410, 500})
#: Optional request parameters the PS passes on to the AS unchanged (digest 5.4).
CHAINED = ("subagent_token", "upstream_token")
#: Longest AS ``detail`` relayed (characters).
_MAX_DETAIL = 512
#: Seconds a PS poll holds the record while it talks to the AS (beyond the egress deadline).
_TURN_MARGIN = 5


@dataclass(frozen=True, slots=True)
class ClaimsRequest:
    """What the ``access_claims`` hook sees: the AS wants ``names`` about ``person``."""

    person: str
    names: tuple[str, ...]
    access_server: str
    resource: str


@dataclass(frozen=True, slots=True)
class AccessQuestion:
    """What the ``access_clarification`` hook sees: the AS asks ``question`` about the
    request of ``agent`` for ``person`` at ``resource``."""

    person: str
    agent: str
    access_server: str
    resource: str
    scopes: frozenset[str]
    question: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AsAnswer:
    """One exchange with the AS, classified."""

    kind: str  # token | pending | error | unreachable
    detail: str = ""
    token: str | None = None
    location: str | None = None
    retry_after: int = 5
    requirement: str | None = None
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None
    status: int = 502
    error: str = "as_unreachable"


def _unreachable(detail: str) -> AAuthError:
    return problem(502, "as_unreachable", detail)


class _Send(Call):
    """One request to the AS, either way; answers a :class:`FetchResponse` or the
    :class:`FetchError` (never raises: the steps decide what a failure means)."""

    __slots__ = ("access_server", "fed", "method", "payload", "url")

    def __init__(
        self, fed: Federation, state: Mapping[str, Any], method: str, url: str, payload: Any
    ) -> None:
        self.fed = fed
        self.access_server = str(state["as"])
        self.method = method
        self.url = url
        self.payload = payload

    def call(self) -> FetchResponse | FetchError:
        local = self.fed.local_for(self.access_server)
        if local is not None:
            return _fetched(
                local.handle(self.fed.local_request(self.method, self.url, self.payload))
            )
        try:
            return self.fed.client.request(self.method, self.url, json=self.payload)
        except FetchError as exc:
            return exc
        except Exception as exc:  # any failure of the exchange is an unreachable AS, never a 500
            return FetchError("the request failed", repr(exc))

    async def acall(self) -> FetchResponse | FetchError:
        local = self.fed.local_for(self.access_server)
        if local is not None:
            request = self.fed.local_request(self.method, self.url, self.payload)
            return _fetched(await local.ahandle(request))
        client = AsyncOutboundClient(self.fed.client.signer, self.fed.client.policy)
        try:
            return await client.request(self.method, self.url, json=self.payload)
        except FetchError as exc:
            return exc
        except Exception as exc:
            return FetchError("the request failed", repr(exc))
        finally:
            await client.aclose()


class _Metadata(Call):
    """The AS metadata document, through discovery (egress policy, cache)."""

    __slots__ = ("fed", "issuer")

    def __init__(self, fed: Federation, issuer: str) -> None:
        self.fed = fed
        self.issuer = issuer

    def call(self) -> Mapping[str, object] | Exception:
        local = self.fed.local_for(self.issuer)
        if local is not None:
            return dict(local.metadata())
        try:
            return self.fed.server.discovery.metadata(self.issuer, DWK_ACCESS)
        except Exception as exc:
            return exc

    async def acall(self) -> Mapping[str, object] | Exception:
        local = self.fed.local_for(self.issuer)
        if local is not None:
            return dict(local.metadata())
        try:
            return await self.fed.server.discovery.ametadata(self.issuer, DWK_ACCESS)
        except Exception as exc:
            return exc


def _fetched(response: HttpResponse | None) -> FetchResponse:
    if response is None:
        return FetchResponse(404, {}, b"")
    headers = {name.lower(): value for name, value in response.headers}
    return FetchResponse(response.status, headers, response.body)


def _json(response: FetchResponse) -> Any:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/json", "application/problem+json"):
        return None
    try:
        return json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None


def _retry_after(headers: Mapping[str, str], default: int) -> int:
    value = headers.get("retry-after", "").strip()
    return min(int(value), 3600) if value.isdigit() else default


def _same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.netloc) == (y.scheme, y.netloc)


class Federation:
    def __init__(self, server: PersonServer) -> None:
        self.server = server
        cfg = server.config
        self.trusted = frozenset(cfg.trusted_access_servers)
        self.local = cfg.local_access_server
        signer = ServerSigner(cfg.signing_key, cfg.issuer, DWK_PERSON, clock=cfg.clock)
        policy = EgressPolicy(dev_loopback=cfg.dev_loopback, timeout=cfg.access_timeout)
        self.client = OutboundClient(signer, policy)

    def close(self) -> None:
        self.client.close()

    def local_for(self, access_server: str) -> Any:
        """The in-process AS when ``access_server`` is it (PS-AS collapse), else None."""
        local = self.local
        if local is not None and local.config.issuer == access_server:
            return local
        return None

    # -- entry: is this a four-party request? ---------------------------------------------------

    def access_server_for(self, body: Mapping[str, Any]) -> str | None:
        """The AS this request federates to: the resource token's ``aud`` when it is an AS
        we trust (else None: the token is checked as a three-party one, against us)."""
        raw = body.get("resource_token")
        if not isinstance(raw, str) or (
            not self.trusted and self.server.config.trust_access_server is None
        ):
            return None
        try:
            aud = decode_unverified(raw).payload.get("aud")
        except TokenError:
            return None
        cfg = self.server.config
        if not isinstance(aud, str) or (aud == cfg.issuer and self.local is None):
            return None
        if not is_server_identifier(aud, dev_loopback=cfg.dev_loopback):
            return None
        if aud in self.trusted:
            return aud
        hook = cfg.trust_access_server
        return aud if hook is not None and hook(aud) else None

    @staticmethod
    def state(
        access_server: str, body: Mapping[str, Any], verified: VerifiedRequest
    ) -> dict[str, Any]:
        """The federation part of a pending request's data."""
        state: dict[str, Any] = {
            "as": access_server,
            "resource_token": body["resource_token"],
            "presented_token": body["presented_token"],
            "agent_token": verified.token,
            "location": None,
            "retry_at": 0.0,
            "turn_until": 0.0,
            "asked": None,
            "rounds": 0,
        }
        # Chained and parent-mediated requests (verified by chained.py): the AS gets them too,
        # the parent's agent token as agent_token (digest 5.4).
        for name in CHAINED:
            if isinstance(body.get(name), str):
                state[name] = body[name]
        return state

    def local_request(self, method: str, url: str, payload: Any | None) -> HttpRequest:
        body = b"" if payload is None else json_bytes(payload)
        headers: list[tuple[str, str]] = []
        if payload is not None:
            headers.append(("Content-Type", "application/json"))
        assert self.client.signer is not None
        return HttpRequest(
            method, url, list(self.client.signer.headers(method, url, headers, body)), body
        )

    # -- the PS's decision approved at once ------------------------------------------------------

    def first_steps(self, data: dict[str, Any], verified: VerifiedRequest) -> Steps[HttpResponse]:
        """Call the AS now; a ``202`` opens a pending request the agent polls at the PS."""
        fed = dict(data["federation"])
        answer = yield from self._exchange_steps(fed, data)
        if answer.kind == "token":
            return (yield from self._deliver_steps(data, verified, answer, None))
        if answer.kind != "pending":
            raise self._failure(answer)
        pending = self.server.pending
        record = yield from pending.create_steps({**data, "federation": fed}, None)
        yield from self.server.remember_agent_steps(verified)
        try:
            record = yield from fire_steps(record, Event.APPROVED)
        except Refused as refused:  # cannot happen on a fresh record; answer what stands
            raise pending.deferred(refused.record) from None
        raise self._agent_deferred(record, record.data["federation"])

    # -- the agent polls the PS pending URL --------------------------------------------------------

    def poll_steps(self, record: Record, verified: VerifiedRequest) -> Steps[HttpResponse]:
        """An approved federated request: poll the AS when it is due, else answer ``202``."""
        cfg = self.server.config
        now = cfg.clock.now()
        fed = dict(record.data["federation"])
        asked = fed.get("asked")
        if asked is not None and asked["kind"] == "clarification":
            timeout = asked.get("timeout")
            if timeout is None or now < float(asked["asked_at"]) + int(timeout):
                raise self._agent_deferred(record, fed)  # the agent's answer comes by POST
            # Unanswered past the AS's timeout: the AS's answer (408, likely) decides.
        if now < float(fed["retry_at"]) or now < float(fed["turn_until"]):
            raise self._agent_deferred(record, fed)
        # Take the turn: of two polls, one talks to the AS.
        fed["turn_until"] = now + cfg.access_timeout + _TURN_MARGIN
        record = yield from self._save_steps(record, fed)
        answer = yield from self._exchange_steps(fed, record.data)
        fed["turn_until"] = 0.0
        if answer.kind == "token":
            return (yield from self._deliver_steps(record.data, verified, answer, record))
        if answer.kind != "pending":
            yield from self._end_steps(record)
            raise self._failure(answer)
        record = yield from self._save_steps(record, fed)
        raise self._agent_deferred(record, record.data["federation"])

    def action_steps(
        self, record: Record, verified: VerifiedRequest, body: Mapping[str, Any]
    ) -> Steps[HttpResponse]:
        """The agent answers the AS's question the PS passed on: relay it to the AS."""
        fed = dict(record.data["federation"])
        asked = fed.get("asked")
        action = body.get("action")
        if asked is None or asked["kind"] != "clarification":
            raise problem(400, "invalid_request", "there is no open clarification question")
        limit = self.server.config.max_text
        changes: dict[str, Any] = {}
        if action == "clarification_response":
            text = body.get("clarification_response")
            if not isinstance(text, str) or not text.strip():
                raise problem(400, "invalid_request", "clarification_response must be a string")
            if len(text) > limit:
                raise problem(
                    400, "invalid_request", f"clarification_response is over {limit} characters"
                )
            payload: dict[str, Any] = {
                "action": "clarification_response",
                "clarification_response": text,
            }
        elif action == "updated_request":
            pair = yield from self.server.params.verify_pair_steps(
                verified, body, key=bound_key(verified, record.data), audience=str(fed["as"])
            )
            if pair.fixed() != dict(record.data["fixed"]):
                raise problem(
                    400, "invalid_resource_token", "the new resource token changes fixed claims"
                )
            payload = {
                "action": "updated_request",
                "resource_token": body["resource_token"],
                "presented_token": body["presented_token"],
            }
            justification = body.get("justification")
            if isinstance(justification, str):
                if len(justification) > limit:
                    raise problem(
                        400, "invalid_request", f"justification is over {limit} characters"
                    )
                payload["justification"] = justification
            fed["resource_token"] = body["resource_token"]
            fed["presented_token"] = body["presented_token"]
            # The delivery checks read the new pair's scope and presented exp.
            changes = {"scope": sorted(pair.scopes), "presented_exp": pair.presented["exp"]}
            yield from self._presented_steps(pair, str(fed["as"]))
        else:
            raise problem(
                400, "invalid_request", "action must be clarification_response or updated_request"
            )
        fed["asked"] = None
        data = {**record.data, **changes}
        answer = yield from self._post_steps(fed, data, payload)
        if answer.kind == "token":
            return (yield from self._deliver_steps(data, verified, answer, record))
        if answer.kind != "pending":
            yield from self._end_steps(record)
            raise self._failure(answer)
        record = yield from self._save_steps(record, fed, changes)
        raise self._agent_deferred(record, record.data["federation"])

    def cancelled_steps(self, record: Record) -> Steps[None]:
        """The agent cancelled: cancel at the AS too."""
        fed = record.data.get("federation")
        if isinstance(fed, Mapping):
            yield from self._cancel_steps(fed)

    def _cancel_steps(self, fed: Mapping[str, Any]) -> Steps[None]:
        """A signed ``DELETE`` of the AS pending URL (best effort: the AS's pending request
        would otherwise expire on its own)."""
        if fed.get("location"):
            yield _Send(self, fed, "DELETE", str(fed["location"]), None)

    # -- one exchange -------------------------------------------------------------------------

    def _exchange_steps(self, fed: dict[str, Any], data: Mapping[str, Any]) -> Steps[AsAnswer]:
        """The first POST to the AS token endpoint, or a GET of its ``Location``; ``fed`` is
        updated in place (location, retry time, question, rounds)."""
        if fed.get("location") is None:
            metadata = yield _Metadata(self, str(fed["as"]))
            endpoint = self._endpoint(metadata, str(fed["as"]))
            if endpoint is None:
                return AsAnswer("unreachable", "the access server's metadata is unusable")
            payload = {
                "resource_token": fed["resource_token"],
                "agent_token": fed["agent_token"],
                "presented_token": fed["presented_token"],
                **{name: fed[name] for name in CHAINED if name in fed},
            }
            yield from self._presented_steps(None, str(fed["as"]), fed)
            response = yield _Send(self, fed, "POST", endpoint, payload)
            answer = self._classify(response, polling=False, base=endpoint)
        else:
            response = yield _Send(self, fed, "GET", str(fed["location"]), None)
            answer = self._classify(response, polling=True, base=str(fed["location"]))
        if answer.kind != "pending":
            return answer
        if answer.location:
            fed["location"] = answer.location
        if fed.get("location") is None:
            return AsAnswer("unreachable", "the access server's 202 has no Location")
        fed["retry_at"] = self.server.config.clock.now() + answer.retry_after
        return (yield from self._requirement_steps(fed, data, answer))

    def _post_steps(
        self, fed: dict[str, Any], data: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> Steps[AsAnswer]:
        """A signed POST to the AS pending URL (an answer), and what the AS asks next."""
        location = str(fed["location"])
        response = yield _Send(self, fed, "POST", location, payload)
        answer = self._classify(response, polling=True, base=location)
        if answer.kind != "pending":
            return answer
        if answer.location:
            fed["location"] = answer.location
        fed["retry_at"] = self.server.config.clock.now() + answer.retry_after
        return (yield from self._requirement_steps(fed, data, answer))

    def _endpoint(self, metadata: object, issuer: str) -> str | None:
        if not isinstance(metadata, Mapping) or metadata.get("issuer") != issuer:
            return None
        endpoint = metadata.get("auth_token_endpoint")
        if not isinstance(endpoint, str) or not _same_origin(endpoint, issuer):
            return None
        return endpoint

    def _presented_steps(
        self, pair: TokenPair | None, access_server: str, fed: Mapping[str, Any] | None = None
    ) -> Steps[None]:
        """Record that our person token goes to ``access_server`` (before it does)."""
        cfg = self.server.config
        if pair is not None:
            claims: Mapping[str, object] = pair.presented
        else:
            assert fed is not None
            try:
                claims = decode_unverified(str(fed["presented_token"])).payload
            except TokenError:
                return
        if claims.get("iss") == cfg.issuer and claims.get("jti"):
            yield self.server.rop(self.server.rec.presented_to(str(claims["jti"]), access_server))

    def _classify(self, response: object, *, polling: bool, base: str) -> AsAnswer:
        if isinstance(response, FetchError):
            return AsAnswer(
                "unreachable", f"the access server could not be reached: {response.reason}"
            )
        if not isinstance(response, FetchResponse):
            return AsAnswer("unreachable", "the access server could not be reached")
        status = response.status
        body = _json(response)
        default = self.server.config.poll_interval
        if status == 200:
            if (
                isinstance(body, dict)
                and isinstance(body.get("auth_token"), str)
                and body["auth_token"]
            ):
                return AsAnswer("token", token=body["auth_token"])
            return AsAnswer("unreachable", "the access server answered 200 without an auth token")
        if status == 202:
            return self._pending(response, body, polling=polling, base=base)
        if polling and status in (429, 503):
            # Slow down / back off: keep the request pending and come back later.
            wait = _retry_after(response.headers, default) + (5 if status == 429 else 0)
            return AsAnswer("pending", retry_after=wait)
        if status in _RELAYED:
            media = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media == "application/problem+json" and isinstance(body, dict):
                code = body.get("error")
                if isinstance(code, str) and _CODE.fullmatch(code):
                    detail = body.get("detail")
                    text = detail[:_MAX_DETAIL] if isinstance(detail, str) else ""
                    return AsAnswer("error", text, status=status, error=code)
        return AsAnswer("unreachable", f"the access server answered {status} unusably")

    def _pending(
        self, response: FetchResponse, body: object, *, polling: bool, base: str
    ) -> AsAnswer:
        headers = response.headers
        location = headers.get("location")
        url = urljoin(base, location) if location else None
        if not polling and url is None:
            return AsAnswer("unreachable", "the access server's 202 has no Location")
        if url is not None and not _same_origin(url, base):
            return AsAnswer("unreachable", "the access server's Location is on another origin")
        if "retry-after" not in headers or not isinstance(body, dict):
            return AsAnswer("unreachable", "the access server's 202 is malformed")
        requirement: str | None = None
        params: dict[str, str] = {}
        raw = headers.get("aauth-requirement")
        if raw:
            try:
                parsed = parse_aauth_requirement(raw)
            except FieldError:
                return AsAnswer("unreachable", "the access server's AAuth-Requirement is malformed")
            requirement = parsed.requirement
            params = {k: v for k, v in parsed.params.items() if isinstance(v, str)}
        return AsAnswer(
            "pending",
            location=url,
            retry_after=_retry_after(headers, self.server.config.poll_interval),
            requirement=requirement,
            params=params,
            body=body,
        )

    # -- what the AS asks ---------------------------------------------------------------------

    def _requirement_steps(
        self, fed: dict[str, Any], data: Mapping[str, Any], answer: AsAnswer
    ) -> Steps[AsAnswer]:
        cfg = self.server.config
        requirement = answer.requirement
        body = answer.body or {}
        if requirement in ("claims", "clarification"):
            fed["rounds"] = int(fed.get("rounds", 0)) + 1
            if fed["rounds"] > cfg.clarification_rounds + 2:
                return AsAnswer("unreachable", "the access server keeps asking")
        if requirement == "claims":
            names = body.get("required_claims")
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and n for n in names)
            ):
                return AsAnswer("unreachable", "the access server's required_claims are malformed")
            claims = self._claims(data, fed, tuple(names))
            if isinstance(claims, AAuthError):
                yield from self._cancel_steps(fed)
                return AsAnswer("error", claims.detail, status=claims.status, error=claims.error)
            return (yield from self._post_steps(fed, data, {"action": "claims", "claims": claims}))
        if requirement == "clarification":
            question = body.get("clarification")
            if not isinstance(question, str) or not question.strip():
                return AsAnswer("unreachable", "the access server's clarification is malformed")
            options = body.get("options")
            opts = (
                tuple(o for o in options if isinstance(o, str)) if isinstance(options, list) else ()
            )
            hook = cfg.access_clarification
            if hook is not None:
                reply = hook(
                    AccessQuestion(
                        person=str(data["person"]),
                        agent=str(data["agent"]),
                        access_server=str(fed["as"]),
                        resource=str(data["resource"]),
                        scopes=frozenset(data.get("scope", ())),
                        question=question,
                        options=opts,
                    )
                )
                if isinstance(reply, str) and reply.strip():
                    payload = {"action": "clarification_response", "clarification_response": reply}
                    return (yield from self._post_steps(fed, data, payload))
            if "clarification" not in data.get("capabilities", ()):
                yield from self._cancel_steps(fed)
                return AsAnswer(
                    "error",
                    "the access server asks a question no one here can answer",
                    status=403,
                    error="user_unreachable",
                )
            timeout = body.get("timeout")
            fed["asked"] = {
                "kind": "clarification",
                "question": question,
                "options": list(opts),
                "timeout": timeout if isinstance(timeout, int) and timeout >= 0 else None,
                "asked_at": cfg.clock.now(),
            }
            return answer
        if requirement == "interaction":
            params = answer.params or {}
            url, code = params.get("url"), params.get("code")
            if not url or not code:
                return AsAnswer("unreachable", "the access server's interaction is malformed")
            if "interaction" not in data.get("capabilities", ()):
                yield from self._cancel_steps(fed)
                return AsAnswer(
                    "error",
                    "the access server needs the person and the agent cannot bring them",
                    status=403,
                    error="user_unreachable",
                )
            fed["asked"] = {"kind": "interaction", "url": url, "code": code}
            return answer
        fed["asked"] = None  # approval, payment or nothing: keep polling
        return answer

    def _claims(
        self, data: Mapping[str, Any], fed: Mapping[str, Any], names: tuple[str, ...]
    ) -> dict[str, Any] | AAuthError:
        if "sub" in names:
            return _unreachable("the access server asked for sub")
        hook = self.server.config.access_claims
        known: Mapping[str, Any] = {}
        if hook is not None:
            known = (
                hook(
                    ClaimsRequest(
                        person=str(data["person"]),
                        names=names,
                        access_server=str(fed["as"]),
                        resource=str(data["resource"]),
                    )
                )
                or {}
            )
        missing = [n for n in names if n not in known]
        if missing:
            listed = ", ".join(n[:64] for n in missing[:10]) + (
                ", ..." if len(missing) > 10 else ""
            )
            return problem(
                403,
                "denied",
                f"the person server cannot provide what the access server requires: {listed}",
            )
        return {n: known[n] for n in names if n != "sub"}

    # -- answers to the agent -------------------------------------------------------------------

    def _agent_deferred(self, record: Record, fed: Mapping[str, Any]) -> Deferred:
        cfg = self.server.config
        now = cfg.clock.now()
        location = self.server.pending.location(record.id)
        wait = max(cfg.poll_interval, math.ceil(float(fed.get("retry_at", 0)) - now))
        asked = fed.get("asked")
        if asked is not None and asked["kind"] == "clarification":
            extra: dict[str, object] = {"clarification": asked["question"]}
            if asked.get("timeout") is not None:
                left = float(asked["asked_at"]) + int(asked["timeout"]) - now
                extra["timeout"] = max(0, math.ceil(left))
            if asked.get("options"):
                extra["options"] = list(asked["options"])
            return Deferred(
                location, requirement="clarification", retry_after=cfg.poll_interval, extra=extra
            )
        if asked is not None and asked["kind"] == "interaction":
            return Deferred(
                location,
                requirement="interaction",
                params={"url": asked["url"], "code": asked["code"]},
                retry_after=wait,
            )
        return Deferred(location, retry_after=wait)

    def _failure(self, answer: AsAnswer) -> AAuthError:
        if answer.kind == "error":
            return problem(answer.status, answer.error, answer.detail)
        return _unreachable(answer.detail or "the access server could not be reached")

    def _save_steps(
        self, record: Record, fed: Mapping[str, Any], changes: Mapping[str, Any] | None = None
    ) -> Steps[Record]:
        """Store ``fed`` (and ``changes`` to the request) on the record; a lost race means
        another poll moved it: answer from where it now stands."""
        data = {**record.data, **(changes or {}), "federation": dict(fed)}
        try:
            stored: Record = yield StoreOp(
                "compare_and_set", (KIND_PENDING, record.id, record.version, data)
            )
            return stored
        except (VersionConflict, RecordNotFound):
            fresh = yield StoreOp("get", (KIND_PENDING, record.id))
        if fresh is None or fresh.data.get("state") != State.APPROVED.value:
            raise problem(410, "gone", "this pending request is finished")
        raise self._agent_deferred(fresh, fresh.data["federation"])

    def _end_steps(self, record: Record | None) -> Steps[None]:
        """This poll hands out the outcome: the pending URL is gone from now on."""
        if record is None:
            return
        try:
            yield from fire_steps(record, Event.DELIVERED)
        except Refused:
            raise problem(410, "gone", "this pending request is finished") from None

    # -- delivery (digest 3.5, PS check before returning an AS-issued token) ---------------------

    def _deliver_steps(
        self,
        data: Mapping[str, Any],
        verified: VerifiedRequest,
        answer: AsAnswer,
        record: Record | None,
    ) -> Steps[HttpResponse]:
        fed = data["federation"]
        try:
            checked = yield from self.check_token_steps(
                str(answer.token), data, fed, bound_key(verified, data)
            )
        except AAuthError:
            yield from self._end_steps(record)
            raise
        yield from self._end_steps(record)
        yield from self.server.remember_agent_steps(verified)
        decided = data.get("decision_entry")
        mission = data.get("mission_s256")
        if mission is not None and isinstance(decided, Mapping):
            yield from self.server.missions.log_steps(str(mission), decided)
        lifetime = int(checked["exp"]) - int(self.server.config.clock.now())  # type: ignore[call-overload]
        return HttpResponse.json(
            200,
            {"auth_token": answer.token, "expires_in": max(lifetime, 0)},
            headers=[("Cache-Control", "no-store")],
        )

    def check_token_steps(
        self, raw: str, data: Mapping[str, Any], fed: Mapping[str, Any], agent_key: PublicKey
    ) -> Steps[Mapping[str, object]]:
        """Every check of digest 3.5 before the PS hands an AS token on; any failure is
        ``502 as_unreachable`` (the AS misbehaved, not the agent)."""
        cfg = self.server.config
        access_server = str(fed["as"])
        try:
            token = decode_unverified(raw)
            check_header(token, TYP_AUTH)
        except TokenError as exc:
            raise _unreachable(f"the access server's token is malformed: {exc.detail}") from exc
        claims = token.payload
        if claims.get("iss") != access_server:
            raise _unreachable("the access server's token names another issuer")
        if claims.get("dwk") != DWK_ACCESS:
            raise _unreachable("the access server's token has the wrong dwk")
        kid = token.header.get("kid")
        if not isinstance(kid, str):
            raise _unreachable("the access server's token names no kid")
        key: PublicKey
        local = self.local_for(access_server)
        if local is not None:
            key = local.config.signing_key.public
            if local.config.signing_key.kid != kid:
                raise _unreachable("the access server's token is signed with an unknown key")
        else:
            try:
                key = yield KeyNeed(access_server, DWK_ACCESS, kid)
            except AAuthError as exc:
                raise _unreachable(f"no key for the access server's token: {exc.detail}") from exc
        resource = str(data["resource"])
        try:
            verify_jwt_signature(token, key, allow_eddsa=cfg.allow_eddsa)
            check_claims(
                token,
                typ=TYP_AUTH,
                now=cfg.clock.now(),
                audience=resource,
                clock_skew=cfg.signature_window,
                dev_loopback=cfg.dev_loopback,
                allow_eddsa=cfg.allow_eddsa,
            )
        except TokenError as exc:
            raise _unreachable(f"the access server's token fails: {exc.detail}") from exc
        cnf = claims.get("cnf")
        if (
            not isinstance(cnf, Mapping)
            or not isinstance(cnf.get("jwk"), Mapping)
            or not _same_key(cnf["jwk"], agent_key)
        ):
            raise _unreachable("the access server's token is bound to another key")
        if claims.get("ps") != cfg.issuer:
            raise _unreachable("the access server's token names another person server")
        person = data.get("person")
        directed = None if person is None else self.server.directed_sub(str(person), resource)
        if claims.get("sub") != directed or claims.get("sub") != data.get("rt_sub"):
            raise _unreachable("the access server's token names another person")
        scope = claims.get("scope")
        granted = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        if not granted <= frozenset(data.get("scope", ())):
            raise _unreachable("the access server granted more than the resource token asks")
        exp = claims.get("exp")
        presented_exp = data.get("presented_exp")
        if not isinstance(exp, int) or presented_exp is None or exp > int(presented_exp):
            raise _unreachable("the access server's token outlives the presented token")
        upstream_exp = data.get("upstream_exp")
        if upstream_exp is not None and exp > int(upstream_exp):
            raise _unreachable("the access server's token outlives the upstream token")
        return claims


__all__ = ["ACCESS_WELL_KNOWN", "AccessQuestion", "ClaimsRequest", "Federation"]
