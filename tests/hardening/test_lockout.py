"""Issue 8 item 8: the interaction-code lockout cannot be raced, and the built-in consent page
reaches the per-request lockout.

Thirty wrong codes sent at once, on a real Redis and in memory, then the right one: the
right one is refused (``invalid_code``), in every trial.  Wrong codes for a request the
page names lock that request for good (the agent's poll answers ``410 invalid_code``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from aauth_server.http import HttpRequest
from aauth_server.person.consent import InvalidCode
from aauth_server.person.pages import ConsentPages
from aauth_server.storage import open_async_store, open_store
from tests.person.ps_harness import PsWorld
from tests.redis_server import ensure_redis
from tests.storage.conftest import delete_prefix

CODE = re.compile(r'code="([^"]+)"')
URL = re.compile(r'url="([^"]+)"')
WRONG = "ZZZZ-ZZZZ"
PARALLEL = 30


@pytest.fixture(params=["memory", "redis"])
def pw(request: pytest.FixtureRequest) -> Iterator[PsWorld]:
    if request.param == "memory":
        yield PsWorld()
        return
    url = ensure_redis()
    prefix = f"aauth-test-{uuid.uuid4().hex}"
    world = PsWorld(
        store=open_store(url, prefix=prefix), async_store=open_async_store(url, prefix=prefix)
    )
    try:
        yield world
    finally:
        world.ps.store.close()
        delete_prefix(url, prefix)


def _start(pw: PsWorld) -> tuple[str, str, str]:
    response = pw.app.send(pw.person_request())
    assert response.status == 202
    requirement = response.header("aauth-requirement") or ""
    code, url = CODE.search(requirement), URL.search(requirement)
    assert code and url
    return response.header("location") or "", code.group(1), url.group(1)


def _wrong(pw: PsWorld, person: str, pending_id: str | None = None) -> Any:
    try:
        pw.ps.consent.open(WRONG, person, pending_id)
    except InvalidCode as exc:
        return exc
    raise AssertionError("a wrong code was accepted")


@pytest.mark.parametrize("trial", range(6))
def test_thirty_parallel_wrong_codes_lock_the_person_out(pw: PsWorld, trial: int) -> None:
    _, code, _ = _start(pw)
    person = f"person-{trial}"
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        refusals = list(pool.map(lambda _: _wrong(pw, person), range(PARALLEL)))
    assert len(refusals) == PARALLEL
    checked = [r for r in refusals if "too many" not in r.detail]
    # Only code_attempts of the thirty were ever compared with a code.
    assert len(checked) <= pw.config.code_attempts
    with pytest.raises(InvalidCode, match="too many"):
        pw.ps.consent.open(code, person)


def test_wrong_codes_naming_the_request_lock_it_for_good(pw: PsWorld) -> None:
    location, code, _ = _start(pw)
    pending_id = location.rsplit("/", 1)[1]
    people = [f"guesser-{i}" for i in range(PARALLEL)]  # one try each: no person lockout
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(lambda who: _wrong(pw, who, pending_id), people))
    with pytest.raises(InvalidCode):
        pw.ps.consent.open(code, "alice")
    # Prefer: wait on a settled request answers at once (Redis keeps its own pacing clock).
    polled = pw.app.send(pw.poll(location, wait=1))
    assert polled.status == 410 and json.loads(polled.body)["error"] == "invalid_code"


def test_a_right_code_does_not_count_against_the_person() -> None:
    pw = PsWorld()
    for _ in range(pw.config.code_attempts + 3):
        _, code, _ = _start(pw)
        pw.ps.consent.open(code, "alice")  # never locked out by succeeding


def test_the_consent_page_reaches_the_per_request_lockout() -> None:
    pw = PsWorld()
    pages = ConsentPages(pw.ps, authenticate=lambda request: "alice", secret=b"s" * 32)
    location, code, url = _start(pw)
    pending_id = location.rsplit("/", 1)[1]
    # The interaction URL names the request: that is how the page knows which to lock.
    assert url == f"https://ps.example/consent/request/{pending_id}"
    for _ in range(pw.config.code_attempts):
        page = pages.handle(HttpRequest("GET", f"{url}?code={WRONG}"))
        assert page is not None and page.status == 410
    page = pages.handle(HttpRequest("GET", f"{url}?code={code}"))
    assert page is not None and page.status == 410  # the right code came too late
    pw.tick()
    polled = pw.app.send(pw.poll(location))
    assert polled.status == 410 and json.loads(polled.body)["error"] == "invalid_code"


def test_the_consent_page_opens_a_request_by_its_url() -> None:
    pw = PsWorld()
    pages = ConsentPages(pw.ps, authenticate=lambda request: "alice", secret=b"s" * 32)
    _, code, url = _start(pw)
    page = pages.handle(HttpRequest("GET", f"{url}?code={code}"))
    assert page is not None and page.status == 303
    assert (page.header("location") or "").startswith("/consent?request=")
    # Without a code the URL just shows that request; a malformed id is no request.
    assert (pages.handle(HttpRequest("GET", url)) or page).status == 303
    odd = pages.handle(HttpRequest("GET", "https://ps.example/consent/request/%5B%5D?code=x"))
    assert odd is not None and odd.status in (404, 410)
