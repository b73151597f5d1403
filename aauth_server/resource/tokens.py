"""Resource tokens (``aa-resource+jwt``, digest 3.4): minted only for a verified person.

The guard calls :meth:`ResourceTokens.issue` after it has verified a person or auth
token on the request; there is no other way in, so a resource token never names a
person the resource did not see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..tokens.aauth import mint_resource_token
from .config import ConfigurationError
from .identity import PersonIdentity

if TYPE_CHECKING:
    from .guard import ResourceGuard


class ResourceTokens:
    def __init__(self, guard: ResourceGuard) -> None:
        self.guard = guard

    def issue(
        self,
        person: PersonIdentity,
        *,
        scope: str,
        account: str | None = None,
        login_hint: str | None = None,
        interaction: dict[str, str] | None = None,
    ) -> str:
        cfg = self.guard.config
        if cfg.signing_key is None:
            raise ConfigurationError("auth-token mode needs the resource's signing_key")
        undeclared = set(scope.split()) - set(cfg.scope_descriptions)
        if undeclared:
            raise ConfigurationError(f"scopes {sorted(undeclared)} are not declared")
        # The -11 name and, with the same value, the one Person Servers that predate the
        # rename still read (GUIDE 5).
        extra: dict[str, Any] = {"person_token_jti": person.jti}
        # Copied unchanged: the PS/AS compare them with the presented token (mission stripping).
        if person.mission_s256 is not None:
            extra["mission_s256"] = person.mission_s256
        if person.tenant is not None:
            extra["tenant"] = person.tenant
        if account is not None:
            extra["account"] = account
        if login_hint is not None:
            extra["login_hint"] = login_hint
        if interaction is not None:
            extra["interaction"] = interaction
        return mint_resource_token(
            cfg.signing_key,
            iss=cfg.issuer,
            # Four-party: the resource's AS decides; three-party: the person's PS.
            aud=cfg.access_server or person.ps,
            ps=person.ps,
            sub=person.sub,
            presented_jti=person.jti,
            agent_jkt=person.jkt,
            now=cfg.clock.now(),
            lifetime=cfg.resource_token_lifetime,
            scope=scope or None,
            extra=extra,
            dev_loopback=cfg.dev_loopback,
        )
