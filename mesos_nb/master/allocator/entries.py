"""What the allocator keeps for each agent and each framework (mutable entries, slotted: the
cycle reads them tens of thousands of times)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesos_nb.protocol.resources import Resources

from .filters import FrameworkFilters


class AgentEntry:
    """An agent as the allocator sees it: its total, what is still free, and who holds a share."""

    __slots__ = (
        "id",
        "total",
        "available",
        "active",
        "gpu",
        "reserved",
        "hostname",
        "attributes",
        "frameworks",
        "slot",
        "refused",
        "memo",
    )

    def __init__(self, agent_id: str, total: Resources, hostname: str, attributes) -> None:
        self.id = agent_id
        self.hostname = hostname
        self.attributes = dict(attributes or {})
        self.active = True
        self.frameworks: dict[str, None] = {}  # ids of frameworks holding something here
        self.slot = -1  # its place in AgentSlots
        # role -> framework id -> the filter(s) by which it refused this agent (filters.py); None
        # while there are none (no dict per agent for the cycle to read: 50,000 more objects)
        self.refused: dict[str, dict[str, Any]] | None = None
        self.memo: tuple | None = None  # (bag, sorter, its epoch, until): every framework refused it (cycle.first_fit)
        self.set_total(total)
        self.available = total

    def set_total(self, total: Resources) -> None:
        self.total = total
        self.gpu = total.scalar("gpus") > 0
        self.reserved = not total.is_unreserved()


class AgentSlots:
    """The agents in the order they were added, each at an int ``slot``: a cycle's candidates
    are an ``array`` of slots. Why not a list of the agents: a list of 50,000 references made
    per cycle is a young container that each young collection of the master's collector walks,
    touching 50,000 scattered objects (15-20 ms of CPU, the longest step of the 50k master's
    loop); an array of ints is not the collector's business. A removed agent leaves a hole
    (None); the table is compacted only while no cycle begun in steps is under way (their
    arrays hold slots)."""

    __slots__ = ("entries", "holes", "open_runs")

    def __init__(self) -> None:
        self.entries: list[AgentEntry | None] = []
        self.holes = 0
        self.open_runs = 0

    def add(self, agent: AgentEntry) -> None:
        agent.slot = len(self.entries)
        self.entries.append(agent)

    def remove(self, agent: AgentEntry) -> None:
        self.entries[agent.slot] = None
        self.holes += 1
        if not self.open_runs and self.holes > 1024 and 2 * self.holes > len(self.entries):
            self.entries = [a for a in self.entries if a is not None]
            for i, a in enumerate(self.entries):
                a.slot = i  # type: ignore[union-attr]
            self.holes = 0


class FrameworkEntry:
    """A framework as the allocator sees it: roles, suppression, what it holds where, filters.

    What it holds: ``alloc[agent_id]`` is the :class:`Resources` it holds there when it holds
    in one role (that role in ``alloc_role[agent_id]``), or ``{role: Resources}`` (in the order
    the roles got something there) when in several. Why not always the dict: an offer would
    then make a dict that lives as long as the offer, and at 50,000 offers per cycle the
    collector walking them was a tenth of the cycle. Read through :meth:`held`/:meth:`holdings`.
    """

    __slots__ = (
        "id",
        "roles",
        "suppressed",
        "gpu_aware",
        "active",
        "alloc",
        "alloc_role",
        "filters",
        "sorter_roles",
    )

    def __init__(self, framework_id: str) -> None:
        self.id = framework_id
        self.roles: set[str] = set()
        self.suppressed: set[str] = set()
        self.gpu_aware = False
        self.active = False
        self.alloc: dict[str, Resources | dict[str, Resources]] = {}
        self.alloc_role: dict[str, str] = {}  # agent_id -> role, where held in one role
        self.filters = FrameworkFilters(framework_id)
        self.sorter_roles: set[str] = set()  # roles whose framework sorter has this client

    def held(self, agent_id: str) -> dict[str, Resources]:
        """role -> resources held on the agent (a fresh dict: change it through :meth:`set_held`)."""
        cur = self.alloc.get(agent_id)
        if cur is None:
            return {}
        if type(cur) is dict:
            return dict(cur)
        return {self.alloc_role[agent_id]: cur}  # type: ignore[dict-item]

    def holdings(self) -> Iterator[tuple[str, str, Resources]]:
        """(agent_id, role, resources) of everything held."""
        one = self.alloc_role
        for aid, cur in self.alloc.items():
            if type(cur) is dict:
                for role, res in cur.items():
                    yield aid, role, res
            else:
                yield aid, one[aid], cur  # type: ignore[misc]

    def hold(self, agent_id: str, role: str, res: Resources) -> bool:
        """Add ``res`` to what is held on the agent in ``role``; True if nothing was held there."""
        alloc = self.alloc
        cur = alloc.get(agent_id)
        if cur is None:
            alloc[agent_id] = res
            self.alloc_role[agent_id] = role
            return True
        if type(cur) is dict:
            had = cur.get(role)
            cur[role] = res if had is None else had + res
        else:
            first = self.alloc_role[agent_id]
            if first == role:
                alloc[agent_id] = cur + res  # type: ignore[operator]
            else:
                alloc[agent_id] = {first: cur, role: res}  # type: ignore[dict-item]
                del self.alloc_role[agent_id]
        return False

    def set_held(self, agent_id: str, role: str, res: Resources) -> bool:
        """What is held on the agent in ``role`` becomes ``res`` (empty: nothing); True when
        nothing is held on the agent any more."""
        cur = self.alloc.get(agent_id)
        if type(cur) is dict:
            if res:
                cur[role] = res
            else:
                cur.pop(role, None)
                if not cur:
                    del self.alloc[agent_id]
                    return True
            return False
        if res:
            self.alloc[agent_id] = res
            self.alloc_role[agent_id] = role
            return False
        self.drop(agent_id)
        return True

    def drop(self, agent_id: str) -> dict[str, Resources]:
        """Forget (and answer) everything held on the agent."""
        per = self.held(agent_id)
        self.alloc.pop(agent_id, None)
        self.alloc_role.pop(agent_id, None)
        return per


__all__ = ["AgentEntry", "AgentSlots", "FrameworkEntry"]
