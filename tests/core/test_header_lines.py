"""Repeated header lines are combined (RFC 9110 5.3: values joined with ", ") in work linear in
their total length: each line's value is not added to the joined string so far, which copies
it once per line, quadratic in the number of lines a client repeats."""

from __future__ import annotations

from typing import Any

from aauth_server.http import HttpRequest, decode_header_lines

LINES = 2000


class _Value(str):
    """A header value that counts the characters string concatenation copies through it."""

    copied = 0

    def strip(self, chars: Any = None) -> _Value:
        return _Value(str.strip(self, chars))

    def __add__(self, other: str) -> str:
        type(self).copied += len(self) + len(other)
        return str(self) + str(other)

    def __radd__(self, other: str) -> str:
        type(self).copied += len(other) + len(self)
        return str(other) + str(self)


class _Raw(bytes):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> _Value:  # type: ignore[override]
        return _Value(bytes.decode(self, encoding, errors))


def _expected(values: list[str]) -> str:
    return ", ".join(v.strip() for v in values)


def test_decoding_repeated_lines_copies_each_value_a_bounded_number_of_times() -> None:
    values = [f" v{i} " for i in range(LINES)]
    lines = [(b"X-Repeated", _Raw(v.encode("latin-1"))) for v in values]
    lines.insert(LINES // 2, (b"Host", _Raw(b"r.example")))
    _Value.copied = 0
    headers, combined, hosts = decode_header_lines(lines)
    assert combined == {"x-repeated": _expected(values), "host": "r.example"}
    assert hosts == ["r.example"] and len(headers) == LINES + 1
    assert _Value.copied <= 4 * len(combined["x-repeated"])  # was ~LINES times that


def test_combining_repeated_lines_copies_each_value_a_bounded_number_of_times() -> None:
    values = [f" v{i} " for i in range(LINES)]
    request = HttpRequest("GET", "https://r.example/", [("X-Repeated", _Value(v)) for v in values])
    _Value.copied = 0
    combined = request.combined_headers()
    assert combined == {"x-repeated": _expected(values)}
    assert request.header("X-Repeated") == _expected(values)
    assert _Value.copied <= 4 * len(combined["x-repeated"])


def test_repeated_lines_combine_as_before() -> None:
    lines = [
        (b"Accept", b" a "),
        (b"X-One", b"1"),
        (b"ACCEPT", b"b"),
        (b"accept", b""),
        (b"Accept", b"\tc, d"),
    ]
    _, combined, _ = decode_header_lines(lines)
    assert combined == {"accept": "a, b, , c, d", "x-one": "1"}
    request = HttpRequest("GET", "https://r.example/", [(k.decode(), v.decode()) for k, v in lines])
    assert request.combined_headers() == combined
