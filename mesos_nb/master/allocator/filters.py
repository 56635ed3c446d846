"""Refusal filters (``Filters.refuse_seconds`` on DECLINE and on the unused part of ACCEPT).

A filter belongs to one framework, one of its roles and one agent, and holds the refused
resources and an expiry time. While it is live the framework is not offered, in that
role, anything on that agent that is a *subset* of the refused resources (Mesos
``RefusedOfferFilter``); an offer with something new in it gets through. Expired filters
are dropped lazily when they are next looked at, so no timers are needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesos_nb.protocol.resources import Resources

__all__ = [
    "DEFAULT_REFUSE_SECONDS",
    "drop_agent",
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
    """One framework's filters. They are kept on the agents they refuse: ``agent.refused[role]
    [framework_id]`` is one OfferFilter, or a list of them when there are several (one object
    less per refusal: a cluster of 50,000 agents declined by 200 frameworks holds hundreds of
    thousands, and the collector walks every one). Why there: the cycle asks, per agent, which
    of the role's frameworks refuse it; an agent refused by 200 frameworks cost it 200 method
    calls and 400 look-ups through each framework's own table (``cycle.first_fit``). Here the
    framework keeps ``role -> agent_id -> agent`` only, for what is asked per framework: clear
    (REVIVE, deactivation, a role left), ``has`` and ``count``."""

    __slots__ = ("framework_id", "by_role")

    def __init__(self, framework_id: str) -> None:
        self.framework_id = framework_id
        self.by_role: dict[str, dict[str, Any]] = {}  # role -> agent_id -> AgentEntry

    def __bool__(self) -> bool:
        return bool(self.by_role)

    def add(self, role: str, agent: Any, resources: Resources, expires: float) -> None:
        fid = self.framework_id
        refused = agent.refused
        if refused is None:
            refused = agent.refused = {}
        on_agent = refused.get(role)
        if on_agent is None:
            on_agent = refused[role] = {}
        elif on_agent:
            # the bag the last refusal here holds, if equal, is shared: an agent's leftover
            # refused by framework after framework is then one object, which the cycle's walk
            # decides by identity (cycle.first_fit) instead of a Resources.contains per framework
            last = next(reversed(on_agent.values()))
            same = (last[-1] if type(last) is list else last).resources
            if same is not resources and same == resources:
                resources = same
        f = OfferFilter(resources, expires)
        cur = on_agent.get(fid)
        if cur is None:
            on_agent[fid] = f
            agents = self.by_role.get(role)
            if agents is None:
                agents = self.by_role[role] = {}
            agents[agent.id] = agent
        elif type(cur) is list:
            cur.append(f)
        else:
            on_agent[fid] = [cur, f]

    def is_filtered(self, role: str, agent: Any, offer: Resources, now: float) -> bool:
        """Whether a live filter covers ``offer``; the expired ones looked at are dropped."""
        on_agent = agent.refused.get(role) if agent.refused else None
        if not on_agent:
            return False
        fid = self.framework_id
        cur = on_agent.get(fid)
        if cur is None:
            return False
        if type(cur) is not list:
            if now < cur.expires:
                res = cur.resources
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
            on_agent[fid] = live if len(live) > 1 else live[0]
        else:
            self._unlink(role, agent)
        return any(f.resources is offer or f.resources.contains(offer) for f in live)

    def _unlink(self, role: str, agent: Any) -> None:
        """Forget every filter of this framework on ``agent`` in ``role``."""
        refused = agent.refused
        on_agent = refused.get(role) if refused else None
        if on_agent is not None and on_agent.pop(self.framework_id, None) is not None and not on_agent:
            del refused[role]  # type: ignore[index]
            if not refused:
                agent.refused = None
        agents = self.by_role.get(role)
        if agents is not None:
            agents.pop(agent.id, None)
            if not agents:
                del self.by_role[role]

    def clear(self, roles: Iterable[str] | None = None) -> None:
        for r in list(self.by_role) if roles is None else roles:
            for agent in list(self.by_role.get(r, {}).values()):
                self._unlink(r, agent)

    def has(self, role: str | None = None, agent_id: str | None = None, now: float | None = None) -> bool:
        """Any (live, when ``now`` is given) filter for the role/agent given."""
        fid = self.framework_id
        for r, agents in self.by_role.items():
            if role is not None and r != role:
                continue
            for a, agent in agents.items():
                if agent_id is not None and a != agent_id:
                    continue
                if any(now is None or now < f.expires for f in _each(agent.refused[r][fid])):
                    return True
        return False

    def count(self) -> int:
        fid = self.framework_id
        return sum(len(_each(agent.refused[r][fid])) for r, agents in self.by_role.items() for agent in agents.values())


def drop_agent(agent: Any, frameworks: dict[str, Any]) -> None:
    """An agent leaves: every framework forgets its filters there (``frameworks``: id ->
    an entry with ``filters``)."""
    for role, on_agent in list((agent.refused or {}).items()):
        for fid in list(on_agent):
            fw = frameworks.get(fid)
            if fw is not None:
                fw.filters._unlink(role, agent)
    agent.refused = None
