"""Parameter tokens at the PS (digest 3.4, 5.3) and the tokens the PS mints (3.3, 3.5).

A token in a request *parameter* that fails answers its own ``400`` code
(``invalid_resource_token``, ``expired_presented_token``, ...), never a ``401``: the
``Signature-Key`` token is the agent's and already verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AAuthError
from ..identifiers import is_server_identifier
from ..keys.jwk import REQUIRED_MEMBERS, PublicKey
from ..resource.state import KIND_REVOKED, digest_id
from ..revocation import problem
from ..steps import Steps, StoreOp
from ..tokens.aauth import (
    DWK_PERSON,
    EXPECTED_DWK,
    TYP_AUTH,
    TYP_PERSON,
    TYP_RESOURCE,
    check_claims,
    check_header,
    mint_auth_token,
    mint_person_token,
    presented_jti,
)
from ..tokens.jwt import TokenError, decode_unverified, verify_jwt_signature
from ..verifier import KeyNeed, VerifiedRequest

if TYPE_CHECKING:
    from .server import PersonServer

KIND_SEEN = "agent-seen"
"""``digest_id(agent iss, agent jti)`` -> the agent ``sub``: which agent a revoked jti named."""
KIND_CUTOFF = "agent-cutoff"
"""``digest_id(agent iss, agent sub)`` -> ``{"at"}``: tokens and requests of that agent from
before ``at`` are revoked (an AP revoked one of its agent tokens, digest 5.7 cascade)."""

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


def _same_key(jwk: Mapping[str, object], key: PublicKey) -> bool:
    """``jwk``'s thumbprint is ``key``'s: RFC 7638 hashes exactly these members, so
    comparing them is the same test without the hashing (agent_jkt is ``key``'s already)."""
    members = REQUIRED_MEMBERS.get(key.kty, ())
    return bool(members) and all(jwk.get(m) == key.jwk[m] for m in members)


def _fail(name: str, detail: str, code: str = "invalid") -> AAuthError:
    return problem(400, f"{code}_{name}_token", detail)


class ParamTokens:
    def __init__(self, server: PersonServer) -> None:
        self.server = server

    def verify_pair_steps(
        self, verified: VerifiedRequest, body: Mapping[str, Any]
    ) -> Steps[TokenPair]:
        """Digest 3.4 "verification by PS/AS", in order, for a three-party request."""
        cfg = self.server.config
        for field in ("resource_token", "presented_token"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise problem(400, "invalid_request", f"{field} is required")
        _, rt = yield from self._token_steps(
            body["resource_token"], (TYP_RESOURCE,), "resource", audience=cfg.issuer
        )
        if rt["agent_jkt"] != verified.jkt:
            raise _fail("resource", "agent_jkt is not the key that signed this request")
        if (yield from self._revoked_steps(str(rt["iss"]), str(rt["jti"]))):
            raise _fail("resource", "the resource revoked this resource token", "revoked")
        typ, presented = yield from self._token_steps(
            body["presented_token"], (TYP_PERSON, TYP_AUTH), "presented", audience=str(rt["iss"])
        )
        cnf = presented.get("cnf")
        assert isinstance(cnf, dict)
        if not _same_key(cnf["jwk"], verified.key):
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
        revoked = yield from self._revoked_steps(str(presented["iss"]), str(presented["jti"]))
        iat = presented["iat"]
        assert isinstance(iat, int)
        if revoked or (yield from self.cut_off_steps(str(agent["iss"]), str(agent["sub"]), iat)):
            raise _fail("presented", "the presented token was revoked", "revoked")
        return TokenPair(rt, presented)

    def _token_steps(
        self, raw: str, typs: tuple[str, ...], name: str, *, audience: str
    ) -> Steps[tuple[str, Mapping[str, object]]]:
        cfg = self.server.config
        try:
            token = decode_unverified(raw)
            typ = check_header(token, typs)
        except TokenError as exc:
            raise _fail(name, exc.detail) from exc
        iss, dwk, kid = token.payload.get("iss"), token.payload.get("dwk"), token.header["kid"]
        if not is_server_identifier(iss, dev_loopback=cfg.dev_loopback):
            raise _fail(name, "iss is not a server identifier")
        if not isinstance(dwk, str) or dwk not in EXPECTED_DWK[typ]:
            raise _fail(name, f"dwk does not fit {typ}")
        assert isinstance(iss, str) and isinstance(kid, str)
        key: PublicKey
        if (iss, dwk, kid) == (cfg.issuer, DWK_PERSON, cfg.signing_key.kid):
            key = cfg.signing_key.public  # our own token: no need to discover our own key
        else:
            try:
                key = yield KeyNeed(iss, dwk, kid)
            except AAuthError as exc:
                raise _fail(name, f"no usable key: {exc.detail}") from exc
        try:
            verify_jwt_signature(token, key, allow_eddsa=cfg.allow_eddsa)
            return typ, check_claims(
                token,
                typ=typ,
                now=cfg.clock.now(),
                audience=audience,
                clock_skew=cfg.signature_window,
                dev_loopback=cfg.dev_loopback,
                allow_eddsa=cfg.allow_eddsa,
            )
        except TokenError as exc:
            if exc.code == "expired_jwt":
                raise _fail(name, exc.detail, "expired") from exc
            if exc.code == "clock_skew":
                raise problem(400, "clock_skew", f"{name} token: {exc.detail}") from exc
            raise _fail(name, exc.detail) from exc

    @staticmethod
    def _revoked_steps(iss: str, jti: str) -> Steps[bool]:
        record = yield StoreOp("get", (KIND_REVOKED, digest_id(iss, jti)))
        return record is not None

    @staticmethod
    def cut_off_steps(agent_iss: str, agent: str, since: float) -> Steps[bool]:
        """Was an agent token of this agent revoked at or after ``since``?"""
        record = yield StoreOp("get", (KIND_CUTOFF, digest_id(agent_iss, agent)))
        return record is not None and float(record.data["at"]) >= since

    # -- minting ------------------------------------------------------------------------------

    def _lifetime(self, ceiling: int, *limits: object) -> int:
        now = self.server.config.clock.now()
        caps = [ceiling] + [int(float(str(x)) - now) for x in limits if x is not None]
        return min(caps)

    def person_token(
        self, verified: VerifiedRequest, person: str, data: Mapping[str, Any]
    ) -> tuple[str, int] | None:
        """A person token for ``data["resource"]``; None when no lifetime is left."""
        cfg = self.server.config
        lifetime = self._lifetime(
            cfg.person_token_lifetime, verified.claims.get("exp"), data.get("mission_expires")
        )
        if lifetime <= 0:
            return None
        token = mint_person_token(
            cfg.signing_key,
            iss=cfg.issuer,
            aud=str(data["resource"]),
            sub=self.server.directed_sub(person, str(data["resource"])),
            cnf_jwk=verified.key,
            now=cfg.clock.now(),
            lifetime=lifetime,
            mission_s256=data.get("mission_s256"),
            tenant=data.get("tenant"),
            dev_loopback=cfg.dev_loopback,
        )
        return token, lifetime

    def auth_token(
        self, verified: VerifiedRequest, data: Mapping[str, Any]
    ) -> tuple[str, int] | None:
        """An auth token from the stored request ``data``; None when no lifetime is left."""
        cfg = self.server.config
        lifetime = self._lifetime(
            cfg.auth_token_lifetime,
            verified.claims.get("exp"),
            data.get("presented_exp"),
            data.get("mission_expires"),
        )
        if lifetime <= 0:
            return None
        extra = {k: data[k] for k in ("mission_s256", "tenant") if data.get(k) is not None}
        token = mint_auth_token(
            cfg.signing_key,
            iss=cfg.issuer,
            dwk=DWK_PERSON,
            aud=str(data["resource"]),
            ps=cfg.issuer,
            sub=str(data["rt_sub"]),
            cnf_jwk=verified.key,
            now=cfg.clock.now(),
            lifetime=lifetime,
            scope=" ".join(sorted(data["granted"])) or None,
            extra=extra,
            dev_loopback=cfg.dev_loopback,
        )
        return token, lifetime
