"""Mount an Access Server in Flask: ``app.register_blueprint(access_blueprint(config))``.

Every AS route (token endpoint, pending URLs, revocation, JWKS, the interaction page) is a
rule of one blueprint answered by the sync core (``handle``); the well-known document is added
at the app's root even under a ``url_prefix``.  The config's paths are the public paths the
metadata publishes, so under ``url_prefix="/as"`` they must lie under ``/as``.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from aauth_server.access import WELL_KNOWN_PATH, AccessServer, AccessServerConfig
from aauth_server.errors import AAuthError, RequestRejected
from aauth_server.resource import ConfigurationError

from .convert import to_flask_response, to_http_request

EXTENSION_KEY = "aauth_access"

__all__ = ["AccessBlueprint", "access_blueprint", "access_server_for"]


class AccessBlueprint(Blueprint):
    """A blueprint serving one :class:`AccessServer` (``.access_server``)."""

    access_server: AccessServer


def access_blueprint(
    config: AccessServerConfig | AccessServer, *, name: str = "aauth_access"
) -> AccessBlueprint:
    server = config if isinstance(config, AccessServer) else AccessServer(config)
    methods: dict[str, set[str]] = {}
    for method, path in server.routes():
        methods.setdefault(path, set()).add(method)
    bp = AccessBlueprint(name, __name__)
    bp.access_server = server
    view = _view(server)

    def register(state: BlueprintSetupState) -> None:
        prefix = (state.url_prefix or "").rstrip("/")
        for index, (path, allowed) in enumerate(methods.items()):
            tail = "<path:_tail>" if path.endswith("/") else ""
            endpoint = f"route_{index}"
            if path == WELL_KNOWN_PATH:
                state.app.add_url_rule(
                    path, f"{state.name}.metadata", view, methods=sorted(allowed)
                )
                continue
            if prefix and not path.startswith(prefix + "/"):
                raise ConfigurationError(
                    f"Access Server path {path!r} is outside the blueprint's url_prefix "
                    f"{prefix!r}: put the AccessServerConfig paths under it"
                )
            state.add_url_rule(path[len(prefix) :] + tail, endpoint, view, methods=sorted(allowed))
        state.app.extensions.setdefault(EXTENSION_KEY, {})[state.name] = server

    bp.record(register)
    return bp


def access_server_for(app: Flask | None = None, name: str = "aauth_access") -> AccessServer:
    """The Access Server mounted as blueprint ``name`` (for ``decide()`` calls)."""
    target = app if app is not None else current_app
    mounted = target.extensions.get(EXTENSION_KEY, {}).get(name)
    if not isinstance(mounted, AccessServer):
        raise RuntimeError(f"no Access Server blueprint {name!r} on Flask app {target.name!r}")
    return mounted


def _view(server: AccessServer) -> Callable[..., Response]:
    def view(**_tail: str) -> Response:
        try:
            answer = server.handle(to_http_request(request, server))
        except RequestRejected as rejected:
            answer = rejected.to_response()
        if answer is None:
            answer = AAuthError("no such endpoint", error="not_found", status=404).to_response()
        return to_flask_response(answer)

    return view
