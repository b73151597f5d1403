"""Parameter tokens at the PS (digest 3.4, 5.3) and the tokens the PS mints (3.3, 3.5).

A token in a request *parameter* that fails answers its own ``400`` code
(``invalid_resource_token``, ``expired_presented_token``, ...), never a ``401``: the
``Signature-Key`` token is the agent's and already verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..keys.jwk import PublicKey
from ..param_tokens import fail, param_token_steps, same_key
from ..records import RecordOps, RecordStore, RequestFacts
from ..resource.state import digest_id
from ..revocation import problem
from ..steps import Steps
from ..storage.base import AsyncPendingStore, PendingStore
from ..tokens.aauth import (
    DWK_PERSON,
    TYP_AUTH,
    TYP_PERSON,
    TYP_RESOURCE,
    mint_auth_token,
    mint_person_token,
    new_jti,
    presented_jti,
)
from ..tokens.jwt import TokenError, UnverifiedJWT, decode_unverified
from ..verifier import VerifiedRequest
from .chained import bound_key

if TYPE_CHECKING:
    from .server import PersonServer


class RecordRevocations:
    """The PS's :class:`~aauth_server.verifier.VerificationState`: revoked ``(iss, jti)`` come
    from the durable records (an AP's revocation survives a restart), the replay cache from
    the pending store."""

    def __init__(
        self,
        records: RecordStore,
        ops: RecordOps,
        store: PendingStore,
        async_store: AsyncPendingStore,
    ) -> None:
        self.records = records
        self.ops = ops
        self.store = store
        self.async_store = async_store

    def is_revoked(self, iss: str, jti: str) -> bool:
        return self.records.run(self.ops.is_revoked(iss, jti))

    async def ais_revoked(self, iss: str, jti: str) -> bool:
        return await self.records.arun(self.ops.is_revoked(iss, jti))

    def first_use(self, key: str, ttl: float) -> bool:
        return self.store.remember_once("replay:" + digest_id(key), ttl)

    async def afirst_use(self, key: str, ttl: float) -> bool:
        return await self.async_store.remember_once("replay:" + digest_id(key), ttl)


@dataclass(frozen=True, slots=True)
class Minted:
    """A token the PS just signed, with what its issued-token record keeps."""

    token: str
    lifetime: int
    jti: str
    iat: int
    exp: int
    sub: str


#: Claims an ``updated_request`` must not change (digest 7).
FIXED_CLAIMS = ("iss", "ps", "sub", "agent_jkt", "mission_s256", "tenant")


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A verified ``resource_token`` with the ``presented_token`` it was issued against."""

    resource_token: Mapping[str, object]
    presented: Mapping[str, object]

    @property
    def scopes(self) -> frozenset[str]:
        scope = self.resource_token.get("scope")
        return frozenset(scope.split()) if isinstance(scope, str) else frozenset()

    def fixed(self) -> dict[str, object]:
        return {name: self.resource_token.get(name) for name in FIXED_CLAIMS}


_same_key = same_key
_fail = fail


@dataclass(frozen=True, slots=True)
class PairPeek:
    """A token request's ``resource_token`` and ``presented_token``, decoded but not yet
    verified: which revocation facts their verification will ask for, so they can be read
    in the agent's records transaction (:meth:`ParamTokens.verify_pair_steps` uses them
    only when its own questions, from the verified claims, are these)."""

    resource_token: UnverifiedJWT
    presented_token: UnverifiedJWT
    tokens: tuple[tuple[str, str], tuple[str, str]]
    since: int


def peek_pair(body: Mapping[str, Any]) -> PairPeek | None:
    """The request's pair when both decode and name their ``iss``, ``jti`` (and the
    presented token its ``iat``) as the verification will; None otherwise (the
    verification then finds what is wrong, where it always did)."""
    rt_raw, pt_raw = body.get("resource_token"), body.get("presented_token")
    if not isinstance(rt_raw, str) or not isinstance(pt_raw, str):
        return None
    try:
        rt, pt = decode_unverified(rt_raw), decode_unverified(pt_raw)
    except TokenError:
        return None
    rt_claims, pt_claims = rt.payload, pt.payload
    names = (rt_claims.get("iss"), rt_claims.get("jti"), pt_claims.get("iss"), pt_claims.get("jti"))
    iat = pt_claims.get("iat")
    if not all(type(name) is str for name in names) or type(iat) is not int:
        return None
    rt_iss, rt_jti, pt_iss, pt_jti = names
    tokens = ((str(rt_iss), str(rt_jti)), (str(pt_iss), str(pt_jti)))
    return PairPeek(rt, pt, tokens, iat)


class ParamTokens:
    def __init__(self, server: PersonServer) -> None:
        self.server = server

    def verify_pair_steps(
        self,
        verified: VerifiedRequest,
        body: Mapping[str, Any],
        *,
        key: PublicKey | None = None,
        audience: str | None = None,
        peeked: PairPeek | None = None,
        facts: RequestFacts | None = None,
    ) -> Steps[TokenPair]:
        """Digest 3.4 "verification by PS/AS", in order: the resource token's ``aud`` is this
        PS (three-party) or ``audience``, the Access Server it federates to (four-party);
        ``key`` is the key the pair is bound to when it is not the signer's (a sub-agent's).
        ``peeked`` is :func:`peek_pair` of this ``body`` (its tokens are not decoded again),
        ``facts`` what the agent's records transaction read for it."""
        cfg = self.server.config
        bound = verified.key if key is None else key
        for field in ("resource_token", "presented_token"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise problem(400, "invalid_request", f"{field} is required")
        _, rt = yield from self._token_steps(
            body["resource_token"],
            (TYP_RESOURCE,),
            "resource",
            audience=audience or cfg.issuer,
            decoded=None if peeked is None else peeked.resource_token,
        )
        if rt["agent_jkt"] != bound.thumbprint:
            raise _fail("resource", "agent_jkt is not the key that signed this request")
        typ, presented = yield from self._token_steps(
            body["presented_token"],
            (TYP_PERSON, TYP_AUTH),
            "presented",
            audience=str(rt["iss"]),
            decoded=None if peeked is None else peeked.presented_token,
        )
        cnf = presented.get("cnf")
        assert isinstance(cnf, dict)
        if not _same_key(cnf["jwk"], bound):
            raise _fail("presented", "cnf.jwk is not the key named by agent_jkt")
        issuer = presented["iss"] if typ == TYP_PERSON else presented["ps"]
        if presented["jti"] != presented_jti(rt):
            raise _fail("resource", "presented_jti does not name the presented token")
        if not issuer == rt["ps"] == cfg.issuer:
            raise _fail("resource", "the resource token is not for this person server")
        for claim in ("sub", "mission_s256", "tenant"):
            if presented.get(claim) != rt.get(claim):
                raise _fail("resource", f"{claim} differs from the presented token")
        agent = verified.claims
        iat = presented["iat"]
        assert isinstance(iat, int)
        # One records transaction answers all three revocation questions: the agent's own,
        # read with its facts, when it asked these very questions.
        server = self.server
        tokens = [(str(rt["iss"]), str(rt["jti"])), (str(presented["iss"]), str(presented["jti"]))]
        subject = (str(agent["iss"]), str(agent["sub"]))
        answers = None if facts is None else facts.revocation_facts(tokens, subject, iat)
        if answers is None:
            answers = yield server.rop(server.rec.revocation_facts(tokens, subject, iat))
        (rt_revoked, pt_revoked), cut = answers
        if rt_revoked:
            raise _fail("resource", "the resource revoked this resource token", "revoked")
        if pt_revoked or cut:
            raise _fail("presented", "the presented token was revoked", "revoked")
        return TokenPair(rt, presented)

    def _token_steps(
        self,
        raw: str,
        typs: tuple[str, ...],
        name: str,
        *,
        audience: str,
        decoded: UnverifiedJWT | None = None,
    ) -> Steps[tuple[str, Mapping[str, object]]]:
        # The verification is shared with the Access Server (aauth_server.param_tokens).
        return (
            yield from param_token_steps(
                self.server.config,
                raw,
                typs,
                name,
                audience=audience,
                own_dwk=DWK_PERSON,
                decoded=decoded,
            )
        )

    def _revoked_steps(self, iss: str, jti: str) -> Steps[bool]:
        server = self.server
        revoked: bool = yield server.rop(server.rec.is_revoked(iss, jti))
        return revoked

    def cut_off_steps(self, agent_iss: str, agent: str, since: float) -> Steps[bool]:
        """Was an agent token of this agent revoked at or after ``since``?"""
        server = self.server
        cut: bool = yield server.rop(server.rec.cut_off_since(agent_iss, agent, since))
        return cut

    # -- minting ------------------------------------------------------------------------------

    def _lifetime(self, ceiling: int, *limits: object) -> int:
        now = self.server.config.clock.now()
        caps = [ceiling] + [int(float(str(x)) - now) for x in limits if x is not None]
        return min(caps)

    def person_token(
        self, verified: VerifiedRequest, person: str, data: Mapping[str, Any]
    ) -> Minted | None:
        """A person token for ``data["resource"]``; None when no lifetime is left."""
        cfg = self.server.config
        lifetime = self._lifetime(
            cfg.person_token_lifetime,
            verified.claims.get("exp"),
            data.get("mission_expires"),
            *_chain_caps(data),
        )
        if lifetime <= 0:
            return None
        now = cfg.clock.now()
        jti = new_jti()
        sub = self.server.directed_sub(person, str(data["resource"]))
        token = mint_person_token(
            cfg.signing_key,
            iss=cfg.issuer,
            aud=str(data["resource"]),
            sub=sub,
            cnf_jwk=bound_key(verified, data),
            now=now,
            lifetime=lifetime,
            mission_s256=data.get("mission_s256"),
            tenant=data.get("tenant"),
            dev_loopback=cfg.dev_loopback,
            jti=jti,
        )
        return Minted(token, lifetime, jti, int(now), int(now) + lifetime, sub)

    def auth_token(self, verified: VerifiedRequest, data: Mapping[str, Any]) -> Minted | None:
        """An auth token from the stored request ``data``; None when no lifetime is left."""
        cfg = self.server.config
        lifetime = self._lifetime(
            cfg.auth_token_lifetime,
            verified.claims.get("exp"),
            data.get("presented_exp"),
            data.get("mission_expires"),
            *_chain_caps(data),
        )
        if lifetime <= 0:
            return None
        extra = {k: data[k] for k in ("mission_s256", "tenant") if data.get(k) is not None}
        now = cfg.clock.now()
        jti = new_jti()
        token = mint_auth_token(
            cfg.signing_key,
            iss=cfg.issuer,
            dwk=DWK_PERSON,
            aud=str(data["resource"]),
            ps=cfg.issuer,
            sub=str(data["rt_sub"]),
            cnf_jwk=bound_key(verified, data),
            now=now,
            lifetime=lifetime,
            scope=" ".join(sorted(data["granted"])) or None,
            extra=extra,
            dev_loopback=cfg.dev_loopback,
            jti=jti,
        )
        return Minted(token, lifetime, jti, int(now), int(now) + lifetime, str(data["rt_sub"]))


def _chain_caps(data: Mapping[str, Any]) -> tuple[object, ...]:
    """A chained token expires no later than its upstream token, a sub-agent's no later than
    the sub-agent token (digest 3.3, 3.5)."""
    return (data.get("upstream_exp"), data.get("subagent_exp"))
