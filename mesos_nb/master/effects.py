"""What the master core asks the shell to do: the only way the core reaches the outside world.

Two kinds. Messages (:class:`ToFramework`, :class:`ToAgent`, :class:`ToChannel`,
:class:`EndStream`) go out on subscription streams and agent channels. Registry writes
(:class:`SaveFramework`, :class:`RemoveFramework`, :class:`SaveAgent`, :class:`RemoveAgent`,
:class:`SaveAgentPrincipal`,
:class:`MarkAgentUnreachable`, :class:`MarkAgentGone`, :class:`PruneAgents`,
:class:`ForgetRemovedFrameworks`, all
:class:`RegistryEffect`) go to whatever :class:`~mesos_nb.master.registry.Registry` backs
the master (SQLite today; ZooKeeper, weights, quota and maintenance records can be added as
new ``RegistryEffect`` subclasses without touching the core's callers).

The shell executes them in order, so a framework is on disk before it is told SUBSCRIBED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol import messages as m


# --------------------------------------------------------------------------- messages
@dataclass(slots=True)
class ToFramework:
    framework_id: str
    event: m.Event


@dataclass(slots=True)
class ToAgent:
    agent_id: str
    msg: Any


@dataclass(slots=True)
class ToChannel:
    """A message for an agent process that has no agent id yet (registration answers)."""

    channel: Any
    msg: Any


@dataclass(slots=True)
class EndStream:
    """Send ``ERROR`` on a subscription stream and close it."""

    framework_id: str
    stream_id: str
    message: str | None  # None: just close the stream (TEARDOWN)


# --------------------------------------------------------------------------- registry records
@dataclass
class FrameworkRecord:
    id: str
    info: m.FrameworkInfo
    registered_time: float
    failover_deadline: float | None


@dataclass(slots=True)
class AgentRecord:
    """What the registry keeps of an agent; the master's live :class:`~.model.Agent` extends it."""

    id: str
    hostname: str
    port: int
    resources: list[m.Resource]
    attributes: list[m.Attribute]
    registered_time: float


@dataclass
class RegistryState:
    """Everything a restarted master gets back from its registry."""

    frameworks: list[FrameworkRecord] = field(default_factory=list)
    removed_framework_ids: list[str] = field(default_factory=list)  # oldest removal first
    agents: list[AgentRecord] = field(default_factory=list)
    unreachable: dict[str, float] = field(default_factory=dict)  # agent id -> when marked
    gone: dict[str, float] = field(default_factory=dict)  # agent id -> when marked gone
    quotas: dict[str, Any] = field(default_factory=dict)  # role -> QuotaConfig JSON
    weights: dict[str, float] = field(default_factory=dict)  # role -> weight
    maintenance: dict[str, Any] | None = None  # maintenance.MaintenanceState.document()
    # agent id -> the principal that registered it (None: the in-process secret or no authentication)
    agent_principals: dict[str, str | None] = field(default_factory=dict)


# --------------------------------------------------------------------------- registry writes
class RegistryEffect:
    """Base of every write the registry must make durable before later effects go out."""

    __slots__ = ()


@dataclass(slots=True)
class SaveFramework(RegistryEffect):
    id: str
    info: m.FrameworkInfo
    registered_time: float
    failover_deadline: float | None


@dataclass(slots=True)
class RemoveFramework(RegistryEffect):
    """Forget the framework and remember that it was removed (it may never come back)."""

    id: str


@dataclass(slots=True)
class ForgetRemovedFrameworks(RegistryEffect):
    """Registry GC: stop remembering these removed frameworks (the oldest past the master's
    bound), so the list cannot grow without end under churn."""

    ids: list[str]


@dataclass(slots=True)
class SaveAgent(RegistryEffect):
    """Admit (or re-admit) an agent; it leaves the unreachable list (Mesos MarkSlaveReachable)."""

    record: AgentRecord


@dataclass(slots=True)
class RemoveAgent(RegistryEffect):
    """Forget the agent, and its principal binding."""

    id: str


@dataclass(slots=True)
class SaveAgentPrincipal(RegistryEffect):
    """Bind an agent id to the principal that first registered it, so that after a failover
    only that principal may re-register the id (kept while the agent is unreachable; dropped
    when it is removed, marked gone or pruned)."""

    id: str
    principal: str | None


@dataclass(slots=True)
class MarkAgentUnreachable(RegistryEffect):
    """Admitted -> unreachable: it may come back and is re-admitted with its tasks."""

    id: str
    timestamp: float


@dataclass(slots=True)
class MarkAgentGone(RegistryEffect):
    """Admitted or unreachable -> gone, for good: it is refused if it ever returns."""

    id: str
    timestamp: float


@dataclass(slots=True)
class PruneAgents(RegistryEffect):
    """Registry GC: forget these unreachable and gone entries (bounded lists)."""

    unreachable: list[str]
    gone: list[str]


@dataclass(slots=True)
class SaveQuota(RegistryEffect):
    """Store a role's QuotaConfig JSON (``config=None``: the role has no quota any more)."""

    role: str
    config: dict[str, Any] | None


@dataclass(slots=True)
class SaveWeights(RegistryEffect):
    """Store updated role weights (merged into those already stored)."""

    weights: dict[str, float]


@dataclass(slots=True)
class SaveMaintenance(RegistryEffect):
    """Replace the stored maintenance document (schedule, DOWN machines, deactivated and
    draining agents): small, and written only on an operator call or a drain's end."""

    doc: dict[str, Any]


Effect = ToFramework | ToAgent | ToChannel | EndStream | RegistryEffect

__all__ = [
    "AgentRecord", "Effect", "EndStream", "ForgetRemovedFrameworks", "FrameworkRecord", "MarkAgentGone", "MarkAgentUnreachable",
    "PruneAgents", "RegistryEffect", "RegistryState", "RemoveAgent", "RemoveFramework", "SaveAgent",
    "SaveAgentPrincipal", "SaveFramework", "SaveMaintenance", "SaveQuota", "SaveWeights", "ToAgent", "ToChannel", "ToFramework",
]
