"""The Flask conversion reads header lines from the environ with each key's name worked out
once; the result is exactly what Werkzeug's ``EnvironHeaders`` yields, for every environ."""

from __future__ import annotations

from typing import Any

from aauth_server_flask import convert
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders

KEYS = st.sampled_from(
    [
        "HTTP_HOST",
        "HTTP_SIGNATURE_INPUT",
        "HTTP_SIGNATURE",
        "HTTP_SIGNATURE_KEY",
        "HTTP_X_A_B",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
        "HTTP_",
        "HTTP_x_lower",
        "HTTP_ÉTÉ",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "REQUEST_METHOD",
        "wsgi.input",
        "SERVER_NAME",
        "http_host",
    ]
)
VALUES = st.sampled_from(["", "v", " spaced ", "a, b", "é"])


@settings(max_examples=300)
@given(st.dictionaries(KEYS, VALUES, max_size=12), st.booleans())
def test_environ_headers_equal_werkzeugs(environ: dict[str, Any], twice: bool) -> None:
    expected = list(EnvironHeaders(environ).items())
    assert convert.environ_headers(environ) == expected
    if twice:  # the names now come from the memo
        assert convert.environ_headers(environ) == expected


def test_the_name_memo_stays_bounded() -> None:
    for n in range(convert._NAMES_MAX + 10):
        environ = {f"HTTP_X_{n}": "v"}
        assert convert.environ_headers(environ) == list(EnvironHeaders(environ).items())
    assert len(convert._NAMES) <= convert._NAMES_MAX
