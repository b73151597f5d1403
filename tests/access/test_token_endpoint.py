"""The AS token endpoint (digest 5.4) through both drivers: metadata, a first issue, the auth
token's claims and caps (3.5), its issued-token record, and every check of 3.4/5.4 with its
5.6 code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import ServerSigner
from aauth_server.tokens.aauth import (
    DWK_ACCESS,
    DWK_PERSON,
    DWK_RESOURCE,
    TYP_AUTH,
    check_claims,
    check_header,
    mint_agent_token,
    mint_auth_token,
)
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature
from tests.access.as_harness import AsWorld, body_of, header
from tests.support import AP_ISSUER, AS_ISSUER, PERSON, PS_ISSUER, RESOURCE

Send = Callable[[Any], Any]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sender(aw: AsWorld, mode: str) -> Send:
    if mode == "sync":
        return aw.send
    return lambda request: asyncio.run(aw.asend(request))


def problem(response: Any) -> tuple[int, str]:
    return response.status, body_of(response)["error"]


def test_metadata_and_jwks() -> None:
    aw = AsWorld()
    meta = aw.server.handle(aw.signed("GET", "/.well-known/aauth-access.json"))
    assert meta is not None and meta.status == 200
    assert body_of(meta) == {
        "issuer": AS_ISSUER,
        "jwks_uri": AS_ISSUER + "/jwks.json",
        "auth_token_endpoint": AS_ISSUER + "/token",
        "revocation_endpoint": AS_ISSUER + "/revoke",
        "accept_signature_algs": ["Ed25519", "ES256"],
    }
    jwks = aw.send(aw.signed("GET", "/jwks.json"))
    assert body_of(jwks) == {"keys": [aw.world.as_key.public_jwk()]}


def test_issues_an_auth_token_per_digest_3_5(mode: str) -> None:
    aw = AsWorld()
    send = sender(aw, mode)
    body = aw.triple("data.read data.write")
    response = send(aw.token_request(body))
    assert response.status == 200, response.body
    answer = body_of(response)
    assert answer["expires_in"] == 3600
    token = decode_unverified(answer["auth_token"])
    assert check_header(token, TYP_AUTH) == TYP_AUTH
    verify_jwt_signature(token, aw.world.as_key.public)
    claims = check_claims(token, typ=TYP_AUTH, now=aw.clock.now(), audience=RESOURCE)
    assert claims["iss"] == AS_ISSUER and claims["dwk"] == DWK_ACCESS
    assert claims["ps"] == PS_ISSUER and claims["sub"] == PERSON
    assert claims["scope"] == "data.read data.write"
    assert claims["cnf"] == {"jwk": aw.world.agent_key.public.jwk}
    assert "agent" not in claims and "act" not in claims
    # Every issued auth token is recorded (digest 5.7 "records to keep" at an AS).
    record = aw.server.records.run(aw.server.rec.issued(str(claims["jti"])))
    presented = decode_unverified(body["presented_token"]).payload
    assert record is not None
    assert (record.type, record.aud, record.exp, record.sub, record.scope) == (
        "auth",
        RESOURCE,
        claims["exp"],
        PERSON,
        "data.read data.write",
    )
    assert (record.presented_iss, record.presented_jti) == (PS_ISSUER, presented["jti"])
    assert record.agent == aw.world.agent_id


def test_the_auth_token_expires_within_every_cap() -> None:
    aw = AsWorld()
    short = aw.world.provider.issue(aw.world.agent_key.public, "assistant", lifetime=900)
    body = {**aw.triple(), "agent_token": short}
    claims = decode_unverified(body_of(aw.send(aw.token_request(body)))["auth_token"]).payload
    assert claims["exp"] - claims["iat"] == 900  # the agent token's exp
    # The presented token's exp caps it too.
    presented = aw.world.person_token()
    aw.clock.advance(3000)
    body = {
        "presented_token": presented,
        "resource_token": aw.resource_token(presented),
        "agent_token": aw.world.provider.issue(aw.world.agent_key.public, "assistant"),
    }
    answer = body_of(aw.send(aw.token_request(body)))
    assert answer["expires_in"] == 600


def test_the_policy_lifetime_and_scope_never_exceed_the_request() -> None:
    from aauth_server.access import Issue

    aw = AsWorld(
        policy=lambda r: Issue(scope="data.read admin", lifetime=120, claims={"email": "a@x"})
    )
    claims = decode_unverified(
        body_of(aw.send(aw.token_request(aw.triple("data.read data.write"))))["auth_token"]
    ).payload
    assert claims["scope"] == "data.read"
    assert claims["exp"] - claims["iat"] == 120
    assert claims["email"] == "a@x"


def test_copied_claims_mission_and_tenant() -> None:
    aw = AsWorld()
    presented = aw.world.person_token(mission_s256="m" * 43, tenant="acme")
    body = {
        "presented_token": presented,
        "resource_token": aw.resource_token(presented, extra={"account": "acct-1"}),
        "agent_token": aw.world.agent_token,
    }
    claims = decode_unverified(body_of(aw.send(aw.token_request(body)))["auth_token"]).payload
    assert (claims["mission_s256"], claims["tenant"], claims["account"]) == (
        "m" * 43,
        "acme",
        "acct-1",
    )


# -- the checks of digest 3.4 / 5.4, each with its 5.6 code -----------------------------------


def _body(aw: AsWorld, **change: Any) -> dict[str, Any]:
    body: dict[str, Any] = aw.triple()
    body.update(change)
    return {k: v for k, v in body.items() if v is not None}


def _other_key_rt(aw: AsWorld) -> dict[str, Any]:
    presented = aw.world.person_token()
    return _body(
        aw,
        presented_token=presented,
        resource_token=aw.resource_token(presented, key=PrivateKey.generate(kid="rs-1")),
    )


def _rt(aw: AsWorld, **kw: Any) -> dict[str, Any]:
    presented = aw.world.person_token()
    return _body(aw, presented_token=presented, resource_token=aw.resource_token(presented, **kw))


def _presented_from(aw: AsWorld, presented: str, **kw: Any) -> dict[str, Any]:
    return _body(aw, presented_token=presented, resource_token=aw.resource_token(presented, **kw))


def _auth_presented(aw: AsWorld, ps: str = PS_ISSUER) -> str:
    return mint_auth_token(
        aw.world.as_key,
        iss=AS_ISSUER,
        dwk=DWK_ACCESS,
        aud=RESOURCE,
        ps=ps,
        sub=PERSON,
        cnf_jwk=aw.world.agent_key.public,
        now=aw.clock.now(),
        lifetime=600,
    )


CASES: dict[str, tuple[Callable[[AsWorld], Any], int, str]] = {
    "not json": (lambda aw: b"{nope", 400, "invalid_request"),
    "no resource_token": (lambda aw: _body(aw, resource_token=None), 400, "invalid_request"),
    "no agent_token": (lambda aw: _body(aw, agent_token=None), 400, "invalid_request"),
    "no presented_token": (lambda aw: _body(aw, presented_token=None), 400, "invalid_request"),
    "resource token garbage": (
        lambda aw: _body(aw, resource_token="x.y.z"),
        400,
        "invalid_resource_token",
    ),
    "resource token typ": (
        lambda aw: _body(aw, resource_token=aw.world.person_token()),
        400,
        "invalid_resource_token",
    ),
    "resource token signed by another key": (_other_key_rt, 400, "invalid_resource_token"),
    "resource token aud is not this AS": (
        lambda aw: _rt(aw, aud=PS_ISSUER),
        400,
        "invalid_resource_token",
    ),
    "resource token expired": (
        lambda aw: _rt(aw, now=aw.clock.now() - 400),
        400,
        "expired_resource_token",
    ),
    "resource token iat ahead": (lambda aw: _rt(aw, now=aw.clock.now() + 200), 400, "clock_skew"),
    "agent_jkt is another key": (
        lambda aw: _rt(aw, agent_jkt=PrivateKey.generate().public.thumbprint),
        400,
        "invalid_resource_token",
    ),
    "resource token names another PS": (
        lambda aw: _rt(aw, ps="https://other-ps.example"),
        400,
        "invalid_resource_token",
    ),
    "presented_jti mismatch": (
        lambda aw: _rt(aw, presented_jti="other"),
        400,
        "invalid_resource_token",
    ),
    "sub mismatch": (lambda aw: _rt(aw, sub="someone-else"), 400, "invalid_resource_token"),
    "mission stripped": (
        lambda aw: (
            _presented_from(aw, aw.world.person_token(mission_s256="m" * 43))
            | {"resource_token": aw.resource_token(aw.world.person_token(mission_s256="m" * 43))}
        ),
        400,
        "invalid_resource_token",
    ),
    "tenant differs": (
        lambda aw: _presented_from(aw, aw.world.person_token(tenant="a"), extra={"tenant": "b"}),
        400,
        "invalid_resource_token",
    ),
    "presented token garbage": (
        lambda aw: _body(aw, presented_token="garbage"),
        400,
        "invalid_presented_token",
    ),
    "presented token is an agent token": (
        lambda aw: _body(aw, presented_token=aw.world.agent_token),
        400,
        "invalid_presented_token",
    ),
    "presented token for another resource": (
        lambda aw: _presented_from(aw, aw.world.person_token(aud="https://other.example")),
        400,
        "invalid_presented_token",
    ),
    "presented token from another PS": (
        lambda aw: _presented_from(
            aw, aw.world.person_token(ps="https://other-ps.example", key=aw.world.ps_key)
        ),
        400,
        "invalid_presented_token",
    ),
    "presented auth token naming another PS": (
        lambda aw: _presented_from(aw, _auth_presented(aw, "https://other-ps.example")),
        400,
        "invalid_resource_token",
    ),
    "agent token garbage": (lambda aw: _body(aw, agent_token="a.b.c"), 400, "invalid_agent_token"),
    "agent token expired": (
        lambda aw: _body(
            aw,
            agent_token=mint_agent_token(
                aw.world.provider.key,
                iss=AP_ISSUER,
                sub=aw.world.agent_id,
                cnf_jwk=aw.world.agent_key.public,
                now=aw.clock.now() - 7200,
                lifetime=3600,
            ),
        ),
        400,
        "expired_agent_token",
    ),
    "agent token of a sub-agent": (
        lambda aw: _body(
            aw,
            agent_token=mint_agent_token(
                aw.world.provider.key,
                iss=AP_ISSUER,
                sub=aw.world.agent_id.replace("assistant@", "assistant+x@"),
                parent_agent=aw.world.agent_id,
                cnf_jwk=aw.world.agent_key.public,
                now=aw.clock.now(),
            ),
        ),
        400,
        "invalid_agent_token",
    ),
    "subagent_token not a token": (
        lambda aw: _body(aw, subagent_token="x"),
        400,
        "invalid_subagent_token",
    ),
    "upstream_token not a token": (
        lambda aw: _body(aw, upstream_token="x"),
        400,
        "invalid_upstream_token",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_check_answers_its_code(case: str, mode: str) -> None:
    aw = AsWorld()
    make, status, error = CASES[case]
    response = sender(aw, mode)(aw.token_request(make(aw)))
    assert problem(response) == (status, error), response.body
    assert header(response, "content-type") == "application/problem+json"


def test_a_presented_auth_token_of_this_as_steps_up() -> None:
    aw = AsWorld()
    response = aw.send(aw.token_request(_presented_from(aw, _auth_presented(aw))))
    assert response.status == 200


def test_revoked_parameter_tokens(mode: str) -> None:
    aw = AsWorld()
    send = sender(aw, mode)
    body = aw.triple()
    rt = decode_unverified(body["resource_token"]).payload
    pt = decode_unverified(body["presented_token"]).payload
    aw.server.records.run(aw.server.rec.revoke(PS_ISSUER, str(pt["jti"]), exp=2e9, now=0))
    assert problem(send(aw.token_request(body))) == (400, "revoked_presented_token")
    aw.server.records.run(aw.server.rec.revoke(RESOURCE, str(rt["jti"]), exp=2e9, now=0))
    assert problem(send(aw.token_request(body))) == (400, "revoked_resource_token")


def test_untrusted_person_servers_are_refused_before_any_fetch(mode: str) -> None:
    aw = AsWorld(trusted_ps=("https://trusted.example",))
    response = sender(aw, mode)(aw.token_request(aw.triple()))
    assert problem(response) == (403, "denied")
    assert header(response, "signature-error") is None


def test_only_a_person_server_signs_here() -> None:
    aw = AsWorld(trust_any_ps=True, trusted_ps=())
    as_resource = ServerSigner(aw.world.resource_key, RESOURCE, DWK_RESOURCE, clock=aw.clock)
    response = aw.send(aw.token_request(aw.triple(), signer=as_resource))
    assert problem(response) == (403, "denied")


def test_bad_signatures_are_401() -> None:
    aw = AsWorld()
    impostor = ServerSigner(PrivateKey.generate(kid="ps-1"), PS_ISSUER, DWK_PERSON, clock=aw.clock)
    response = aw.send(aw.token_request(aw.triple(), signer=impostor))
    assert response.status == 401
    assert header(response, "signature-error") == "error=invalid_signature"
    request = aw.token_request(aw.triple())
    unsigned = type(request)(
        request.method,
        request.url,
        [(k, v) for k, v in request.headers if k.lower() != "signature"],
        request.body,
    )
    assert aw.send(unsigned).status == 401


def test_a_wrong_content_type_is_invalid_request() -> None:
    aw = AsWorld()
    request = aw.signed("POST", "/token", b"{}", headers=[("Content-Type", "text/plain")])
    assert problem(aw.send(request)) == (400, "invalid_request")


def test_a_failing_policy_is_server_error() -> None:
    def broken(request: Any) -> Any:
        raise RuntimeError("boom")

    aw = AsWorld(policy=broken)
    assert problem(aw.send(aw.token_request(aw.triple()))) == (500, "server_error")


def test_a_denying_policy_is_403_denied() -> None:
    from aauth_server.access import Deny

    aw = AsWorld(policy=lambda r: Deny("not this agent"))
    response = aw.send(aw.token_request(aw.triple()))
    assert problem(response) == (403, "denied")
    assert body_of(response)["detail"] == "not this agent"


def test_a_policy_answering_no_verdict_is_server_error() -> None:
    aw = AsWorld(policy=lambda request: "yes")  # type: ignore[arg-type,return-value]
    assert problem(aw.send(aw.token_request(aw.triple()))) == (500, "server_error")


def test_a_sub_agent_token_binds_the_auth_token_to_the_sub_agent_key(mode: str) -> None:
    """Four-party, parent-mediated (digest 9): the PS forwards the parent's agent token and
    the sub-agent's token; the AS checks ``agent_jkt`` against the sub-agent key and binds
    the auth token to it."""
    from aauth_server.tokens.aauth import mint_person_token

    aw = AsWorld()
    send = sender(aw, mode)
    provider = aw.world.provider
    sub_key = PrivateKey.generate("Ed25519")
    parent = str(decode_unverified(aw.world.agent_token).payload["sub"])
    sub_token = provider.issue_subagent(sub_key.public, parent, "helper")
    presented = mint_person_token(
        aw.world.ps_key,
        iss=PS_ISSUER,
        aud=RESOURCE,
        sub=PERSON,
        cnf_jwk=sub_key.public,
        now=aw.clock.now(),
        lifetime=3600,
    )
    body = {
        "resource_token": aw.resource_token(presented, agent_jkt=sub_key.public.thumbprint),
        "agent_token": aw.world.agent_token,
        "presented_token": presented,
        "subagent_token": sub_token,
    }
    response = send(aw.token_request(body))
    assert response.status == 200, response.body
    claims = decode_unverified(body_of(response)["auth_token"]).payload
    assert claims["cnf"] == {"jwk": sub_key.public.jwk}
    # The same request without the sub-agent token: agent_jkt names another key.
    del body["subagent_token"]
    refused = send(aw.token_request(body))
    assert (refused.status, body_of(refused)["error"]) == (400, "invalid_resource_token")


def test_an_upstream_person_token_caps_the_auth_token_and_is_recorded(mode: str) -> None:
    """Call chaining at the AS (digest 9): the upstream person token names the signing PS
    and the intermediary (the agent token's issuer) as its audience; the auth token expires
    no later than it and its record names it, so its revocation cascades."""
    aw = AsWorld()
    send = sender(aw, mode)
    intermediary = str(decode_unverified(aw.world.agent_token).payload["iss"])
    upstream = aw.world.person_token(aud=intermediary)
    up_claims = decode_unverified(upstream).payload
    response = send(aw.token_request({**aw.triple(), "upstream_token": upstream}))
    assert response.status == 200, response.body
    claims = decode_unverified(body_of(response)["auth_token"]).payload
    assert claims["exp"] <= up_claims["exp"]
    assert claims["sub"] == PERSON  # from the resource token, never the upstream's
    record = aw.server.records.run(aw.server.rec.issued(str(claims["jti"])))
    assert record is not None
    assert (record.upstream_iss, record.upstream_jti) == (PS_ISSUER, up_claims["jti"])
    # An upstream token for another audience, or from another PS, is invalid_upstream_token.
    for bad in (
        aw.world.person_token(aud=RESOURCE),
        aw.world.person_token(aud=intermediary, ps="https://other-ps.example"),
    ):
        refused = send(aw.token_request({**aw.triple(), "upstream_token": bad}))
        assert (refused.status, body_of(refused)["error"]) == (400, "invalid_upstream_token")
