"""Requests signed by another AAuth stack: the ``aauth`` package from PyPI (MIT), the Python
stack that writes ``sig=:<unpadded base64url>:``.  The tests named test_peer_library.py run
it against us; this module holds how it signs a call to a Person Server."""

from __future__ import annotations

import json
import re
from typing import Any

from aauth.signing.signer import sign_request

#: What the peer's signer writes: url-safe base64 without padding between the colons.
PEER_SIGNATURE = re.compile(r"sig=:[A-Za-z0-9_-]{86}:")


def ps_post(
    key: Any, agent_token: str, url: str, body: dict[str, Any]
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a POST to a PS endpoint as the peer's token exchange sends it
    (``aauth.agent.token_exchange``): compact JSON, ``content-digest`` and ``content-type``
    covered, the agent token in ``Signature-Key``."""
    content = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(
        sign_request(
            "POST",
            url,
            headers,
            content,
            key,
            sig_scheme="jwt",
            jwt=agent_token,
            additional_signature_components=["content-digest", "content-type"],
        )
    )
    assert PEER_SIGNATURE.fullmatch(headers["Signature"]), headers["Signature"]
    return headers, content
