"""AccessServerConfig refuses what it cannot run with, at startup, saying what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from aauth_server.access import AccessServerConfig, RequireClaims
from aauth_server.access.policy import Issue, RequireClarification
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource.config import ConfigurationError

KEY = PrivateKey.generate(kid="as-1")
BASE: dict[str, Any] = {
    "issuer": "https://as.example",
    "signing_key": KEY,
    "trusted_ps": ("https://ps.example",),
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": "https://as.example/"}, "issuer"),
        ({"issuer": "http://127.0.0.1:9"}, "issuer"),
        ({"signing_key": PrivateKey.generate()}, "kid"),
        ({"trusted_ps": ()}, "trusted_ps, or set trust_any_ps=True"),
        ({"trusted_ps": "https://ps.example"}, "a list of Person Server issuers"),
        ({"trusted_ps": ("https://ps.example:8443",)}, "trusted_ps entry"),
        ({"trust_any_ps": True}, "not both"),
        ({"policy": "issue"}, "policy must be a callable"),
        ({"token_path": "token"}, "token_path"),
        ({"pending_prefix": "/pending"}, "pending_prefix"),
        ({"auth_token_lifetime": 7200}, "auth_token_lifetime"),
        ({"pending_lifetime": 0}, "pending_lifetime"),
        ({"revocations_per_minute": 0}, "revocations_per_minute must be positive"),
        ({"clarification_rounds": -1}, "clarification_rounds"),
        ({"page_secret": b"short"}, "page_secret"),
        ({"store": "redis://localhost:6379/0"}, "records in memory beside a shared store"),
        ({"store": "mongo://x"}, "not a storage URI"),
        ({"records": ""}, "records must be a database URL"),
    ],
)
def test_refused_configurations(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AccessServerConfig(**{**BASE, **change})
    assert message in str(info.value)


def test_loopback_identifiers_need_dev_loopback() -> None:
    config = AccessServerConfig(
        **{
            **BASE,
            "issuer": "http://127.0.0.1:9",
            "dev_loopback": True,
            "trusted_ps": ["http://127.0.0.1:8"],
        }
    )
    assert config.trusted_ps == ("http://127.0.0.1:8",)  # a list becomes a tuple
    assert config.trusts("http://127.0.0.1:8") and not config.trusts("http://127.0.0.1:7")


def test_verdicts_refuse_what_the_protocol_forbids() -> None:
    with pytest.raises(ValueError):
        RequireClaims(["sub"])
    with pytest.raises(ValueError):
        RequireClaims([])
    with pytest.raises(ValueError):
        Issue(claims={"aud": "https://elsewhere.example"})
    with pytest.raises(ValueError):
        RequireClarification("   ")
    with pytest.raises(ValueError):
        RequireClarification("why?", timeout=0)
    with pytest.raises(ValueError):
        Issue(lifetime=0)
    assert Issue(scope="a b c").scopes(["b", "c", "d"]) == ["b", "c"]
