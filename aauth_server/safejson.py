"""JSON from untrusted bytes with a nesting limit: request bodies and fetched key documents.

``json.loads`` recurses once per nesting level, so a few kilobytes of ``[[[[...`` raise
``RecursionError`` (and anything between the interpreter's limit and what later code can
re-encode fails further on).  :func:`loads` refuses a document nested deeper than
``max_depth`` before parsing it, without recursing, and reports every failure as
``ValueError``.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

#: Nesting deep enough for any AAuth body or key document (a JWKS is three levels).
MAX_DEPTH = 32

# A JSON string (quotes, escapes and all): what a bracket inside one is hidden by.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}

_DECODER = json.JSONDecoder()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: A decoder for :func:`loads` that also refuses repeated member names and NaN/Infinity.
STRICT = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def nesting_depth(raw: bytes) -> int:
    """The deepest array/object nesting of ``raw`` (brackets inside strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b'""', raw))
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets))))


def loads(
    raw: bytes | str, *, max_depth: int = MAX_DEPTH, decoder: json.JSONDecoder | None = None
) -> Any:
    """Parse ``raw`` (UTF-8 bytes or text); ``ValueError`` for anything that is not JSON
    or is nested deeper than ``max_depth`` (``UnicodeDecodeError`` is a ``ValueError``).
    ``decoder`` (UTF-8 text only) adds a caller's hooks, e.g. refusing duplicate names."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # Fewer opening brackets than the limit cannot nest past it: most bodies stop here.
    if data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        if decoder is not None:
            return decoder.decode(data.decode("utf-8"))
        if data[:1] == b"{" and data[1:2] != b"\x00":
            # What json.loads(bytes) does for a body it detects as UTF-8 (a "{" that no
            # zero byte follows), without the detection: the same decode, the same parse.
            return _DECODER.decode(data.decode("utf-8", "surrogatepass"))
        return json.loads(data)
    except RecursionError as exc:  # unreachable past the depth check; never a 500
        raise ValueError("JSON nested too deeply") from exc
