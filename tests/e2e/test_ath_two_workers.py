"""Two ATH Shop processes behind one public base URL, sharing one Redis (the suite's own).

Worker A and worker B are separate uvicorn processes with the same base URL, page secret and
Redis store, as two workers behind a load balancer would be.  The test sends each step to
whichever worker it likes and checks that they agree: a registration made at A is known at
B, a session started at B is consented at A and completed at B, an attestation accepted by
one is a replay at the other, a session is consumed exactly once even when both workers are
asked at the same moment, and a revocation at A is refused by B on the very next call.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from example_apps._procs import AppSpec, free_port, running_apps
from example_apps.ath_demo import AgentSite, ATHAgent, ScriptedUser
from tests.redis_server import ensure_redis

PASSWORD = "alice-two-workers"
APP_ID = "com.example.ath-shop"


def _rewrite_to(public: str, worker: str) -> Callable[[str], str]:
    def rewrite(url: str) -> str:
        return worker + url[len(public) :] if url.startswith(public) else url

    return rewrite


def test_two_workers_share_sessions_replays_and_revocations() -> None:
    public = f"http://127.0.0.1:{free_port()}"  # the balancer's address (nothing listens)
    args = (
        "--dev",
        "--base-url",
        public,
        "--store",
        ensure_redis(),
        "--page-secret",
        secrets.token_hex(32),
        "--password",
        PASSWORD,
    )
    specs = [
        AppSpec("worker-a", "example_apps.ath_shop", args),
        AppSpec("worker-b", "example_apps.ath_shop", args),
    ]
    with (
        AgentSite() as site,
        running_apps(specs) as (a, b),
        httpx.Client(timeout=10, trust_env=False) as http,
    ):
        assert urlsplit(a.url).port != urlsplit(b.url).port
        at_a = ATHAgent(public, site, http, via=a.url)
        at_b = ATHAgent(public, site, http, via=b.url)

        # Phase A at worker A; worker B knows the registration.
        assert (
            at_a.register(
                [{"provider_id": APP_ID, "scopes": ["products:read", "cart:write"]}]
            ).status_code
            == 201
        )
        at_b.client_id, at_b.client_secret = at_a.client_id, at_a.client_secret

        # One attestation, two workers: the second sees a replay.
        body = {
            "client_id": at_a.client_id,
            "agent_attestation": at_a.attest(),
            "provider_id": APP_ID,
            "scopes": ["products:read"],
            "state": secrets.token_hex(16),
        }
        assert http.post(a.url + "/ath/authorize", json=body).status_code == 200
        replayed = http.post(b.url + "/ath/authorize", json=body)
        assert (replayed.status_code, replayed.json()["code"]) == (401, "INVALID_ATTESTATION")
        assert "replayed" in replayed.json()["details"]["reason"]

        # A session started at B, consent pages at A, the callback at B.
        started = at_b.authorize(APP_ID, ["products:read", "cart:write"])
        assert started.status_code == 200, started.text
        session = started.json()["ath_session_id"]
        to_a, to_b = _rewrite_to(public, a.url), _rewrite_to(public, b.url)
        user = ScriptedUser(
            "alice",
            PASSWORD,
            rewrite=lambda url: to_b(url) if "/ath/callback" in url else to_a(url),
        )
        try:
            page = user.open(started.json()["authorization_url"])
            page = user.sign_in(page)
            done = user.submit(page, "authorize")
            assert done.status_code == 200 and "You can close this tab." in done.text, done.text
        finally:
            user.close()

        # Both workers asked for the token at once: exactly one issues it.
        answers: list[httpx.Response] = []
        gate = threading.Barrier(2)

        def exchange(agent: ATHAgent) -> None:
            with httpx.Client(timeout=10, trust_env=False) as own:
                agent_copy = ATHAgent(public, site, own, via=agent.via)
                agent_copy.client_id, agent_copy.client_secret = (
                    agent.client_id,
                    agent.client_secret,
                )
                gate.wait()
                answers.append(agent_copy.exchange(session))

        threads = [threading.Thread(target=exchange, args=(w,)) for w in (at_a, at_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 400], [r.text for r in answers]
        winner = next(r for r in answers if r.status_code == 200)
        loser = next(r for r in answers if r.status_code == 400)
        assert loser.json()["code"] == "SESSION_NOT_FOUND"
        token = winner.json()["access_token"]
        at_a.token = at_b.token = token

        # The token works at both workers; revoked at A, refused by B at once.
        for worker in (a, b):
            assert at_a.call("GET", worker.url + "/api/products").status_code == 200
        assert at_a.revoke().status_code == 200
        refused = at_b.call("GET", b.url + "/api/products")
        assert (refused.status_code, refused.json()["code"]) == (401, "TOKEN_REVOKED")
