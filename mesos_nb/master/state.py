"""The master's one state object, and the small helpers every transition module shares.

:class:`MasterState` holds the records (frameworks, agents, offers), the allocator, the
metrics, the change counter and the effect list ``out``. The transition modules
(:mod:`.frameworks`, :mod:`.offers`, :mod:`.tasks`, :mod:`.agents`) are functions over it;
:class:`~mesos_nb.master.core.MasterCore` is this state plus its entry points. Nothing here
reads a clock, a file or a socket: time arrives as ``now`` and fresh ids from :class:`IdSource`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..protocol import messages as m
from ..protocol.http_calls import StatusError
from .allocator import HierarchicalDRFAllocator
from .effects import AgentRecord, ToFramework
from .maintenance import MaintenanceState
from .model import (
    MAX_COMPLETED_FRAMEWORKS,
    MAX_REMOVED_AGENTS,
    MAX_REMOVED_FRAMEWORKS,
    Agent,
    Framework,
    Offer,
)
from .partitions import PartitionConfig

HEARTBEAT_INTERVAL = 15.0
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0
DEFAULT_REFUSE_SECONDS = 5.0


class CallError(StatusError):
    """A scheduler call the master refuses; the shell turns it into an HTTP answer."""


class IdSource:
    """Fresh framework, agent and offer ids, in Mesos's shapes (``<master>-0001``, ``-S3``, ``-O7``).

    Injected so that tests and a replicated master can choose them; the default counts from 0
    under the master id, which is unique per master start.
    """

    def __init__(self, master_id: str) -> None:
        self.master_id = master_id
        self._fw = 0
        self._agent = 0
        self._offer = 0

    def framework(self) -> str:
        n = self._fw
        self._fw += 1
        return f"{self.master_id}-{n:04d}"

    def agent(self) -> str:
        n = self._agent
        self._agent += 1
        return f"{self.master_id}-S{n}"

    def offer(self) -> str:
        n = self._offer
        self._offer += 1
        return f"{self.master_id}-O{n}"


def _metrics() -> dict[str, float]:
    return {
        "master/tasks_finished": 0,
        "master/tasks_failed": 0,
        "master/tasks_killed": 0,
        "master/tasks_lost": 0,
        "master/tasks_error": 0,
        "master/tasks_dropped": 0,
        "master/slave_registrations": 0,
        "master/slave_reregistrations": 0,
        "master/slave_removals": 0,
        "master/slave_unreachable_completed": 0,
        "master/slaves_unreachable": 0,
        "master/tasks_unreachable": 0,
        "master/tasks_gone_by_operator": 0,
        "master/messages_launch_tasks": 0,
        "master/messages_status_update": 0,
        "master/valid_status_updates": 0,
        "master/invalid_status_updates": 0,
        "master/offers_sent": 0,
        "master/offers_declined": 0,
        "master/offers_rescinded": 0,
        "allocator/mesos/allocation_runs": 0,
    }


class MasterState:
    def __init__(
        self,
        master_id: str,
        *,
        allocator: HierarchicalDRFAllocator | None = None,
        agent_reregister_timeout: float = 75.0,
        unreachable_timeout: float | None = None,
        ids: IdSource | None = None,
        partition: PartitionConfig | None = None,
    ) -> None:
        self.master_id = master_id
        self.master_info: m.MasterInfo | None = None  # set by the shell once it knows its address
        self.allocator = allocator or HierarchicalDRFAllocator()
        self.quota_configs: dict[str, dict] = {}  # role -> QuotaConfig JSON (quota.py)
        # How long an agent recovered after a failover has to re-register (Mesos
        # --agent_reregister_timeout), and how long one whose channel broke has before it is
        # marked unreachable (the ping timeouts it would miss meanwhile).
        self.agent_reregister_timeout = agent_reregister_timeout
        self.unreachable_timeout = agent_reregister_timeout if unreachable_timeout is None else unreachable_timeout
        self.partition = partition or PartitionConfig()
        self.ids = ids or IdSource(master_id)
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        # removed frameworks (refused if they re-subscribe), oldest first, at most
        # max_removed_frameworks: the oldest is forgotten, here and in the registry
        self.removed_framework_ids: dict[str, None] = {}
        self.max_removed_frameworks = MAX_REMOVED_FRAMEWORKS
        self.agents: dict[str, Agent] = {}
        # removed agents, oldest first (their owners stay bound in agent_principals meanwhile:
        # an id that comes back is checked against its owner until forgotten here)
        self.removed_agents: dict[str, None] = {}
        self.max_removed_agents = MAX_REMOVED_AGENTS
        self.unreachable: dict[str, float] = {}  # agent id -> when it was marked unreachable
        self.gone: dict[str, float] = {}  # agent id -> when an operator marked it gone
        self.agent_principals: dict[str, str | None] = {}  # agent id -> who registered it (registry-kept)
        self.offers: dict[str, Offer] = {}
        # agent id -> its outstanding offer ids, in the order made (rescinding an agent's
        # offers must not scan every offer: 5,000 agents of a lost channel x 10,000 offers)
        self.agent_offers: dict[str, dict[str, None]] = {}
        self.operations: deque[dict] = deque(maxlen=1000)  # reservations.py: GET_OPERATIONS
        self.maintenance = MaintenanceState()  # schedule, machine modes, drains (maintenance.py)
        self.out: list[Any] = []
        self.version = 0  # bumped on every change; the read endpoints cache by it
        self.wants_allocation = False
        self.metrics: dict[str, float] = _metrics()
        # run_tasks authorization (the shell injects the ACL check): (framework, TaskInfo) -> refusal or None
        self.authorize_task: Callable[[Framework, m.TaskInfo], str | None] | None = None
        # ACLs of offer operations (reserve_resources, create_volumes, ...; the shell injects
        # the check): (framework, action, objects) -> refusal or None
        self.authorize_operation: Callable[[Framework, str, list[str]], str | None] | None = None

    # ------------------------------------------------------------------ shared helpers
    def emit(self, fw: Framework, event: m.Event) -> None:
        if fw.connected:
            self.out.append(ToFramework(fw.id, event))

    def send_update(self, fw: Framework, status: m.TaskStatus) -> None:
        self.emit(fw, m.Event(type="UPDATE", update=m.Update(status=status)))

    def framework(self, framework_id: str) -> Framework:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise CallError(400, "Framework cannot be found")
        return fw


def lost_state(fw: Framework, partition_state: str) -> str:
    """TASK_LOST for frameworks that are not partition aware, the precise state otherwise."""
    return partition_state if fw.partition_aware else "TASK_LOST"


def agent_record(agent: Agent) -> AgentRecord:
    """A snapshot for the registry (the live agent changes after the save is queued)."""
    return AgentRecord(*(getattr(agent, f.name) for f in fields(AgentRecord)))


def make_status(
    task_id: str,
    state: str,
    *,
    agent_id: str | None = None,
    executor_id: str | None = None,
    source: str = "SOURCE_MASTER",
    reason: str | None = None,
    message: str | None = None,
    now: float,
) -> m.TaskStatus:
    return m.TaskStatus(
        task_id=m.ID(value=task_id),
        state=state,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        agent_id=m.ID(value=agent_id) if agent_id else None,
        executor_id=m.ID(value=executor_id) if executor_id else None,
        timestamp=now,
    )
