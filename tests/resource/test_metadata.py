"""The resource metadata document (digest 1.5) and the aauth-resource link relation."""

from __future__ import annotations

import json

from aauth_server.http import HttpRequest
from tests.resource.core_harness import CoreApp
from tests.support import AS_ISSUER, RESOURCE, SCOPES, World


def _metadata(app: CoreApp) -> dict[str, object]:
    response = app.send(HttpRequest("GET", RESOURCE + "/.well-known/aauth-resource.json", []))
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    return json.loads(response.body)  # type: ignore[no-any-return]


def test_every_field_the_configuration_implies() -> None:
    world = World()
    app = CoreApp(
        world.resource_config(
            access_mode="auth-token",
            additional_signature_components=("content-digest",),
            signature_window=30,
            name="Example API",
            access_server=AS_ISSUER,
        )
    )
    assert _metadata(app) == {
        "issuer": RESOURCE,
        "jwks_uri": RESOURCE + "/aauth/jwks.json",
        "name": "Example API",
        "access_mode": "auth-token",
        "authorization_endpoint": RESOURCE + "/aauth/authorize",
        "scope_descriptions": SCOPES,
        "signature_window": 30,
        "additional_signature_components": ["content-digest"],
        "revocation_endpoint": RESOURCE + "/aauth/revoke",
        "accept_signature_algs": ["Ed25519", "ES256"],
    }


def test_jwks_publishes_the_resource_token_key() -> None:
    world = World()
    app = CoreApp(world.resource_config())
    response = app.send(HttpRequest("GET", RESOURCE + "/aauth/jwks.json", []))
    assert json.loads(response.body) == {"keys": [world.resource_key.public_jwk()]}


def test_agent_token_only_resource_publishes_no_keys_or_endpoints() -> None:
    world = World()
    app = CoreApp(
        world.resource_config(
            signing_key=None,
            scope_descriptions={},
            authorization_path=None,
            revocation_path=None,
        )
    )
    assert _metadata(app) == {
        "issuer": RESOURCE,
        "access_mode": "agent-token",
        "signature_window": 60,
        "accept_signature_algs": ["Ed25519", "ES256"],
    }
    assert app.send(HttpRequest("GET", RESOURCE + "/aauth/jwks.json", [])).status == 404


def test_challenges_carry_the_link_relation_unless_turned_off() -> None:
    link = f'<{RESOURCE}/.well-known/aauth-resource.json>; rel="aauth-resource"'
    world = World()
    on = CoreApp(world.resource_config()).send(HttpRequest("GET", RESOURCE + "/whoami", []))
    assert on.header("Link") == link
    off = CoreApp(world.resource_config(link_header=False)).send(
        HttpRequest("GET", RESOURCE + "/whoami", [])
    )
    assert off.header("Link") is None
