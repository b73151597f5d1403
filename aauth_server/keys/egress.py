"""Egress admission: which URLs the server may fetch on an unauthenticated caller's behalf.

Metadata and JWKS URLs come from tokens and headers anyone can send, so every fetch is an SSRF
risk (digest §12 "Discovery / SSRF").  A URL is admitted only if every address its host resolves
to is public; the first address is pinned so a second DNS answer cannot rebind the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"https": 443, "http": 80}
_DEV_HOSTS = frozenset({"127.0.0.1", "localhost"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class EgressDenied(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Admitted:
    url: str
    scheme: str
    host: str
    port: int
    ip: str


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in resolver order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # Addresses that route to an IPv4 host must be judged by that host.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(embedded):
            return False
        if ip.teredo is not None and not is_public_address(ip.teredo[0]):
            return False
        if ip in _NAT64 or ip.ipv4_mapped is not None:
            return True
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


@dataclass
class EgressPolicy:
    dev_loopback: bool = False
    #: Bytes of a response body on the wire, and after decoding (gzip/deflate).
    max_bytes: int = 256 * 1024
    max_decoded_bytes: int = 256 * 1024
    #: Seconds for the whole exchange: connect, headers and body under one deadline.
    timeout: float = 5.0
    resolver: Callable[[str, int], list[str]] = field(default=system_resolver)

    def admit(self, url: str) -> Admitted:
        """Admit ``url`` or raise :class:`EgressDenied`; the result names the address to use."""
        if any(ord(c) <= 0x20 or c in "\\\x7f" for c in url):
            raise EgressDenied("URL contains whitespace, control characters or backslashes")
        try:
            parts = urlsplit(url)
            explicit_port = parts.port
        except ValueError as exc:
            raise EgressDenied(f"malformed URL: {exc}") from exc
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        if scheme not in _DEFAULT_PORTS:
            raise EgressDenied(f"scheme {scheme!r} is not allowed")
        if "@" in parts.netloc:
            raise EgressDenied("URL carries userinfo")
        if not host:
            raise EgressDenied("URL has no host")
        port = explicit_port if explicit_port is not None else _DEFAULT_PORTS[scheme]
        if self.dev_loopback and host in _DEV_HOSTS and explicit_port is not None:
            return self._admit_dev(url, scheme, host, port)
        if scheme != "https":
            raise EgressDenied("only https URLs are allowed")
        addresses = self._resolve(host, port)
        for ip in addresses:
            if not is_public_address(ip):
                raise EgressDenied(f"{host} resolves to non-public address {ip}")
        return Admitted(url, scheme, host, port, str(addresses[0]))

    def _admit_dev(self, url: str, scheme: str, host: str, port: int) -> Admitted:
        addresses = self._resolve(host, port)
        if not all(ip.is_loopback for ip in addresses):
            raise EgressDenied(f"{host} does not resolve to loopback only")
        # Prefer IPv4: local dev servers commonly bind 127.0.0.1 while localhost lists ::1 first.
        pinned = next((ip for ip in addresses if ip.version == 4), addresses[0])
        return Admitted(url, scheme, host, port, str(pinned))

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            found = self.resolver(host, port)
        except OSError as exc:
            raise EgressDenied(f"cannot resolve {host}: {exc}") from exc
        if not found:
            raise EgressDenied(f"{host} resolves to no address")
        try:
            return [ipaddress.ip_address(a) for a in found]
        except ValueError as exc:
            raise EgressDenied(f"resolver returned a bad address for {host}") from exc
