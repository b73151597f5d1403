"""Agent identity documents: fetched at ``agent_id`` through the egress policy, parsed
strictly, cached at most five minutes, re-fetched after a signature failure at most once a
minute per agent (key rotation without a fetch storm).

``public_key`` may be a JWK (EC P-256; ``alg`` ES256 if present; ``kid``/``use`` tolerated,
private members refused) or a PEM SubjectPublicKeyInfo of a P-256 key; a PEM of another
curve or algorithm is refused.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import SignatureFailure
from ..keys.fetcher import FetchError, FetchResponse
from ..keys.jwk import PublicKey, b64url_encode
from .driver import FetchOp
from .errors import ATHError
from .wire import json_document

MAX_ENTRIES = 4096
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,9})\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AgentDocument:
    agent_id: str
    name: str
    developer: Mapping[str, str]
    capabilities: tuple[str, ...]
    key: PublicKey


@dataclass(slots=True)
class _Entry:
    document: AgentDocument
    expires_at: float
    last_fetch: float


def _fail(reason: str, **details: Any) -> ATHError:
    return ATHError(
        "INVALID_ATTESTATION",
        "the agent's identity document is unusable",
        {"reason": reason, **details},
    )


def key_from_jwk(jwk: object) -> PublicKey:
    if not isinstance(jwk, Mapping):
        raise _fail("public_key is neither a JWK object nor a PEM string")
    if any(m in jwk for m in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise _fail("public_key carries private key material")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise _fail("public_key must be an EC P-256 key (ES256)")
    alg = jwk.get("alg", "ES256")
    if alg != "ES256":
        raise _fail("public_key's alg must be ES256")
    use = jwk.get("use", "sig")
    if use != "sig":
        raise _fail("public_key's use must be sig")
    members: dict[str, object] = {m: jwk.get(m) for m in ("kty", "crv", "x", "y")}
    members["alg"] = "ES256"
    kid = jwk.get("kid")
    if isinstance(kid, str):
        members["kid"] = kid
    try:
        return PublicKey.from_jwk(members, accept_algs=("ES256",))
    except SignatureFailure as exc:
        raise _fail(f"public_key is not a valid P-256 JWK: {exc.detail}") from exc


def key_from_pem(pem: str) -> PublicKey:
    try:
        loaded = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError) as exc:
        raise _fail("public_key is not a PEM public key") from exc
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise _fail("public_key's PEM is not an EC key (ES256 needs P-256)")
    if not isinstance(loaded.curve, ec.SECP256R1):
        raise _fail(f"public_key's PEM is on curve {loaded.curve.name}, not P-256")
    numbers = loaded.public_numbers()
    return key_from_jwk(
        {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(numbers.x.to_bytes(32, "big")),
            "y": b64url_encode(numbers.y.to_bytes(32, "big")),
        }
    )


def parse_document(response: FetchResponse, agent_id: str) -> AgentDocument:
    if response.status != 200:
        raise _fail("the identity document URL did not answer 200", status=response.status)
    try:
        value = json_document(response.body)
    except ValueError as exc:
        raise _fail("the identity document is not JSON") from exc
    if not isinstance(value, dict):
        raise _fail("the identity document is not a JSON object")
    if value.get("agent_id") != agent_id:
        raise _fail("the identity document names another agent_id")
    if not isinstance(value.get("ath_version"), str):
        raise _fail("the identity document has no ath_version")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise _fail("the identity document has no usable name")
    developer = value.get("developer")
    if not isinstance(developer, dict) or not all(
        isinstance(developer.get(m), str) and developer.get(m) for m in ("name", "id")
    ):
        raise _fail("the identity document's developer needs a name and an id")
    capabilities = value.get("capabilities", [])
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise _fail("the identity document's capabilities must be strings")
    public_key = value.get("public_key")
    key = key_from_pem(public_key) if isinstance(public_key, str) else key_from_jwk(public_key)
    dev = {
        m: str(developer[m])[:200]
        for m in ("name", "id", "contact")
        if isinstance(developer.get(m), str)
    }
    return AgentDocument(agent_id, name.strip(), dev, tuple(capabilities[:64]), key)


class IdentityCache:
    """Per-process cache of parsed identity documents (bounded, LRU)."""

    def __init__(self, *, ttl: int, refetch_interval: int) -> None:
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._forced: OrderedDict[str, float] = OrderedDict()

    def _lifetime(self, headers: Mapping[str, str]) -> float:
        match = _MAX_AGE.search(headers.get("cache-control", ""))
        if match is None:
            return float(self.ttl)
        return float(min(self.ttl, int(match.group(1))))

    def load(
        self, agent_id: str, now: float, *, force: bool = False
    ) -> Generator[FetchOp, Any, AgentDocument]:
        entry = self._entries.get(agent_id)
        if entry is not None and not force and entry.expires_at > now:
            self._entries.move_to_end(agent_id)
            return entry.document
        try:
            response: FetchResponse = yield FetchOp(agent_id)
        except FetchError as exc:
            raise _fail("the identity document could not be fetched", fetch=exc.reason) from exc
        document = parse_document(response, agent_id)
        lifetime = self._lifetime(response.headers)
        if lifetime > 0:
            self._entries[agent_id] = _Entry(document, now + lifetime, now)
            self._entries.move_to_end(agent_id)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return document

    def may_refetch(self, agent_id: str, now: float) -> bool:
        """Whether a signature failure may bypass the cache now (once per agent per interval);
        claims the slot when it may."""
        last = self._forced.get(agent_id)
        if last is not None and now - last < self.refetch_interval:
            return False
        self._forced[agent_id] = now
        self._forced.move_to_end(agent_id)
        while len(self._forced) > MAX_ENTRIES:
            self._forced.popitem(last=False)
        return True

    def cached(self, agent_id: str) -> bool:
        return agent_id in self._entries
