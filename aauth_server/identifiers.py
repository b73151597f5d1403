"""Server identifiers, agent identifiers and interaction codes (digest 1.2, 6.2).

Identifiers are compared by exact string equality, so validation never normalises:
a value is either already in canonical form or it is rejected.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "CROCKFORD_ALPHABET",
    "AgentId",
    "agent_domain_matches",
    "is_agent_identifier",
    "is_server_identifier",
    "normalize_interaction_code",
    "parse_agent_identifier",
    "server_identifier_problem",
]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LOCAL = re.compile(r"[A-Za-z0-9._+-]{1,255}")
# Ports are written without leading zeros so two spellings of one origin cannot both pass.
_DEV_HOST = re.compile(r"(?:127\.0\.0\.1|localhost):([1-9][0-9]{0,4})")
_MAX_HOST = 253

CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_FOLD = str.maketrans({"I": "1", "L": "1", "O": "0"})
_CODE_CHARS = frozenset(CROCKFORD_ALPHABET)


def _is_a_label(label: str) -> bool:
    # An "xn--" label must really be Punycode; otherwise "xn--" is just reserved noise.
    if not label.startswith("xn--"):
        return label[2:4] != "--"
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return False
    return (
        bool(decoded)
        and not decoded.isascii()
        and decoded.encode("punycode") == label[4:].encode("ascii")
    )


# Every token names the same few hosts again and again (iss, sub's domain, ps): remember
# the verdicts.  Bounded, and a pure function of its argument, so nothing goes stale.
@functools.lru_cache(maxsize=4096)
def _is_host(host: str) -> bool:
    """A lowercase DNS name in A-label form: no port, no IP literal brackets, no trailing dot."""
    if not host or len(host) > _MAX_HOST:
        return False
    for label in host.split("."):
        if not _LABEL.fullmatch(label) or not _is_a_label(label):
            return False
    return True


def _is_dev_host(host: str) -> bool:
    match = _DEV_HOST.fullmatch(host)
    return match is not None and int(match.group(1)) <= 65535


def is_server_identifier(value: object, *, dev_loopback: bool = False) -> bool:
    """``https://host`` exactly; with ``dev_loopback`` also ``http://{127.0.0.1|localhost}:PORT``."""
    if not isinstance(value, str):
        return False
    if value.startswith("https://"):
        return _is_host(value[8:])
    if dev_loopback and value.startswith("http://"):
        return _is_dev_host(value[7:])
    return False


SERVER_IDENTIFIER_RULE = (
    "a server identifier is https://host: lowercase, no port, path, query, fragment or "
    "trailing slash (digest 1.2)"
)


def server_identifier_problem(value: object, *, dev_loopback: bool = False) -> str | None:
    """Which rule of digest 1.2 ``value`` breaks, in words; None when it is an identifier.

    For configuration errors: ``is_server_identifier`` says whether, this says why.  The
    development setting is mentioned only for a loopback host, the one place it applies.
    """
    if is_server_identifier(value, dev_loopback=dev_loopback):
        return None
    if not isinstance(value, str) or not value:
        return "it is not a non-empty string"
    scheme, sep, rest = value.partition("://")
    if not sep:
        return "it has no scheme: write https://host"
    authority, slash, path = rest.partition("/")
    _userinfo, at, hostport = authority.rpartition("@")
    if "?" in authority or "#" in authority:
        return "it has a query or fragment: write the scheme and host only"
    host, colon, port = hostport.rpartition(":") if not hostport.startswith("[") else ("", "", "")
    if not colon:
        host, port = hostport, ""
    loopback = host in ("127.0.0.1", "localhost")
    if scheme.lower() != scheme:
        return f"the scheme {scheme!r} is not lowercase"
    if loopback and scheme in ("http", "https"):
        if not dev_loopback:
            return (
                f"{host} is a loopback host: loopback identifiers (http://{host}:PORT) need "
                "the development setting dev_loopback=True, never in production"
            )
        if scheme != "http" or not port or slash or at or not _is_dev_host(hostport):
            return (
                f"a loopback development identifier is exactly http://{host}:PORT "
                "(a port of 1-65535 without leading zeros, no path, no trailing slash)"
            )
    if scheme != "https":
        return f"the scheme is {scheme!r}: server identifiers are https only"
    if at:
        return "it has userinfo (user@): write the host only"
    if slash:
        if not path:
            return "it ends with a trailing slash: write https://host without one"
        return f"it has a path (/{path.split('?')[0]}): write the scheme and host only"
    if "?" in value or "#" in value:
        return "it has a query or fragment: write the scheme and host only"
    if colon:
        return f"it has a port (:{port}): server identifiers carry none"
    if host != host.lower():
        return f"the host {host!r} is not lowercase (identifiers compare by exact string)"
    if host.endswith("."):
        return "the host ends with a dot"
    if not host.isascii():
        return "the host is not in A-label (Punycode) form"
    if hostport.startswith("["):
        return "an IP literal is not a host name"
    return "the host is not a valid DNS name"


def server_host(identifier: str) -> str:
    """The host (with port for a dev loopback identifier) of a valid server identifier."""
    return identifier.split("://", 1)[1]


def agent_domain_matches(domain: str, issuer: str, *, dev_loopback: bool = False) -> bool:
    """Is ``domain`` (an agent identifier's) the host of ``issuer`` (its agent provider's)?

    Production: exactly the issuer's host.  Under ``dev_loopback``, for a loopback agent
    provider ``http://127.0.0.1:9000``, also the host without the port
    (``aauth:x@127.0.0.1``): agents of other stacks write loopback ids that way.
    """
    host = server_host(issuer)
    if domain == host:
        return True
    if not (dev_loopback and issuer.startswith("http://") and _is_dev_host(host)):
        return False
    return domain == host.rpartition(":")[0]


@dataclass(frozen=True, slots=True)
class AgentId:
    """``aauth:local@domain``; ``local`` is ``name`` or ``name+discriminator`` (a sub-agent)."""

    local: str
    name: str
    discriminator: str | None
    domain: str

    def __str__(self) -> str:
        return f"aauth:{self.local}@{self.domain}"


def parse_agent_identifier(value: str, *, dev_loopback: bool = False) -> AgentId:
    """Parse an agent identifier; raise ``ValueError`` when it is not one.

    ``+`` may appear once: a top-level local part has none, a sub-agent's is exactly
    ``<parent local>+<discriminator>`` (sub-agents are one level deep).
    """
    if not isinstance(value, str) or not value.startswith("aauth:"):
        raise ValueError("agent identifier must start with 'aauth:'")
    local, sep, domain = value[6:].partition("@")
    if not sep:
        raise ValueError("agent identifier has no '@domain'")
    if not _LOCAL.fullmatch(local):
        raise ValueError("agent identifier local part is empty, too long or has bad characters")
    name, plus, discriminator = local.partition("+")
    if plus and (not name or not discriminator or "+" in discriminator):
        raise ValueError("agent identifier local part misuses the '+' sub-agent delimiter")
    if not (_is_host(domain) or (dev_loopback and _is_dev_host(domain))):
        raise ValueError("agent identifier domain is not a lowercase A-label host")
    return AgentId(local, name, discriminator if plus else None, domain)


def is_agent_identifier(value: object, *, dev_loopback: bool = False) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_agent_identifier(value, dev_loopback=dev_loopback)
    except ValueError:
        return False
    return True


def normalize_interaction_code(code: str) -> str:
    """Canonical form of a user-typed interaction code, for comparison with the issued one."""
    # ASCII first: str.upper() maps some non-ASCII letters (dotless i) onto the alphabet.
    if not code.isascii():
        raise ValueError("interaction code has characters outside Crockford base32")
    folded = code.replace("-", "").upper().translate(_CODE_FOLD)
    if not folded or not _CODE_CHARS.issuperset(folded):
        raise ValueError("interaction code has characters outside Crockford base32")
    return folded
