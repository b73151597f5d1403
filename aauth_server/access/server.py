"""The Access Server core: framework-neutral, sync and async (digest 1.5, 5.4, 5.5, 7).

Built like the Person Server: adapters route :meth:`AccessServer.routes` to
:meth:`AccessServer.handle` (sync) or :meth:`AccessServer.ahandle` (async); the protocol
logic is written once as generators (:mod:`aauth_server.steps`).  Only Person Servers call
an AS, signing as themselves (``jwks_uri`` scheme, ``dwk="aauth-person.json"``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..fields import FieldError
from ..http import HttpRequest, HttpResponse
from ..records import RecordOps
from ..resource.config import discovery_for
from ..revocation import problem, server_verifier
from ..server_shell import ServerShell
from ..signatures.signature_key import parse_signature_key, select_signature_key
from ..steps import Call, Driver, Steps
from ..storage.base import Record
from ..tokens.aauth import DWK_PERSON
from ..verifier import VerifierConfig
from .config import WELL_KNOWN_PATH, AccessServerConfig
from .endpoints import AccessEndpoints
from .pages import InteractionPage
from .pending import OPEN, AccessPending
from .revocation import revocation_for
from .tokens import AccessTokens

log = logging.getLogger("aauth_server.access")


class AccessServer(ServerShell):
    WELL_KNOWN = WELL_KNOWN_PATH
    config: AccessServerConfig

    def __init__(self, config: AccessServerConfig) -> None:
        self.config = config
        self.discovery = discovery_for(config)
        self.store, self.async_store = config.stores()
        #: Durable records: issued auth tokens, revocations.
        self.records = config.record_store()
        self.rec = RecordOps(config.issuer)
        base = VerifierConfig(
            accept_schemes=("jwks_uri",),
            accept_algs=config.accept_algs,
            token_types=(),
            window=config.signature_window,
            require_body_coverage=True,
            allow_eddsa=config.allow_eddsa,
            dev_loopback=config.dev_loopback,
        )
        #: Verifies what Person Servers (and, at /revoke, resources) sign as themselves.
        self.server_verifier = server_verifier(self.discovery, base, config.clock)
        self.driver = Driver(
            self.server_verifier, self.store, self.async_store, subject="the access server"
        )
        self.tokens = AccessTokens(self)
        self.pending = AccessPending(self)
        self.endpoints = AccessEndpoints(self)
        self.pages = InteractionPage(self)

    def stop_workers(self) -> None:
        if "_revocation" in self.__dict__:
            self.__dict__["_revocation"].close()  # the revocation cascade's worker

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        cfg = self.config
        path, method = request.path, request.method
        published = self.published(request)
        if published is not None:
            return published
        if path == cfg.token_path and method == "POST":
            return (yield from self.endpoints.token_steps(request))
        if path == cfg.revocation_path or path.startswith(cfg.revocation_path + "/pending/"):
            return (yield from revocation_for(self).handle_steps(request))  # h-rev: the cascade
        if path.startswith(cfg.pending_prefix) and method in ("GET", "POST", "DELETE"):
            pending_id = path[len(cfg.pending_prefix) :]
            return (yield from self.pending.handle_steps(request, pending_id))
        if path == cfg.interact_path and method in ("GET", "POST"):
            return (yield from self.pages.handle_steps(request))
        return None

    def routes(self) -> list[tuple[str, str]]:
        """``(method, path)`` pairs to route to :meth:`handle`; a path ending in ``/`` is a
        prefix."""
        cfg = self.config
        prefix = cfg.pending_prefix
        return [
            ("GET", WELL_KNOWN_PATH),
            ("GET", cfg.jwks_path),
            ("POST", cfg.token_path),
            ("POST", cfg.revocation_path),
            ("GET", cfg.revocation_path + "/pending/"),
            ("GET", prefix),
            ("POST", prefix),
            ("DELETE", prefix),
            ("GET", cfg.interact_path),
            ("POST", cfg.interact_path),
        ]

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        doc: dict[str, Any] = {
            "issuer": cfg.issuer,
            "jwks_uri": cfg.url_for(cfg.jwks_path),
            "auth_token_endpoint": cfg.url_for(cfg.token_path),
            "revocation_endpoint": cfg.url_for(cfg.revocation_path),
            "accept_signature_algs": list(cfg.accept_algs),
        }
        if cfg.name:
            doc["name"] = cfg.name
        return doc

    # -- shared by the endpoints --------------------------------------------------------------

    def verify_ps_steps(self, request: HttpRequest, *, check_trust: bool = True) -> Steps[str]:
        """The Person Server that signed ``request`` (``jwks_uri``, ``aauth-person.json``).

        A PS this AS does not trust is ``403 denied`` before any of its keys is fetched."""
        cfg = self.config
        header = request.header("signature-key")
        if check_trust and header is not None:
            try:
                ids = [
                    str(entry.params.get("id"))
                    for entry in parse_signature_key(header).values()
                    if entry.scheme == "jwks_uri"
                ]
            except FieldError:
                ids = []  # the verifier answers 401 for a malformed field
            if ids and not any(cfg.trusts(i) for i in ids):
                raise problem(403, "denied", "this Access Server does not trust that Person Server")
        verified = yield from self.server_verifier.steps(request)
        caller = verified.issuer
        assert caller is not None
        dwk = select_signature_key(header, verified.label).params.get("dwk")
        if dwk != DWK_PERSON:
            raise problem(403, "denied", "only a Person Server (aauth-person.json) calls an AS")
        if check_trust and not cfg.trusts(caller):
            raise problem(403, "denied", "this Access Server does not trust that Person Server")
        return caller

    # -- in process (PS-AS collapse: one deployment is both, no network hop) ------------------

    def token_request_steps(self, ps: str, body: Mapping[str, Any]) -> Steps[HttpResponse]:
        """``POST /token`` for a PS of this process, ``ps`` its issuer (no signature to check:
        the caller is the PS).  The answer is the one the endpoint would give; a 202's
        ``Location`` is polled with :meth:`pending_steps`.  The trust list still applies."""
        if not self.config.trusts(ps):
            raise problem(403, "denied", "this Access Server does not trust that Person Server")
        return (yield from self.endpoints.request_steps(ps, body))

    def pending_steps(
        self,
        ps: str,
        method: str,
        location: str,
        *,
        body: Mapping[str, Any] | None = None,
        wait: int | None = None,
    ) -> Steps[HttpResponse]:
        """A ``GET`` / ``POST`` (``body``) / ``DELETE`` of a pending URL by the in-process PS
        ``ps``; ``location`` is the URL (or just the id) a ``202`` gave."""
        pending_id = location.rstrip("/").rsplit("/", 1)[-1]
        return (yield from self.pending.call_steps(ps, method, pending_id, body=body, wait=wait))

    def token_request_call(self, ps: str, body: Mapping[str, Any]) -> Call:
        """:meth:`token_request_steps` as one step any driver answers (the PS's own steps:
        ``response = yield access.token_request_call(ps, body)``), run by this AS's driver
        against this AS's stores; errors come back as their responses."""
        return _InProcess(self, lambda: self.token_request_steps(ps, body))

    def pending_call(
        self, ps: str, method: str, location: str, *, body: Mapping[str, Any] | None = None
    ) -> Call:
        """:meth:`pending_steps` as one step (see :meth:`token_request_call`)."""
        return _InProcess(self, lambda: self.pending_steps(ps, method, location, body=body))

    # -- operators ----------------------------------------------------------------------------

    def decide_steps(self, pending_id: str, approved: bool) -> Steps[Record]:
        """An operator's answer to a ``requirement=approval`` request; the policy then
        decides again with ``request.approved`` set."""
        record = yield from self.pending.get_steps(pending_id)
        record = yield from self.pending.settle_steps(record)

        def answer(data: dict[str, Any]) -> None:
            if data["state"] != OPEN or data.get("requirement") != "approval":
                raise problem(409, "conflict", "this request is not waiting for approval")
            data["approved"] = approved
            self.pending.decide(data)

        return (yield from self.pending.change_steps(record, answer))

    def decide(self, pending_id: str, approved: bool) -> Record:
        return self.run(self.decide_steps(pending_id, approved))

    async def adecide(self, pending_id: str, approved: bool) -> Record:
        return await self.arun(self.decide_steps(pending_id, approved))


class _InProcess(Call):
    """A request to this AS from code of the same process, as a step of another driver."""

    __slots__ = ("make", "server")

    def __init__(self, server: AccessServer, make: Callable[[], Steps[HttpResponse]]) -> None:
        self.server = server
        self.make = make

    def call(self) -> HttpResponse:
        return self.server.driver.respond(self.make())

    async def acall(self) -> HttpResponse:
        return await self.server.driver.arespond(self.make())


__all__ = ["AccessServer"]
