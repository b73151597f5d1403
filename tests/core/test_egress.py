from __future__ import annotations

import ipaddress

import pytest

from aauth_server.keys.egress import Admitted, EgressDenied, EgressPolicy


class FakeDNS:
    """A resolver table; names not in it fail like an NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


PUBLIC = "93.184.215.14"
DNS = FakeDNS(
    {
        "public.example": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "rebind.example": [PUBLIC, "127.0.0.1"],
        "loop.example": ["127.0.0.1"],
        "localhost": ["::1", "127.0.0.1"],
        "empty.example": [],
        "garbage.example": ["not-an-ip"],
    }
)


def policy(dev: bool = False) -> EgressPolicy:
    return EgressPolicy(dev_loopback=dev, resolver=DNS)


def denied(url: str, dev: bool = False) -> str:
    with pytest.raises(EgressDenied) as info:
        policy(dev).admit(url)
    return info.value.reason


def test_public_https_is_admitted_and_pinned() -> None:
    admitted = policy().admit("https://public.example/.well-known/jwks.json?x=1")
    assert admitted == Admitted(
        "https://public.example/.well-known/jwks.json?x=1", "https", "public.example", 443, PUBLIC
    )
    assert policy().admit("https://PUBLIC.example:8443/").port == 8443
    assert policy().admit("https://public.example:8443/").host == "public.example"


def test_public_ip_literals() -> None:
    assert policy().admit("https://8.8.8.8/jwks").ip == "8.8.8.8"
    assert policy().admit("https://[2001:4860:4860::8888]/jwks").ip == "2001:4860:4860::8888"


@pytest.mark.parametrize(
    "url",
    [
        "http://public.example/",
        "ftp://public.example/",
        "file:///etc/passwd",
        "https://user:pw@public.example/",
        "https://user@public.example/",
        "https:///path-only",
        "https://public.example:99999/",
        "https://public.example/a b",
        "https://public.example\\@evil/",
        "https://no-such.example/",
        "https://empty.example/",
        "https://garbage.example/",
    ],
)
def test_malformed_or_non_https_urls_are_refused(url: str) -> None:
    denied(url)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "192.0.2.10",  # documentation range
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "2002:a00:1::",  # 6to4 wrapping 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 wrapping 169.254.169.254
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(ip: str) -> None:
    host = f"[{ip}]" if ":" in ip else ip
    assert "non-public" in denied(f"https://{host}/")
    resolver = FakeDNS({"evil.example": [ip]})
    with pytest.raises(EgressDenied):
        EgressPolicy(resolver=resolver).admit("https://evil.example/")


def test_mapped_and_translated_public_addresses_are_allowed() -> None:
    for ip in ("::ffff:8.8.8.8", "64:ff9b::808:808"):
        pinned = policy().admit(f"https://[{ip}]/").ip
        assert ipaddress.ip_address(pinned) == ipaddress.ip_address(ip)


def test_any_private_answer_refuses_the_host() -> None:
    assert "127.0.0.1" in denied("https://rebind.example/")
    assert "non-public" in denied("https://loop.example/")


def test_dev_loopback_admits_only_literal_loopback_with_a_port() -> None:
    dev = policy(dev=True)
    admitted = dev.admit("http://127.0.0.1:8123/.well-known/aauth-agent.json")
    assert (admitted.scheme, admitted.host, admitted.port, admitted.ip) == (
        "http",
        "127.0.0.1",
        8123,
        "127.0.0.1",
    )
    # localhost resolving to both loopbacks pins IPv4, where dev servers usually listen.
    assert dev.admit("http://localhost:9000/jwks").ip == "127.0.0.1"
    assert dev.admit("https://localhost:9443/jwks").scheme == "https"
    assert dev.admit("https://public.example/").ip == PUBLIC


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:80/",
        "http://example.com/",
        "http://public.example:8080/",
        "http://127.0.0.1/",  # no port
        "http://localhost/",
        "http://[::1]:8080/",
        "http://127.0.0.2:8080/",
        "http://loop.example:8080/",  # public name pointing at loopback
        "https://loop.example:8080/",
        "https://192.168.1.1:8443/",
    ],
)
def test_dev_loopback_refuses_everything_else(url: str) -> None:
    denied(url, dev=True)


def test_dev_localhost_must_resolve_to_loopback_only() -> None:
    hijacked = EgressPolicy(
        dev_loopback=True, resolver=FakeDNS({"localhost": ["127.0.0.1", "10.1.1.1"]})
    )
    with pytest.raises(EgressDenied):
        hijacked.admit("http://localhost:8000/")


def test_loopback_refused_without_dev_setting() -> None:
    denied("http://127.0.0.1:8000/")
    denied("https://127.0.0.1:8000/")
    denied("https://localhost:8000/")


def test_system_resolver_is_the_default() -> None:
    # Literal addresses never reach the resolver; localhost resolves locally without network.
    admitted = EgressPolicy(dev_loopback=True).admit("http://localhost:8000/")
    assert admitted.ip in ("127.0.0.1", "::1")
