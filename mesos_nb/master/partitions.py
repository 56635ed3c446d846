"""Partition rules of Mesos 1.11 as pure functions (no clock, no I/O: ``now`` is an argument).

Why a module of its own: the master core calls these at each ping tick, agent removal,
re-registration and reconciliation, and every rule here is one a framework can observe
(which state, which reason, whether a task is killed). Keeping them pure lets each rule be
unit-tested exactly and lets the core stay a sequence of decisions plus effects.

Sources of the rules: ``docs/high-availability-framework-guide.md``, ``master.cpp``
(``markUnreachable``, ``_reregisterSlave``, ``reconcile``), ``docs/configuration/master.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

AGENT_PING_TIMEOUT = 15.0          # --agent_ping_timeout
MAX_AGENT_PING_TIMEOUTS = 5        # --max_agent_ping_timeouts
REGISTRY_MAX_AGENT_AGE = 14 * 24 * 3600.0  # --registry_max_agent_age (2 weeks)
REGISTRY_MAX_AGENT_COUNT = 102400  # --registry_max_agent_count (100 Ki)

# Task states a framework that is not PARTITION_AWARE never sees: it gets TASK_LOST instead.
PARTITION_AWARE_ONLY = frozenset({"TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"})

REREGISTERED_MESSAGE = "Unreachable agent re-reregistered"  # sic, as Mesos sends it


@dataclass(frozen=True)
class PartitionConfig:
    agent_ping_timeout: float = AGENT_PING_TIMEOUT
    max_agent_ping_timeouts: int = MAX_AGENT_PING_TIMEOUTS
    registry_max_agent_age: float = REGISTRY_MAX_AGENT_AGE
    registry_max_agent_count: int = REGISTRY_MAX_AGENT_COUNT

    def __post_init__(self) -> None:
        if self.agent_ping_timeout <= 0:
            raise ValueError("--agent-ping-timeout must be positive")
        if self.max_agent_ping_timeouts < 1:
            raise ValueError("--max-agent-ping-timeouts must be at least 1")
        if self.registry_max_agent_age <= 0 or self.registry_max_agent_count < 0:
            raise ValueError("--registry-max-agent-age must be positive and --registry-max-agent-count >= 0")

    @property
    def unreachable_after(self) -> float:
        """Silence after which an agent is unreachable (15 s x 5 = 75 s by default). Agents use
        the same product to decide that the master is gone."""
        return self.agent_ping_timeout * self.max_agent_ping_timeouts


@dataclass(frozen=True)
class StatusDecision:
    """A master-generated status update: what to tell one framework about one task."""
    state: str
    reason: str
    source: str = "SOURCE_MASTER"
    message: str = ""
    unreachable_time: float | None = None


# --------------------------------------------------------------------------- health checks
def on_ping_timeout(misses: int, cfg: PartitionConfig) -> tuple[int, bool]:
    """A ping got no PONG within ``agent_ping_timeout``: new miss count, and whether the agent
    is now unreachable (on the ``max_agent_ping_timeouts``-th consecutive miss)."""
    misses += 1
    return misses, misses >= cfg.max_agent_ping_timeouts


def on_pong() -> int:
    """Any PONG resets the count (a late pong also cancels a queued marking)."""
    return 0


def is_unreachable(last_heard: float, now: float, cfg: PartitionConfig) -> bool:
    """Clock form of the same rule, for a core that keeps the time it last heard from an agent."""
    return now - last_heard >= cfg.unreachable_after


# --------------------------------------------------------------------------- task states
def state_for_framework(state: str, partition_aware: bool) -> str:
    """TASK_UNREACHABLE / GONE / GONE_BY_OPERATOR / UNKNOWN become TASK_LOST for frameworks
    that did not opt in to PARTITION_AWARE."""
    return state if partition_aware or state not in PARTITION_AWARE_ONLY else "TASK_LOST"


def on_agent_unreachable(partition_aware: bool, unreachable_time: float, hostname: str = "") -> StatusDecision:
    """The agent of a non-terminal task was marked unreachable: TASK_UNREACHABLE (TASK_LOST)
    with REASON_AGENT_REMOVED and ``unreachable_time``. The task is NOT killed: it may run on."""
    where = f"Agent {hostname} " if hostname else "Agent "
    return StatusDecision(state_for_framework("TASK_UNREACHABLE", partition_aware), "REASON_AGENT_REMOVED",
                          message=where + "is unreachable (health check timed out)",
                          unreachable_time=unreachable_time)


def on_agent_disconnected(checkpoint: bool) -> StatusDecision | None:
    """The agent's connection broke (not yet a health-check failure). Tasks of frameworks that
    do not checkpoint are lost at once (and killed if the agent returns); others wait for the
    health check (None: nothing to send yet)."""
    if checkpoint:
        return None
    return StatusDecision("TASK_LOST", "REASON_AGENT_DISCONNECTED", message="Agent disconnected")


def on_agent_gone(partition_aware: bool) -> StatusDecision:
    """MARK_AGENT_GONE by an operator: TASK_GONE_BY_OPERATOR (TASK_LOST), terminal."""
    return StatusDecision(state_for_framework("TASK_GONE_BY_OPERATOR", partition_aware),
                          "REASON_AGENT_REMOVED_BY_OPERATOR", message="Agent marked gone by an operator")


# --------------------------------------------------------------------------- re-registration
class Admission(Enum):
    ADMIT = "admit"                      # new or known agent: register normally
    READMIT_UNREACHABLE = "readmit"      # came back from a partition: adopt its tasks, kill none
    REFUSE_GONE = "refuse_gone"          # marked gone: tell it to shut down, never admit again


def admit_agent(agent_id: str | None, gone: Iterable[str] | dict[str, float],
                unreachable: Iterable[str] | dict[str, float]) -> Admission:
    if agent_id is not None and agent_id in gone:
        return Admission.REFUSE_GONE
    if agent_id is not None and agent_id in unreachable:
        return Admission.READMIT_UNREACHABLE
    return Admission.ADMIT


@dataclass(frozen=True)
class ReregisteredTask:
    """One task an unreachable agent reports when it re-registers."""
    task_id: str
    framework_id: str
    state: str  # its current state on the agent, e.g. TASK_RUNNING


@dataclass(frozen=True)
class ReregistrationPlan:
    updates: list[tuple[str, str, StatusDecision]]  # (framework_id, task_id, update) to send
    shutdown_frameworks: list[str]                  # completed frameworks: shut their executors down
    adopt: list[str]                                # task ids the master takes back (never killed)


def on_unreachable_agent_reregistered(tasks: Iterable[ReregisteredTask], connected: set[str],
                                      completed: set[str]) -> ReregistrationPlan:
    """Mesos >= 1.5: tasks are re-added and never killed, except those of completed
    frameworks (their executors are shut down). Each task's CURRENT state is forwarded with
    REASON_AGENT_REREGISTERED to its framework if it is connected, whether or not it is
    partition-aware (a non-aware framework saw TASK_LOST and now sees the task alive)."""
    updates: list[tuple[str, str, StatusDecision]] = []
    shutdown: list[str] = []
    adopt: list[str] = []
    for t in tasks:
        if t.framework_id in completed:
            if t.framework_id not in shutdown:
                shutdown.append(t.framework_id)
            continue
        adopt.append(t.task_id)
        if t.framework_id in connected:
            updates.append((t.framework_id, t.task_id,
                            StatusDecision(t.state, "REASON_AGENT_REREGISTERED", message=REREGISTERED_MESSAGE)))
    return ReregistrationPlan(updates, shutdown, adopt)


# --------------------------------------------------------------------------- reconciliation
class AgentStanding(Enum):
    REGISTERED = "registered"
    RECOVERED = "recovered"      # known from the registry after failover, not re-registered yet
    UNREACHABLE = "unreachable"
    GONE = "gone"
    UNKNOWN = "unknown"


def reconcile_unknown_task(agent: AgentStanding, partition_aware: bool) -> StatusDecision | None:
    """Explicit reconciliation of a task the master does not know, by its agent's standing
    (``Master::reconcile`` order). None: no answer yet (the agent may still re-register)."""
    if agent is AgentStanding.RECOVERED:
        return None
    state = {AgentStanding.REGISTERED: "TASK_GONE", AgentStanding.UNREACHABLE: "TASK_UNREACHABLE",
             AgentStanding.GONE: "TASK_GONE_BY_OPERATOR", AgentStanding.UNKNOWN: "TASK_UNKNOWN"}[agent]
    return StatusDecision(state_for_framework(state, partition_aware), "REASON_RECONCILIATION",
                          message="Reconciliation: task unknown to the master")


# --------------------------------------------------------------------------- registry bounds
def drop_oldest(entries: dict[str, None], max_count: int) -> list[str]:
    """Bound an insertion-ordered id list (removed agents, removed frameworks): drop the first
    inserted past ``max_count``; returns the dropped ids, oldest first."""
    dropped = list(itertools.islice(entries, max(0, len(entries) - max_count)))
    for k in dropped:
        del entries[k]
    return dropped


def prune_agent_list(entries: dict[str, float], now: float, max_age: float,
                     max_count: int) -> tuple[dict[str, float], list[str]]:
    """Bound the unreachable (or gone) list as Mesos' registry GC does: drop entries older
    than ``max_age``, then the oldest until at most ``max_count`` remain. Returns (kept,
    dropped ids, oldest first). A dropped unreachable agent that returns is then unknown to
    the master and registers as a new agent."""
    by_age = sorted(entries.items(), key=lambda kv: (kv[1], kv[0]))
    dropped = [aid for aid, t in by_age if now - t > max_age]
    fresh = [(aid, t) for aid, t in by_age if now - t <= max_age]
    excess = max(0, len(fresh) - max_count)
    dropped += [aid for aid, _ in fresh[:excess]]
    return dict(fresh[excess:]), dropped


__all__ = [
    "AGENT_PING_TIMEOUT", "MAX_AGENT_PING_TIMEOUTS", "PARTITION_AWARE_ONLY", "REGISTRY_MAX_AGENT_AGE",
    "REGISTRY_MAX_AGENT_COUNT", "Admission", "AgentStanding", "PartitionConfig", "ReregisteredTask",
    "ReregistrationPlan", "StatusDecision", "admit_agent", "is_unreachable", "on_agent_disconnected",
    "drop_oldest", "on_agent_gone", "on_agent_unreachable", "on_ping_timeout", "on_pong", "on_unreachable_agent_reregistered",
    "prune_agent_list", "reconcile_unknown_task", "state_for_framework",
]
