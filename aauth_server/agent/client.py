"""The agent side: an httpx ``Auth`` that signs every request under the AAuth profile."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence

import httpx

from ..clock import SYSTEM_CLOCK, Clock
from ..http import HttpRequest
from ..keys.jwk import PrivateKey
from ..signatures.message import AAUTH_COMPONENTS, sign_request
from ..signatures.signature_key import SignatureKey, serialize_signature_key


class AAuthSigner(httpx.Auth):
    """Sign each request with ``key``, presenting ``token`` in ``Signature-Key`` (``jwt`` scheme).

    Covers ``@method``, ``@authority``, ``@path`` and ``signature-key``; adds
    ``content-type`` and ``content-digest`` when the request has a body, and
    ``authorization`` when it carries ``Authorization: AAuth``.
    """

    requires_request_body = True

    def __init__(
        self,
        key: PrivateKey,
        token: str | Callable[[], str],
        *,
        label: str = "sig",
        extra_components: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.key = key
        self._token = token
        self.label = label
        self.extra_components = tuple(extra_components)
        self.clock = clock

    @property
    def token(self) -> str:
        return self._token() if callable(self._token) else self._token

    def components_for(self, request: httpx.Request) -> list[str]:
        components = list(AAUTH_COMPONENTS)
        if request.content:
            components += ["content-type", "content-digest"]
        if request.headers.get("authorization", "").lower().startswith("aauth "):
            components.append("authorization")
        components += [c for c in self.extra_components if c not in components]
        return components

    def sign(self, request: httpx.Request) -> None:
        request.headers["Signature-Key"] = serialize_signature_key(
            [SignatureKey(self.label, "jwt", {"jwt": self.token})]
        )
        neutral = HttpRequest(
            request.method,
            str(request.url),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            request.content,
        )
        for name, value in sign_request(
            neutral,
            self.key,
            label=self.label,
            components=self.components_for(request),
            created=int(self.clock.now()),
        ):
            request.headers[name] = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


class Agent:
    """An agent identity: its signing key, its agent token and its identifier."""

    def __init__(self, key: PrivateKey, token: str, agent_id: str) -> None:
        self.key = key
        self.token = token
        self.agent_id = agent_id

    def auth(self, **kwargs: object) -> AAuthSigner:
        return AAuthSigner(self.key, lambda: self.token, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def enroll_dev(
        cls, provider_url: str, local: str, *, client: httpx.Client | None = None
    ) -> Agent:
        """Get an agent token from a development agent provider's enrollment endpoint."""
        from .provider import ENROLL_PATH

        url = provider_url.rstrip("/") + ENROLL_PATH
        return cls._from_dev_provider(url, {"local": local}, client)

    def spawn_dev(
        self, provider_url: str, name: str, *, client: httpx.Client | None = None
    ) -> Agent:
        """A sub-agent of this agent (its own key) from a development agent provider."""
        from .provider import SUBAGENT_PATH

        body = {"parent_token": self.token, "name": name}
        return type(self)._from_dev_provider(provider_url.rstrip("/") + SUBAGENT_PATH, body, client)

    @classmethod
    def _from_dev_provider(
        cls, url: str, body: Mapping[str, object], client: httpx.Client | None
    ) -> Agent:
        key = PrivateKey.generate("Ed25519")
        http = client or httpx.Client(timeout=10)
        try:
            response = http.post(url, json={**body, "jwk": key.public_jwk()})
            response.raise_for_status()
            data = response.json()
        finally:
            if client is None:
                http.close()
        return cls(key, data["agent_token"], data["agent"])
