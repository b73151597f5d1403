"""The gateway as an OAuth 2 client of each upstream provider, through authlib's client.

authlib builds the authorization URL (``response_type=code``, the gateway's own
``client_id``, ``redirect_uri=<gateway>/ath/callback``, the space-joined scopes, the
gateway's own ``state``, the S256 ``code_challenge`` and the optional ``resource``) and
performs the form-encoded code exchange with the ``code_verifier``.  Provider endpoints
are operator-configured (trusted, https, loopback only in development), so they bypass
the agent-facing egress policy; each exchange still has a deadline, a response-size cap,
no redirects and no environment proxies.  authlib is imported only by a gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ..http import small_uint
from .config import ATHConfig, ProviderConfig
from .driver import ExchangeOp, UpstreamFailure


def authorization_url(
    provider: ProviderConfig,
    *,
    redirect_uri: str,
    scopes: list[str],
    state: str,
    code_verifier: str,
    resource: str | None,
) -> str:
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]

    client = OAuth2Client(
        client_id=provider.client_id,
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        code_challenge_method="S256",
        trust_env=False,
    )
    try:
        extra = {"resource": resource} if resource else {}
        url, _ = client.create_authorization_url(
            str(provider.authorize_endpoint), state=state, code_verifier=code_verifier, **extra
        )
    finally:
        client.close()
    return str(url)


def _size_guard(limit: int) -> Any:
    def check(response: httpx.Response) -> None:
        declared = small_uint(response.headers.get("content-length"))
        if declared is not None and declared > limit:
            raise UpstreamFailure("the token response is too large")

    return check


def _token(answer: Any, limit: int) -> Mapping[str, Any]:
    if not isinstance(answer, Mapping) or not isinstance(answer.get("access_token"), str):
        raise UpstreamFailure("the token response has no access_token")
    if len(str(answer)) > limit:
        raise UpstreamFailure("the token response is too large")
    return dict(answer)


def _failure(exc: Exception) -> UpstreamFailure:
    if isinstance(exc, UpstreamFailure):
        return exc
    error = getattr(exc, "error", None)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamFailure("the provider did not answer in time")
    return UpstreamFailure(
        f"the code exchange failed: {type(exc).__name__}", error if isinstance(error, str) else None
    )


class OAuthUpstream:
    """Code exchanges for the providers of one gateway configuration."""

    def __init__(self, config: ATHConfig) -> None:
        self.config = config

    def _options(self, provider: ProviderConfig) -> dict[str, Any]:
        return {
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "token_endpoint_auth_method": "client_secret_basic",
            "timeout": float(self.config.upstream_timeout),
            "trust_env": False,
            "follow_redirects": False,
        }

    def _provider(self, op: ExchangeOp) -> ProviderConfig:
        provider = self.config.provider(op.provider_id)
        if provider is None:
            raise UpstreamFailure(f"unknown provider {op.provider_id!r}")
        return provider

    def exchange(self, op: ExchangeOp) -> Mapping[str, Any]:
        from authlib.integrations.httpx_client import OAuth2Client

        provider = self._provider(op)
        limit = self.config.upstream_max_bytes
        options = self._options(provider)
        options["event_hooks"] = {"response": [_size_guard(limit)]}
        try:
            with OAuth2Client(**options) as client:
                answer = client.fetch_token(
                    str(provider.token_endpoint),
                    code=op.code,
                    code_verifier=op.code_verifier,
                    redirect_uri=op.redirect_uri,
                )
        except Exception as exc:  # authlib raises its own OAuthError family and httpx errors
            raise _failure(exc) from exc
        return _token(answer, limit)

    async def aexchange(self, op: ExchangeOp) -> Mapping[str, Any]:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        provider = self._provider(op)
        limit = self.config.upstream_max_bytes
        options = self._options(provider)
        guard = _size_guard(limit)

        async def check(response: httpx.Response) -> None:
            guard(response)

        options["event_hooks"] = {"response": [check]}
        try:
            async with AsyncOAuth2Client(**options) as client:
                answer = await client.fetch_token(
                    str(provider.token_endpoint),
                    code=op.code,
                    code_verifier=op.code_verifier,
                    redirect_uri=op.redirect_uri,
                )
        except Exception as exc:
            raise _failure(exc) from exc
        return _token(answer, limit)
