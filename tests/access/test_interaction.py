"""``requirement=interaction`` at the AS (digest 5.4, 6): the person binds the PS at the AS's
``/interact`` page in a browser session (CSRF-bound form, single-use code, callback only to
the PS), and the policy decides again with ``interacted``; the revocation endpoint (5.7)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from aauth_server.access import AccessRequest, Issue, RequireInteraction, Verdict
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.outbound import ServerSigner
from aauth_server.tokens.aauth import DWK_AGENT, DWK_RESOURCE
from aauth_server.tokens.jwt import decode_unverified
from tests.access.as_harness import AsWorld, body_of, header, pending_path
from tests.support import AP_ISSUER, AS_ISSUER, PS_ISSUER, RESOURCE

CODE = re.compile(r'code="([0-9A-Z]{4}-[0-9A-Z]{4})"')


def bind_first(request: AccessRequest) -> Verdict:
    if not request.interacted:
        return RequireInteraction()
    return Issue(claims={"bound_by": request.interacted_by})


def who(request: HttpRequest) -> str | None:
    for name, value in request.headers:
        if name.lower() == "x-user":
            return value
    return None


def browser(
    method: str,
    path: str,
    *,
    cookie: str | None = None,
    form: dict[str, str] | None = None,
    user: str = "alice",
    **headers: str,
) -> HttpRequest:
    lines = [("X-User", user)]
    if cookie:
        lines.append(("Cookie", cookie))
    body = b""
    if form is not None:
        body = "&".join(f"{k}={quote(v)}" for k, v in form.items()).encode()
        lines.append(("Content-Type", "application/x-www-form-urlencoded"))
    lines += list(headers.items())
    return HttpRequest(method, AS_ISSUER + path, lines, body)


def started(aw: AsWorld) -> tuple[str, str]:
    response = aw.send(aw.token_request(aw.triple()))
    assert response.status == 202
    requirement = header(response, "aauth-requirement") or ""
    assert requirement.startswith('requirement=interaction; url="https://as.example/interact"')
    match = CODE.search(requirement)
    assert match is not None
    return pending_path(response), match.group(1)


def page(aw: AsWorld, code: str, **kw: Any) -> tuple[HttpResponse, str, dict[str, str]]:
    response = aw.send(browser("GET", f"/interact?code={code}", **kw))
    assert response.status == 200, response.body
    cookie = (header(response, "set-cookie") or "").split(";")[0]
    html = response.body.decode()
    fields = dict(re.findall(r'name="(code|csrf|callback)" value="([^"]*)"', html))
    return response, cookie, fields


def test_the_person_binds_the_ps_at_the_as() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who)
    path, code = started(aw)
    response, cookie, fields = page(aw, code)
    html = response.body.decode()
    assert PS_ISSUER in html and RESOURCE in html and "data.read" in html
    assert "default-src 'none'" in (header(response, "content-security-policy") or "")
    # The person reached the page: the PS may stop prompting.
    assert body_of(aw.send(aw.signed("GET", path)))["status"] == "interacting"
    done = aw.send(
        browser("POST", "/interact", cookie=cookie, form={**fields, "decision": "approve"})
    )
    assert done.status == 200 and b'data-approved="yes"' in done.body
    token = body_of(aw.send(aw.signed("GET", path)))["auth_token"]
    assert decode_unverified(token).payload["bound_by"] == "alice"
    # The code was single use.
    assert aw.send(browser("GET", f"/interact?code={code}")).status == 410


def test_declining_denies_and_a_callback_to_the_ps_is_followed() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who)
    path, code = started(aw)
    callback = PS_ISSUER + "/consent/return"
    _, cookie, fields = page(aw, f"{code}&callback={quote(callback)}")
    assert fields["callback"] == callback
    done = aw.send(browser("POST", "/interact", cookie=cookie, form={**fields, "decision": "deny"}))
    assert (done.status, header(done, "location")) == (303, callback + "?error=access_denied")
    assert body_of(aw.send(aw.signed("GET", path)))["error"] == "denied"


def test_a_callback_elsewhere_is_ignored() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who)
    _, code = started(aw)
    _, _, fields = page(aw, f"{code}&callback={quote('https://evil.example/x')}")
    assert fields["callback"] == ""


def test_csrf_session_and_origin_are_checked() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who)
    path, code = started(aw)
    _, cookie, fields = page(aw, code)
    approve = {**fields, "decision": "approve"}
    assert aw.send(browser("POST", "/interact", form=approve)).status == 403  # no session
    forged = {**approve, "csrf": "forged"}
    assert aw.send(browser("POST", "/interact", cookie=cookie, form=forged)).status == 403
    cross = browser("POST", "/interact", cookie=cookie, form=approve, Origin="https://evil.example")
    assert aw.send(cross).status == 403
    assert aw.send(browser("GET", "/interact?code=0000-0000")).status == 410
    # Nothing was decided: the request still waits for the person.
    assert aw.send(aw.signed("GET", path)).status == 202


def test_sign_in_is_required_and_without_a_page_the_user_is_unreachable() -> None:
    aw = AsWorld(policy=bind_first, authenticate=lambda request: None)
    _, code = started(aw)
    assert aw.send(browser("GET", f"/interact?code={code}")).status == 401
    nobody = AsWorld(policy=bind_first)
    response = nobody.send(nobody.token_request(nobody.triple()))
    assert (response.status, body_of(response)["error"]) == (403, "user_unreachable")


def test_the_code_entry_form() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who)
    response = aw.send(browser("GET", "/interact"))
    assert response.status == 200 and b'name="code"' in response.body


# -- revocation (digest 5.7) ------------------------------------------------------------------


def revoke(aw: AsWorld, signer: ServerSigner | None, body: Any) -> HttpResponse:
    return aw.send(aw.signed("POST", "/revoke", body, signer=signer))


def test_a_ps_revokes_a_person_token_it_presented() -> None:
    aw = AsWorld()
    body = aw.triple()
    jti = str(decode_unverified(body["presented_token"]).payload["jti"])
    response = revoke(aw, None, {"jti": jti, "exp": int(aw.clock.now()) + 600})
    assert (response.status, response.body) == (200, b"")
    again = aw.send(aw.token_request(body))
    assert body_of(again)["error"] == "revoked_presented_token"
    assert (
        revoke(aw, None, {"jti": jti, "exp": int(aw.clock.now()) + 600}).status == 200
    )  # idempotent


def test_a_resource_revokes_its_resource_token() -> None:
    aw = AsWorld()
    body = aw.triple()
    rt = decode_unverified(body["resource_token"]).payload
    resource = ServerSigner(aw.world.resource_key, RESOURCE, DWK_RESOURCE, clock=aw.clock)
    assert revoke(aw, resource, {"jti": rt["jti"], "exp": rt["exp"]}).status == 200
    assert body_of(aw.send(aw.token_request(body)))["error"] == "revoked_resource_token"


def test_revocation_errors() -> None:
    aw = AsWorld()
    ap = ServerSigner(aw.world.provider.key, AP_ISSUER, DWK_AGENT, clock=aw.clock)
    refused = revoke(aw, ap, {"jti": "x", "exp": int(aw.clock.now()) + 60})
    assert (refused.status, body_of(refused)["error"]) == (403, "unsupported_iss")
    bad = revoke(aw, None, {"jti": "x"})
    assert (bad.status, body_of(bad)["error"]) == (400, "invalid_request")
    unsigned = HttpRequest(
        "POST",
        AS_ISSUER + "/revoke",
        [("Content-Type", "application/json")],
        json.dumps({"jti": "x", "exp": 1}).encode(),
    )
    assert aw.send(unsigned).status == 401
    limited = AsWorld(revocations_per_minute=1)
    revoke(limited, None, {"jti": "a", "exp": int(aw.clock.now()) + 60})
    slow = revoke(limited, None, {"jti": "b", "exp": int(aw.clock.now()) + 60})
    assert (slow.status, body_of(slow)["error"], header(slow, "retry-after")) == (
        429,
        "rate_limited",
        "60",
    )


def test_wrong_codes_are_rate_limited_per_person() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who, code_attempts=3)
    _, code = started(aw)
    for _ in range(3):
        assert aw.send(browser("GET", "/interact?code=0000-0000")).status == 410
    # Even the right code waits out the minute now; another person is not held back.
    assert aw.send(browser("GET", f"/interact?code={code}")).status == 429
    assert aw.send(browser("GET", f"/interact?code={code}", user="bob")).status == 200
    aw.clock.advance(61)
    assert aw.send(browser("GET", f"/interact?code={code}")).status == 200


def test_the_page_escapes_what_the_tokens_carry() -> None:
    aw = AsWorld(policy=bind_first, authenticate=who)
    response = aw.send(aw.token_request(aw.triple("<script>alert(1)</script>")))
    match = CODE.search(header(response, "aauth-requirement") or "")
    assert match is not None
    html = aw.send(browser("GET", f"/interact?code={match.group(1)}")).body.decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
