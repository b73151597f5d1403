"""The Access Server's revocation cascade (digest 5.7), four-party, on real servers on
127.0.0.1: an agent provider, the PS, the AS and the Starlette resource whose resource
tokens go to the AS.

The agent gets a person token from the PS, the resource answers with a resource token for
the AS, the PS gets the auth token from the AS (signed as the PS, as its federation does)
and the resource serves it.  Then:

* the PS revokes the person token at the AS: the AS revokes every auth token it issued
  against it at the resource and answers ``200 {"downstream": [...]}`` (or ``202`` while a
  slow resource has not confirmed, polled to completion by the PS);
* the AP revokes the agent token at the PS: the PS revokes the person token at the resource
  *and* at the AS it was presented to, and the AS cascades to the auth token.
Each ends with the resource answering ``401 revoked_jwt`` for the revoked token.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aauth_server.access.revocation import revocation_for
from aauth_server.agent import Agent
from aauth_server.agent.flow import requirement_of
from aauth_server.cascade import KIND_ACCESS, KIND_RESOURCE
from aauth_server.fields import parse_aauth_requirement
from aauth_server.revocation_client import PENDING, REVOKED
from aauth_server.tokens.jwt import decode_unverified
from tests.revocation.net import Net, agent_claims, network, signature_error


def _claims(token: str) -> dict[str, Any]:
    return dict(decode_unverified(token).payload)


def _four_party(net: Net, local: str = "assistant") -> tuple[Agent, str, str]:
    agent = net.agent(local)
    person_token = net.flow(agent).person_token(net.rs_url)
    challenge = net.call(agent, "/data", person_token)
    requirement = requirement_of(challenge)
    assert requirement is not None and requirement.resource_token, challenge.headers
    assert _claims(requirement.resource_token)["aud"] == net.as_url
    auth_token = net.federate(agent, requirement.resource_token, person_token)
    assert _claims(auth_token)["iss"] == net.as_url
    assert net.call(agent, "/data", auth_token).status_code == 200
    return agent, person_token, auth_token


def _refused(net: Net, agent: Agent, token: str) -> None:
    refused = net.call(agent, "/data", token)
    assert refused.status_code == 401, refused.text
    assert signature_error(refused) == "revoked_jwt"
    # A revoked auth token sends the agent back for a person token (digest 5.7).
    requirement = parse_aauth_requirement(refused.headers["aauth-requirement"])
    assert requirement.requirement == "person-token"


def test_the_ps_revokes_a_person_token_at_the_as_and_the_as_revokes_its_auth_tokens() -> None:
    with network(access=True) as net:
        agent, person_token, auth_token = _four_party(net)
        other_agent, _other_person, other_auth = _four_party(net, "helper")
        claims = _claims(person_token)
        result = net.ps_client().revoke(net.as_url + "/revoke", claims["jti"], claims["exp"])
        assert result.status == REVOKED
        assert result.downstream == ({"recipient": net.rs_url},)
        _refused(net, agent, auth_token)
        assert net.call(other_agent, "/data", other_auth).status_code == 200
        # The AS refuses the revoked person token as a presented token from now on.
        challenge = requirement_of(net.call(agent, "/data", person_token))
        assert challenge is not None and challenge.resource_token
        client = net.ps_client().client
        assert client is not None
        body = {
            "resource_token": challenge.resource_token,
            "agent_token": agent.token,
            "presented_token": person_token,
        }
        again = client.request("POST", net.as_url + "/token", json=body)
        assert again.status == 400
        assert json.loads(again.body)["error"] == "revoked_presented_token"


def test_a_slow_as_cascade_answers_202_and_the_ps_polls_it_to_completion() -> None:
    with network(access=True) as net:
        agent, person_token, auth_token = _four_party(net)
        assert net.access is not None
        revocation_for(net.access).answer.hold = 0.2
        net.slow.delay = 1.5
        claims = _claims(person_token)
        client = net.ps_client()
        first = client.attempt(net.as_url + "/revoke", claims["jti"], claims["exp"])
        assert (first.status, first.outcome) == (202, PENDING)
        assert first.poll_url is not None and first.poll_url.startswith(net.as_url + "/revoke/")
        # The AP is a server too, but not the one that revoked: 404.
        stranger = net.ap_client().attempt("", "x", 0, first.poll_url)
        assert stranger.status == 404
        attempt, polls = first, 0
        while attempt.outcome == PENDING:
            time.sleep(attempt.retry_after or 1)
            attempt = client.attempt("", claims["jti"], claims["exp"], first.poll_url)
            polls += 1
            assert polls < 30
        assert (attempt.status, attempt.downstream) == (200, ({"recipient": net.rs_url},))
        _refused(net, agent, auth_token)


def test_downstream_failures_are_reported_and_a_repeat_re_attempts_them() -> None:
    with network(access=True) as net:
        agent, person_token, auth_token = _four_party(net)
        assert net.access is not None
        revocation_for(net.access).worker.attempts = 1
        net.slow.fail = True
        claims = _claims(person_token)
        client = net.ps_client()
        failed = client.revoke(net.as_url + "/revoke", claims["jti"], claims["exp"])
        assert failed.status == REVOKED  # terminal: the failure is reported, not hidden
        assert failed.downstream == ({"recipient": net.rs_url, "error": "revocation_unavailable"},)
        assert net.call(agent, "/data", auth_token).status_code == 200
        net.slow.fail = False
        again = client.revoke(net.as_url + "/revoke", claims["jti"], claims["exp"])
        assert again.downstream == ({"recipient": net.rs_url},)
        _refused(net, agent, auth_token)


def test_nothing_downstream_at_the_as_is_200_with_an_empty_body_at_once() -> None:
    with network(access=True) as net:
        client = net.ps_client().client
        assert client is not None
        started = time.monotonic()
        answer = client.request(
            "POST", net.as_url + "/revoke", json={"jti": "unused", "exp": int(time.time()) + 60}
        )
        assert (answer.status, answer.body) == (200, b"")
        assert time.monotonic() - started < 2


def test_the_agent_token_revoked_at_the_ps_reaches_the_as_and_its_auth_tokens() -> None:
    with network(access=True) as net:
        agent, person_token, auth_token = _four_party(net)
        pt = _claims(person_token)
        # The PS notes the AS it presented the person token to (its federation does).
        assert net.ps.records.run(net.ps.rec.presented_to(pt["jti"], net.as_url))
        claims = agent_claims(agent)
        result = net.ap_client().revoke(net.ps_url + "/revoke", claims["jti"], claims["exp"])
        assert result.status == REVOKED and result.downstream == ()  # PS -> AP: empty body
        ps_items = net.ps.records.run(net.ps.rec.outbox_items(jti=pt["jti"]))
        assert sorted((i.kind, i.recipient, i.status) for i in ps_items) == sorted(
            [(KIND_RESOURCE, net.rs_url, "revoked"), (KIND_ACCESS, net.as_url, "revoked")]
        )
        (at_as,) = [i for i in ps_items if i.kind == KIND_ACCESS]
        assert at_as.detail == "confirmed"  # the AS's downstream all revoked
        assert net.access is not None
        as_items = net.access.records.run(net.access.rec.outbox_items())
        assert [(i.recipient, i.jti, i.status) for i in as_items] == [
            (net.rs_url, _claims(auth_token)["jti"], "revoked")
        ]
        _refused(net, agent, auth_token)
        refused = net.call(agent, "/profile", person_token)
        assert refused.status_code == 401 and signature_error(refused) == "revoked_jwt"
