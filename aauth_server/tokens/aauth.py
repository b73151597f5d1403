"""The four AAuth JWT types (digest 3): header and claim checks, and minting.

Verification is split so the caller can interleave key discovery:
``decode_unverified`` -> :func:`check_header` -> discovery by ``(iss, dwk, kid)`` ->
``verify_jwt_signature`` -> :func:`check_claims`.  Comparing ``cnf.jwk`` (or
``agent_jkt``) with the request's signing key is the caller's job.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

from ..identifiers import (
    AgentId,
    agent_domain_matches,
    is_server_identifier,
    parse_agent_identifier,
)
from ..keys.jwk import PublicKey, structurally_complete
from .jwt import TokenError, UnverifiedJWT, sign_typed

if TYPE_CHECKING:
    from ..keys.jwk import PrivateKey

__all__ = [
    "DWK_ACCESS",
    "DWK_AGENT",
    "DWK_PERSON",
    "DWK_RESOURCE",
    "EXPECTED_DWK",
    "MAX_LIFETIME",
    "TYP_AGENT",
    "TYP_AUTH",
    "TYP_PERSON",
    "TYP_RESOURCE",
    "check_claims",
    "check_header",
    "mint_agent_token",
    "mint_auth_token",
    "mint_person_token",
    "mint_resource_token",
    "mint_token",
]

TYP_AGENT = "aa-agent+jwt"
TYP_PERSON = "aa-person+jwt"
TYP_RESOURCE = "aa-resource+jwt"
TYP_AUTH = "aa-auth+jwt"

DWK_AGENT = "aauth-agent.json"
DWK_PERSON = "aauth-person.json"
DWK_RESOURCE = "aauth-resource.json"
DWK_ACCESS = "aauth-access.json"

MAX_LIFETIME: Mapping[str, int] = {
    TYP_AGENT: 86400,
    TYP_PERSON: 3600,
    TYP_RESOURCE: 300,
    TYP_AUTH: 3600,
}
EXPECTED_DWK: Mapping[str, frozenset[str]] = {
    TYP_AGENT: frozenset({DWK_AGENT}),
    TYP_PERSON: frozenset({DWK_PERSON}),
    TYP_RESOURCE: frozenset({DWK_RESOURCE}),
    TYP_AUTH: frozenset({DWK_PERSON, DWK_ACCESS}),
}

# Fully specified JOSE algorithms and the (kty, crv) each one demands; crv None = no curve.
_ALG_KEY: Mapping[str, tuple[str, str | None]] = {
    "Ed25519": ("OKP", "Ed25519"),
    "Ed448": ("OKP", "Ed448"),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "ES256K": ("EC", "secp256k1"),
    **{name: ("RSA", None) for name in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CNF_TYPES = frozenset({TYP_AGENT, TYP_PERSON, TYP_AUTH})
_AUD_TYPES = frozenset({TYP_PERSON, TYP_RESOURCE, TYP_AUTH})
_DEFAULT_LIFETIME = 3600
# Person and auth token ceilings are MUSTs (digest 3.1); agent and resource ones are
# SHOULDs, so a deployment may raise those, never these.
_HARD_CEILING = frozenset({TYP_PERSON, TYP_AUTH})


def _bad(detail: str, code: str = "invalid_jwt") -> TokenError:
    return TokenError(code, detail)


def check_header(jwt: UnverifiedJWT, typ: str | Collection[str]) -> str:
    """Check ``typ`` before anything else (a person token differs from an auth token only
    there), then that a ``kid`` names the issuer key. Returns the ``typ`` found."""
    allowed = (typ,) if isinstance(typ, str) else typ
    found = jwt.header.get("typ")
    if not isinstance(found, str) or found not in allowed:
        raise _bad(f"typ {found!r} is not {' or '.join(sorted(allowed))}")
    kid = jwt.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _bad("header kid missing")
    return found


def _str_claim(payload: Mapping[str, object], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} missing or not a string")
    return value


def presented_jti(payload: Mapping[str, object]) -> str:
    """A resource token's ``presented_jti``, or the pre-rename ``person_token_jti`` that
    resources of older stacks still send (both, when present, must agree)."""
    legacy = payload.get("person_token_jti")
    if "presented_jti" not in payload and legacy is not None:
        return _str_claim(payload, "person_token_jti")
    value = _str_claim(payload, "presented_jti")
    if legacy is not None and legacy != value:
        raise _bad("person_token_jti differs from presented_jti")
    return value


#: Claims that are optional in every type but must be strings when present.
_OPTIONAL_STR = ("scope", "mission_s256", "tenant")


@lru_cache(maxsize=1024)
def _server_identifier(value: str, dev_loopback: bool) -> bool:
    # Tokens name the same few servers again and again: run the host checks once per name.
    return is_server_identifier(value, dev_loopback=dev_loopback)


def _server_claim(payload: Mapping[str, object], name: str, dev_loopback: bool) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not _server_identifier(value, dev_loopback):
        raise _bad(f"{name} {value!r} is not a server identifier")
    return value


def _agent_claim(payload: Mapping[str, object], name: str, dev_loopback: bool) -> AgentId:
    value = payload.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return parse_agent_identifier(value, dev_loopback=dev_loopback)
    except ValueError as exc:
        raise _bad(f"{name} is not an agent identifier: {exc}") from exc


def _check_cnf_jwk(payload: Mapping[str, object], allow_eddsa: bool) -> None:
    cnf = payload.get("cnf")
    jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
    if not isinstance(jwk, dict):
        raise _bad("cnf.jwk missing")
    alg = jwk.get("alg")
    if alg is None:
        raise _bad("cnf.jwk has no alg", "unsupported_algorithm")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise _bad("cnf.jwk carries private key material", "invalid_key")
    # structurally_complete also checks kty is a string (an unhashable one is no crash).
    if not structurally_complete(jwk):
        raise _bad("cnf.jwk is structurally incomplete", "invalid_key")
    if allow_eddsa and alg == "EdDSA":
        if jwk.get("kty") != "OKP" or jwk.get("crv") not in ("Ed25519", "Ed448"):
            raise _bad("cnf.jwk kty/crv disagree with alg EdDSA", "invalid_key")
        return
    shape = _ALG_KEY.get(alg) if isinstance(alg, str) else None
    if shape is None:
        raise _bad(f"cnf.jwk alg {alg!r} is not a supported, fully specified alg",
                   "unsupported_algorithm")  # fmt: skip
    kty, crv = shape
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise _bad(f"cnf.jwk kty/crv disagree with alg {alg}", "invalid_key")


def _check_aud(payload: Mapping[str, object], audience: str | None) -> None:
    aud = payload.get("aud")
    # RFC 7519 4.1.3: a single string or an array of strings; aauth-go emits the array form.
    if isinstance(aud, str):
        # The one-string form, checked as the array form below would check (aud,).
        if not aud:
            raise _bad("aud is not a string or an array of strings")
        if audience is not None and audience != aud:
            raise _bad(f"aud does not name {audience}")
        return
    if isinstance(aud, list) and aud:
        values = aud
    else:
        raise _bad("aud missing")
    if not all(isinstance(v, str) and v for v in values):
        raise _bad("aud is not a string or an array of strings")
    if audience is not None and audience not in values:
        raise _bad(f"aud does not name {audience}")


def _check_agent_rules(payload: Mapping[str, object], iss: str, dev_loopback: bool) -> None:
    sub = _agent_claim(payload, "sub", dev_loopback)
    # The AP's issuer is the domain of the agent identifiers it issues (digest 1.5); a
    # loopback dev id may leave the port out (identifiers.agent_domain_matches).
    if not agent_domain_matches(sub.domain, iss, dev_loopback=dev_loopback):
        raise _bad("sub domain is not the issuer's host")
    if "ps" in payload:
        _server_claim(payload, "ps", dev_loopback)
    if "parent_agent" not in payload:
        if sub.discriminator is not None:
            raise _bad("a top-level agent's sub must not contain '+'")
        return
    parent = _agent_claim(payload, "parent_agent", dev_loopback)
    if parent.discriminator is not None:
        raise _bad("parent_agent is itself a sub-agent (sub-agents are one level deep)")
    if sub.discriminator is None or sub.name != parent.local or sub.domain != parent.domain:
        raise _bad("sub is not '<parent local>+<discriminator>' under parent_agent's domain")


def _check_payload(
    payload: Mapping[str, object],
    *,
    typ: str,
    now: float,
    audience: str | None,
    clock_skew: int,
    dev_loopback: bool,
    allow_eddsa: bool,
    max_lifetime: int | None = None,
) -> None:
    if typ not in EXPECTED_DWK:
        raise ValueError(f"unknown AAuth token type {typ!r}")
    ceiling = MAX_LIFETIME[typ] if max_lifetime is None else max_lifetime
    if typ in _HARD_CEILING and ceiling > MAX_LIFETIME[typ]:
        raise ValueError(f"{typ} lifetime ceiling cannot exceed {MAX_LIFETIME[typ]} s")
    get = payload.get
    dwk = get("dwk")
    if not isinstance(dwk, str) or dwk not in EXPECTED_DWK[typ]:
        raise _bad(f"dwk {dwk!r} is not expected for {typ}")
    # _server_claim("iss") and _str_claim("jti") inlined: this runs for every token verified
    # and minted.  bool is an int subclass; true/false is not a NumericDate (a plain int first).
    iss = get("iss")
    if not isinstance(iss, str) or not _server_identifier(iss, dev_loopback):
        raise _bad(f"iss {iss!r} is not a server identifier")
    jti = get("jti")
    if not isinstance(jti, str) or not jti:
        raise _bad("jti missing or not a string")
    iat = get("iat")
    if type(iat) is not int and (not isinstance(iat, int) or isinstance(iat, bool)):
        raise _bad("iat missing or not an integer")
    if iat > now + clock_skew:
        raise _bad("iat is ahead of our clock", "clock_skew")
    exp = get("exp")
    if type(exp) is not int and (not isinstance(exp, int) or isinstance(exp, bool)):
        raise _bad("exp missing or not an integer")
    if now >= exp:
        raise _bad("token expired", "expired_jwt")
    if exp <= iat or exp - iat > ceiling:
        raise _bad(f"exp - iat outside 1..{ceiling} seconds")
    if typ in _CNF_TYPES:
        _check_cnf_jwk(payload, allow_eddsa)
    if typ in _AUD_TYPES:
        _check_aud(payload, audience)
    for name in _OPTIONAL_STR:
        if name in payload and not isinstance(payload[name], str):
            raise _bad(f"{name} is not a string")
    if typ == TYP_AGENT:
        _check_agent_rules(payload, iss, dev_loopback)
        return
    _str_claim(payload, "sub")
    if typ == TYP_PERSON:
        for name in ("scope", "account"):
            if name in payload:
                raise _bad(f"a person token must not contain {name}")
        return
    _server_claim(payload, "ps", dev_loopback)
    if typ == TYP_RESOURCE:
        presented_jti(payload)
        _str_claim(payload, "agent_jkt")


def check_claims(
    jwt: UnverifiedJWT,
    *,
    typ: str,
    now: float,
    audience: str | None = None,
    clock_skew: int = 60,
    dev_loopback: bool = False,
    allow_eddsa: bool = False,
    max_lifetime: int | None = None,
) -> Mapping[str, object]:
    """Claim checks of digest 3 for ``typ``; returns the payload.

    ``audience`` is ignored for agent tokens, which carry no ``aud``. ``exp`` gets no
    skew tolerance; ``iat`` may run ahead of ``now`` by at most ``clock_skew``.
    ``max_lifetime`` replaces ``MAX_LIFETIME[typ]`` (agent and resource tokens only may
    go higher); ``allow_eddsa`` admits a ``cnf.jwk`` with the legacy ``EdDSA`` alg.
    """
    _check_payload(
        jwt.payload,
        typ=typ,
        now=now,
        audience=audience,
        clock_skew=clock_skew,
        dev_loopback=dev_loopback,
        allow_eddsa=allow_eddsa,
        max_lifetime=max_lifetime,
    )
    return jwt.payload


def _lifetime(typ: str, lifetime: int | None) -> int:
    if typ not in MAX_LIFETIME:
        raise ValueError(f"unknown AAuth token type {typ!r}")
    value = min(_DEFAULT_LIFETIME, MAX_LIFETIME[typ]) if lifetime is None else lifetime
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("lifetime must be a positive integer")
    if value > MAX_LIFETIME[typ]:
        raise ValueError(f"lifetime {value} exceeds {MAX_LIFETIME[typ]} s for {typ}")
    return value


def _new_jti() -> str:
    return secrets.token_urlsafe(16)  # 16 random bytes, unpadded base64url


def mint_token(
    key: PrivateKey,
    typ: str,
    claims: Mapping[str, object],
    *,
    now: float,
    lifetime: int | None = None,
    jti: str | None = None,
) -> str:
    """Sign ``claims`` (order kept) as ``typ``, appending ``jti``/``iat``/``exp`` if absent."""
    seconds = _lifetime(typ, lifetime)
    payload = dict(claims)
    payload.setdefault("jti", jti if jti is not None else _new_jti())
    iat = payload.setdefault("iat", int(now))
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise ValueError("iat must be an integer")
    exp = payload.setdefault("exp", iat + seconds)
    if not isinstance(exp, int) or isinstance(exp, bool) or not 0 < exp - iat <= MAX_LIFETIME[typ]:
        raise ValueError(f"exp - iat must be within 1..{MAX_LIFETIME[typ]} s for {typ}")
    return sign_typed(typ, payload, key)


def _public_jwk(cnf_jwk: Mapping[str, object] | PublicKey) -> dict[str, object]:
    # PublicKey first: a failed isinstance against the Mapping ABC is the slow one.
    jwk: dict[str, object] = dict(cnf_jwk.jwk if isinstance(cnf_jwk, PublicKey) else cnf_jwk)
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise ValueError("cnf_jwk must be a public key (it has private members)")
    return jwk


def _mint_checked(
    key: PrivateKey,
    typ: str,
    claims: dict[str, object],
    extra: Mapping[str, object] | None,
    *,
    now: float,
    lifetime: int,
    dev_loopback: bool,
) -> str:
    seconds = _lifetime(typ, lifetime)
    jti = claims.get("jti")
    if jti is None:
        claims["jti"] = _new_jti()
    elif not isinstance(jti, str) or not jti:
        raise ValueError("jti must be a non-empty string")
    claims["iat"] = int(now)
    claims["exp"] = int(now) + seconds
    for name, value in (extra or {}).items():
        if name in claims:
            raise ValueError(f"extra claim {name!r} would override a token claim")
        claims[name] = value
    payload = {k: v for k, v in claims.items() if v is not None}
    try:
        # The verifier's own rules, so we never mint a token we would refuse.
        _check_payload(
            payload,
            typ=typ,
            now=now,
            audience=None,
            clock_skew=0,
            dev_loopback=dev_loopback,
            allow_eddsa=False,
        )
    except TokenError as exc:
        raise ValueError(f"refusing to mint {typ}: {exc.detail}") from exc
    # jti, iat and exp are set and checked above: sign without mint_token's second pass.
    return sign_typed(typ, payload, key)


def mint_agent_token(
    key: PrivateKey,
    *,
    iss: str,
    sub: str,
    cnf_jwk: Mapping[str, object] | PublicKey,
    now: float,
    lifetime: int = 3600,
    ps: str | None = None,
    parent_agent: str | None = None,
    jti: str | None = None,
    extra: Mapping[str, object] | None = None,
    dev_loopback: bool = False,
) -> str:
    claims: dict[str, object] = {
        "iss": iss,
        "dwk": DWK_AGENT,
        "sub": sub,
        "jti": jti,
        "iat": None,
        "exp": None,
        "cnf": {"jwk": _public_jwk(cnf_jwk)},
        "ps": ps,
        "parent_agent": parent_agent,
    }
    return _mint_checked(
        key, TYP_AGENT, claims, extra, now=now, lifetime=lifetime, dev_loopback=dev_loopback
    )


def mint_person_token(
    key: PrivateKey,
    *,
    iss: str,
    aud: str,
    sub: str,
    cnf_jwk: Mapping[str, object] | PublicKey,
    now: float,
    lifetime: int = 3600,
    mission_s256: str | None = None,
    tenant: str | None = None,
    jti: str | None = None,
    extra: Mapping[str, object] | None = None,
    dev_loopback: bool = False,
) -> str:
    claims: dict[str, object] = {
        "iss": iss,
        "dwk": DWK_PERSON,
        "aud": aud,
        "sub": sub,
        "jti": jti,
        "iat": None,
        "exp": None,
        "cnf": {"jwk": _public_jwk(cnf_jwk)},
        "mission_s256": mission_s256,
        "tenant": tenant,
    }
    return _mint_checked(
        key, TYP_PERSON, claims, extra, now=now, lifetime=lifetime, dev_loopback=dev_loopback
    )


def mint_resource_token(
    key: PrivateKey,
    *,
    iss: str,
    aud: str,
    ps: str,
    sub: str,
    presented_jti: str,
    agent_jkt: str,
    now: float,
    lifetime: int = 300,
    scope: str | None = None,
    jti: str | None = None,
    extra: Mapping[str, object] | None = None,
    dev_loopback: bool = False,
) -> str:
    claims: dict[str, object] = {
        "iss": iss,
        "dwk": DWK_RESOURCE,
        "aud": aud,
        "jti": jti,
        "iat": None,
        "exp": None,
        "ps": ps,
        "sub": sub,
        "presented_jti": presented_jti,
        "agent_jkt": agent_jkt,
        "scope": scope,
    }
    return _mint_checked(
        key, TYP_RESOURCE, claims, extra, now=now, lifetime=lifetime, dev_loopback=dev_loopback
    )


def mint_auth_token(
    key: PrivateKey,
    *,
    iss: str,
    dwk: str,
    aud: str,
    ps: str,
    sub: str,
    cnf_jwk: Mapping[str, object] | PublicKey,
    now: float,
    lifetime: int = 3600,
    scope: str | None = None,
    jti: str | None = None,
    extra: Mapping[str, object] | None = None,
    dev_loopback: bool = False,
) -> str:
    claims: dict[str, object] = {
        "iss": iss,
        "dwk": dwk,
        "aud": aud,
        "jti": jti,
        "iat": None,
        "exp": None,
        "ps": ps,
        "sub": sub,
        "cnf": {"jwk": _public_jwk(cnf_jwk)},
        "scope": scope,
    }
    return _mint_checked(
        key, TYP_AUTH, claims, extra, now=now, lifetime=lifetime, dev_loopback=dev_loopback
    )
