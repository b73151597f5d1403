"""The AAuth request verifier: digest section 2.6, in order, with one error code per failure.

Key resolution is the only I/O.  The verification itself is written once, as a generator
that yields a :class:`KeyNeed` whenever it needs a key from discovery and receives the
:class:`PublicKey`; :meth:`RequestVerifier.verify` and :meth:`RequestVerifier.averify`
are the sync and async drivers.  Everything else is pure.
"""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar
from urllib.parse import urlsplit

from .clock import SYSTEM_CLOCK, Clock
from .errors import SignatureFailure
from .http import HttpRequest
from .identifiers import is_server_identifier
from .keys.discovery import KeyDiscovery
from .keys.jwk import SUPPORTED_ALGS, PublicKey, jwk_thumbprint
from .signatures.message import (
    AAUTH_COMPONENTS,
    BODY_COMPONENTS,
    ParsedSignature,
    parse_signature,
    parse_signature_fast,
    signature_parts,
    verify_signature,
    verify_signature_parts,
)
from .signatures.signature_key import SignatureKey, select_signature_key
from .tokens.aauth import (
    EXPECTED_DWK,
    TYP_AGENT,
    TYP_AUTH,
    TYP_PERSON,
    check_claims,
    check_header,
    server_identifier,
)
from .tokens.jwt import TokenError, UnverifiedJWT, decode_unverified, verify_jwt_signature

#: Schemes this package can resolve to a verified key.  ``self-jwt``, ``x509`` and
#: ``cached`` are parsed but always answer ``unsupported_scheme`` (documented choice).
RESOLVABLE_SCHEMES = ("jwt", "jwks_uri", "jwks", "hwk", "jkt-jwt")

SIGNATURE_FIELDS = ("signature", "signature-input", "signature-key")

#: A JWT whose ``typ`` names it a jkt-jwt (signature-key -08, 3.2).
_JKT_TYPS = {"jkt-s256+jwt": "sha-256", "jkt-s512+jwt": "sha-512"}


class KeyNeed(NamedTuple):
    """A key the verification needs from discovery: by issuer metadata or by a JWKS URL."""

    issuer: str | None
    dwk: str | None
    kid: str
    jwks_url: str | None = None


class RevocationNeed(NamedTuple):
    """Is the token ``(iss, jti)`` revoked?  Answered by the verifier's state."""

    iss: str
    jti: str


class ReplayNeed(NamedTuple):
    """Is this the first time ``key`` is seen within ``ttl`` seconds?"""

    key: str
    ttl: float


Need = KeyNeed | RevocationNeed | ReplayNeed


class VerificationState(Protocol):
    """Shared state the verifier consults: revocations and the optional replay cache.

    Sync and async flavours, so a Redis-backed implementation serves both drivers.
    """

    def is_revoked(self, iss: str, jti: str) -> bool: ...
    async def ais_revoked(self, iss: str, jti: str) -> bool: ...
    def first_use(self, key: str, ttl: float) -> bool: ...
    async def afirst_use(self, key: str, ttl: float) -> bool: ...


class VerifiedRequest(NamedTuple):
    """What a successful verification established about the request's signer.

    A named tuple rather than a frozen dataclass: as immutable, and built for every request
    at a third of the cost."""

    label: str
    scheme: str
    key: PublicKey
    created: int
    components: tuple[str, ...]
    typ: str | None = None
    token: str | None = None
    claims: Mapping[str, object] = MappingProxyType({})
    issuer: str | None = None

    @property
    def jkt(self) -> str:
        return self.key.thumbprint


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    """How strict a verifier is.  Defaults are the AAuth profile for agent-signed requests."""

    accept_schemes: tuple[str, ...] = ("jwt",)
    accept_algs: tuple[str, ...] = SUPPORTED_ALGS
    token_types: tuple[str, ...] = (TYP_AGENT,)
    window: int = 60
    required_components: tuple[str, ...] = AAUTH_COMPONENTS
    #: Require ``content-type`` + ``content-digest`` on requests with a body (PS/AS endpoints).
    require_body_coverage: bool = False
    accept_base64url: bool = True
    allow_eddsa: bool = False
    dev_loopback: bool = False
    audience: str | None = None
    #: Reject a second request with the same (key, created, method, authority, path).
    replay_cache: bool = False
    #: Token types checked against the revocation state on every request.
    revocable_types: tuple[str, ...] = (TYP_PERSON, TYP_AUTH)
    max_header_bytes: int = 16384
    token_cache_size: int = 4096
    #: Called with ``(typ, payload)`` of a ``Signature-Key`` token once its ``iss`` and
    #: ``dwk`` are validated and before its issuer's key is fetched: raise
    #: ``SignatureFailure`` to refuse an issuer this server does not trust (no fetch then).
    admit_issuer: Callable[[str, Mapping[str, object]], None] | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.accept_schemes if s not in RESOLVABLE_SCHEMES]
        if unknown:
            raise ValueError(f"schemes this verifier cannot resolve: {unknown}")
        bad_algs = [a for a in self.accept_algs if a not in SUPPORTED_ALGS]
        if bad_algs:
            raise ValueError(f"unsupported algorithms: {bad_algs}")
        if self.window <= 0:
            raise ValueError("window must be positive")
        if isinstance(self.token_cache_size, bool) or self.token_cache_size < 1:
            raise ValueError("token_cache_size must be a positive integer")


class _VerifiedToken(NamedTuple):
    #: What every later request with this token resolves to (immutable: handed out as is).
    resolved: _Resolved
    exp: float


#: Every JWK member PublicKey.from_jwk reads (see keys/jwk.py); the parsed-key cache key.
_KEY_MEMBERS = ("kty", "crv", "x", "y", "n", "e", "alg", "kid")

#: What steps 1 to 4 establish: the signature, its Signature-Key member, created, now.
Prelude = tuple[ParsedSignature, SignatureKey, int, float]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Steps = Generator[Need, Any, VerifiedRequest]


class RequestVerifier:
    def __init__(
        self,
        discovery: KeyDiscovery,
        config: VerifierConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        state: VerificationState | None = None,
    ) -> None:
        self.discovery = discovery
        self.config = config or VerifierConfig()
        self.clock = clock
        self.state = state
        if self.config.replay_cache and state is None:
            raise ValueError("the replay cache needs a VerificationState")
        # Verified-token cache: an agent presents the same agent token on every call, so the
        # token's own signature and claims are checked once; the request signature never is cached.
        self._tokens: OrderedDict[str, _VerifiedToken] = OrderedDict()
        # Tokens remembered into a full cache since its last sweep for expired ones (see
        # _remember); the first overflow sweeps.  Lookups are single dict operations; every
        # change goes through _remember under this lock (threaded servers share a verifier).
        self._since_sweep = self.config.token_cache_size
        self._tokens_lock = threading.Lock()
        # Parsed agent keys, oldest first (evicted in O(1): popping the first key of a plain
        # dict scans the holes its earlier evictions left, O(cache size) per new key).
        self._keys: OrderedDict[tuple[object, ...], PublicKey] = OrderedDict()
        # The components a request must cover, by (body covered by rule, AAuth
        # Authorization present): what required_components gives, as a set.
        base = tuple(self.config.required_components)
        body = base + tuple(c for c in BODY_COMPONENTS if c not in base)
        self._required: dict[tuple[bool, bool], frozenset[str]] = {
            (False, False): frozenset(base),
            (True, False): frozenset(body),
            (False, True): frozenset((*base, "authorization")),
            (True, True): frozenset((*body, "authorization")),
        }

    # -- drivers -------------------------------------------------------------------------

    def verify(self, request: HttpRequest) -> VerifiedRequest:
        steps = self._steps(request)
        try:
            need = next(steps)
            while True:
                need = steps.send(self.resolve(need))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def averify(self, request: HttpRequest) -> VerifiedRequest:
        steps = self._steps(request)
        try:
            need = next(steps)
            while True:
                need = steps.send(await self.aresolve(need))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def resolve(self, need: Need) -> object:
        if isinstance(need, KeyNeed):
            if need.jwks_url is not None:
                return self.discovery.jwks_key(need.jwks_url, need.kid)
            assert need.issuer is not None and need.dwk is not None
            return self.discovery.key(need.issuer, need.dwk, need.kid)
        assert self.state is not None
        if isinstance(need, RevocationNeed):
            return self.state.is_revoked(need.iss, need.jti)
        return self.state.first_use(need.key, need.ttl)

    async def aresolve(self, need: Need) -> object:
        if isinstance(need, KeyNeed):
            if need.jwks_url is not None:
                return await self.discovery.ajwks_key(need.jwks_url, need.kid)
            assert need.issuer is not None and need.dwk is not None
            return await self.discovery.akey(need.issuer, need.dwk, need.kid)
        assert self.state is not None
        if isinstance(need, RevocationNeed):
            return await self.state.ais_revoked(need.iss, need.jti)
        return await self.state.afirst_use(need.key, need.ttl)

    # -- the verification order of digest 2.6 ---------------------------------------------

    def steps(self, request: HttpRequest, prelude: Prelude | None = None) -> _Steps:
        """The verification as a generator of needs (compose with ``yield from``).

        ``prelude``: what :meth:`fast_prelude` returned for this very request, if the caller
        already asked (so the fields are not read twice)."""
        return self._steps(request, prelude)

    def _steps(self, request: HttpRequest, prelude: Prelude | None = None) -> _Steps:
        cfg = self.config
        # 1. - 4.: fields, coverage, freshness, scheme
        if prelude is None:
            prelude = self.fast_prelude(request)
        if prelude is None:
            prelude = self._prelude(request)
        parsed, entry, created, now = prelude

        # 5. key resolution per scheme
        resolved = yield from self._resolve_scheme(entry, now)

        # 6. and 7.
        verified = self._check_signature(request, parsed, entry, created, resolved)

        # Replay: only after the signature verified, so forgeries cannot fill the cache.
        if cfg.replay_cache:
            first = yield ReplayNeed(
                _replay_key(request, verified.key.thumbprint, created), 2 * cfg.window
            )
            if not first:
                raise SignatureFailure("invalid_signature", "request replayed within the window")
        return verified

    def verify_cached(self, request: HttpRequest, prelude: Prelude) -> VerifiedRequest | None:
        """The whole verification of a request whose token this verifier has already
        verified, when it needs nothing from outside (no revocation lookup, no replay cache):
        the same checks in the same order as :meth:`steps`, the request signature verified.
        ``prelude`` is :meth:`fast_prelude`'s answer for the request.  None when any of that
        does not hold; then :meth:`steps` decides."""
        if self.config.replay_cache:
            return None
        parsed, entry, created, now = prelude
        if entry.scheme != "jwt":
            return None
        cached = self._tokens.get(entry.params["jwt"])  # type: ignore[arg-type]
        if cached is None or now >= cached.exp:
            return None
        resolved = cached.resolved
        if self.state is not None and resolved.typ in self.config.revocable_types:
            return None
        return self._check_signature(request, parsed, entry, created, resolved)

    def _signature_fields(
        self, request: HttpRequest
    ) -> tuple[Mapping[str, str], str, str, str] | None:
        """The request's fields with its Signature-Input, Signature and Signature-Key values
        when all three are present within the size limit (step 1 of digest 2.6); None
        otherwise, for the full path to refuse with its own error."""
        fields = request.combined_headers()
        input_value = fields.get("signature-input")
        signature_value = fields.get("signature")
        key_value = fields.get("signature-key")
        if input_value is None or signature_value is None or key_value is None:
            return None
        limit = self.config.max_header_bytes
        if len(input_value) > limit or len(signature_value) > limit or len(key_value) > limit:
            return None
        return fields, input_value, signature_value, key_value

    def verify_fast(self, request: HttpRequest) -> VerifiedRequest | None:
        """The whole verification of a request in the common form when it needs nothing from
        outside, in one call and without the intermediate objects; None to let
        :meth:`steps` decide.  For a token verified before, what ``verify_cached(request,
        fast_prelude(request))`` answers; for a ``jwt`` token not seen yet, what the full
        steps answer when its issuer's key is already in discovery's cache and its type
        needs no revocation lookup (it is then verified and kept, as they keep it).  The same
        checks in the same order (steps 1 to 7), the request signature always verified; a
        refusal raises what the full steps raise."""
        cfg = self.config
        if cfg.replay_cache:
            return None
        # 1. the three fields, within the size limit
        found = self._signature_fields(request)
        if found is None:
            return None
        fields, input_value, signature_value, key_value = found
        parts = signature_parts(input_value, signature_value, cfg.accept_base64url)
        if parts is None:
            return None
        signature_input, signature = parts
        # 2. coverage
        authz = fields.get("authorization")
        aauth = authz is not None and authz.lstrip()[:6].lower() == "aauth "
        required = self._required[cfg.require_body_coverage and bool(request.body), aauth]
        if not required <= signature_input.covered:
            return None
        # 3. freshness
        now = self.clock.now()
        created = signature_input.created
        if created is None or abs(created - now) > cfg.window:
            return None
        expires = signature_input.expires
        if expires is not None and now >= expires:
            return None
        # 4. scheme
        label = signature_input.label
        try:
            entry = select_signature_key(key_value, label, accept_schemes=cfg.accept_schemes)
        except SignatureFailure:
            return None
        # 5. the token: verified before, or verified now when that needs nothing from outside
        if entry.scheme != "jwt":
            return None
        raw = entry.params["jwt"]
        cached = self._tokens.get(raw)  # type: ignore[arg-type]
        if cached is not None and now < cached.exp:
            resolved = cached.resolved
            if self.state is not None and resolved.typ in cfg.revocable_types:
                return None
        else:
            fresh = self._token_now(raw, now)
            if fresh is None:
                return None
            resolved = fresh
        # 6. the algorithm, 7. the signature itself, always verified
        key = resolved.key
        if key.alg not in cfg.accept_algs:
            raise self._alg_failure(key)
        verify_signature_parts(request, signature_input, signature, key)
        # What _check_signature returns, built as the named tuple's own _make builds it.
        return tuple.__new__(
            VerifiedRequest,
            (
                label,
                "jwt",
                key,
                created,
                signature_input.components,
                resolved.typ,
                resolved.token,
                resolved.claims,
                resolved.issuer,
            ),
        )

    def _token_now(self, raw: object, now: float) -> _Resolved | None:
        """Step 5 of the ``jwt`` scheme for a token not verified before, as :meth:`steps`
        does it, when it needs nothing from outside: its issuer's key already at hand in
        discovery, no revocation lookup for its type.  None otherwise (the full path then
        decides); a refusal raises what the full path raises."""
        if not isinstance(raw, str) or not raw:
            return None
        token, typ, iss, dwk, kid = self._unverified_token(raw)
        if self.state is not None and typ in self.config.revocable_types:
            return None
        issuer_key = self.discovery.hot_key(iss, dwk, kid)
        if issuer_key is None:
            return None
        verified = self._verified_token(raw, token, typ, iss, issuer_key, now)
        self._remember(raw, verified)
        return verified.resolved

    def _alg_failure(self, key: PublicKey) -> SignatureFailure:
        return SignatureFailure(
            "unsupported_algorithm",
            f"algorithm {key.alg} is not accepted",
            accept_algs=self.config.accept_algs,
        )

    def _check_signature(
        self,
        request: HttpRequest,
        parsed: ParsedSignature,
        entry: SignatureKey,
        created: int,
        resolved: _Resolved,
    ) -> VerifiedRequest:
        # 6. algorithm from the resolved key
        key = resolved.key
        if key.alg not in self.config.accept_algs:
            raise self._alg_failure(key)

        # 7. the signature itself, always verified
        verify_signature(request, parsed, key)
        return VerifiedRequest(
            label=parsed.label,
            scheme=entry.scheme,
            key=key,
            created=created,
            components=parsed.components,
            typ=resolved.typ,
            token=resolved.token,
            claims=resolved.claims,
            issuer=resolved.issuer,
        )

    def _prelude(self, request: HttpRequest) -> Prelude:
        """Steps 1 to 4 of digest 2.6, each failure with its error code."""
        cfg = self.config
        # 1. all three fields present
        for name in SIGNATURE_FIELDS:
            value = request.header(name)
            if value is None:
                raise SignatureFailure("invalid_signature", f"missing {name} header")
            if len(value) > cfg.max_header_bytes:
                raise SignatureFailure("invalid_signature", f"{name} header too large")
        parsed = parse_signature(request, accept_base64url=cfg.accept_base64url)

        # 2. coverage
        required = self.required_components(request)
        covered = set(parsed.components)
        if not covered.issuperset(required):
            missing = [c for c in required if c not in covered]
            raise SignatureFailure(
                "invalid_input",
                "signature does not cover " + ", ".join(missing),
                required_input=required,
            )

        # 3. freshness
        now = self.clock.now()
        created = self._check_freshness(parsed, now)

        # 4. scheme selection
        entry = select_signature_key(
            request.header("signature-key"), parsed.label, accept_schemes=cfg.accept_schemes
        )
        return parsed, entry, created, now

    def fast_prelude(self, request: HttpRequest) -> Prelude | None:
        """What :meth:`_prelude` returns, for a request in the common form that passes steps
        1 to 4; None for anything else, which :meth:`_prelude` then decides (and refuses with
        its own error).  Each check here is one :meth:`_prelude` makes, on the same values."""
        cfg = self.config
        found = self._signature_fields(request)
        if found is None:
            return None
        fields, input_value, signature_value, key_value = found
        parts = parse_signature_fast(
            input_value, signature_value, accept_base64url=cfg.accept_base64url
        )
        if parts is None:
            return None
        parsed, covered = parts
        authz = fields.get("authorization")
        aauth = authz is not None and authz.lstrip()[:6].lower() == "aauth "
        body = cfg.require_body_coverage and bool(request.body)
        if not self._required[body, aauth] <= covered:
            return None
        now = self.clock.now()
        created = parsed.created
        if created is None or abs(created - now) > cfg.window:
            return None
        if parsed.expires is not None and now >= parsed.expires:
            return None
        try:
            entry = select_signature_key(key_value, parsed.label, accept_schemes=cfg.accept_schemes)
        except SignatureFailure:
            return None
        return parsed, entry, created, now

    def required_components(self, request: HttpRequest) -> list[str]:
        cfg = self.config
        required = list(cfg.required_components)
        if cfg.require_body_coverage and request.body:
            required.extend(c for c in BODY_COMPONENTS if c not in required)
        authz = request.header("authorization")
        if (
            authz is not None
            and authz.lstrip()[:6].lower() == "aauth "
            and "authorization" not in required
        ):
            required.append("authorization")
        return required

    def _check_freshness(self, parsed: ParsedSignature, now: float) -> int:
        created = parsed.created
        if created is None:
            raise SignatureFailure("invalid_signature", "signature has no created parameter")
        window = self.config.window
        if created - now > window:
            raise SignatureFailure("clock_skew", "created is in the future")
        if now - created > window:
            raise SignatureFailure("invalid_signature", "signature is too old")
        if parsed.expires is not None and now >= parsed.expires:
            raise SignatureFailure("invalid_signature", "signature has expired")
        return created

    # -- schemes -------------------------------------------------------------------------

    def _resolve_scheme(self, entry: SignatureKey, now: float) -> Generator[Need, Any, _Resolved]:
        scheme = entry.scheme
        if scheme == "jwt":
            return (yield from self._scheme_jwt(entry, now))
        if scheme == "jwks_uri":
            ident = _str_param(entry, "id")
            if not is_server_identifier(ident, dev_loopback=self.config.dev_loopback):
                raise SignatureFailure("invalid_key", "id is not a server identifier")
            key = yield KeyNeed(ident, _str_param(entry, "dwk"), _str_param(entry, "kid"))
            return _Resolved(key, issuer=ident)
        if scheme == "jwks":
            url = _str_param(entry, "url")
            key = yield KeyNeed(None, None, _str_param(entry, "kid"), jwks_url=url)
            return _Resolved(key, issuer=url)
        if scheme == "hwk":
            jwk = {k: v for k, v in entry.params.items() if isinstance(v, str)}
            return _Resolved(self._key_from_jwk(jwk))
        if scheme == "jkt-jwt":
            return self._scheme_jkt_jwt(entry, now)
        raise SignatureFailure(  # pragma: no cover - config validation forbids it
            "unsupported_scheme", scheme, accept_schemes=self.config.accept_schemes
        )

    def _key_from_jwk(self, jwk: Mapping[str, object]) -> PublicKey:
        # An agent keeps its key while its tokens rotate: parse each key once.  The cache key
        # holds every member from_jwk reads (a key is kept only when from_jwk accepted it, so
        # the members it reads were strings); a JWK with private material never hits it.
        cache_key: tuple[object, ...] | None = None
        if "d" not in jwk:
            cache_key = tuple(map(jwk.get, _KEY_MEMBERS))
            try:
                hit = self._keys.get(cache_key)
            except TypeError:  # an unhashable member (a list, an object): no cache
                cache_key = hit = None
            if hit is not None:
                return hit
        key = PublicKey.from_jwk(
            jwk, accept_algs=self.config.accept_algs, allow_eddsa=self.config.allow_eddsa
        )
        if cache_key is not None:
            if len(self._keys) >= self.config.token_cache_size:
                # Oldest first; threads evicting at once may have emptied it meanwhile.
                with suppress(KeyError):
                    self._keys.popitem(last=False)
            self._keys[cache_key] = key
        return key

    def _scheme_jwt(self, entry: SignatureKey, now: float) -> Generator[Need, Any, _Resolved]:
        raw = _str_param(entry, "jwt")
        cached = self._tokens.get(raw)
        if cached is not None and now < cached.exp:
            resolved = cached.resolved
            assert resolved.typ is not None and resolved.issuer is not None
            yield from self._check_revocation(resolved.typ, resolved.issuer, resolved.claims)
            return resolved
        token, typ, iss, dwk, kid = self._unverified_token(raw)
        issuer_key = yield KeyNeed(iss, dwk, kid)
        verified = self._verified_token(raw, token, typ, iss, issuer_key, now)
        yield from self._check_revocation(typ, iss, verified.resolved.claims)
        self._remember(raw, verified)
        return verified.resolved

    def _unverified_token(self, raw: str) -> tuple[UnverifiedJWT, str, str, str, str]:
        """A ``jwt`` scheme token up to its issuer key's fetch: decoded, its type, and the
        ``iss``, ``dwk`` and ``kid`` that name the key, each validated before anything is
        fetched (the token names the URL), and the issuer admitted."""
        cfg = self.config
        try:
            token = decode_unverified(raw)
            typ = check_header(token, cfg.token_types)
        except TokenError as exc:
            raise self._token_failure(exc) from exc
        payload = token.payload
        iss, dwk = payload.get("iss"), payload.get("dwk")
        if not isinstance(iss, str) or not server_identifier(iss, cfg.dev_loopback):
            raise SignatureFailure("invalid_jwt", "iss is not a server identifier")
        if not isinstance(dwk, str) or dwk not in EXPECTED_DWK[typ]:
            raise SignatureFailure("invalid_jwt", f"dwk does not fit {typ}")
        kid = token.header.get("kid")
        if not isinstance(kid, str):
            raise SignatureFailure("invalid_jwt", "token header has no kid")
        if cfg.admit_issuer is not None:
            cfg.admit_issuer(typ, payload)
        return token, typ, iss, dwk, kid

    def _verified_token(
        self,
        raw: str,
        token: UnverifiedJWT,
        typ: str,
        iss: str,
        issuer_key: PublicKey,
        now: float,
    ) -> _VerifiedToken:
        """The token's signature under its issuer's key, its claims and its bound key, kept
        until its ``exp``."""
        cfg = self.config
        try:
            verify_jwt_signature(token, issuer_key, allow_eddsa=cfg.allow_eddsa)
            claims = check_claims(
                token,
                typ=typ,
                now=now,
                audience=cfg.audience if typ != TYP_AGENT else None,
                clock_skew=cfg.window,
                dev_loopback=cfg.dev_loopback,
                allow_eddsa=cfg.allow_eddsa,
            )
        except TokenError as exc:
            raise self._token_failure(exc) from exc
        cnf = claims.get("cnf")
        jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
        if not isinstance(jwk, dict):
            raise SignatureFailure("invalid_jwt", "token has no cnf.jwk")
        key = self._key_from_jwk(jwk)
        exp = claims["exp"]
        assert isinstance(exp, int | float)
        return _VerifiedToken(_Resolved(key, typ, raw, claims, iss), float(exp))

    def _scheme_jkt_jwt(self, entry: SignatureKey, now: float) -> _Resolved:
        raw = _str_param(entry, "jwt")
        token = self._token(decode_unverified, raw)
        typ = token.header.get("typ")
        if typ not in _JKT_TYPS:
            raise SignatureFailure(
                "invalid_jwt", "jkt-jwt typ must be jkt-s256+jwt or jkt-s512+jwt"
            )
        header_jwk = token.header.get("jwk")
        if not isinstance(header_jwk, dict):
            raise SignatureFailure("invalid_jwt", "jkt-jwt header has no jwk")
        identity_key = self._key_from_jwk(header_jwk)
        hash_name = _JKT_TYPS[str(typ)]
        expected_iss = f"urn:jkt:{hash_name}:" + jwk_thumbprint(identity_key.jwk, hash_name)
        iss = token.payload.get("iss")
        if not isinstance(iss, str) or not hmac.compare_digest(iss, expected_iss):
            raise SignatureFailure("invalid_jwt", "jkt-jwt iss does not match its header jwk")
        self._token(verify_jwt_signature, token, identity_key, allow_eddsa=self.config.allow_eddsa)
        exp, iat = token.payload.get("exp"), token.payload.get("iat")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise SignatureFailure("invalid_jwt", "jkt-jwt has no exp")
        if now >= exp:
            raise SignatureFailure("expired_jwt", "jkt-jwt has expired")
        if isinstance(iat, int) and iat - now > self.config.window:
            raise SignatureFailure("clock_skew", "jkt-jwt iat is in the future")
        if entry.params.get("cache") is True and not isinstance(token.payload.get("jti"), str):
            raise SignatureFailure("invalid_jwt", "cacheable jkt-jwt needs jti")
        cnf = token.payload.get("cnf")
        jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
        if not isinstance(jwk, dict):
            raise SignatureFailure("invalid_jwt", "jkt-jwt has no cnf.jwk")
        return _Resolved(self._key_from_jwk(jwk), str(typ), raw, token.payload, iss)

    def _token(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run a token-layer check, turning its TokenError into the matching Signature-Error."""
        try:
            return fn(*args, **kwargs)
        except TokenError as exc:
            raise self._token_failure(exc) from exc

    def _token_failure(self, exc: TokenError) -> SignatureFailure:
        """The Signature-Error for a token-layer refusal."""
        accept = self.config.accept_algs if exc.code == "unsupported_algorithm" else None
        return SignatureFailure(exc.code, exc.detail, accept_algs=accept)

    def _check_revocation(
        self, typ: str, iss: str, claims: Mapping[str, object]
    ) -> Generator[Need, Any, None]:
        # Agent tokens have no revocation path at a resource (digest 5.7: the AP revokes them
        # at the PS); only the types a revocation endpoint can name are looked up.
        if self.state is None or typ not in self.config.revocable_types:
            return
        jti = claims.get("jti")
        if isinstance(jti, str) and (yield RevocationNeed(iss, jti)):
            # A revoked auth token sends the agent back for a person token (digest 5.7).
            requirement = "person-token" if typ == TYP_AUTH else None
            raise SignatureFailure("revoked_jwt", "token has been revoked", requirement=requirement)

    def _remember(self, raw: str, verified: _VerifiedToken) -> None:
        tokens = self._tokens
        size = self.config.token_cache_size
        with self._tokens_lock:
            tokens[raw] = verified
            if len(tokens) <= size:
                return
            # Full: drop expired tokens first, but sweep at most once per half a cache of
            # new tokens, so a full cache of live tokens costs O(1) per insert (amortised),
            # not a scan of every entry on every new token.  Otherwise the oldest entry goes.
            if self._since_sweep >= size // 2:
                self._since_sweep = 0
                now = self.clock.now()
                for stale in [t for t, v in tokens.items() if v.exp <= now]:
                    del tokens[stale]
            self._since_sweep += 1
            while len(tokens) > size:
                tokens.popitem(last=False)


class _Resolved(NamedTuple):
    key: PublicKey
    typ: str | None = None
    token: str | None = None
    claims: Mapping[str, object] = MappingProxyType({})
    issuer: str | None = None


def _replay_key(request: HttpRequest, jkt: str, created: int) -> str:
    parts = urlsplit(request.url)
    return f"{jkt}|{created}|{request.method}|{parts.netloc.lower()}|{parts.path or '/'}"


def _str_param(entry: SignatureKey, name: str) -> str:
    value = entry.params.get(name)
    if not isinstance(value, str) or not value:
        raise SignatureFailure("invalid_signature", f"{entry.scheme} needs a {name} parameter")
    return value


__all__: Sequence[str] = [
    "RESOLVABLE_SCHEMES",
    "KeyNeed",
    "Need",
    "Prelude",
    "ReplayNeed",
    "RequestVerifier",
    "RevocationNeed",
    "VerificationState",
    "VerifiedRequest",
    "VerifierConfig",
]
