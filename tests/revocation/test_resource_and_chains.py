"""The resource's side of a PS revocation, and chained tokens (digest 5.7, 9).

* A person token the PS revoked at the resource is refused there (``401 revoked_jwt``) on
  every path, and the resource never names it in a new resource token: neither the
  ``auth-token`` challenge nor the authorization endpoint issues one.
* Chained person tokens the PS issued from a revoked upstream token are revoked too, at
  their own resource (the issued-token records carry ``upstream_iss``/``upstream_jti``).
"""

from __future__ import annotations

import time
from typing import Any

from aauth_server.agent import Agent
from aauth_server.agent.flow import requirement_of
from aauth_server.records import IssuedToken
from aauth_server.revocation_client import REVOKED
from aauth_server.tokens.aauth import mint_person_token
from aauth_server.tokens.jwt import decode_unverified
from tests.revocation.net import ALICE, Net, agent_claims, network, signature_error


def _claims(token: str) -> dict[str, Any]:
    return dict(decode_unverified(token).payload)


def test_a_person_token_revoked_by_the_ps_is_never_named_in_a_resource_token() -> None:
    with network() as net:
        agent = net.agent()
        flow = net.flow(agent)
        person_token = flow.person_token(net.rs_url)
        # Before: the auth-token challenge names the person token in a resource token.
        challenge = requirement_of(net.call(agent, "/data", person_token))
        assert challenge is not None and challenge.resource_token
        assert _claims(challenge.resource_token)["presented_jti"] == _claims(person_token)["jti"]
        claims = _claims(person_token)
        result = net.ps_client().revoke(net.rs_url + "/aauth/revoke", claims["jti"], claims["exp"])
        assert result.status == REVOKED
        for path in ("/profile", "/data"):
            refused = net.call(agent, path, person_token)
            assert refused.status_code == 401, (path, refused.text)
            assert signature_error(refused) == "revoked_jwt"
            assert "resource-token" not in refused.headers.get("aauth-requirement", "")
        # The authorization endpoint does not issue one for it either.
        authorize = flow._send(
            "authorize",
            "POST",
            net.rs_url + "/aauth/authorize",
            person_token,
            {"scope": "data.read"},
        )
        assert authorize.status_code == 401 and signature_error(authorize) == "revoked_jwt"
        assert b"resource_token" not in authorize.content
        # A fresh person token for the same person still works.
        fresh = flow.person_token(net.rs_url)
        assert net.call(agent, "/profile", fresh).status_code == 200


def _chained(net: Net, upstream_jti: str, intermediary: Agent) -> str:
    """A person token the PS issued to an intermediary from an upstream token (as h-chain's
    chained issuing records it)."""
    ps = net.ps
    now = time.time()
    token = mint_person_token(
        ps.config.signing_key,
        iss=net.ps_url,
        aud=net.rs_url,
        sub=ps.directed_sub(ALICE, net.rs_url),
        cnf_jwk=intermediary.key.public,
        now=now,
        lifetime=600,
        dev_loopback=True,
    )
    claims = _claims(token)
    ps.records.run(
        ps.rec.record_issued(
            IssuedToken(
                jti=str(claims["jti"]),
                type="person",
                aud=net.rs_url,
                iat=float(claims["iat"]),
                exp=float(claims["exp"]),
                agent_issuer=net.ap.issuer,
                agent=intermediary.agent_id,
                person=ALICE,
                upstream_iss=net.ps_url,
                upstream_jti=upstream_jti,
            )
        )
    )
    return token


def test_chained_person_tokens_from_a_revoked_upstream_are_revoked_too() -> None:
    with network() as net:
        agent = net.agent()
        upstream = net.flow(agent).person_token(net.rs_url)
        intermediary = net.agent("helper")
        first = _chained(net, str(_claims(upstream)["jti"]), intermediary)
        second = _chained(net, str(_claims(first)["jti"]), intermediary)  # a chain of chains
        unrelated = _chained(net, "another-upstream", intermediary)
        for token in (first, second, unrelated):
            assert net.call(intermediary, "/profile", token).status_code == 200
        claims = agent_claims(agent)
        result = net.ap_client().revoke(net.ps_url + "/revoke", claims["jti"], claims["exp"])
        assert result.status == REVOKED
        for token in (upstream, first, second):
            holder = agent if token is upstream else intermediary
            refused = net.call(holder, "/profile", token)
            assert refused.status_code == 401 and signature_error(refused) == "revoked_jwt"
        assert net.call(intermediary, "/profile", unrelated).status_code == 200
        statuses = {i.jti: i.status for i in net.ps.records.run(net.ps.rec.outbox_items())}
        assert statuses == {str(_claims(t)["jti"]): "revoked" for t in (upstream, first, second)}
