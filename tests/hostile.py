"""Builders for hostile requests: hand-made JWTs, re-signed Signature-Input values, and a
real local HTTP server for the discovery cases that need a network (redirects, egress)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aauth_server.clock import FixedClock
from aauth_server.http import HttpRequest
from aauth_server.keys import (
    AsyncHttpxFetcher,
    EgressPolicy,
    HttpxFetcher,
    KeyDiscovery,
    PrivateKey,
)
from aauth_server.resource import ResourceConfig
from aauth_server.signatures.message import parse_signature, signature_base
from aauth_server.signatures.signature_key import SignatureKey, serialize_signature_key
from tests.support import AP_ISSUER, RESOURCE, World

#: 2026-01-01T00:00:00Z: every hostile world lives at this instant.
NOW = 1_767_225_600
#: Marks a claim or header member to leave out.
DROP: Any = object()
#: The address the injected resolver gives "private" host names.
PRIVATE_IP = "10.0.0.7"

Route = tuple[int, dict[str, str], bytes]


class LocalServer:
    """A threaded http.server on 127.0.0.1 whose answers a test sets per ``(host, path)``."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = self.headers.get("Host", "").split(":")[0]
                status, headers, body = routes.get(
                    (host, self.path), (404, {"Content-Type": "text/plain"}, b"not found")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def json(self, host: str, path: str, doc: object) -> None:
        self.routes[(host, path)] = (
            200,
            {"Content-Type": "application/json"},
            json.dumps(doc).encode(),
        )

    def redirect(self, host: str, path: str, location: str) -> None:
        self.routes[(host, path)] = (302, {"Location": location}, b"")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class HostileWorld(World):
    """A :class:`World` pinned at :data:`NOW`, with a local server for network cases."""

    server: LocalServer | None = None


def hostile_world(server: LocalServer | None = None) -> HostileWorld:
    return HostileWorld(clock=FixedClock(NOW), server=server)


# -- JWTs by hand ---------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_part(part: Mapping[str, Any] | bytes) -> bytes:
    if isinstance(part, bytes):
        return part
    return json.dumps({k: v for k, v in part.items() if v is not DROP}).encode()


def hand_jwt(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    key: PrivateKey | None,
    *,
    signature: bytes | None = None,
) -> str:
    """A compact JWS signed with ``key`` whatever its header claims (``key=None``: unsigned)."""
    signing_input = b64(_json_part(header)) + "." + b64(_json_part(payload))
    if signature is None:
        signature = key.sign(signing_input.encode()) if key is not None else b""
    return signing_input + "." + b64(signature)


def agent_header(w: World, **changes: Any) -> dict[str, Any]:
    return {"alg": "Ed25519", "typ": "aa-agent+jwt", "kid": w.provider.key.kid, **changes}


def agent_claims(w: World, **changes: Any) -> dict[str, Any]:
    now = w.now()
    claims: dict[str, Any] = {
        "iss": AP_ISSUER,
        "dwk": "aauth-agent.json",
        "sub": w.agent_id,
        "jti": "hostile-jti",
        "iat": now,
        "exp": now + 3600,
        "cnf": {"jwk": dict(w.agent_key.public.jwk)},
    }
    claims.update(changes)
    return claims


def agent_jwk(w: World, **changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = {**w.agent_key.public.jwk, **changes}
    return {k: v for k, v in jwk.items() if v is not DROP}


def token(
    w: World,
    *,
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
    key: PrivateKey | None = None,
) -> str:
    """An agent token signed by the provider key (or ``key``), with header/claim overrides."""
    return hand_jwt(
        agent_header(w, **(header or {})),
        agent_claims(w, **(claims or {})),
        key or w.provider.key,
    )


def with_token(w: World, raw: str, **signed: Any) -> HttpRequest:
    return w.signed(token=raw, **signed)


def with_key_header(w: World, value: str, **signed: Any) -> HttpRequest:
    """A correctly signed request whose Signature-Key is exactly ``value``."""
    return w.signed(signature_key=value, **signed)


def jwt_key_header(raw: str, label: str = "sig") -> str:
    return serialize_signature_key([SignatureKey(label, "jwt", {"jwt": raw})])


# -- headers ---------------------------------------------------------------------------------


def set_header(request: HttpRequest, name: str, value: str | None) -> HttpRequest:
    """Replace (or with None remove) every line of one header."""
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return replace(request, headers=headers)


def add_line(request: HttpRequest, name: str, value: str) -> HttpRequest:
    return replace(request, headers=[*request.headers, (name, value)])


def header(request: HttpRequest, name: str) -> str:
    value = request.header(name)
    assert value is not None
    return value


def edit_header(request: HttpRequest, name: str, edit: Callable[[str], str]) -> HttpRequest:
    return set_header(request, name, edit(header(request, name)))


def resign(
    w: World, request: HttpRequest, signature_input: str, key: PrivateKey | None = None
) -> HttpRequest:
    """Sign ``request`` under an arbitrary Signature-Input value (any parameters)."""
    label = signature_input.split("=", 1)[0]
    draft = set_header(set_header(request, "Signature-Input", signature_input), "Signature",
                       f"{label}=:AA==:")  # fmt: skip
    parsed = parse_signature(draft, label=label)
    signature = (key or w.agent_key).sign(signature_base(draft, parsed))
    return set_header(draft, "Signature", f"{label}=:{base64.b64encode(signature).decode()}:")


def aauth_input(
    w: World, *, label: str = "sig", extra: str = "", created: int | None = None
) -> str:
    """The Signature-Input a correct agent sends, with extra parameters appended."""
    stamp = w.now() if created is None else created
    return f'{label}=("@method" "@authority" "@path" "signature-key");created={stamp}{extra}'


# -- network configurations ------------------------------------------------------------------


def resolver_for(table: Mapping[str, str]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return [table[host]]

    return resolve


def network_config(w: HostileWorld, resolve: Mapping[str, str]) -> ResourceConfig:
    """A resource config whose discovery goes through the real httpx fetchers and egress policy."""
    policy = EgressPolicy(dev_loopback=True, resolver=resolver_for(resolve))
    discovery = KeyDiscovery(
        HttpxFetcher(policy), AsyncHttpxFetcher(policy), clock=w.clock, dev_loopback=True
    )
    return ResourceConfig(issuer=RESOURCE, discovery=discovery, clock=w.clock, dev_loopback=True)


def loopback_token(w: HostileWorld, issuer: str) -> str:
    """An agent token from a dev-loopback provider at ``issuer`` (``http://host:port``)."""
    host = issuer.split("://", 1)[1]
    return token(w, claims={"iss": issuer, "sub": f"aauth:assistant@{host}"})
