"""Refusal filters (``Filters.refuse_seconds`` on DECLINE and on the unused part of ACCEPT).

A filter belongs to one framework, one of its roles and one agent, and holds the refused
resources and an expiry time. While it is live the framework is not offered, in that
role, anything on that agent that is a *subset* of the refused resources (Mesos
``RefusedOfferFilter``); an offer with something new in it gets through. Expired filters
are dropped lazily when they are next looked at, so no timers are needed.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesos_nb.protocol.resources import Resources

__all__ = [
    "DEFAULT_REFUSE_SECONDS",
    "MAX_REFUSE_SECONDS",
    "FrameworkFilters",
    "OfferFilter",
    "refuse_timeout",
]

DEFAULT_REFUSE_SECONDS = 5.0
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


def refuse_timeout(refuse_seconds: float | None) -> float:
    """Seconds a filter lasts: negative means the 5 s default, capped at 365 days,
    0 (or None) means no filter."""
    if refuse_seconds is None:
        return 0.0
    if refuse_seconds != refuse_seconds:  # NaN
        return DEFAULT_REFUSE_SECONDS
    if refuse_seconds < 0:
        return DEFAULT_REFUSE_SECONDS
    return min(float(refuse_seconds), MAX_REFUSE_SECONDS)


class OfferFilter:
    __slots__ = ("resources", "expires")

    def __init__(self, resources: Resources, expires: float) -> None:
        self.resources = resources
        self.expires = expires

    def expired(self, now: float) -> bool:
        return now >= self.expires

    def filters(self, offer: Resources) -> bool:
        """True when ``offer`` holds nothing beyond what was refused."""
        return self.resources.contains(offer)

    def __repr__(self) -> str:
        return f"OfferFilter({self.resources}, expires={self.expires})"


def _each(v: OfferFilter | list[OfferFilter]) -> list[OfferFilter]:
    return v if type(v) is list else [v]  # type: ignore[list-item]


class FrameworkFilters:
    """One framework's filters: role -> agent_id -> an OfferFilter, or a list of them when
    there are several (one object less per refusal: a cluster of 50,000 agents declined by
    1,000 frameworks holds tens of thousands, and the collector walks every one)."""

    __slots__ = ("by_role",)

    def __init__(self) -> None:
        self.by_role: dict[str, dict[str, OfferFilter | list[OfferFilter]]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_role)

    def add(self, role: str, agent_id: str, resources: Resources, expires: float) -> None:
        per_agent = self.by_role.get(role)
        if per_agent is None:
            per_agent = self.by_role[role] = {}
        f = OfferFilter(resources, expires)
        cur = per_agent.get(agent_id)
        if cur is None:
            per_agent[agent_id] = f
        elif type(cur) is list:
            cur.append(f)
        else:
            per_agent[agent_id] = [cur, f]  # type: ignore[list-item]

    def is_filtered(self, role: str, agent_id: str, offer: Resources, now: float) -> bool:
        per_agent = self.by_role.get(role)
        if not per_agent:
            return False
        cur = per_agent.get(agent_id)
        if cur is None:
            return False
        if type(cur) is not list:
            if now < cur.expires:  # type: ignore[union-attr]
                res = cur.resources  # type: ignore[union-attr]
                return res is offer or res.contains(offer)
            live: list[OfferFilter] = []
        else:
            expired = False
            for f in cur:
                if now >= f.expires:
                    expired = True
                elif f.resources is offer or f.resources.contains(offer):
                    # (identity: an agent's untouched leftover is the very object refused)
                    if not expired:
                        return True
                    break
            else:
                if not expired:
                    return False
            live = [f for f in cur if now < f.expires]
        if live:
            per_agent[agent_id] = live if len(live) > 1 else live[0]
        else:
            del per_agent[agent_id]
            if not per_agent:
                del self.by_role[role]
        return any(f.resources is offer or f.resources.contains(offer) for f in live)

    def clear(self, roles: Iterable[str] | None = None) -> None:
        if roles is None:
            self.by_role.clear()
        else:
            for r in roles:
                self.by_role.pop(r, None)

    def drop_agent(self, agent_id: str) -> None:
        for role in list(self.by_role):
            per_agent = self.by_role[role]
            per_agent.pop(agent_id, None)
            if not per_agent:
                del self.by_role[role]

    def has(self, role: str | None = None, agent_id: str | None = None, now: float | None = None) -> bool:
        """Any (live, when ``now`` is given) filter for the role/agent given."""
        for r, per_agent in self.by_role.items():
            if role is not None and r != role:
                continue
            for a, fl in per_agent.items():
                if agent_id is not None and a != agent_id:
                    continue
                if any(now is None or now < f.expires for f in _each(fl)):
                    return True
        return False

    def count(self) -> int:
        return sum(len(_each(fl)) for per_agent in self.by_role.values() for fl in per_agent.values())
