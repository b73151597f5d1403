"""Missions (digest 8, P-§9): the mission record and its log on the durable records, the
agent-facing mission, permission and audit endpoints, Mission Control for the person, and
halting a mission's access at the resources.

The Person Server assembles these modules and hands each what it needs; none imports the PS.
"""

from __future__ import annotations

from .model import (
    ACTIVE,
    REASONS,
    SUSPENDED,
    TERMINATED,
    Mission,
    MissionUpdate,
    mission_not_found,
    mission_s256,
    mission_suspended,
    mission_terminated,
    valid_s256,
)
from .registry import MissionLog, Missions

__all__ = [
    "ACTIVE",
    "REASONS",
    "SUSPENDED",
    "TERMINATED",
    "Mission",
    "MissionLog",
    "MissionUpdate",
    "Missions",
    "mission_not_found",
    "mission_s256",
    "mission_suspended",
    "mission_terminated",
    "valid_s256",
]
