"""Call chaining and sub-agents at the PS core (digest 5.2, 5.3, 9), through both drivers:
the chained and the parent-mediated token requests, and every ``*_upstream_token`` and
``*_subagent_token`` error of digest 5.6.

The world: the test agent (bound to alice) called an intermediary resource
(``https://intermediary.example``) with a person token this PS issued for it; the
intermediary is its own agent provider and asks the same PS for tokens for the downstream
resource (``https://resource.example``), with that person token as ``upstream_token``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from aauth_server.agent import AgentProvider
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import DefaultPolicy
from aauth_server.records import IssuedToken
from aauth_server.tokens.aauth import (
    DWK_ACCESS,
    TYP_AUTH,
    TYP_PERSON,
    check_claims,
    check_header,
    mint_auth_token,
    mint_person_token,
)
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature
from tests.person.ps_harness import ALICE, PsWorld, Sender, body_of, sender
from tests.support import AS_ISSUER, PS_ISSUER, RESOURCE

MID = "https://intermediary.example"
OTHER_PS = "https://other-ps.example"
AGENT = "aauth:assistant@agent.example"
MID_AGENT = "aauth:intermediary@intermediary.example"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Chain:
    pw: PsWorld
    send: Sender
    mid: AgentProvider
    mid_key: PrivateKey
    mid_token: str
    other_ps_key: PrivateKey

    # -- the calling agent --------------------------------------------------------------------

    def upstream(self) -> str:
        """The person token the agent gets for the intermediary (issued and recorded)."""
        response = self.send(self.pw.person_request(resource=MID))
        assert response.status == 200, response.body
        return str(body_of(response)["person_token"])

    # -- the intermediary ---------------------------------------------------------------------

    def mid_post(self, path: str, body: dict[str, Any], **kw: Any) -> Any:
        body.setdefault("capabilities", ["interaction"])
        token = kw.pop("token", self.mid_token)
        key = kw.pop("key", self.mid_key)
        return self.send(self.pw.post(path, body, token=token, key=key, **kw))

    def person_request(self, upstream: str, **body: Any) -> Any:
        return self.mid_post(
            self.pw.config.person_token_path,
            {"resource": RESOURCE, "upstream_token": upstream, **body},
        )

    def auth_request(self, upstream: str, presented: str, **body: Any) -> Any:
        rt = self.pw.resource_token(presented, agent_jkt=self.mid_key.public.thumbprint)
        return self.mid_post(
            self.pw.config.auth_token_path,
            {"resource_token": rt, "presented_token": presented, "upstream_token": upstream,
             **body},
        )  # fmt: skip


def make(mode: str, *, agents: tuple[str, ...] = (AGENT, MID_AGENT)) -> Chain:
    policy = DefaultPolicy(auto_approve_agents=agents, auto_approve_scopes=("data.read",))
    pw = PsWorld(policy=policy)
    send = sender(pw.app, mode)
    pw.bind()
    mid = AgentProvider(MID, PrivateKey.generate("Ed25519", kid="mid-ap"), clock=pw.clock)
    mid_key = PrivateKey.generate("Ed25519")
    other_ps_key = PrivateKey.generate("Ed25519", kid="other-1")
    serve(
        pw,
        {
            **mid.documents(),
            OTHER_PS + "/.well-known/aauth-person.json": {
                "issuer": OTHER_PS,
                "jwks_uri": OTHER_PS + "/jwks.json",
            },
            OTHER_PS + "/jwks.json": {"keys": [other_ps_key.public_jwk()]},
        },
    )
    mid_token = mid.issue(mid_key.public, "intermediary")
    return Chain(pw, send, mid, mid_key, mid_token, other_ps_key)


def serve(pw: PsWorld, documents: dict[str, Any]) -> None:
    """More documents on the test "network" the PS discovers keys through."""
    discovery = pw.ps.discovery
    for fetcher in (discovery._fetcher, discovery._async_fetcher):
        fetcher.documents.update(documents)  # type: ignore[attr-defined]


def error_of(response: Any, status: int, error: str) -> None:
    assert response.status == status, response.body
    assert body_of(response)["error"] == error, response.body


def claims_of(pw: PsWorld, token: str, typ: str, aud: str = RESOURCE) -> dict[str, Any]:
    jwt = decode_unverified(token)
    check_header(jwt, typ)
    verify_jwt_signature(jwt, pw.world.ps_key.public)
    return dict(check_claims(jwt, typ=typ, now=pw.clock.now(), audience=aud))


def issued(pw: PsWorld, jti: str) -> IssuedToken:
    row = pw.ps.records.run(pw.ps.rec.issued(jti))
    assert row is not None
    return row


# -- call chaining: the happy path -----------------------------------------------------------


def test_chained_person_and_auth_tokens(mode: str) -> None:
    c = make(mode)
    upstream = c.upstream()
    up = decode_unverified(upstream).payload
    c.pw.tick(3000)  # the upstream token has 600 s left: the downstream ones get no more

    response = c.person_request(upstream)
    assert response.status == 200, response.body
    person = claims_of(c.pw, body_of(response)["person_token"], TYP_PERSON)
    assert person["iss"] == PS_ISSUER and person["aud"] == RESOURCE
    assert person["sub"] == c.pw.sub_for(ALICE, RESOURCE) != up["sub"]  # never the upstream sub
    assert person["cnf"]["jwk"]["x"] == c.mid_key.public.jwk["x"]
    assert person["exp"] == up["exp"]
    row = issued(c.pw, str(person["jti"]))
    assert (row.upstream_iss, row.upstream_jti) == (PS_ISSUER, up["jti"])
    assert (row.person, row.agent) == (ALICE, MID_AGENT)
    # No agent-person binding was used or made for the intermediary.
    assert c.pw.ps.bindings.person(MID, MID_AGENT) is None

    presented = body_of(response)["person_token"]
    response = c.auth_request(upstream, presented)
    assert response.status == 200, response.body
    auth = claims_of(c.pw, body_of(response)["auth_token"], TYP_AUTH)
    assert auth["sub"] == person["sub"] and auth["ps"] == PS_ISSUER
    assert auth["cnf"]["jwk"]["x"] == c.mid_key.public.jwk["x"]
    assert auth["exp"] == up["exp"] and auth["scope"] == "data.read"
    row = issued(c.pw, str(auth["jti"]))
    assert (row.type, row.upstream_jti) == ("auth", up["jti"])


def test_the_intermediary_sends_no_mission(mode: str) -> None:
    c = make(mode)
    upstream = c.upstream()
    error_of(c.person_request(upstream, mission_s256="A" * 43), 400, "invalid_request")


def test_an_upstream_auth_token_from_an_as_the_ps_presented_to(mode: str) -> None:
    c = make(mode)
    sub = c.pw.sub_for(ALICE, MID)
    now = c.pw.clock.now()
    # This PS presented alice's person token for the intermediary to the AS (four-party).
    record = IssuedToken(
        jti="pt-to-as", type="person", aud=MID, iat=now, exp=now + 3600,
        agent_issuer="https://agent.example", agent=AGENT, agent_jti="x", person=ALICE,
        sub=sub, presented_to=AS_ISSUER,
    )  # fmt: skip
    c.pw.ps.records.run(c.pw.ps.rec.record_issued(record))
    upstream = as_auth_token(c, sub=sub)
    response = c.person_request(upstream)
    assert response.status == 200, response.body
    person = claims_of(c.pw, body_of(response)["person_token"], TYP_PERSON)
    row = issued(c.pw, str(person["jti"]))
    assert (row.upstream_iss, row.person) == (AS_ISSUER, ALICE)


def as_auth_token(c: Chain, *, sub: str, ps: str = PS_ISSUER, aud: str = MID) -> str:
    return mint_auth_token(
        c.pw.world.as_key,
        iss=AS_ISSUER,
        dwk=DWK_ACCESS,
        aud=aud,
        ps=ps,
        sub=sub,
        cnf_jwk=c.pw.world.agent_key.public,
        now=c.pw.clock.now(),
        lifetime=600,
        scope="data.read",
    )


def test_a_pending_chained_request_ends_expired_with_its_upstream(mode: str) -> None:
    c = make(mode, agents=(AGENT,))  # the person is asked about the intermediary
    upstream = c.upstream()
    c.pw.tick(3500)
    c.mid_token = c.mid.issue(c.mid_key.public, "intermediary")
    response = c.person_request(upstream)
    assert response.status == 202, response.body
    location = response.header("location") or ""
    c.pw.tick(101)  # past the upstream token's exp, well before the pending lifetime
    poll = c.send(c.pw.poll(location, token=c.mid_token, key=c.mid_key))
    error_of(poll, 408, "expired")


def test_the_person_approves_a_chained_request_without_binding_the_intermediary(
    mode: str,
) -> None:
    c = make(mode, agents=(AGENT,))
    upstream = c.upstream()
    response = c.person_request(upstream)
    assert response.status == 202, response.body
    code = (response.header("aauth-requirement") or "").split('code="')[1].split('"')[0]
    view = c.pw.ps.consent.open(code, ALICE)
    assert (view.agent, view.resource, view.binds_agent) == (MID_AGENT, RESOURCE, False)
    c.pw.ps.consent.approve(view.pending_id, ALICE)
    c.pw.tick()
    poll = c.send(c.pw.poll(response.header("location") or "", token=c.mid_token, key=c.mid_key))
    assert poll.status == 200, poll.body
    person = claims_of(c.pw, body_of(poll)["person_token"], TYP_PERSON)
    assert (
        issued(c.pw, str(person["jti"])).upstream_jti == decode_unverified(upstream).payload["jti"]
    )
    assert c.pw.ps.bindings.person(MID, MID_AGENT) is None


# -- *_upstream_token errors --------------------------------------------------------------------


def _wrong_typ(c: Chain) -> str:
    return c.mid_token  # an agent token is neither a person nor an auth token


def _aud_not_the_intermediary(c: Chain) -> str:
    response = c.send(c.pw.person_request(resource=RESOURCE))
    return str(body_of(response)["person_token"])


def _another_ps(c: Chain) -> str:
    return mint_person_token(
        c.other_ps_key, iss=OTHER_PS, aud=MID, sub="s", cnf_jwk=c.pw.world.agent_key.public,
        now=c.pw.clock.now(),
    )  # fmt: skip


def _auth_token_naming_another_ps(c: Chain) -> str:
    return as_auth_token(c, sub=c.pw.sub_for(ALICE, MID), ps=OTHER_PS)


def _auth_token_of_an_as_never_presented_to(c: Chain) -> str:
    return as_auth_token(c, sub=c.pw.sub_for(ALICE, MID))


def _never_issued(c: Chain) -> str:
    return c.pw.person_token(aud=MID, sub=c.pw.sub_for(ALICE, MID))


def _bad_signature(c: Chain) -> str:
    head, payload, sig = c.upstream().split(".")
    return f"{head}.{payload}.{sig[:-4]}AAAA"


def _not_a_jwt(c: Chain) -> str:
    return "not-a-jwt"


@pytest.mark.parametrize(
    "upstream",
    [
        _wrong_typ,
        _aud_not_the_intermediary,
        _another_ps,
        _auth_token_naming_another_ps,
        _auth_token_of_an_as_never_presented_to,
        _never_issued,
        _bad_signature,
        _not_a_jwt,
    ],
)
def test_invalid_upstream_token(mode: str, upstream: Any) -> None:
    c = make(mode)
    token = upstream(c)
    error_of(c.person_request(token), 400, "invalid_upstream_token")
    presented = c.pw.person_token(aud=RESOURCE, sub=c.pw.sub_for(ALICE, RESOURCE))
    error_of(c.auth_request(token, presented), 400, "invalid_upstream_token")


def test_expired_upstream_token(mode: str) -> None:
    c = make(mode)
    upstream = c.upstream()
    c.pw.tick(3601)
    c.mid_token = c.mid.issue(c.mid_key.public, "intermediary")  # a fresh signer
    error_of(c.person_request(upstream), 400, "expired_upstream_token")


def _agent_token_revoked(c: Chain) -> None:
    assert c.send(c.pw.revoke_agent_token()).status == 200


def _binding_revoked(c: Chain) -> None:
    ps = c.pw.ps
    assert ps.records.run(ps.rec.unbind("https://agent.example", AGENT))


def _token_revoked(c: Chain, upstream: str) -> None:
    ps = c.pw.ps
    jti = str(decode_unverified(upstream).payload["jti"])
    assert ps.records.run(ps.rec.mark_revoked([jti], now=c.pw.clock.now())) == 1


@pytest.mark.parametrize("what", ["agent", "binding", "token"])
def test_revoked_upstream_token(mode: str, what: str) -> None:
    c = make(mode)
    upstream = c.upstream()
    presented = body_of(c.person_request(upstream))["person_token"]
    c.pw.tick(1)
    if what == "agent":
        _agent_token_revoked(c)
    elif what == "binding":
        _binding_revoked(c)
    else:
        _token_revoked(c, upstream)
    c.pw.tick(1)
    error_of(c.person_request(upstream), 400, "revoked_upstream_token")
    error_of(c.auth_request(upstream, presented), 400, "revoked_upstream_token")


def test_the_mission_of_the_resource_token_must_be_the_upstreams(mode: str) -> None:
    c = make(mode)
    upstream = c.upstream()
    presented = mint_person_token(
        c.pw.world.ps_key, iss=PS_ISSUER, aud=RESOURCE, sub=c.pw.sub_for(ALICE, RESOURCE),
        cnf_jwk=c.mid_key.public, now=c.pw.clock.now(), mission_s256="B" * 43,
    )  # fmt: skip
    error_of(c.auth_request(upstream, presented), 400, "invalid_upstream_token")


# -- sub-agents ---------------------------------------------------------------------------------


@dataclass
class Sub:
    key: PrivateKey
    token: str


def subagent(c: Chain, *, parent: str = "assistant", lifetime: int = 3600) -> Sub:
    key = PrivateKey.generate("Ed25519")
    provider = c.pw.world.provider
    token = provider.issue_subagent(
        key.public, provider.agent_id(parent), "helper", lifetime=lifetime
    )
    return Sub(key, token)


def parent_post(c: Chain, path: str, body: dict[str, Any]) -> Any:
    body.setdefault("capabilities", ["interaction"])
    return c.send(c.pw.post(path, body))


def test_parent_mediated_person_and_auth_tokens(mode: str) -> None:
    c = make(mode)
    sub = subagent(c)
    cfg = c.pw.config
    response = parent_post(
        c, cfg.person_token_path, {"resource": RESOURCE, "subagent_token": sub.token}
    )
    assert response.status == 200, response.body
    person_token = body_of(response)["person_token"]
    person = claims_of(c.pw, person_token, TYP_PERSON)
    assert person["cnf"]["jwk"]["x"] == sub.key.public.jwk["x"]
    assert person["sub"] == c.pw.sub_for(ALICE, RESOURCE)

    # The sub-agent presents it; the resource binds its resource token to the sub-agent key.
    rt = c.pw.resource_token(person_token, agent_jkt=sub.key.public.thumbprint)
    body = {"resource_token": rt, "presented_token": person_token, "subagent_token": sub.token}
    response = parent_post(c, cfg.auth_token_path, dict(body))
    assert response.status == 200, response.body
    auth = claims_of(c.pw, body_of(response)["auth_token"], TYP_AUTH)
    assert auth["cnf"]["jwk"]["x"] == sub.key.public.jwk["x"]
    # Recorded as the sub-agent's tokens (the holder of the key; its AP can revoke it).
    sub_claims = decode_unverified(sub.token).payload
    for jti in (person["jti"], auth["jti"]):
        row = issued(c.pw, str(jti))
        assert (row.agent, row.agent_jti) == (sub_claims["sub"], sub_claims["jti"])

    # agent_jkt is checked against the sub-agent key: the parent's does not do.
    parent_rt = c.pw.resource_token(person_token, agent_jkt=c.pw.world.agent_key.public.thumbprint)
    error_of(
        parent_post(c, cfg.auth_token_path, {**body, "resource_token": parent_rt}),
        400,
        "invalid_resource_token",
    )


@pytest.mark.parametrize("path", ["person", "auth"])
def test_a_request_signed_by_a_sub_agent_is_refused(mode: str, path: str) -> None:
    c = make(mode)
    sub = subagent(c)
    cfg = c.pw.config
    if path == "person":
        body: dict[str, Any] = {"resource": RESOURCE}
        target = cfg.person_token_path
    else:
        pt = c.pw.person_token()
        body = {"resource_token": c.pw.resource_token(pt), "presented_token": pt}
        target = cfg.auth_token_path
    raw = json.dumps({**body, "capabilities": ["interaction"]}).encode()
    response = c.send(c.pw.world.signed(
        "POST", target, body=raw, token=sub.token, key=sub.key, origin=PS_ISSUER
    ))  # fmt: skip
    error_of(response, 400, "invalid_request")


def _no_parent_agent(c: Chain) -> str:
    return c.pw.new_agent_token()  # a top-level agent token


def _another_parent(c: Chain) -> str:
    return subagent(c, parent="someone-else").token


def _a_person_token(c: Chain) -> str:
    return c.pw.person_token()


def _forged(c: Chain) -> str:
    head, payload, sig = subagent(c).token.split(".")
    return f"{head}.{payload}.{sig[:-4]}AAAA"


def _another_provider(c: Chain) -> str:
    # Another provider's sub-agent: neither its parent nor its iss is the signer's.
    key = PrivateKey.generate("Ed25519")
    return c.mid.issue_subagent(key.public, MID_AGENT, "helper")


@pytest.mark.parametrize(
    "token", [_no_parent_agent, _another_parent, _a_person_token, _forged, _another_provider]
)
def test_invalid_subagent_token(mode: str, token: Any) -> None:
    c = make(mode)
    body = {"resource": RESOURCE, "subagent_token": token(c)}
    error_of(parent_post(c, c.pw.config.person_token_path, body), 400, "invalid_subagent_token")


def test_expired_subagent_token(mode: str) -> None:
    c = make(mode)
    sub = subagent(c, lifetime=60)
    c.pw.tick(61)
    body = {"resource": RESOURCE, "subagent_token": sub.token}
    error_of(parent_post(c, c.pw.config.person_token_path, body), 400, "expired_subagent_token")


def test_revoked_subagent_token(mode: str) -> None:
    c = make(mode)
    sub = subagent(c)
    # Its AP revokes the sub-agent token at the PS (digest 5.7).
    assert c.send(c.pw.revoke_agent_token(sub.token)).status == 200
    cfg = c.pw.config
    body = {"resource": RESOURCE, "subagent_token": sub.token}
    error_of(parent_post(c, cfg.person_token_path, dict(body)), 400, "revoked_subagent_token")
    pt = c.pw.person_token()
    auth_body = {
        "resource_token": c.pw.resource_token(pt, agent_jkt=sub.key.public.thumbprint),
        "presented_token": pt,
        "subagent_token": sub.token,
    }
    error_of(parent_post(c, cfg.auth_token_path, auth_body), 400, "revoked_subagent_token")


def test_the_provider_never_issues_a_sub_agent_of_a_sub_agent() -> None:
    c = make("sync")
    provider = c.pw.world.provider
    key = PrivateKey.generate("Ed25519")
    with pytest.raises(ValueError, match="one level deep"):
        provider.issue_subagent(key.public, "aauth:assistant+helper@agent.example", "deeper")
    claims = decode_unverified(subagent(c).token).payload
    assert claims["parent_agent"] == AGENT and claims["iss"] == "https://agent.example"
    assert claims["sub"] == "aauth:assistant+helper@agent.example"


def test_revoking_a_used_sub_agent_token_cuts_the_sub_agent_off(mode: str) -> None:
    c = make(mode)
    used, earlier = subagent(c), subagent(c)
    cfg = c.pw.config
    body = {"resource": RESOURCE, "subagent_token": used.token}
    assert parent_post(c, cfg.person_token_path, dict(body)).status == 200
    c.pw.tick(1)
    assert c.send(c.pw.revoke_agent_token(used.token)).status == 200
    # Another token of the same sub-agent, issued before the revocation, is cut off too.
    body["subagent_token"] = earlier.token
    error_of(parent_post(c, cfg.person_token_path, body), 400, "revoked_subagent_token")
    c.pw.tick(1)
    body["subagent_token"] = subagent(c).token  # a fresh one, issued after it
    assert parent_post(c, cfg.person_token_path, body).status == 200
