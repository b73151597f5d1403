"""The PS revocation endpoint's pending URL is served through a framework mount (Flask
here; every adapter mounts :meth:`PersonServer.routes`): a held cascade answers ``202``
with ``Location`` under ``{revocation_path}/pending/``, and the AP's signed ``GET`` there
answers ``200`` once the resource's outcome is in."""

from __future__ import annotations

import json

from aauth_server_flask.person import person_server_for as mounted_on

from aauth_server.http import HttpRequest
from aauth_server.outbound import ServerSigner
from aauth_server.records import IssuedToken
from aauth_server.tokens.aauth import DWK_AGENT
from aauth_server.tokens.jwt import decode_unverified
from tests.adapters.harness_person_flask import build_app, send_to
from tests.person.ps_harness import PsWorld
from tests.support import AP_ISSUER, PS_ISSUER, RESOURCE


def test_a_held_cascade_is_polled_through_the_flask_mount() -> None:
    pw = PsWorld(revocation_hold=0)
    app = build_app(pw.config)
    ps = mounted_on(app)
    claims = decode_unverified(pw.world.agent_token).payload
    jti, exp, sub = str(claims["jti"]), int(str(claims["exp"])), str(claims["sub"])
    now = pw.clock.now()
    ps.records.run(ps.rec.remember_seen(AP_ISSUER, jti, sub=sub, exp=exp + 300))
    ps.records.run(
        ps.rec.record_issued(
            IssuedToken(
                jti="pt-1",
                type="person",
                aud=RESOURCE,
                iat=now,
                exp=now + 600,
                agent_issuer=AP_ISSUER,
                agent=sub,
            )
        )
    )
    signer = ServerSigner(pw.world.provider.key, AP_ISSUER, DWK_AGENT, clock=pw.clock)
    kick = ps.halt.kick
    ps.halt.kick = lambda: None  # type: ignore[method-assign]  # the worker waits a moment
    body = json.dumps({"jti": jti, "exp": exp}).encode()
    url = PS_ISSUER + "/revoke"
    headers = signer.headers("POST", url, [("Content-Type", "application/json")], body)
    held = send_to(app, HttpRequest("POST", url, list(headers), body))
    assert held.status == 202, held.body
    location = held.header("location")
    assert location is not None and location.startswith(PS_ISSUER + "/revoke/pending/")
    assert held.header("retry-after") == "1" and held.header("cache-control") == "no-store"
    ps.halt.kick = kick  # type: ignore[method-assign]
    ps.halt.kick()
    poll = signer.headers("GET", location, [("Prefer", "wait=10")])
    done = send_to(app, HttpRequest("GET", location, list(poll), b""))
    assert (done.status, done.body) == (200, b"")
    outcome = ps.records.run(ps.rec.outbox_items(jti="pt-1"))
    assert [i.status for i in outcome] == ["unsupported"]  # no revocation endpoint there
    ps.close()
