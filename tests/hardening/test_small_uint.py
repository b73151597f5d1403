"""Every small unsigned integer read from the wire goes through ``http.small_uint``: ASCII
digits only; a sign, an exponent, a fraction or another script's digits are malformed (the
value counts as absent); any number of digits past the reader's maximum is clamped to it.
``Prefer: wait``, ``Retry-After`` (agent and revocation client), ``Content-Length`` and the
Mission Control pages' and API's ``before`` / ``limit``: never a 500, never a ValueError."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import httpx
import pytest

from aauth_server import http
from aauth_server.agent import flow
from aauth_server.http import HttpRequest
from aauth_server.revocation_client import MAX_RETRY_AFTER
from aauth_server.revocation_client import _retry_after as revocation_retry_after
from tests.missions.test_control import ControlEnv
from tests.person.test_ps_flows import make, start

HOSTILE = ["1e9", "-1", "+5", "5.0", "0x10", "", " ", "٣", "²", "5 5", "1_000"]
HUGE = "99999999999999999999"


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_malformed_values_are_absent(text: str) -> None:
    assert http.small_uint(text) is None
    assert http.small_uint(text, 10) is None


def test_well_formed_values_and_clamping() -> None:
    assert http.small_uint(None) is None
    assert http.small_uint("0") == 0
    assert http.small_uint(" 42 ") == 42
    assert http.small_uint("0007", 10) == 7
    assert http.small_uint("11", 10) == 10
    assert http.small_uint(HUGE, 30) == 30
    assert http.small_uint(HUGE) == http.MAX_UINT
    assert http.small_uint("9" * 5000, 5) == 5  # no huge int is ever built


@pytest.mark.parametrize(
    ("prefer", "wait"),
    [
        ("wait=5", 5),
        ("WAIT = 7", 7),
        ('wait="9"', 9),
        ("respond-async, wait=3", 3),
        ("wait=3;x=y", 3),
        (f"wait={HUGE}", 60),
        ("wait=1e9", None),
        ("wait=-1", None),
        ("wait=٣", None),
        ("wait=²", None),
        ("wait", None),
        ("handling=lenient", None),
    ],
)
def test_prefer_wait(prefer: str, wait: int | None) -> None:
    request = HttpRequest("GET", "https://ps.example/pending/x", [("Prefer", prefer)])
    assert http.prefer_wait(request, 60) == wait


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("value", [*HOSTILE[:4], "٣", "²", HUGE])
def test_a_pending_poll_with_any_wait_value_is_answered(mode: str, value: str) -> None:
    pw, send = make(mode, max_wait=1)
    location, _ = start(pw, send)
    pw.tick(5)
    request = pw.poll(location)
    request.headers.append(("Prefer", f"wait={value}"))
    began = time.monotonic()
    response = send(request)
    assert response.status == 202, response.body
    if value == HUGE and mode == "async":
        assert 0.9 <= time.monotonic() - began < 5  # clamped to max_wait, then answered


def _retry(value: str) -> httpx.Response:
    return httpx.Response(202, headers=[(b"Retry-After", value.encode())])


@pytest.mark.parametrize("value", [*HOSTILE, HUGE, "7"], ids=repr)
def test_retry_after_is_read_alike_by_the_agent_and_the_revocation_client(value: str) -> None:
    expected = http.small_uint(value)
    agent = flow._retry_after(_retry(value))
    revocation = revocation_retry_after({"retry-after": value})
    if expected is None:
        assert agent == flow.DEFAULT_RETRY_AFTER and revocation is None
    else:
        assert agent == min(expected, flow.MAX_RETRY_AFTER)
        assert revocation == min(expected, MAX_RETRY_AFTER)


@pytest.mark.parametrize("value", [*HOSTILE, HUGE, "2147483648", "0"], ids=repr)
def test_mission_control_pages_take_any_before_and_limit(value: str, use_async: bool) -> None:
    ce = ControlEnv()
    mission = ce.mission()
    for n in range(3):
        ce.env.ps.run(
            ce.env.ps.missions.log_steps(mission.s256, {"event": "audit", "action": f"a{n}"})
        )
    browser = ce.env.logged_in()
    v = quote(value)
    page = browser.get(f"/missions/{mission.s256}?before={v}", use_async=use_async)
    assert page.status == 200, page.body[:300]
    for query in (f"before={v}", f"limit={v}", f"before={v}&limit={v}"):
        api = browser.get(f"/missions/api/missions/{mission.s256}/log?{query}", use_async=use_async)
        assert api.status == 200, (query, api.body[:300])
        assert isinstance(json.loads(api.body)["entries"], list)
    # A huge limit is the largest page, a malformed one the default page.
    everything = browser.get(f"/missions/api/missions/{mission.s256}/log?limit={v}")
    assert len(json.loads(everything.body)["entries"]) == (0 if value == "0" else 4)


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    return request.param == "async"


def test_asgi_declared_length_uses_the_same_reader() -> None:
    from aauth_server.asgi import declared_length

    def scope(value: bytes) -> dict[str, object]:
        return {"headers": [(b"content-length", value)]}

    assert declared_length(scope(b"12")) == 12
    assert declared_length(scope("²".encode())) is None
    assert declared_length(scope(HUGE.encode())) == http.MAX_UINT
