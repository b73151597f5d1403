"""The ATH examples as processes: every one has ``--help``; the walk-through passes in each
framework; and the gateway, served by uvicorn in each framework, refuses proxy path tricks
sent raw on the wire with the same bytes everywhere."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from example_apps._procs import AppSpec, running_apps
from tests.hostile_http.rawhttp import RawRequest, exchange

MODULES = [
    "example_apps.ath_shop",
    "example_apps.oauth_provider",
    "example_apps.ath_gateway",
    "example_apps.ath_demo",
]
#: Raw request targets (sent byte for byte; no client normalises them) and the reason code.
TRICKS = [
    "/ath/proxy/notes/../admin",
    "/ath/proxy/notes/notes/..",
    "/ath/proxy/notes/%2e%2e/admin",
    "/ath/proxy/notes/%2E%2e%2fadmin",
    "/ath/proxy/notes/notes%2Fsecret",
    "/ath/proxy/notes/notes%5Csecret",
    "/ath/proxy/notes//evil.example/x",
    "/ath/proxy/notes/https:evil.example",
    "/ath/proxy/notes/notes%00",
    "/ath/proxy/notes/notes%zz",
    "/ath/proxy/notes/./profile",
]


@pytest.mark.parametrize("module", MODULES)
def test_every_ath_example_has_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_ath_walkthrough_in_each_framework(framework: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "example_apps.ath_demo", "--framework", framework],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "FAIL" not in out
    for label in (
        "1 discovery",
        "2 registration",
        "3 authorize",
        "4 the user's consent",
        "5 token",
        "7 revoke",
        "8 the revoked token",
    ):
        assert f"[native] {label}" in out and f"[gateway] {label}" in out, label
    assert "[native] PASS 401 TOKEN_REVOKED" in out and "[gateway] PASS 401 TOKEN_REVOKED" in out


def _raw_get(origin: str, target: str) -> tuple[int, bytes]:
    parts = urlsplit(origin)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.putheader("Authorization", "Bearer ath_tk_" + "x" * 43)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_gateway_refuses_path_tricks_alike_in_every_framework() -> None:
    specs = [
        AppSpec(
            f"gateway-{framework}",
            "example_apps.ath_gateway",
            (
                "--dev",
                "--framework",
                framework,
                "--provider",
                "notes=http://127.0.0.1:9",
                "--client-secret",
                "unused",
            ),
        )
        for framework in ("starlette", "flask", "django")
    ]
    with running_apps(specs) as apps:
        for target in TRICKS:
            answers = [_raw_get(app.url, target) for app in apps]
            for status, body in answers:
                assert status == 400, (target, status, body)
                assert json.loads(body)["code"] == "INVALID_PATH", (target, body)
            # Every adapter answers byte for byte alike.
            assert len({body for _, body in answers}) == 1, (target, answers)


#: Host values no URL can be built from (and two Host lines, which a WSGI server joins with
#: a comma): every ATH route refuses them with the ATH error for a bad request.
ODD_HOSTS = [["["], ["]"], ["[::1"], ["a]b"], ["a,b"], ["a b"], ["a:b:c"], ["a", "b"]]
ATH_ROUTES = [
    ("GET", "/.well-known/ath-app.json"),
    ("POST", "/ath/agents/register"),
    ("POST", "/ath/token"),
    ("GET", "/ath/consent?ath_session_id=x"),
    ("GET", "/api/products"),
]


def test_a_malformed_host_is_a_400_alike_in_every_framework() -> None:
    specs = [
        AppSpec(f"shop-{framework}", "example_apps.ath_shop", ("--dev", "--framework", framework))
        for framework in ("starlette", "flask", "django")
    ]
    with running_apps(specs) as apps:
        for hosts in ODD_HOSTS:
            for method, target in ATH_ROUTES:
                headers = [("Host", host) for host in hosts]
                if method == "POST":
                    headers.append(("Content-Type", "application/json"))
                request = RawRequest(method, target, headers, b"{}" if method == "POST" else b"")
                answers = []
                for app in apps:
                    answer = exchange(int(urlsplit(app.url).port or 0), request)
                    where = (app.name, hosts, target, answer.status, answer.body[:200])
                    assert answer.status == 400, where
                    assert answer.media_type == "application/json", where
                    assert json.loads(answer.body)["code"] == "INVALID_REQUEST", where
                    answers.append(answer.body)
                assert len(set(answers)) == 1, (hosts, target, answers)
