"""Which agents an event-driven allocation cycle has to look at.

An agent is *touched* when its free resources grow (added, re-activated, resources
recovered, a framework holding something there removed); *everything* is touched by a
framework-side change that can make a framework want agents it passed over (a framework
added, re-activated or revived, roles, weights or quota changed). A cycle takes the set.
"""

from __future__ import annotations


class ChangedAgents:
    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[str, None] | None = {}  # None: every agent

    def touch(self, agent_id: str) -> None:
        if self._ids is not None:
            self._ids[agent_id] = None

    def touch_all(self) -> None:
        self._ids = None

    def take(self) -> list[str] | None:
        """The touched agents in order (None: all of them), forgotten."""
        ids, self._ids = self._ids, {}
        return None if ids is None else list(ids)

    def count(self) -> int | None:
        return None if self._ids is None else len(self._ids)
