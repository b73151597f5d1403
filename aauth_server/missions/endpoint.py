"""The agent-facing mission surface (digest 8.1-8.8): the mission endpoint (proposal, update,
completion), the permission endpoint and the audit endpoint, plus the completion shape of
before -11 on the interaction endpoint.

Everything the person decides becomes a pending request of the PS (kind ``mission``,
``mission_update``, ``completion`` or ``permission``) answered with the deferred response;
the person decides on the consent page (clarification included), and the agent's poll
collects the outcome, built by :meth:`MissionEndpoints.deliver_steps`.  The PS hands this
module what it needs (:class:`MissionHost`): this module does not import the PS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import unquote

from ..errors import AAuthError
from ..http import HttpRequest, HttpResponse
from ..identifiers import is_server_identifier
from ..limits import FieldLimits, invalid_request
from ..records.ops import MissionUpdatesFull
from ..revocation import json_body
from ..steps import Steps
from ..verifier import VerifiedRequest
from .model import Mission, mission_not_found, status_error, valid_s256
from .registry import Missions

KIND_PROPOSAL = "mission"
KIND_UPDATE = "mission_update"
KIND_COMPLETION = "completion"
KIND_PERMISSION = "permission"
KINDS = (KIND_PROPOSAL, KIND_UPDATE, KIND_COMPLETION, KIND_PERMISSION)
#: The most tools and resources a proposal lists; the JSON size of permission parameters
#: and audit details.  Text lengths and capabilities are the PS's (``FieldLimits``).
MAX_ITEMS = 64
MAX_PARAMETERS = 16_000
ACTIONS = ("update", "completion")


def _bad(detail: str) -> AAuthError:
    return invalid_request(detail)


def _capabilities(body: Mapping[str, Any], limits: FieldLimits) -> list[str]:
    return limits.capability_list(body.get("capabilities", []))


def parse_proposal(
    body: Mapping[str, Any], *, dev_loopback: bool, limits: FieldLimits | None = None
) -> dict[str, Any]:
    """Digest 8.2: ``description`` (Markdown), optional ``tools`` and ``resources``."""
    limits = limits or FieldLimits()
    description = limits.string(body, "description", required=True)
    proposal: dict[str, Any] = {"description": description}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or len(tools) > MAX_ITEMS:
            raise _bad(f"tools must be an array of at most {MAX_ITEMS} objects")
        cleaned = []
        for tool in tools:
            if not isinstance(tool, dict):
                raise _bad("each tool is an object with name and description")
            name = limits.string(tool, "name", required=True, short=True)
            about = limits.string(tool, "description", required=False)
            cleaned.append({"name": name, **({"description": about} if about else {})})
        proposal["tools"] = cleaned
    resources = body.get("resources")
    if resources is not None:
        if not isinstance(resources, list) or len(resources) > MAX_ITEMS:
            raise _bad(f"resources must be an array of at most {MAX_ITEMS} server identifiers")
        seen: list[str] = []
        for resource in resources:
            if not is_server_identifier(resource, dev_loopback=dev_loopback):
                raise _bad("each resource must be a server identifier (https://host)")
            if resource not in seen:
                seen.append(resource)
        proposal["resources"] = seen
    return proposal


class MissionHost(Protocol):
    """What the PS lends the mission endpoints."""

    missions: Missions

    @property
    def issuer(self) -> str: ...

    @property
    def limits(self) -> FieldLimits: ...

    @property
    def dev_loopback(self) -> bool: ...

    @property
    def update_policy(self) -> str: ...

    @property
    def max_updates(self) -> int: ...

    def agent_steps(
        self, request: HttpRequest, *, token_request: bool = False
    ) -> Steps[tuple[VerifiedRequest, str | None]]: ...

    def bound_person_steps(self, agent_issuer: str, agent: str) -> Steps[str | None]: ...

    def ask_person_steps(
        self, verified: VerifiedRequest, data: dict[str, Any], person: str | None
    ) -> Steps[HttpResponse]: ...

    def person_token_steps(
        self, verified: VerifiedRequest, person: str, resource: str, mission: Mission
    ) -> Steps[str | None]: ...

    def capabilities(self) -> list[str]: ...

    def decide_permission(
        self, agent: str, person: str, action: str, mission: Mission | None
    ) -> bool | None: ...


def _agent_data(verified: VerifiedRequest, kind: str, caps: list[str]) -> dict[str, Any]:
    claims = verified.claims
    return {
        "kind": kind,
        "agent": claims["sub"],
        "agent_iss": claims["iss"],
        "agent_jti": claims["jti"],
        "agent_jkt": verified.jkt,
        "capabilities": caps,
        "scope": [],
        "resource": "",
        "prompt": None,
    }


def _inactive() -> AAuthError:
    return AAuthError("the mission is no longer active", error="invalid_state", status=409)


def update_limit(limit: int) -> AAuthError:
    """A mission already holding ``limit`` accepted updates takes no more.  Digest 8.5: a
    change too big for an update is a new mission (the old one ends ``superseded``); the
    mission error table (8.6) has no code for it, so this one is ours, ``409`` as the
    mission's state conflicts with the request (the mission itself stays active)."""
    return AAuthError(
        f"this mission holds its {limit} accepted updates, the most it may: propose a new "
        "mission for this change",
        error="mission_update_limit",
        status=409,
        extra={"mission_status": "active", "max_updates": limit},
    )


def _json(status: int, body: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse.json(status, dict(body), headers=[("Cache-Control", "no-store")])


class MissionEndpoints:
    def __init__(
        self,
        host: MissionHost,
        *,
        mission_path: str,
        permission_path: str,
        audit_path: str,
    ) -> None:
        self.host = host
        self.missions = host.missions
        self.mission_path = mission_path
        self.permission_path = permission_path
        self.audit_path = audit_path

    def routes(self) -> list[tuple[str, str]]:
        return [
            ("POST", self.mission_path),
            ("POST", self.mission_path + "/"),
            ("POST", self.permission_path),
            ("POST", self.audit_path),
        ]

    def dispatch_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        if request.method != "POST":
            return None
        path = request.path
        if path == self.mission_path:
            return (yield from self.propose_steps(request))
        if path.startswith(self.mission_path + "/"):
            return (yield from self.mission_url_steps(request, path[len(self.mission_path) + 1 :]))
        if path == self.permission_path:
            return (yield from self.permission_steps(request))
        if path == self.audit_path:
            return (yield from self.audit_steps(request))
        return None

    # -- shared -------------------------------------------------------------------------------

    def _caller_steps(
        self, request: HttpRequest
    ) -> Steps[tuple[VerifiedRequest, Mapping[str, Any], str | None]]:
        verified, person = yield from self.host.agent_steps(request, token_request=True)
        media = (request.header("content-type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            raise _bad("the body must be application/json")
        body = json_body(request)
        return verified, body, person

    def _mission_steps(
        self, verified: VerifiedRequest, s256: object, person: str | None
    ) -> Steps[Mission]:
        claims = verified.claims
        return (
            yield from self.missions.require_steps(
                s256, str(claims["iss"]), str(claims["sub"]), person
            )
        )

    # -- proposal (digest 8.2, 8.3) -----------------------------------------------------------

    def propose_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        verified, body, person = yield from self._caller_steps(request)
        proposal = parse_proposal(
            body, dev_loopback=self.host.dev_loopback, limits=self.host.limits
        )
        data = _agent_data(verified, KIND_PROPOSAL, _capabilities(body, self.host.limits))
        data["proposal"] = proposal
        # The person approves every mission (and, for an agent the PS does not know yet,
        # binds it by approving).
        return (yield from self.host.ask_person_steps(verified, data, person))

    # -- {mission_endpoint}/{s256}: update and completion (digest 8.5) -------------------------

    def mission_url_steps(self, request: HttpRequest, segment: str) -> Steps[HttpResponse]:
        s256 = unquote(segment)
        if not valid_s256(s256):
            raise _bad("the mission URL must end in a mission s256")
        verified, body, person = yield from self._caller_steps(request)
        action = body.get("action")
        if action not in ACTIONS:
            raise _bad("action must be update or completion")
        mission = yield from self._mission_steps(verified, s256, person)
        if action == "update":
            return (yield from self._update_steps(verified, body, person, mission))
        summary = self.host.limits.string(body, "summary", required=True)
        return (yield from self._completion_steps(verified, body, person, mission, summary))

    def _update_steps(
        self,
        verified: VerifiedRequest,
        body: Mapping[str, Any],
        person: str | None,
        mission: Mission,
    ) -> Steps[HttpResponse]:
        description = self.host.limits.string(body, "description", required=True)
        assert description is not None
        cap = self.host.max_updates
        if self.host.update_policy == "accept":
            try:
                update = yield from self.missions.accept_update_steps(
                    mission.s256, description, "ps", max_updates=cap
                )
            except MissionUpdatesFull:
                raise update_limit(cap) from None
            if update is None:
                raise status_error(mission) or mission_not_found()
            return _json(200, {"s256": update.s256})
        if len(mission.updates) >= cap:
            # Full already: the person is not asked for what could not be recorded.
            raise update_limit(cap)
        data = _agent_data(verified, KIND_UPDATE, _capabilities(body, self.host.limits))
        data["mission_s256"] = mission.s256
        data["proposal"] = {"description": description}
        yield from self.missions.log_steps(
            mission.s256,
            {"event": "update_proposed", "agent": data["agent"], "description": description},
        )
        return (yield from self.host.ask_person_steps(verified, data, person))

    def _completion_steps(
        self,
        verified: VerifiedRequest,
        body: Mapping[str, Any],
        person: str | None,
        mission: Mission,
        summary: str | None,
    ) -> Steps[HttpResponse]:
        data = _agent_data(verified, KIND_COMPLETION, _capabilities(body, self.host.limits))
        data["mission_s256"] = mission.s256
        data["proposal"] = {"summary": summary}
        yield from self.missions.log_steps(
            mission.s256,
            {"event": "completion_proposed", "agent": data["agent"], "summary": summary},
        )
        return (yield from self.host.ask_person_steps(verified, data, person))

    def legacy_completion_steps(
        self, request: HttpRequest, verified: VerifiedRequest, body: Mapping[str, Any]
    ) -> Steps[HttpResponse]:
        """``POST {interaction_endpoint}`` with ``{"type": "completion", "summary": ...,
        "mission": {"approver": <this PS>, "s256": ...}}`` (before -11): the same flow."""
        reference = body.get("mission")
        if not isinstance(reference, dict):
            raise _bad("mission must be an object with approver and s256")
        approver, s256 = reference.get("approver"), reference.get("s256")
        if not isinstance(approver, str) or not isinstance(s256, str):
            raise _bad("mission must be an object with approver and s256")
        summary = self.host.limits.string(body, "summary", required=True)
        claims = verified.claims
        person = yield from self.host.bound_person_steps(str(claims["iss"]), str(claims["sub"]))
        if approver != self.host.issuer:
            raise mission_not_found()  # another PS's mission is not one we hold
        mission = yield from self._mission_steps(verified, s256, person)
        return (yield from self._completion_steps(verified, body, person, mission, summary))

    # -- permission (digest 8.7) --------------------------------------------------------------

    def permission_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        verified, body, person = yield from self._caller_steps(request)
        action = self.host.limits.string(body, "action", required=True, short=True)
        assert action is not None
        description = self.host.limits.string(body, "description", required=False)
        parameters = body.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad("parameters must be an object")
        if len(json.dumps(parameters or {})) > MAX_PARAMETERS:
            raise _bad("parameters are too large")
        mission = None
        if body.get("mission_s256") is not None:
            mission = yield from self._mission_steps(verified, body["mission_s256"], person)
        agent = str(verified.claims["sub"])
        granted: bool | None = None
        actor = "policy"
        if mission is not None and action in mission.tool_names:
            granted, actor = True, "mission"  # digest 8.7: approved tools need no asking
        elif person is not None:
            granted = self.host.decide_permission(agent, person, action, mission)
        entry: dict[str, Any] = {"event": "permission", "agent": agent, "action": action}
        if description:
            entry["description"] = description
        if granted is None:
            data = _agent_data(verified, KIND_PERMISSION, _capabilities(body, self.host.limits))
            data["proposal"] = {
                "action": action,
                "description": description,
                "parameters": parameters,
            }
            if mission is not None:
                data["mission_s256"] = mission.s256
                data["mission_expires"] = mission.expires_at
                yield from self.missions.log_steps(
                    mission.s256, {**entry, "decision": "asked", "actor": actor}
                )
            return (yield from self.host.ask_person_steps(verified, data, person))
        if mission is not None:
            word = "granted" if granted else "denied"
            yield from self.missions.log_steps(
                mission.s256, {**entry, "decision": word, "actor": actor}
            )
        if granted:
            return _json(200, {"permission": "granted"})
        return _json(200, {"permission": "denied", "reason": "not permitted by policy"})

    # -- audit (digest 8.8) -------------------------------------------------------------------

    def audit_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        verified, body, person = yield from self._caller_steps(request)
        if body.get("mission_s256") is None:
            raise _bad("mission_s256 is required")
        action = self.host.limits.string(body, "action", required=True, short=True)
        description = self.host.limits.string(body, "description", required=False)
        extra: dict[str, Any] = {}
        for name in ("parameters", "result"):
            value = body.get(name)
            if value is not None and not isinstance(value, dict):
                raise _bad(f"{name} must be an object")
            if value is not None:
                extra[name] = value
        if len(json.dumps(extra)) > MAX_PARAMETERS:
            raise _bad("parameters and result are too large")
        mission = yield from self._mission_steps(verified, body["mission_s256"], person)
        entry: dict[str, Any] = {
            "event": "audit",
            "agent": str(verified.claims["sub"]),
            "action": action,
            "actor": "agent",
            **extra,
        }
        if description:
            entry["description"] = description
        yield from self.missions.log_steps(mission.s256, entry)
        return HttpResponse(201, [("Cache-Control", "no-store")], b"")

    # -- the person's decisions and the agent's poll ------------------------------------------

    def approve_steps(
        self, data: Mapping[str, Any], person: str, edits: Mapping[str, str] | None
    ) -> Steps[dict[str, Any]]:
        """Carry out the person's approval of a pending mission request; the changes to
        the pending record."""
        kind = data["kind"]
        proposal = data.get("proposal") or {}
        if kind == KIND_PROPOSAL:
            description = proposal["description"]
            edited = (edits or {}).get("description")
            if isinstance(edited, str) and edited.strip():
                description = edited[: self.host.limits.text]
            mission = yield from self.missions.approve_steps(
                agent_issuer=str(data["agent_iss"]),
                agent=str(data["agent"]),
                person=person,
                description=description,
                tools=proposal.get("tools"),
                resources=proposal.get("resources"),
                actor=person,
            )
            if description != proposal["description"]:
                yield from self.missions.log_steps(
                    mission.s256, {"event": "description_edited", "actor": person}
                )
            return {"mission_s256": mission.s256, "mission_expires": mission.expires_at}
        s256 = str(data["mission_s256"])
        if kind == KIND_UPDATE:
            cap = self.host.max_updates
            try:
                update = yield from self.missions.accept_update_steps(
                    s256, str(proposal["description"]), person, max_updates=cap
                )
            except MissionUpdatesFull:
                # The mission filled up while the person was deciding: the approval stands
                # (the request ends), the update is not recorded, and the agent's poll is
                # told why (deliver_steps); the log keeps the refusal beside the proposal.
                yield from self.missions.log_steps(
                    s256,
                    {
                        "event": "update_refused",
                        "agent": data["agent"],
                        "actor": "ps",
                        "reason": f"the mission holds its {cap} accepted updates",
                    },
                )
                return {"update_refused": cap}
            if update is None:
                raise _inactive()
            return {"update_s256": update.s256}
        if kind == KIND_COMPLETION:
            current = yield from self.missions.current_steps(s256)
            if current is None or not current.active:
                raise _inactive()
            yield from self.missions.terminate_steps(s256, "completed", actor=person)
            return {}
        return {}

    def deliver_steps(
        self, data: Mapping[str, Any], verified: VerifiedRequest
    ) -> Steps[HttpResponse]:
        """The ``200`` the agent's poll collects once the person approved."""
        kind = data["kind"]
        if kind == KIND_PROPOSAL:
            s256 = str(data["mission_s256"])
            mission = yield from self.missions.get_steps(s256)
            if mission is None:
                raise mission_not_found()
            tokens: dict[str, str] = {}
            for resource in mission.approved_resources or ():
                token = yield from self.host.person_token_steps(
                    verified, mission.person, resource, mission
                )
                if token is not None:
                    tokens[resource] = token
            body = mission.approval(capabilities=self.host.capabilities(), person_tokens=tokens)
            return _json(200, body)
        if kind == KIND_UPDATE:
            if data.get("update_refused") is not None:
                raise update_limit(int(data["update_refused"]))
            return _json(200, {"s256": data["update_s256"]})
        if kind == KIND_COMPLETION:
            return _json(
                200,
                {
                    "s256": data["mission_s256"],
                    "mission_status": "terminated",
                    "termination_reason": "completed",
                },
            )
        return _json(200, {"permission": "granted"})

    @staticmethod
    def refusal(data: Mapping[str, Any], state: str) -> HttpResponse | None:
        """A permission the person declined is an answer, not an error (digest 8.7)."""
        if data["kind"] == KIND_PERMISSION and state == "denied":
            return _json(200, {"permission": "denied", "reason": "the person declined"})
        return None


__all__ = [
    "KINDS",
    "KIND_COMPLETION",
    "KIND_PERMISSION",
    "KIND_PROPOSAL",
    "KIND_UPDATE",
    "MissionEndpoints",
    "MissionHost",
    "parse_proposal",
]
