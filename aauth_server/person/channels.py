"""Relay channels: the ways a Person Server can reach its person (digest 6.4, 11.3).

A channel answers two questions inside the relay's decision logic: can it reach this person
right now, and will it deliver this relay to them.  Both are step generators, so a channel may
read or write the pending store through :class:`~aauth_server.steps.StoreOp` and runs unchanged
under the sync and the async driver.  A channel that only calls quick in-process code (a push
queue, a set of connected devices) can be built from two plain functions with
:class:`CallbackChannel`.  Slow I/O does not belong in a channel: it runs while the agent's
request waits; enqueue the notification and let a worker send it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from ..steps import Steps

T = TypeVar("T")

__all__ = [
    "CallbackChannel",
    "Channel",
    "RelayView",
    "done",
]


@dataclass(frozen=True, slots=True)
class RelayView:
    """One relayed interaction or question, as the person's channels and page see it.

    Texts are raw agent-asserted Markdown: whoever renders them sanitises them.
    """

    id: str
    type: str
    state: str
    person: str
    agent: str
    agent_provider: str
    description: str | None
    url: str | None
    code: str | None
    question: str | None
    created_at: float
    deadline: float
    channel: str | None

    @property
    def target(self) -> str | None:
        """Where the person goes for an interaction or payment: ``{url}?code={code}``."""
        if self.url is None:
            return None
        return self.url if self.code is None else f"{self.url}?code={self.code}"


@runtime_checkable
class Channel(Protocol):
    """A way to reach a person; registered with :meth:`InteractionRelay.register`."""

    @property
    def name(self) -> str: ...

    def reachable(self, person: str) -> Steps[bool]:
        """Can this channel reach ``person`` now?"""
        ...

    def deliver(self, relay: RelayView) -> Steps[bool]:
        """Hand ``relay`` to the person; False when the channel could not after all."""
        ...


def done(value: T) -> Steps[T]:
    """A step generator that needs nothing and returns ``value``."""
    return value
    yield  # a bare yield makes this function a generator; never reached


class CallbackChannel:
    """A channel made of two quick synchronous functions (the application's push service...)."""

    def __init__(
        self,
        name: str,
        can_reach: Callable[[str], bool],
        send: Callable[[RelayView], bool],
    ) -> None:
        self._name = name
        self._can_reach = can_reach
        self._send = send

    @property
    def name(self) -> str:
        return self._name

    def reachable(self, person: str) -> Steps[bool]:
        return done(self._can_reach(person))

    def deliver(self, relay: RelayView) -> Steps[bool]:
        return done(self._send(relay))
