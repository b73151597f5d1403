"""The Person Server's revocation cascade (digest 5.7), on real servers on 127.0.0.1.

The agent gets a person token and an auth token from the PS through its endpoints (the
policy approves); the agent provider revokes the agent token at the PS, signed as itself;
the PS denies the agent token and revokes every person and auth token it issued to that
agent ``sub`` at their resource, which then answers ``401 revoked_jwt``.  A slow resource
makes the PS answer ``202``: the AP polls the pending URL with signed ``GET``s until the
``200``; nobody else can read it (``404``).
"""

from __future__ import annotations

import time

from aauth_server.agent import Agent
from aauth_server.keys.jwk import PrivateKey
from aauth_server.records import IssuedToken
from aauth_server.revocation_client import PENDING, REVOKED
from aauth_server.tokens.aauth import DWK_AGENT, DWK_PERSON
from tests.revocation.net import Net, agent_claims, network, signature_error


def _tokens(net: Net, local: str = "assistant") -> tuple[Agent, str, str]:
    agent = net.agent(local)
    flow = net.flow(agent)
    assert flow.request("GET", net.rs_url + "/data").status_code == 200
    assert flow.request("GET", net.rs_url + "/profile").status_code == 200
    return agent, flow.person_tokens[net.rs_url], flow.auth_tokens[net.rs_url]


def test_the_agent_token_revoked_at_the_ps_revokes_its_tokens_at_the_resource() -> None:
    with network() as net:
        agent, person_token, auth_token = _tokens(net)
        other, other_person, other_auth = _tokens(net, "helper")
        claims = agent_claims(agent)
        result = net.ap_client().revoke(
            net.ps_url + "/revoke", str(claims["jti"]), float(claims["exp"])
        )
        assert result.status == REVOKED, result
        # Answered only once the resource had confirmed both (record first, then cascade).
        items = net.ps.records.run(net.ps.rec.outbox_items())
        assert sorted((i.token_type, i.status) for i in items) == [
            ("auth", "revoked"),
            ("person", "revoked"),
        ]
        for path, token in (("/data", auth_token), ("/profile", person_token)):
            refused = net.call(agent, path, token)
            assert refused.status_code == 401, (path, refused.text)
            assert signature_error(refused) == "revoked_jwt"
        # The PS denies the agent token itself.
        flow = net.flow(agent)
        denied = flow._send(
            "PS", "POST", net.ps_url + "/person", agent.token, {"resource": net.rs_url}
        )
        assert denied.status_code == 401 and signature_error(denied) == "revoked_jwt"
        # Another agent's tokens are untouched.
        assert net.call(other, "/data", other_auth).status_code == 200
        assert net.call(other, "/profile", other_person).status_code == 200


def test_a_slow_cascade_answers_202_and_is_polled_to_completion() -> None:
    with network(revocation_hold=0.2) as net:
        agent, _person_token, auth_token = _tokens(net)
        net.slow.delay = 1.5
        claims = agent_claims(agent)
        client = net.ap_client()
        first = client.attempt(net.ps_url + "/revoke", str(claims["jti"]), float(claims["exp"]))
        assert first.status == 202 and first.outcome == PENDING, first
        assert first.poll_url is not None
        assert first.poll_url.startswith(net.ps_url + "/revoke/pending/")
        # Another server identity polling the same URL: 404 (the PS signs as itself).
        ps_key: PrivateKey = net.ps.config.signing_key
        stranger = net.signer_client(ps_key, net.ps_url, DWK_PERSON)
        assert stranger.attempt(net.ps_url + "/revoke", "x", 0, first.poll_url).status == 404
        polls = 0
        attempt = first
        poll_url = first.poll_url
        while attempt.outcome == PENDING:
            time.sleep(attempt.retry_after or 1)
            assert attempt.poll_url == poll_url
            attempt = client.attempt("", str(claims["jti"]), 0, poll_url)
            polls += 1
            assert polls < 30
        assert attempt.outcome == REVOKED and attempt.status == 200
        assert attempt.downstream == ()  # PS -> AP: an empty body
        refused = net.call(agent, "/data", auth_token)
        assert refused.status_code == 401 and signature_error(refused) == "revoked_jwt"
        # Once answered, the pending URL is gone.
        again = client.attempt("", str(claims["jti"]), 0, poll_url)
        assert again.status == 410


def test_prefer_wait_holds_the_answer_until_the_cascade_is_done() -> None:
    with network(revocation_hold=0.1) as net:
        agent, _person_token, _auth_token = _tokens(net)
        net.slow.delay = 0.5
        claims = agent_claims(agent)
        outbound = net.ap_client().client
        assert outbound is not None
        body = {"jti": claims["jti"], "exp": claims["exp"]}
        response = outbound.request(
            "POST", net.ps_url + "/revoke", json=body, headers=[("Prefer", "wait=10")]
        )
        assert response.status == 200 and response.body == b""


def test_a_repeat_re_attempts_what_failed() -> None:
    with network(revocation_attempts=1) as net:
        agent, _person_token, auth_token = _tokens(net)
        claims = agent_claims(agent)
        jti, exp = str(claims["jti"]), float(claims["exp"])
        # The resource fails the first revocation: the PS gives up after one attempt, and
        # answers 200 all the same (revocation_unavailable is terminal).
        net.slow.fail = True
        first = net.ap_client().revoke(net.ps_url + "/revoke", jti, exp)
        assert first.status == REVOKED
        statuses = {i.status for i in net.ps.records.run(net.ps.rec.outbox_items())}
        assert statuses == {"unavailable"}
        assert net.call(agent, "/data", auth_token).status_code == 200
        # The AP repeats it: the failures are sent again, and this time they land.
        net.slow.fail = False
        again = net.ap_client().revoke(net.ps_url + "/revoke", jti, exp)
        assert again.status == REVOKED
        statuses = {i.status for i in net.ps.records.run(net.ps.rec.outbox_items())}
        assert statuses == {"revoked"}
        refused = net.call(agent, "/data", auth_token)
        assert refused.status_code == 401 and signature_error(refused) == "revoked_jwt"


def test_nothing_downstream_answers_200_at_once() -> None:
    with network(revocation_hold=5) as net:
        key = net.ap.key
        client = net.signer_client(key, net.ap.issuer, DWK_AGENT)
        started = time.monotonic()
        answer = client.attempt(net.ps_url + "/revoke", "never-seen", time.time() + 60)
        assert answer.status == 200 and answer.outcome == REVOKED
        assert time.monotonic() - started < 2


def test_a_recipient_without_metadata_is_unsupported_not_retried() -> None:
    # A token whose resource publishes no AAuth metadata (the AP answers 404 for it): no
    # revocation endpoint, so the token is honoured until exp; the answer does not wait.
    with network() as net:
        agent, _person_token, _auth_token = _tokens(net)
        claims = agent_claims(agent)
        now = time.time()
        net.ps.records.run(
            net.ps.rec.record_issued(
                IssuedToken(
                    jti="elsewhere-1",
                    type="person",
                    aud=net.ap.issuer,
                    iat=now,
                    exp=now + 600,
                    agent_issuer=net.ap.issuer,
                    agent=agent.agent_id,
                )
            )
        )
        started = time.monotonic()
        result = net.ap_client().revoke(net.ps_url + "/revoke", claims["jti"], claims["exp"])
        assert result.status == REVOKED and result.attempts == 1
        assert time.monotonic() - started < 5
        items = net.ps.records.run(net.ps.rec.outbox_items(jti="elsewhere-1"))
        assert [(i.recipient, i.status) for i in items] == [(net.ap.issuer, "unsupported")]
