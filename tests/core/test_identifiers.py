from __future__ import annotations

import json
from typing import Any

import pytest

from aauth_server.identifiers import (
    CROCKFORD_ALPHABET,
    AgentId,
    is_agent_identifier,
    is_server_identifier,
    normalize_interaction_code,
    parse_agent_identifier,
)
from tests.vectors import vectors_dir


def _load(name: str) -> Any:
    return json.loads((vectors_dir() / name).read_text(encoding="utf-8"))


GO_SERVER = _load("aauth-go/server-identifier.json")["cases"]
GO_AGENT = _load("aauth-go/agent-identifier.json")["cases"]
RULES = _load("aauth-derived.json")["rule_cases"]


@pytest.mark.parametrize("case", GO_SERVER, ids=lambda c: c["input"])
def test_server_identifier_go_vectors(case: dict[str, Any]) -> None:
    assert is_server_identifier(case["input"]) is case["valid"]


@pytest.mark.parametrize("value", RULES["server_identifiers"]["valid"])
def test_server_identifier_derived_valid(value: str) -> None:
    assert is_server_identifier(value)


@pytest.mark.parametrize("value", RULES["server_identifiers"]["invalid"])
def test_server_identifier_derived_invalid(value: str) -> None:
    assert not is_server_identifier(value)
    assert not is_server_identifier(value, dev_loopback=True)


@pytest.mark.parametrize(
    "value",
    [
        "https://agent.example.",
        "https://.agent.example",
        "https://-a.example",
        "https://a-.example",
        "https://[::1]",
        "https://ag ent.example",
        "https://agént.example",
        "https://xn--.example",
        "https://ab--cd.example",
        "https://" + "a" * 64 + ".example",
        "https://" + ".".join(["a" * 63] * 4),
        "HTTPS://agent.example",
        "https://agent.example\n",
        "",
    ],
)
def test_server_identifier_rejects(value: str) -> None:
    assert not is_server_identifier(value)


@pytest.mark.parametrize("value", [None, 1, b"https://agent.example", ["https://a.example"]])
def test_server_identifier_rejects_non_strings(value: object) -> None:
    assert not is_server_identifier(value)


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:8000", "http://localhost:1", "http://localhost:65535"]
)
def test_dev_loopback_server_identifiers_need_the_flag(value: str) -> None:
    assert not is_server_identifier(value)
    assert is_server_identifier(value, dev_loopback=True)


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1",
        "http://127.0.0.1:0",
        "http://127.0.0.1:08000",
        "http://127.0.0.1:65536",
        "http://127.0.0.2:8000",
        "http://10.0.0.1:8000",
        "http://agent.example:8000",
        "http://agent.example",
        "http://localhost:8000/",
        "http://LOCALHOST:8000",
        "http://[::1]:8000",
        "https://localhost:8443",
    ],
)
def test_dev_loopback_admits_only_loopback_with_port(value: str) -> None:
    assert not is_server_identifier(value, dev_loopback=True)


@pytest.mark.parametrize("case", GO_AGENT, ids=lambda c: c["input"][:60])
def test_agent_identifier_go_vectors(case: dict[str, Any]) -> None:
    assert is_agent_identifier(case["input"]) is case["valid"]
    if case["valid"]:
        parsed = parse_agent_identifier(case["input"])
        assert parsed.name == case["name"]
        assert parsed.discriminator == case.get("discriminator")
        assert parsed.domain == case["domain"]
        assert str(parsed) == case["input"]
    else:
        with pytest.raises(ValueError):
            parse_agent_identifier(case["input"])


@pytest.mark.parametrize("value", RULES["agent_identifiers"]["valid"])
def test_agent_identifier_derived_valid(value: str) -> None:
    assert is_agent_identifier(value)


@pytest.mark.parametrize("value", RULES["agent_identifiers"]["invalid"])
def test_agent_identifier_derived_invalid(value: str) -> None:
    assert not is_agent_identifier(value)
    assert not is_agent_identifier("aauth:" + value)


def test_agent_identifiers_are_case_sensitive() -> None:
    for a, b in RULES["agent_identifiers"]["distinct_pairs"]:
        assert parse_agent_identifier(a) != parse_agent_identifier(b)


def test_agent_identifier_parts() -> None:
    assert parse_agent_identifier("aauth:planner.7f3c+search1@vendor.example") == AgentId(
        local="planner.7f3c+search1",
        name="planner.7f3c",
        discriminator="search1",
        domain="vendor.example",
    )


@pytest.mark.parametrize(
    "value",
    [
        "aauth:a+b+c@agent.example",
        "aauth:a@b@agent.example",
        "aauth:a@",
        "aauth:a",
        "aauth:" + "a" * 256 + "@agent.example",
        "AAUTH:a@agent.example",
        "aauth:a@127.0.0.1:8000",
    ],
)
def test_agent_identifier_rejects(value: str) -> None:
    assert not is_agent_identifier(value)


def test_agent_identifier_dev_loopback_domain() -> None:
    value = "aauth:demo@127.0.0.1:8000"
    assert not is_agent_identifier(value)
    assert is_agent_identifier(value, dev_loopback=True)
    assert parse_agent_identifier(value, dev_loopback=True).domain == "127.0.0.1:8000"
    assert is_agent_identifier("aauth:demo@localhost:9", dev_loopback=True)
    assert not is_agent_identifier("aauth:demo@10.0.0.1:8000", dev_loopback=True)


@pytest.mark.parametrize(
    "case", RULES["interaction_codes"]["cases"], ids=lambda c: f"{c['issued']}-{c['input']}"
)
def test_interaction_code_match_table(case: dict[str, Any]) -> None:
    same = normalize_interaction_code(case["issued"]) == normalize_interaction_code(case["input"])
    assert same is case["match"]


def test_interaction_code_alphabet_matches_vectors() -> None:
    assert RULES["interaction_codes"]["alphabet"] == CROCKFORD_ALPHABET
    assert normalize_interaction_code(CROCKFORD_ALPHABET.lower()) == CROCKFORD_ALPHABET


@pytest.mark.parametrize("code", ["", "-", "ABCDU123", "ABCD 1234", "ABC_1234", "\u0131BCD1234"])
def test_interaction_code_rejects_outside_alphabet(code: str) -> None:
    with pytest.raises(ValueError):
        normalize_interaction_code(code)
