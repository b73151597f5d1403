"""A small upstream OAuth 2 provider (authorization code + PKCE, and an API), built on authlib.

    python -m example_apps.oauth_provider --host 127.0.0.1 --port 8030 --dev \
        [--client-id ID] [--client-secret SECRET] [--redirect-uri URI] [--password PW]

It stands in for a third-party service in front of which an ATH gateway runs
(``example_apps.ath_gateway``): the gateway is its one OAuth client.  authlib's server side
does the protocol (``/oauth/authorize``, ``/oauth/token``; PKCE S256 required; codes used
once), and a resource protector guards the API:

    GET  /api/profile  (profile:read)   GET  /api/notes  (notes:read)
    POST /api/notes    (notes:write)    GET  /api/echo   (any token: what the API received)

The user ``bob`` (password ``--password`` or generated and printed) signs in, then sees
the scopes the client asks for and may untick some before pressing Allow or Deny.  Without
``--redirect-uri``, ``--dev`` admits any loopback ``http://127.0.0.1:PORT/ath/callback``.
"""

from __future__ import annotations

import argparse
import hmac
import html
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.integrations.flask_oauth2 import (  # type: ignore[import-untyped]
    AuthorizationServer,
    ResourceProtector,
    current_token,
)
from authlib.oauth2.rfc6749 import grants  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import BearerTokenValidator  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import CodeChallenge  # type: ignore[import-untyped]
from flask import Flask, Response, jsonify, redirect, request, session

from ._serving import bind
from .ath_shop import serve_wsgi

USER = "bob"
SCOPES = {
    "profile:read": "See your profile",
    "notes:read": "Read your notes",
    "notes:write": "Write notes for you",
}


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str | None
    dev: bool

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.redirect_uri is not None:
            return redirect_uri == self.redirect_uri
        parts = urlsplit(redirect_uri)
        return (
            self.dev
            and parts.scheme == "http"
            and parts.hostname in ("127.0.0.1", "localhost")
            and parts.path.endswith("/ath/callback")
            and not parts.query
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> None:
        return None


@dataclass
class Token:
    access_token: str
    client_id: str
    scope: str
    user: str
    expires_at: float
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> None:
        return None


@dataclass
class Grant:
    """What the consent page hands authlib: the user and the scopes they left ticked."""

    user: str
    scopes: list[str]


@dataclass
class Provider:
    client: Client
    password: str
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(provider: Provider) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    app.config["SESSION_COOKIE_NAME"] = "provider_session"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            grant: Grant = req.user
            with provider.lock:
                provider.codes[code] = Code(
                    code,
                    req.payload.client_id,
                    req.payload.redirect_uri,
                    " ".join(grant.scopes),
                    grant.user,
                    req.payload.data.get("code_challenge"),
                    req.payload.data.get("code_challenge_method"),
                    time.time() + 60,
                )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            with provider.lock:
                found = provider.codes.get(code)
            if (
                found is None
                or found.client_id != client.client_id
                or found.expires_at < time.time()
            ):
                return None
            return found

        def delete_authorization_code(self, authorization_code: Code) -> None:
            with provider.lock:
                provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> Grant:
            return Grant(authorization_code.user, authorization_code.scope.split())

    def query_client(client_id: str) -> Client | None:
        return provider.client if client_id == provider.client.client_id else None

    def save_token(token: dict[str, Any], req: Any) -> None:
        grant: Grant = req.user
        with provider.lock:
            provider.tokens[token["access_token"]] = Token(
                token["access_token"],
                req.client.client_id,
                token.get("scope", ""),
                grant.user,
                time.time() + int(token.get("expires_in", 3600)),
            )

    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(CodeGrant, [CodeChallenge(required=True)])

    class Validator(BearerTokenValidator):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Token | None:
            with provider.lock:
                return provider.tokens.get(token_string)

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(Validator())

    def page(title: str, body: str, status: int = 200) -> Response:
        markup = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        response = Response(markup, status=status, mimetype="text/html")
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; form-action 'self' http: https:"
        )
        return response

    def csrf() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        return str(session["csrf"])

    def csrf_ok() -> bool:
        sent = request.form.get("csrf", "")
        return bool(sent) and hmac.compare_digest(sent.encode(), csrf().encode())

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        target = request.values.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if request.method == "POST":
            ok = request.form.get("username") == USER and hmac.compare_digest(
                request.form.get("password", "").encode(), provider.password.encode()
            )
            if ok and csrf_ok():
                session["user"] = USER
                return redirect(target)
        form = (
            f'<form method=post><input type=hidden name=csrf value="{html.escape(csrf())}">'
            f'<input type=hidden name=next value="{html.escape(target)}">'
            "<label>User <input name=username id=username></label> "
            "<label>Password <input name=password id=password type=password></label> "
            "<button type=submit id=login>Sign in</button></form>"
        )
        return page("Sign in to the Notes provider", form)

    @app.route("/oauth/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        user = session.get("user")
        if user is None:
            return redirect("/login?" + urlencode({"next": request.full_path}))
        if request.method == "GET":
            try:
                grant = server.get_consent_grant(end_user=user)
            except Exception as exc:  # authlib's OAuth2Error: an invalid request
                return page("Invalid authorization request", f"<p>{html.escape(str(exc))}</p>", 400)
            scopes = [s for s in (grant.request.payload.scope or "").split() if s in SCOPES]
            items = "".join(
                "<li><label><input type=checkbox name=consent_scope "
                f'value="{html.escape(s)}" checked> '
                f"<code>{html.escape(s)}</code>: {html.escape(SCOPES[s])}</label></li>"
                for s in scopes
            )
            client = html.escape(grant.client.client_id)
            token = html.escape(csrf())
            body = (
                f"<p>The application <strong>{client}</strong> asks to:</p>"
                f"<form method=post><ul id=scopes>{items}</ul>"
                f'<input type=hidden name=csrf value="{token}">'
                "<button type=submit name=confirm value=yes id=allow>Allow</button> "
                "<button type=submit name=confirm value=no id=deny>Deny</button></form>"
            )
            return page("Authorize access to your notes", body)
        if not csrf_ok():
            return page("This form has expired", "<p>Open the link again.</p>", 403)
        try:
            grant = server.get_consent_grant(end_user=user)
        except Exception as exc:  # the request changed since the page was shown
            return page("Invalid authorization request", f"<p>{html.escape(str(exc))}</p>", 400)
        ticked = [s for s in request.form.getlist("consent_scope") if s in SCOPES]
        if request.form.get("confirm") != "yes" or not ticked:
            return server.create_authorization_response(grant=grant, grant_user=None)
        return server.create_authorization_response(grant=grant, grant_user=Grant(user, ticked))

    @app.post("/oauth/token")
    def issue_token() -> Any:
        return server.create_token_response()

    @app.get("/api/profile")
    @require_oauth("profile:read")
    def profile() -> Any:
        return jsonify(user=current_token.user, name="Bob Example", plan="free")

    @app.get("/api/notes")
    @require_oauth("notes:read")
    def notes() -> Any:
        with provider.lock:
            return jsonify(
                user=current_token.user, notes=list(provider.notes.get(current_token.user, []))
            )

    @app.post("/api/notes")
    @require_oauth("notes:write")
    def add_note() -> Any:
        data = request.get_json(silent=True) or {}
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text or len(text) > 1000:
            return jsonify(error="text is required"), 400
        with provider.lock:
            provider.notes.setdefault(current_token.user, []).append(text)
            return jsonify(
                user=current_token.user, count=len(provider.notes[current_token.user])
            ), 201

    @app.route("/api/echo", methods=["GET", "POST", "PUT", "DELETE"])
    @require_oauth()
    def echo() -> Any:
        # What reached the API through the gateway: the test of header stripping.
        return jsonify(
            method=request.method,
            path=request.environ.get("RAW_URI", request.path),
            headers={k.lower(): v for k, v in request.headers.items()},
            body_length=len(request.get_data()),
            user=current_token.user,
        )

    @app.get("/")
    def index() -> Any:
        return page("Notes provider", "<p>An OAuth 2 provider for the ATH gateway example.</p>")

    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.oauth_provider", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8030)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// redirect URIs")
    parser.add_argument("--client-id", default="ath-gateway", help="the gateway's client_id")
    parser.add_argument("--client-secret", help="the gateway's client_secret (default: generated)")
    parser.add_argument(
        "--redirect-uri",
        help="the gateway's callback (default with --dev: any loopback /ath/callback)",
    )
    parser.add_argument("--password", help="bob's password (default: generated and printed)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.redirect_uri is None and not args.dev:
        parser.error("--redirect-uri is required unless --dev is given")
    secret = args.client_secret or secrets.token_urlsafe(24)
    password = args.password or secrets.token_urlsafe(12)
    provider = Provider(Client(args.client_id, secret, args.redirect_uri, args.dev), password)
    sock = bind(args.host, args.port)
    if sock is None:
        return 1

    def announce() -> None:
        print(f"oauth provider http://{args.host}:{args.port}", flush=True)
        print(f"client: {args.client_id} / {secret}", flush=True)
        print(f"demo user: {USER} / {password}", flush=True)
        print(f"listening on http://{args.host}:{args.port}", flush=True)

    try:
        serve_wsgi(create_app(provider), sock, announce)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
