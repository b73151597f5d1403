"""The Flask example app: every mode in-process, and its options on a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Flask

from aauth_server.http import HttpRequest
from aauth_server.keys.jwk import PrivateKey
from example_apps._procs import AppSpec, running_apps
from example_apps.flask_resource import create_app
from tests.support import PERSON, PS_ISSUER, RESOURCE, World

REPO = Path(__file__).resolve().parents[3]


def _send(app: Flask, req: HttpRequest) -> Any:
    parts = urlsplit(req.url)
    return app.test_client().open(
        parts.path + (f"?{parts.query}" if parts.query else ""),
        method=req.method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        headers=req.headers,
        data=req.body,
    )


def test_example_app_serves_every_mode() -> None:
    world = World()
    app = create_app(RESOURCE, trusted_ps=[PS_ISSUER], discovery=world.discovery())
    person = world.person_token()
    assert _send(app, world.signed()).get_json()["agent"] == world.agent_id
    profile = _send(app, world.signed("GET", "/profile", token=person))
    assert profile.get_json() == {"ps": PS_ISSUER, "sub": PERSON}
    challenged = _send(app, world.signed("GET", "/data", token=person))
    assert challenged.status_code == 401
    assert challenged.headers["AAuth-Requirement"].startswith("requirement=auth-token;")
    read = world.auth_token("data.read")
    assert _send(app, world.signed("GET", "/data", token=read)).get_json() == {"scope": "data.read"}
    assert _send(app, world.signed("POST", "/data", token=read, body=b"{}")).status_code == 401
    both = world.auth_token("data.read data.write")
    written = _send(app, world.signed("POST", "/data", token=both, body=b"{}"))
    assert written.get_json() == {"scope": "data.read data.write", "written": True}
    held = _send(app, world.signed("GET", "/deferred", token=person))
    assert held.status_code == 202
    location = urlsplit(held.headers["Location"]).path
    done = _send(app, world.signed("GET", location, token=read))
    assert done.get_json() == {"scope": "data.read", "deferred": True}
    authorized = _send(
        app, world.signed("POST", "/aauth/authorize", body=b'{"scope":"data.read"}', token=person)
    )
    assert authorized.status_code == 200
    assert authorized.get_json()["resource_token"].count(".") == 2


def test_example_app_options_on_a_real_server(tmp_path: Path) -> None:
    key = PrivateKey.generate("Ed25519", kid="example-key")
    key_file = tmp_path / "resource.jwk"
    key_file.write_text(json.dumps(key.private_jwk()), encoding="utf-8")
    options = (
        "--dev",
        *("--ps", "http://127.0.0.1:9101", "--ps", "http://127.0.0.1:9102"),
        *("--as", "http://127.0.0.1:9103"),
        *("--signing-key", str(key_file), "--replay-cache"),
    )
    spec = AppSpec("flask", "example_apps.flask_resource", options)
    with running_apps([spec]) as (app,), httpx.Client() as client:
        base = app.url
        doc = client.get(base + "/.well-known/aauth-resource.json").json()
        assert doc["authorization_endpoint"] == base + "/aauth/authorize"
        assert doc["revocation_endpoint"] == base + "/aauth/revoke"
        assert set(doc["scope_descriptions"]) == {"data.read", "data.write"}
        jwks = client.get(doc["jwks_uri"]).json()
        assert jwks == {"keys": [key.public_jwk()]}
        profile = client.get(base + "/profile")
        assert profile.status_code == 401
        assert profile.headers["aauth-requirement"] == "requirement=person-token"
        assert client.get(base + "/deferred").status_code == 401
        assert "generated" not in app.log()


def test_example_app_says_when_it_generates_a_key() -> None:
    spec = AppSpec("flask", "example_apps.flask_resource", ("--dev", "--trust-any-ps"))
    with running_apps([spec]) as (app,):
        notice = [line for line in app.log().splitlines() if "generated" in line]
        assert notice and "--signing-key" in notice[0], app.log()
