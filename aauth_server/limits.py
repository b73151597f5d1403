"""The lengths an agent-supplied field may have, in one place.

A Person Server configures them (``max_text``, ``max_hint``, ``max_capabilities`` of
``PersonServerConfig``); its token endpoints, mission, permission and audit endpoints and
the interaction relay all read agent text through one :class:`FieldLimits`, so raising a
limit raises it everywhere and a value over it is ``400 invalid_request`` everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import AAuthError

#: Longest capability name accepted (the registered ones are a few characters).
MAX_CAPABILITY = 64


class _Configured(Protocol):
    @property
    def max_text(self) -> int: ...
    @property
    def max_hint(self) -> int: ...
    @property
    def max_capabilities(self) -> int: ...


def invalid_request(detail: str) -> AAuthError:
    return AAuthError(detail, error="invalid_request", status=400)


@dataclass(frozen=True, slots=True)
class FieldLimits:
    """``text``: free text (justification, descriptions, summaries, questions, answers);
    ``hint``: short strings (hints, tool and action names); ``capabilities``: how many."""

    text: int = 4096
    hint: int = 256
    capabilities: int = 16

    @classmethod
    def of(cls, config: _Configured) -> FieldLimits:
        return cls(config.max_text, config.max_hint, config.max_capabilities)

    def string(
        self, body: Mapping[str, Any], name: str, *, required: bool, short: bool = False
    ) -> str | None:
        """``body[name]``: a non-empty string within the text (``short``: hint) limit;
        ``None`` when absent and not ``required``."""
        value = body.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise invalid_request(f"{name} must be a non-empty string")
        limit = self.hint if short else self.text
        if len(value) > limit:
            raise invalid_request(f"{name} is longer than {limit} characters")
        return value

    def capability_list(self, value: object) -> list[str]:
        """A ``capabilities`` array: sorted, without repeats, within the limits."""
        if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
            raise invalid_request("capabilities must be an array of strings")
        if len(value) > self.capabilities or any(len(c) > MAX_CAPABILITY for c in value):
            raise invalid_request(
                f"at most {self.capabilities} capabilities of {MAX_CAPABILITY} characters"
            )
        return sorted(set(value))


__all__ = ["MAX_CAPABILITY", "FieldLimits", "invalid_request"]
