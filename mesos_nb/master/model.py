"""The master's records: frameworks, agents, tasks and offers.

Plain data, no behaviour beyond small derived views; :mod:`mesos_nb.master.core` owns the
transitions. Kept separate so the read endpoints can render them without importing the
state machine.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..protocol import messages as m
from ..protocol.resources import Resources
from .effects import AgentRecord

MAX_COMPLETED_TASKS_PER_FRAMEWORK = 1000
MAX_COMPLETED_FRAMEWORKS = 50
# removed agents whose ids (and owners) the master remembers, the oldest forgotten first (Mesos:
# MAX_REMOVED_SLAVES, 100,000): unbounded, a cluster whose agents come and go grew without end
MAX_REMOVED_AGENTS = 100_000
# removed frameworks whose ids the master remembers (and refuses on re-subscription), the oldest
# forgotten first; each also is a znode under removed_frameworks/ in the ZooKeeper registry, all
# listed by one getChildren at recovery, whose reply must stay under ZooKeeper's jute.maxbuffer
# (1 MiB): a generated id (<uuid>-NNNN, 41 characters) costs ~46 bytes there, so 10,000 is
# ~0.45 MiB, with room for ids up to ~100 characters. (Mesos itself remembers only the last
# --max_completed_frameworks, 50, in memory; unbounded, churn grew the list by ~130 ids a minute.)
MAX_REMOVED_FRAMEWORKS = 10_000


@dataclass(slots=True)
class Task:
    id: str
    framework_id: str
    agent_id: str
    name: str
    role: str
    resources: Resources
    info: m.TaskInfo
    executor_id: str | None = None
    state: str = "TASK_STAGING"
    statuses: list[tuple[str, float]] = field(default_factory=list)
    latest: m.TaskStatus | None = None
    # The newest reliable update the framework has not acknowledged yet (has a uuid).
    unacked: m.TaskStatus | None = None
    resources_released: bool = False


@dataclass(slots=True)
class Offer:
    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass(slots=True)
class Framework:
    id: str
    info: m.FrameworkInfo
    registered_time: float
    connected: bool = False
    active: bool = True
    stream_id: str | None = None
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    failover_deadline: float | None = None
    suppressed_roles: set[str] = field(default_factory=set)
    tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(
        default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS_PER_FRAMEWORK)
    )
    offers: set[str] = field(default_factory=set)
    # Tasks on agents marked unreachable: they may still run and come back when the agent
    # re-registers (Mesos' ``unreachable_tasks``; implicit reconciliation skips them).
    unreachable_tasks: dict[str, Task] = field(default_factory=dict)
    # agent_id -> {executor_id: ExecutorInfo}
    executors: dict[str, dict[str, m.ExecutorInfo]] = field(default_factory=dict)
    # (agent_id, executor_id) -> (the executor's own resources, their role): allocated from the
    # launch of its first task until it ends (Mesos), whatever its tasks do meanwhile
    executor_resources: dict[tuple[str, str], tuple[Resources, str]] = field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        return self.info.all_roles()

    @property
    def partition_aware(self) -> bool:
        return self.info.has_capability("PARTITION_AWARE")

    def executor_usage(self) -> list[tuple[str, Resources]]:
        """(agent id, resources) held by each of its running executors (not by their tasks)."""
        return [(agent_id, res) for (agent_id, ex_id), (res, _) in self.executor_resources.items()
                if ex_id in self.executors.get(agent_id, ())]


@dataclass(slots=True)
class Agent(AgentRecord):
    """A registered agent: its registry record (``resources`` as it checkpointed them) and live state."""

    total: Resources
    channel: Any = None  # opaque handle owned by the shell
    key: str = ""
    version: str | None = None
    connected: bool = True
    active: bool = True
    reregistered_time: float | None = None
    disconnect_deadline: float | None = None
    scheme: str = "http"  # of its HTTP endpoints, as it registered (agent_reads.py)
    # (framework_id, task_id)
    tasks: set[tuple[str, str]] = field(default_factory=set)

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.hostname}:{self.port}"

    def attribute_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in self.attributes:
            if a.type == "SCALAR" and a.scalar is not None:
                out[a.name] = a.scalar.value
            elif a.type == "TEXT" and a.text is not None:
                out[a.name] = a.text.value
            elif a.type == "RANGES" and a.ranges is not None:
                out[a.name] = "[" + ",".join(f"{r.begin}-{r.end}" for r in a.ranges.range) + "]"
            elif a.type == "SET" and a.set is not None:
                out[a.name] = "{" + ",".join(a.set.item) + "}"
        return out
