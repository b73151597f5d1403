"""HMAC-signed values for server-rendered pages: CSRF tokens and the demo session cookie.

Each value carries a purpose label inside the MAC, so a token minted for one purpose (a
CSRF token) can never be replayed as another (a session cookie), even under one secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie

from ..clock import SYSTEM_CLOCK, Clock
from ..http import HttpRequest

__all__ = [
    "MIN_SECRET",
    "SessionCodec",
    "check_csrf",
    "check_secret",
    "csrf_token",
    "new_nonce",
    "read_cookie",
    "set_cookie",
]

MIN_SECRET = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, *parts: str) -> str:
    message = "\0".join((purpose, *parts)).encode("utf-8")
    return _b64(hmac.new(secret, message, hashlib.sha256).digest())


def check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET:
        raise ValueError(f"the page secret must be at least {MIN_SECRET} bytes")
    return secret


def new_nonce() -> str:
    return _b64(secrets.token_bytes(16))


def csrf_token(secret: bytes, session: str, pending_id: str, callback: str) -> str:
    """The form token for one browser session, one pending request and one callback.

    Binding the callback means a forged form cannot swap in another redirect target after
    the page validated it.
    """
    return _mac(secret, "aauth-consent-csrf", session, pending_id, callback)


def check_csrf(
    secret: bytes, token: str | None, session: str | None, pending_id: str, callback: str
) -> bool:
    if not token or not session:
        return False
    expected = csrf_token(secret, session, pending_id, callback)
    return hmac.compare_digest(expected.encode("ascii"), token.encode("utf-8", "replace"))


class SessionCodec:
    """``person.issued.nonce.mac`` cookie values with a maximum age."""

    def __init__(self, secret: bytes, *, max_age: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self.secret = check_secret(secret)
        self.max_age = max_age
        self.clock = clock

    def issue(self, person: str) -> str:
        head = f"{_b64(person.encode('utf-8'))}.{int(self.clock.now())}.{new_nonce()}"
        return f"{head}.{_mac(self.secret, 'aauth-demo-session', head)}"

    def read(self, value: str | None) -> str | None:
        """The person id of a valid, unexpired cookie value, else None."""
        if not value or value.count(".") != 3:
            return None
        head, _, tag = value.rpartition(".")
        expected = _mac(self.secret, "aauth-demo-session", head)
        if not hmac.compare_digest(expected.encode("ascii"), tag.encode("utf-8", "replace")):
            return None
        person_b64, issued, _nonce = head.split(".")
        try:
            age = self.clock.now() - int(issued)
            person = _unb64(person_b64).decode("utf-8")
        except ValueError:
            return None
        if age < -60 or age > self.max_age:
            return None
        return person


def read_cookie(request: HttpRequest, name: str) -> str | None:
    for line in request.header_values("cookie"):
        for part in line.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value.strip().strip('"') or None
    return None


def set_cookie(
    name: str,
    value: str,
    *,
    secure: bool,
    max_age: int | None = None,
    path: str = "/",
    same_site: str = "Lax",
) -> tuple[str, str]:
    """A ``Set-Cookie`` header line; HttpOnly always, Secure except on loopback HTTP."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = value
    morsel = cookie[name]
    morsel["path"] = path
    morsel["httponly"] = True
    morsel["samesite"] = same_site
    if secure:
        morsel["secure"] = True
    if max_age is not None:
        morsel["max-age"] = max_age
    return ("Set-Cookie", morsel.OutputString())
