"""The scope -> (method, path) map: which operations a scope allows, and nothing else.

Every operation an ATH token may reach must be mapped (digest 4.9): an API call or a proxied
call whose (method, path) matches no pattern is refused, whatever scopes the token holds.
Patterns are written ``"GET /items/*"``: a method (or ``*``) and a path relative to the API
base, where a ``*`` segment matches one segment and a final ``**`` matches the rest
(including nothing).  Paths are compared segment by segment after the proxy and the adapters
have refused dot segments and encoded slashes, so ``/items/../admin`` never reaches a match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigurationError

_CACHE_SIZE = 4096
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"})


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    segments: tuple[str, ...]
    pattern: str

    def matches(self, method: str, segments: Sequence[str]) -> bool:
        if self.method != "*" and self.method != method:
            return False
        pattern = self.segments
        if pattern and pattern[-1] == "**":
            head = pattern[:-1]
            if len(segments) < len(head):
                return False
            return all(p == "*" or p == s for p, s in zip(head, segments, strict=False))
        if len(pattern) != len(segments):
            return False
        return all(p == "*" or p == s for p, s in zip(pattern, segments, strict=True))


def split_path(path: str) -> tuple[str, ...]:
    """``/a/b/`` -> ``("a", "b", "")``: a trailing slash is a segment of its own."""
    if not path.startswith("/"):
        path = "/" + path
    return tuple(path[1:].split("/")) if path != "/" else ()


def parse_operation(text: str) -> Operation:
    method, _, path = text.strip().partition(" ")
    method = method.upper()
    path = path.strip()
    if method not in _METHODS or not path.startswith("/"):
        raise ConfigurationError(
            f"scope route {text!r}: write 'METHOD /path' (e.g. 'GET /items/*')"
        )
    segments = split_path(path)
    if any(s in (".", "..") for s in segments) or "**" in segments[:-1]:
        raise ConfigurationError(f"scope route {text!r}: no dot segments; '**' only at the end")
    return Operation(method, segments, f"{method} {path}")


@dataclass(frozen=True)
class ScopeMap:
    """Scope -> the operations it allows."""

    operations: Mapping[str, tuple[Operation, ...]]
    #: (method, path) -> the scopes that allow it: a pure function of the map, so a bounded
    #: memo never goes stale.
    _cache: dict[tuple[str, str], frozenset[str]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(cls, routes: Mapping[str, Iterable[str]], scopes: Iterable[str]) -> ScopeMap:
        known = set(scopes)
        unknown = sorted(set(routes) - known)
        if unknown:
            raise ConfigurationError(f"scope routes name scopes that are not offered: {unknown}")
        return cls({scope: tuple(parse_operation(r) for r in rs) for scope, rs in routes.items()})

    def scopes_for(self, method: str, path: str) -> frozenset[str]:
        """Every scope one of whose operations matches; empty when the operation is unmapped."""
        key = (method, path)
        found = self._cache.get(key)
        if found is None:
            found = self._scopes_for(method, path)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()  # many distinct paths: start over, stay bounded
            self._cache[key] = found
        return found

    def _scopes_for(self, method: str, path: str) -> frozenset[str]:
        segments = split_path(path)
        method = method.upper()
        if method == "HEAD":
            # HEAD is GET without a body: a scope that allows GET allows HEAD.
            found = {
                s for s, ops in self.operations.items() for op in ops if op.matches("GET", segments)
            }
            found |= {
                s
                for s, ops in self.operations.items()
                for op in ops
                if op.matches("HEAD", segments)
            }
            return frozenset(found)
        return frozenset(
            s for s, ops in self.operations.items() for op in ops if op.matches(method, segments)
        )
