"""Mount a Person Server in Flask: ``app.register_blueprint(person_blueprint(config))``.

Every PS route (token endpoints, pending URLs, interaction endpoint and relay URLs, JWKS)
and every page route (``ConsentPages``, ``DemoLogin``) becomes a rule of one blueprint
answered by the sync core (``handle``, the sync store), so errors are the core's own bytes.
``/.well-known/aauth-person.json`` is added at the root of the app even when the blueprint
is registered under a ``url_prefix``.

The config's paths are the public paths the metadata publishes, so a blueprint registered
with ``url_prefix="/ps"`` needs them under ``/ps`` (``person_token_path="/ps/person"``, ...);
a path outside the prefix is refused at registration rather than silently unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from aauth_server.errors import AAuthError, RequestRejected
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import WELL_KNOWN_PATH, PersonServer, PersonServerConfig
from aauth_server.resource import ConfigurationError

from .convert import to_flask_response, to_http_request

EXTENSION_KEY = "aauth_person"
_CONFIG_PATHS = (
    "person_token_path",
    "auth_token_path",
    "pending_prefix",
    "interaction_path",
    "consent_path",
    "revocation_path",
    "jwks_path",
    "mission_path",
    "permission_path",
    "audit_path",
)


class PageHandler(Protocol):
    """The routing contract of ``ConsentPages``, ``DemoLogin`` and the PS core itself."""

    def routes(self) -> list[tuple[str, str]]: ...

    def handle(self, request: HttpRequest) -> HttpResponse | None: ...


class PersonBlueprint(Blueprint):
    """A blueprint serving one :class:`PersonServer` (``.person_server``)."""

    person_server: PersonServer


def person_blueprint(
    config: PersonServerConfig | PersonServer,
    *,
    pages: PageHandler | Sequence[PageHandler] | None = None,
    name: str = "aauth_person",
) -> PersonBlueprint:
    """A blueprint serving the Person Server of ``config`` and its ``pages``.

    ``config`` may be a built :class:`PersonServer`; a ``ConsentPages`` in ``pages`` is
    built on one, and that one is mounted (its config must be ``config``) so the pages
    and the endpoints share one store.
    """
    handlers = list(_as_sequence(pages))
    ps = _server_for(config, handlers)
    origin = ps  # rebuilds the URL a request was signed for; caps bodies
    owners: dict[str, dict[str, PageHandler]] = {}
    for handler in (ps, *handlers):
        for method, path in handler.routes():
            owners.setdefault(path, {}).setdefault(method, handler)
    root = owners.pop(WELL_KNOWN_PATH, {})

    bp = PersonBlueprint(name, __name__)
    bp.person_server = ps

    def register(state: BlueprintSetupState) -> None:
        prefix = (state.url_prefix or "").rstrip("/")
        for path in _config_paths(ps.config):
            if not _under(path, prefix):
                raise ConfigurationError(
                    f"Person Server path {path!r} is outside the blueprint's url_prefix "
                    f"{prefix!r}: put the PersonServerConfig paths under it"
                )
        # A path the config cannot move (the well-known, the relay URLs) is served where
        # the core publishes it: at the app's root, past the prefix.
        for index, (path, by_method) in enumerate([*owners.items(), (WELL_KNOWN_PATH, root)]):
            # A trailing "/" marks a prefix: everything below it is the handler's to judge.
            tail = "<path:_tail>" if path.endswith("/") else ""
            endpoint = _endpoint_name(ps.config, path, index)
            view, methods = _view(origin, by_method), sorted(by_method)
            if _under(path, prefix):
                state.add_url_rule(path[len(prefix) :] + tail, endpoint, view, methods=methods)
            else:
                name = f"{state.name}.{endpoint}"
                state.app.add_url_rule(path + tail, name, view, methods=methods)
        state.app.extensions.setdefault(EXTENSION_KEY, {})[state.name] = ps

    bp.record(register)
    return bp


def person_server_for(app: Flask | None = None, name: str = "aauth_person") -> PersonServer:
    """The Person Server mounted as blueprint ``name`` on ``app`` (the current app by default),
    for the application's own calls to ``ps.consent`` and ``ps.presence``."""
    target = app if app is not None else current_app
    mounted = target.extensions.get(EXTENSION_KEY, {}).get(name)
    if not isinstance(mounted, PersonServer):
        raise RuntimeError(f"no Person Server blueprint {name!r} on Flask app {target.name!r}")
    return mounted


def _as_sequence(pages: PageHandler | Sequence[PageHandler] | None) -> Sequence[PageHandler]:
    if pages is None:
        return ()
    if isinstance(pages, Sequence):
        return pages
    return (pages,)


def _server_for(
    config: PersonServerConfig | PersonServer, handlers: Sequence[PageHandler]
) -> PersonServer:
    cores = (getattr(h, "ps", None) for h in handlers)
    built = [core for core in cores if isinstance(core, PersonServer)]
    if isinstance(config, PersonServer):
        ps = config
    elif built:
        ps = built[0]
    else:
        return PersonServer(config)
    wanted = ps.config if isinstance(config, PersonServer) else config
    if ps.config is not wanted or any(other is not ps for other in built):
        # Two cores on one config would each open their own store from a URI.
        raise ConfigurationError("the pages must be built on the Person Server being mounted")
    return ps


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _config_paths(config: PersonServerConfig) -> list[str]:
    return [getattr(config, name) for name in _CONFIG_PATHS]


def _endpoint_name(config: PersonServerConfig, path: str, index: int) -> str:
    names = {
        WELL_KNOWN_PATH: "metadata",
        config.jwks_path: "jwks",
        config.person_token_path: "person_token",
        config.auth_token_path: "auth_token",
        config.revocation_path: "revoke",
        config.pending_prefix: "pending",
        config.interaction_path: "interaction",
    }
    return names.get(path, f"route_{index}")


def _view(origin: PersonServer, by_method: dict[str, PageHandler]) -> Callable[..., Response]:
    def view(**_tail: str) -> Response:
        # Werkzeug adds HEAD to every GET rule; the core decides what HEAD means.
        handler = by_method.get(request.method) or by_method.get("GET")
        try:
            answer = None if handler is None else handler.handle(to_http_request(request, origin))
        except RequestRejected as rejected:
            answer = rejected.to_response()
        if answer is None:
            answer = AAuthError("no such endpoint", error="not_found", status=404).to_response()
        return to_flask_response(answer)

    return view


__all__ = ["PageHandler", "PersonBlueprint", "person_blueprint", "person_server_for"]
