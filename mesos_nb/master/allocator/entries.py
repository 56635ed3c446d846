"""What the allocator keeps for each agent and each framework (mutable entries, slotted: the
cycle reads them tens of thousands of times)."""

from __future__ import annotations

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
    )

    def __init__(self, agent_id: str, total: Resources, hostname: str, attributes) -> None:
        self.id = agent_id
        self.hostname = hostname
        self.attributes = dict(attributes or {})
        self.active = True
        self.frameworks: dict[str, None] = {}  # ids of frameworks holding something here
        self.set_total(total)
        self.available = total

    def set_total(self, total: Resources) -> None:
        self.total = total
        self.gpu = total.scalar("gpus") > 0
        self.reserved = not total.is_unreserved()


class FrameworkEntry:
    """A framework as the allocator sees it: roles, suppression, what it holds where, filters."""

    __slots__ = (
        "id",
        "roles",
        "suppressed",
        "gpu_aware",
        "active",
        "alloc",
        "filters",
        "sorter_roles",
    )

    def __init__(self, framework_id: str) -> None:
        self.id = framework_id
        self.roles: set[str] = set()
        self.suppressed: set[str] = set()
        self.gpu_aware = False
        self.active = False
        self.alloc: dict[str, dict[str, Resources]] = {}  # agent_id -> role -> resources
        self.filters = FrameworkFilters()
        self.sorter_roles: set[str] = set()  # roles whose framework sorter has this client


__all__ = ["AgentEntry", "FrameworkEntry"]
