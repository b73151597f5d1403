"""Tokens in request *parameters* (digest 3.4, 5.3, 5.4), shared by the Person Server and the
Access Server.

A parameter token that fails answers its own ``400`` code (``invalid_resource_token``,
``expired_presented_token``, ...), never a ``401``: the ``Signature-Key`` of the request is
the caller's and was verified on its own.  The verification is one generator that yields a
:class:`~aauth_server.verifier.KeyNeed` for the issuer's key, so both drivers run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .clock import Clock
from .errors import AAuthError
from .keys.jwk import REQUIRED_MEMBERS, PrivateKey, PublicKey
from .revocation import problem
from .steps import Steps
from .tokens.aauth import EXPECTED_DWK, check_claims, check_header, server_identifier
from .tokens.jwt import TokenError, UnverifiedJWT, decode_unverified, verify_jwt_signature
from .verifier import KeyNeed

__all__ = ["ParamSettings", "fail", "param_token_steps", "same_key"]


class ParamSettings(Protocol):
    """What verifying a parameter token reads from a server's configuration."""

    issuer: str
    signing_key: PrivateKey
    dev_loopback: bool
    allow_eddsa: bool
    signature_window: int
    clock: Clock


def same_key(jwk: Mapping[str, object], key: PublicKey) -> bool:
    """``jwk``'s thumbprint is ``key``'s: RFC 7638 hashes exactly these members, so
    comparing them is the same test without the hashing."""
    members = REQUIRED_MEMBERS.get(key.kty, ())
    return bool(members) and all(jwk.get(m) == key.jwk[m] for m in members)


def fail(name: str, detail: str, code: str = "invalid") -> AAuthError:
    """``400 <code>_<name>_token`` (``invalid_resource_token``, ``expired_presented_token``)."""
    return problem(400, f"{code}_{name}_token", detail)


def param_token_steps(
    cfg: ParamSettings,
    raw: str,
    typs: tuple[str, ...],
    name: str,
    *,
    audience: str | None,
    own_dwk: str,
    decoded: UnverifiedJWT | None = None,
) -> Steps[tuple[str, Mapping[str, object]]]:
    """Verify the parameter token ``raw`` of one of ``typs``: ``(typ, claims)``.

    ``audience`` is the ``aud`` it must carry (None for agent tokens); a token this server
    signed (``iss`` = ``cfg.issuer``, ``dwk`` = ``own_dwk``, our ``kid``) is checked with our
    own key, without discovery.  Failures are ``invalid_/expired_<name>_token`` or
    ``clock_skew``.  ``decoded``: ``raw`` already decoded by the caller (used only when it
    is that very token).
    """
    try:
        token = decoded if decoded is not None and decoded.raw == raw else decode_unverified(raw)
        typ = check_header(token, typs)
    except TokenError as exc:
        raise fail(name, exc.detail) from exc
    iss, dwk, kid = token.payload.get("iss"), token.payload.get("dwk"), token.header["kid"]
    # server_identifier: is_server_identifier, kept per name (tokens name a few servers).
    if not isinstance(iss, str) or not server_identifier(iss, cfg.dev_loopback):
        raise fail(name, "iss is not a server identifier")
    if not isinstance(dwk, str) or dwk not in EXPECTED_DWK[typ]:
        raise fail(name, f"dwk does not fit {typ}")
    assert isinstance(iss, str) and isinstance(kid, str)
    key: PublicKey
    if (iss, dwk, kid) == (cfg.issuer, own_dwk, cfg.signing_key.kid):
        key = cfg.signing_key.public  # our own token: no need to discover our own key
    else:
        try:
            key = yield KeyNeed(iss, dwk, kid)
        except AAuthError as exc:
            raise fail(name, f"no usable key: {exc.detail}") from exc
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
            raise fail(name, exc.detail, "expired") from exc
        if exc.code == "clock_skew":
            raise problem(400, "clock_skew", f"{name} token: {exc.detail}") from exc
        raise fail(name, exc.detail) from exc
