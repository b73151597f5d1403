"""Chained person tokens revoked with their upstream, end to end (digest 5.7, 9): the agent
calls the example intermediary (its own agent provider, h-chain's
:class:`~aauth_server.intermediary.Intermediary`), which gets a chained person token from
the PS with the agent's person token as ``upstream_token`` and calls the downstream
resource with it.  The agent provider then revokes the agent token at the PS: the PS
revokes the agent's person token at the intermediary and the chained person token at the
downstream resource, which answers ``401 revoked_jwt`` for it."""

from __future__ import annotations

from typing import Any

from aauth_server.intermediary import Intermediary
from aauth_server.keys.jwk import PrivateKey
from aauth_server.revocation_client import REVOKED
from aauth_server.signatures.signature_key import parse_signature_key
from aauth_server.tokens.aauth import TYP_PERSON
from aauth_server.tokens.jwt import decode_unverified
from tests.revocation.net import Lazy, agent_claims, network, signature_error
from tests.threaded_uvicorn import ThreadedUvicorn


def _claims(token: str) -> dict[str, Any]:
    return dict(decode_unverified(token).payload)


def test_a_chained_person_token_is_revoked_with_its_upstream() -> None:
    from aauth_server_starlette import AAuth

    from example_apps.intermediary import SCOPES, create_app

    mid_app = Lazy()
    mid_server = ThreadedUvicorn(mid_app)
    mid = Intermediary(mid_server.origin, dev_loopback=True, hold=10)
    with network(approve=(mid.agent_id,)) as net:
        try:
            aauth = AAuth(
                issuer=mid_server.origin,
                dev_loopback=True,
                signing_key=PrivateKey.generate("Ed25519", kid="mid-1"),
                scope_descriptions=SCOPES,
                trusted_ps=(net.ps_url,),
                revocation_path="/aauth/revoke",
            )
            mid_app.app = create_app(aauth, mid, net.rs_url)
            mid_server.start()
            agent = net.agent()
            flow = net.flow(agent)
            answer = flow.request("GET", mid_server.origin + "/who")
            assert answer.status_code == 200, answer.text
            upstream = flow.person_tokens[mid_server.origin]
            # The token the intermediary presented downstream: chained from the upstream.
            presented = [
                str(parse_signature_key(value)["sig"].params["jwt"])
                for path, value in net.slow.presented
                if path == "/profile"
            ]
            (chained,) = {
                t for t in presented if decode_unverified(t).header.get("typ") == TYP_PERSON
            }
            rows = net.ps.records.run(net.ps.rec.issued(str(_claims(chained)["jti"])))
            assert rows is not None and rows.upstream_jti == _claims(upstream)["jti"]
            intermediary_agent = mid.agent()
            assert net.call(intermediary_agent, "/profile", chained).status_code == 200

            claims = agent_claims(agent)
            result = net.ap_client().revoke(net.ps_url + "/revoke", claims["jti"], claims["exp"])
            assert result.status == REVOKED
            refused = net.call(intermediary_agent, "/profile", chained)
            assert refused.status_code == 401 and signature_error(refused) == "revoked_jwt"
            # ... and the upstream person token at the intermediary too.
            again = flow._send("intermediary", "GET", mid_server.origin + "/who", upstream, None)
            assert again.status_code == 401 and signature_error(again) == "revoked_jwt"
        finally:
            if mid_server.thread.ident is not None:
                mid_server.stop()
            else:
                mid_server.socket.close()
            mid.close()
