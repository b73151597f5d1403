"""The PS side of call chaining and sub-agents (digest 5.2, 5.3, 9): what ``upstream_token``
and ``subagent_token`` change in a token request, answered from this PS's records.

* ``upstream_token``: verified by :func:`aauth_server.chaining.upstream_steps` with this PS
  as the PS it must name.  The person is the one the upstream token identifies, resolved
  from the PS's record of that token (PS-issued) or of the person token it presented to the
  AS that issued it (same ``aud`` and ``sub``); no record -> ``invalid_upstream_token``.  The
  agent the upstream token was issued to is identified from the same record: if it (or its
  binding) was revoked, ``revoked_upstream_token``.  No agent-person binding is used or made;
  the upstream ``mission_s256`` is copied (the intermediary sends none); tokens issued from it
  expire no later than it and record ``upstream_iss``/``upstream_jti``.
* ``subagent_token``: verified by :func:`aauth_server.chaining.subagent_steps`; the token is
  issued for the sub-agent (``cnf`` = its key, ``agent_jkt`` checked against it), while the
  parent that signed stays the one who polls and whose binding names the person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..chaining import (
    UPSTREAM,
    SubAgent,
    Upstream,
    subagent_steps,
    token_error,
    upstream_steps,
)
from ..keys.jwk import PublicKey
from ..records import IssuedToken
from ..resource.state import REVOCATION_GRACE
from ..revocation import problem
from ..steps import Steps
from ..tokens.aauth import DWK_PERSON
from ..verifier import VerifiedRequest
from .policy import PERSON

if TYPE_CHECKING:
    from .server import PersonServer


@dataclass(frozen=True, slots=True)
class Chained:
    """What ``upstream_token``/``subagent_token`` made of a request."""

    person: str | None
    upstream: Upstream | None = None
    subagent: SubAgent | None = None
    #: Members for the pending record (JSON): caps, the sub-agent key, the upstream's ids.
    data: Mapping[str, Any] = field(default_factory=dict)

    def key(self, verified: VerifiedRequest) -> PublicKey:
        """The key the tokens of this request are bound to (the sub-agent's, if any)."""
        return verified.key if self.subagent is None else self.subagent.key


def bound_key(verified: VerifiedRequest, data: Mapping[str, Any]) -> PublicKey:
    """The key a stored request's token goes to: the sub-agent's when one was named."""
    jwk = data.get("subagent_jwk")
    return verified.key if jwk is None else PublicKey.from_jwk(jwk)


class ChainedRequests:
    def __init__(self, server: PersonServer) -> None:
        self.server = server

    def facts_steps(
        self, verified: VerifiedRequest, body: Mapping[str, Any], person: str | None
    ) -> Steps[Chained]:
        """Verify the request's ``upstream_token`` and ``subagent_token`` (when present)."""
        upstream = subagent = None
        data: dict[str, Any] = {}
        if "upstream_token" in body:
            if "mission_s256" in body:
                raise problem(
                    400,
                    "invalid_request",
                    "mission_s256 is not sent with upstream_token: the PS copies the upstream's",
                )
            upstream, person = yield from self._upstream_steps(verified, body["upstream_token"])
            data.update(upstream.record_fields(), upstream_exp=upstream.exp)
            if upstream.mission_s256 is not None:
                mission = yield from self.server.missions.current_steps(upstream.mission_s256)
                if mission is None or mission.state == "terminated":
                    raise token_error(
                        UPSTREAM, "the mission of the upstream token ended", "revoked"
                    )
                data["mission_s256"] = mission.s256
                data["mission_expires"] = mission.expires_at
        if "subagent_token" in body:
            subagent = yield from subagent_steps(
                body["subagent_token"],
                agent=verified.claims,
                cfg=self.server.config,
                own_dwk=DWK_PERSON,
                revoked=self._subagent_revoked_steps,
            )
            # Which sub-agent this token names, for its AP's later revocation to cascade
            # (digest 5.7: the PS keeps each accepted agent token's (iss, jti) and sub).
            server = self.server
            yield server.rop(
                server.rec.remember_seen(
                    subagent.iss,
                    subagent.jti,
                    sub=subagent.agent,
                    exp=subagent.exp + REVOCATION_GRACE,
                )
            )
            data.update(
                subagent=subagent.agent,
                subagent_jti=subagent.jti,
                subagent_exp=subagent.exp,
                subagent_jwk=dict(subagent.key.jwk),
            )
        return Chained(person, upstream, subagent, data)

    # -- upstream -----------------------------------------------------------------------------

    def _upstream_steps(
        self, verified: VerifiedRequest, raw: object
    ) -> Steps[tuple[Upstream, str]]:
        server = self.server
        cfg = server.config
        found: dict[str, IssuedToken | None] = {}

        def record_steps(up: Upstream) -> Steps[IssuedToken | None]:
            if up.jti not in found:
                if up.iss == cfg.issuer:
                    row = yield server.rop(server.rec.issued(up.jti))
                    if row is not None and (row.aud, row.sub) != (up.intermediary, up.sub):
                        row = None  # not the token we issued under that jti
                else:
                    # An AS's auth token: the person token this PS presented to that AS for
                    # the same resource (aud) and person (sub).
                    rows = yield server.rop(
                        server.rec.issued_where(
                            type=PERSON,  # the issued-token type of person tokens
                            aud=up.intermediary,
                            sub=up.sub,
                            presented_to=up.iss,
                            limit=1,
                        )
                    )
                    row = rows[0] if rows else None
                found[up.jti] = row
            return found[up.jti]

        def known_issuer(up: Upstream) -> Steps[bool]:
            return (yield from record_steps(up)) is not None

        def revoked(up: Upstream) -> Steps[bool]:
            row = yield from record_steps(up)
            if row is None or row.person is None:
                raise token_error(UPSTREAM, "this PS has no record of the upstream token's person")
            if row.revoked_at is not None:
                return True
            tokens = [(up.iss, up.jti)]
            agent = None
            if row.agent_issuer is not None and row.agent is not None:
                agent = (row.agent_issuer, row.agent)
                if row.agent_jti is not None:
                    tokens.append((row.agent_issuer, row.agent_jti))
            flags, cut = yield server.rop(server.rec.revocation_facts(tokens, agent, row.iat))
            if any(flags) or cut:
                return True
            if agent is not None and row.upstream_jti is None:
                # The calling agent's binding: revoked (or moved to someone else) since.
                bound = yield from server.bindings.person_steps(*agent)
                return bool(bound != row.person)
            return False

        upstream = yield from upstream_steps(
            raw,
            agent=verified.claims,
            ps=cfg.issuer,
            cfg=cfg,
            own_dwk=DWK_PERSON,
            known_issuer=known_issuer,
            revoked=revoked,
        )
        row = found.get(upstream.jti)
        assert row is not None and row.person is not None  # revoked() refused it otherwise
        return upstream, row.person

    # -- sub-agents ---------------------------------------------------------------------------

    def _subagent_revoked_steps(self, subagent: SubAgent) -> Steps[bool]:
        """Its AP revoked this sub-agent token, or cut the sub-agent off since it was issued."""
        server = self.server
        (flag,), cut = yield server.rop(
            server.rec.revocation_facts(
                [(subagent.iss, subagent.jti)], (subagent.iss, subagent.agent), subagent.iat
            )
        )
        return bool(flag or cut)


__all__ = ["Chained", "ChainedRequests", "bound_key"]
