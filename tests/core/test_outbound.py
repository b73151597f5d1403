"""Requests a server signs in its own right, sent through the egress policy (aauth_server.outbound).

The receiving end is a real resource (the Starlette example) whose revocation endpoint checks
the server signature exactly as it checks any Person Server's: the PS's metadata and JWKS are
served over HTTP on loopback, so the whole path (discovery, jwks_uri scheme, digest coverage)
is the one a deployment runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from aauth_server.asgi import asgi_app
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import AsyncOutboundClient, FetchError, OutboundClient, ServerSigner
from example_apps._procs import AppSpec, running_apps
from tests.threaded_uvicorn import ThreadedUvicorn

PS_KEY = PrivateKey.generate(kid="ps-1")


class PersonServerDocuments:
    """Serves a PS's metadata and JWKS on loopback (the only part of a PS a resource fetches)."""

    def __init__(self) -> None:
        self.server = ThreadedUvicorn(asgi_app(self.handle), lifespan="off")
        self.issuer = self.server.origin

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/.well-known/aauth-person.json":
            return HttpResponse.json(
                200, {"issuer": self.issuer, "jwks_uri": self.issuer + "/jwks.json"}
            )
        if request.path == "/jwks.json":
            return HttpResponse.json(200, {"keys": [PS_KEY.public_jwk()]})
        return HttpResponse.json(404, {"error": "not_found"})


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[PersonServerDocuments, str]]:
    ps = PersonServerDocuments()
    ps.server.start()
    spec = AppSpec("resource", "example_apps.starlette_resource", ("--dev", "--ps", ps.issuer))
    try:
        with running_apps([spec]) as apps:
            yield ps, apps[0].url
    finally:
        ps.server.stop()


def revocation(resource: str) -> str:
    return resource + "/aauth/revoke"


def body() -> dict[str, object]:
    return {"jti": f"jti-{time.monotonic_ns()}", "exp": int(time.time()) + 600}


def test_a_signed_revocation_is_accepted_by_a_real_resource(
    world: tuple[PersonServerDocuments, str],
) -> None:
    ps, resource = world
    client = OutboundClient(
        ServerSigner(PS_KEY, ps.issuer, "aauth-person.json"), EgressPolicy(dev_loopback=True)
    )
    try:
        response = client.request("POST", revocation(resource), json=body())
    finally:
        client.close()
    assert (response.status, response.body) == (200, b"")


def test_the_async_client_signs_the_same_way(world: tuple[PersonServerDocuments, str]) -> None:
    ps, resource = world

    async def send() -> int:
        client = AsyncOutboundClient(
            ServerSigner(PS_KEY, ps.issuer, "aauth-person.json"), EgressPolicy(dev_loopback=True)
        )
        try:
            return (await client.request("POST", revocation(resource), json=body())).status
        finally:
            await client.aclose()

    assert asyncio.run(send()) == 200


def test_another_key_under_the_same_issuer_is_refused(
    world: tuple[PersonServerDocuments, str],
) -> None:
    ps, resource = world
    impostor = PrivateKey.generate(kid="ps-1")
    client = OutboundClient(
        ServerSigner(impostor, ps.issuer, "aauth-person.json"), EgressPolicy(dev_loopback=True)
    )
    try:
        response = client.request("POST", revocation(resource), json=body())
    finally:
        client.close()
    assert response.status == 401
    assert response.headers["signature-error"] == "error=invalid_signature"


def test_unsigned_requests_and_the_default_policy() -> None:
    # Without dev_loopback the policy refuses loopback before any connection is made.
    client = OutboundClient()
    try:
        with pytest.raises(FetchError) as info:
            client.request("POST", "http://127.0.0.1:9/revoke", json={"jti": "x"})
    finally:
        client.close()
    assert info.value.reason == "egress refused"


def test_signer_covers_body_components_only_with_a_body() -> None:
    signer = ServerSigner(PS_KEY, "https://ps.example", "aauth-person.json")
    get = dict(signer.headers("GET", "https://as.example/pending/1"))
    assert (
        get["Signature-Key"]
        == 'sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="ps-1"'
    )
    assert '"content-digest"' not in get["Signature-Input"]
    post = dict(
        signer.headers(
            "POST", "https://as.example/token", [("Content-Type", "application/json")], b"{}"
        )
    )
    assert '"content-type" "content-digest"' in post["Signature-Input"]
    assert post["Content-Digest"].startswith("sha-256=:")
    with pytest.raises(ValueError, match="Content-Type"):
        signer.headers("POST", "https://as.example/token", (), b"{}")
    with pytest.raises(ValueError, match="kid"):
        ServerSigner(PrivateKey.generate(), "https://ps.example", "aauth-person.json")
