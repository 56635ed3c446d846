"""The master's state machine: frameworks, agents, tasks and offers.

Functional core: every input (a scheduler call, a channel message, a timer tick) is a
synchronous method taking ``now``; every output is appended to :attr:`MasterCore.out` as an
effect (:class:`ToFramework`, :class:`ToAgent`, :class:`EndStream`) that the shell
(:mod:`mesos_nb.master.server`) delivers. No sockets, no clock, no asyncio here, so the
whole master is unit-tested and benchmarked in-process.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..protocol import channel as ch
from ..protocol import messages as m
from ..protocol.resources import ResourceParseError, Resources
from .allocator import HierarchicalDRFAllocator
from .model import MAX_COMPLETED_FRAMEWORKS, Agent, Framework, Offer, Task
from .registry import AgentRecord, Registry

log = logging.getLogger("mesos_nb.master")

HEARTBEAT_INTERVAL = 15.0
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0
DEFAULT_REFUSE_SECONDS = 5.0


# --------------------------------------------------------------------------- effects
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


class CallError(Exception):
    """A scheduler call the master refuses; the shell turns it into an HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def validate_id(value: str, what: str) -> str | None:
    """Mesos ``validateID``: ids become directory names on agents."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > 255:
        return f"{what} '{value[:32]}…' is longer than 255 characters"
    if value in (".", ".."):
        return f"{what} '{value}' is disallowed"
    if "/" in value or "\\" in value:
        return f"{what} '{value}' contains a slash"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} '{value!r}' contains a control character"
    return None


def validate_role(role: str) -> str | None:
    if not role:
        return "role must not be empty"
    if role == "*":
        return None
    for part in role.split("/"):
        if part in ("", ".", "..") or part.startswith("-"):
            return f"role '{role}' is not a valid role name"
    if any(c.isspace() or c == "\b" for c in role):
        return f"role '{role}' contains whitespace"
    return None


def _status(
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


class MasterCore:
    def __init__(
        self,
        master_id: str,
        *,
        allocator: HierarchicalDRFAllocator | None = None,
        agent_reregister_timeout: float = 75.0,
        registry: Registry | None = None,
    ) -> None:
        self.master_id = master_id
        self.registry = registry or Registry(None)
        self.master_info: m.MasterInfo | None = None  # set by the shell once it knows its address
        self.allocator = allocator or HierarchicalDRFAllocator()
        self.agent_reregister_timeout = agent_reregister_timeout
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self.removed_framework_ids: set[str] = set()
        self.agents: dict[str, Agent] = {}
        self.removed_agent_ids: set[str] = set()
        self.offers: dict[str, Offer] = {}
        self.out: list[Any] = []
        self._next_framework = 0
        self._next_agent = 0
        self._next_offer = 0
        self.version = 0  # bumped on every change; the read endpoints cache by it
        self.wants_allocation = False
        self.metrics: dict[str, float] = {
            "master/tasks_finished": 0,
            "master/tasks_failed": 0,
            "master/tasks_killed": 0,
            "master/tasks_lost": 0,
            "master/tasks_error": 0,
            "master/tasks_dropped": 0,
            "master/slave_registrations": 0,
            "master/slave_reregistrations": 0,
            "master/slave_removals": 0,
            "master/messages_launch_tasks": 0,
            "master/messages_status_update": 0,
            "master/valid_status_updates": 0,
            "master/invalid_status_updates": 0,
            "master/offers_sent": 0,
            "master/offers_declined": 0,
            "master/offers_rescinded": 0,
            "allocator/mesos/allocation_runs": 0,
        }

    # ------------------------------------------------------------------ helpers
    def _emit(self, fw: Framework, event: m.Event) -> None:
        if fw.connected:
            self.out.append(ToFramework(fw.id, event))

    def _send_update(self, fw: Framework, status: m.TaskStatus) -> None:
        self._emit(fw, m.Event(type="UPDATE", update=m.Update(status=status)))

    def _lost_state(self, fw: Framework, partition_state: str) -> str:
        return partition_state if fw.partition_aware else "TASK_LOST"

    def framework(self, framework_id: str) -> Framework:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise CallError(400, "Framework cannot be found")
        return fw

    # ------------------------------------------------------------------ subscription
    def subscribe(
        self, sub: m.Subscribe, stream_id: str, now: float, principal: str | None = None
    ) -> Framework:
        info = sub.framework_info
        for role in info.all_roles():
            err = validate_role(role)
            if err:
                raise CallError(400, f"Invalid FrameworkInfo: {err}")
        if info.roles and info.role not in (None, "*") and not info.has_capability("MULTI_ROLE"):
            raise CallError(400, "Invalid FrameworkInfo: 'roles' requires the MULTI_ROLE capability")
        if info.failover_timeout < 0:
            raise CallError(400, "Invalid FrameworkInfo: 'failover_timeout' must not be negative")
        if principal and not info.principal:
            info.principal = principal
        self.version += 1
        fid = info.id.value if info.id else None
        if fid is not None:
            err = validate_id(fid, "framework id")
            if err:
                raise CallError(400, f"Invalid FrameworkInfo: {err}")
        if fid is not None and fid in self.removed_framework_ids:
            # Mesos answers on the stream, then closes it.
            raise CallError(403, "Framework has been removed")
        if fid is not None and fid in self.frameworks:
            fw = self.frameworks[fid]
            if fw.connected and fw.stream_id:
                self.out.append(EndStream(fw.id, fw.stream_id, "Framework failed over"))
            old_roles = set(fw.roles)
            # user and checkpoint cannot change on re-subscription (silently kept).
            info.user = fw.info.user
            info.checkpoint = fw.info.checkpoint
            fw.info = info
            fw.connected = True
            fw.active = True
            fw.stream_id = stream_id
            fw.reregistered_time = now
            fw.failover_deadline = None
            fw.suppressed_roles = set(sub.suppressed_roles)
            self.registry.put_framework(fw.id, info, fw.registered_time, None)
            self._rescind_all(fw, now, notify=False)
            self.allocator.update_framework(
                fw.id, fw.roles, suppressed_roles=sorted(fw.suppressed_roles),
                gpu_aware=info.has_capability("GPU_RESOURCES"),
            )
            self.allocator.activate_framework(fw.id)
            if old_roles != set(fw.roles):
                log.info("framework roles changed framework=%s roles=%s", fw.id, fw.roles)
            log.info("framework re-subscribed framework=%s name=%s", fw.id, info.name)
            self._subscribed(fw)
            # Deliver every reliable update the framework has not acknowledged yet.
            for task in fw.tasks.values():
                if task.unacked is not None:
                    self._send_update(fw, task.unacked)
        else:
            if fid is None:
                fid = f"{self.master_id}-{self._next_framework:04d}"
                self._next_framework += 1
                info.id = m.ID(value=fid)
            fw = Framework(id=fid, info=info, registered_time=now, connected=True, stream_id=stream_id)
            fw.suppressed_roles = set(sub.suppressed_roles)
            self.registry.put_framework(fid, info, now, None)
            self.frameworks[fid] = fw
            self.allocator.add_framework(
                fid, fw.roles, suppressed_roles=sorted(fw.suppressed_roles),
                gpu_aware=info.has_capability("GPU_RESOURCES"),
            )
            # Tasks of this framework may already be known from re-registered agents.
            log.info("framework subscribed framework=%s name=%s roles=%s", fid, info.name, fw.roles)
            self._subscribed(fw)
        self.wants_allocation = True
        return fw

    def _subscribed(self, fw: Framework) -> None:
        self._emit(
            fw,
            m.Event(
                type="SUBSCRIBED",
                subscribed=m.Subscribed(
                    framework_id=m.ID(value=fw.id),
                    heartbeat_interval_seconds=HEARTBEAT_INTERVAL,
                    master_info=self.master_info,
                ),
            ),
        )

    def disconnect(self, framework_id: str, stream_id: str, now: float) -> None:
        """The subscription stream broke: keep tasks until ``failover_timeout`` passes."""
        fw = self.frameworks.get(framework_id)
        if fw is None or fw.stream_id != stream_id or not fw.connected:
            return
        self.version += 1
        fw.connected = False
        fw.active = False
        fw.unregistered_time = now
        self._rescind_all(fw, now, notify=False)
        self.allocator.deactivate_framework(fw.id)
        fw.failover_deadline = now + fw.info.failover_timeout
        self.registry.put_framework(fw.id, fw.info, fw.registered_time, fw.failover_deadline)
        log.info(
            "framework disconnected framework=%s failover_timeout=%.1fs",
            fw.id,
            fw.info.failover_timeout,
        )
        if fw.info.failover_timeout <= 0:
            self.remove_framework(fw.id, now, reason="failover timeout 0")

    def teardown(self, framework_id: str, now: float) -> None:
        fw = self.framework(framework_id)
        if fw.connected and fw.stream_id:
            self.out.append(EndStream(fw.id, fw.stream_id, None))
        self.remove_framework(fw.id, now, reason="teardown")

    def remove_framework(self, framework_id: str, now: float, reason: str) -> None:
        fw = self.frameworks.pop(framework_id, None)
        if fw is None:
            return
        self.version += 1
        log.info("framework removed framework=%s reason=%s tasks=%d", fw.id, reason, len(fw.tasks))
        self._rescind_all(fw, now, notify=False)
        fw.connected = False
        fw.active = False
        fw.unregistered_time = fw.unregistered_time or now
        agents = {t.agent_id for t in fw.tasks.values()} | set(fw.executors)
        for agent_id in agents:
            if agent_id in self.agents:
                self.out.append(ToAgent(agent_id, ch.ShutdownFramework(agent_id=agent_id, framework_id=fw.id)))
        for task in list(fw.tasks.values()):
            if task.state not in m.TERMINAL_STATES:
                task.state = "TASK_KILLED"
                task.statuses.append(("TASK_KILLED", now))
                self.metrics["master/tasks_killed"] += 1
            self._release_task(fw, task)
            fw.completed_tasks.append(task)
        fw.tasks.clear()
        self.allocator.remove_framework(fw.id)
        self.removed_framework_ids.add(fw.id)
        self.registry.remove_framework(fw.id)
        self.completed_frameworks.append(fw)
        self.wants_allocation = True

    # ------------------------------------------------------------------ offers
    def allocate(self, now: float) -> None:
        self.wants_allocation = False
        self.metrics["allocator/mesos/allocation_runs"] += 1
        allocations = self.allocator.allocate(now)
        if not allocations:
            return
        self.version += 1
        batches: dict[str, list[m.Offer]] = {}
        for a in allocations:
            fw = self.frameworks.get(a.framework_id)
            agent = self.agents.get(a.agent_id)
            if fw is None or agent is None or not fw.connected:
                self.allocator.recover(a.framework_id, a.agent_id, a.resources, role=a.role)
                continue
            oid = f"{self.master_id}-O{self._next_offer}"
            self._next_offer += 1
            offer = Offer(oid, fw.id, agent.id, a.role, a.resources)
            self.offers[oid] = offer
            fw.offers.add(oid)
            executor_ids = [m.ID(value=e) for e in fw.executors.get(agent.id, ())]
            batches.setdefault(fw.id, []).append(
                m.Offer(
                    id=m.ID(value=oid),
                    framework_id=m.ID(value=fw.id),
                    agent_id=m.ID(value=agent.id),
                    hostname=agent.hostname,
                    resources=a.resources.to_proto(a.role),
                    attributes=agent.attributes,
                    executor_ids=executor_ids,
                    allocation_info=m.AllocationInfo(role=a.role),
                    url=_agent_url(agent),
                )
            )
        for fid, offers in batches.items():
            self.metrics["master/offers_sent"] += len(offers)
            self._emit(self.frameworks[fid], m.Event(type="OFFERS", offers=m.Offers(offers=offers)))

    def _remove_offer(self, offer: Offer) -> None:
        self.offers.pop(offer.id, None)
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer.id)

    def _rescind(self, offer: Offer, now: float, notify: bool = True) -> None:
        self._remove_offer(offer)
        self.allocator.recover(offer.framework_id, offer.agent_id, offer.resources, role=offer.role)
        self.metrics["master/offers_rescinded"] += 1
        fw = self.frameworks.get(offer.framework_id)
        if notify and fw is not None:
            self._emit(fw, m.Event(type="RESCIND", rescind=m.Rescind(offer_id=m.ID(value=offer.id))))
        self.wants_allocation = True

    def _rescind_all(self, fw: Framework, now: float, notify: bool) -> None:
        for oid in list(fw.offers):
            offer = self.offers.get(oid)
            if offer is not None:
                self._rescind(offer, now, notify=notify)
        fw.offers.clear()

    @staticmethod
    def _refuse_seconds(filters: m.Filters | None) -> float:
        if filters is None:
            return DEFAULT_REFUSE_SECONDS
        s = filters.refuse_seconds
        if s != s or s < 0:  # NaN or negative: use the default
            return DEFAULT_REFUSE_SECONDS
        return min(s, MAX_REFUSE_SECONDS)

    def decline(self, framework_id: str, decline: m.Decline, now: float) -> None:
        fw = self.framework(framework_id)
        refuse = self._refuse_seconds(decline.filters)
        for oid in decline.offer_ids:
            offer = self.offers.get(oid.value)
            if offer is None or offer.framework_id != fw.id:
                continue  # Mesos ignores unknown offers in DECLINE
            self._remove_offer(offer)
            self.metrics["master/offers_declined"] += 1
            self.allocator.recover(fw.id, offer.agent_id, offer.resources, refuse_seconds=refuse, now=now, role=offer.role)
        self.version += 1
        self.wants_allocation = True

    def accept(self, framework_id: str, accept: m.Accept, now: float) -> None:
        fw = self.framework(framework_id)
        self.version += 1
        self.wants_allocation = True
        refuse = self._refuse_seconds(accept.filters)
        offers: list[Offer] = []
        error: str | None = None
        seen: set[str] = set()
        for oid in accept.offer_ids:
            offer = self.offers.get(oid.value)
            if oid.value in seen:
                error = f"Offer {oid.value} appears more than once"
            elif offer is None:
                error = f"Offer {oid.value} is no longer valid"
            elif offer.framework_id != fw.id:
                error = f"Offer {oid.value} belongs to another framework"
            elif offers and offer.agent_id != offers[0].agent_id:
                error = "Offers in one ACCEPT must all be from the same agent"
            elif offers and offer.role != offers[0].role:
                error = "Offers in one ACCEPT must all be for the same role"
            seen.add(oid.value)
            if offer is not None and offer.framework_id == fw.id:
                offers.append(offer)
        if not accept.offer_ids:
            error = "No offers specified"
        for offer in offers:
            self._remove_offer(offer)
        if error is not None:
            # Return what we took back to the allocator; fail every task in the call.
            for offer in offers:
                self.allocator.recover(fw.id, offer.agent_id, offer.resources, role=offer.role)
            for op in accept.operations:
                self._drop_tasks(fw, _operation_tasks(op), "REASON_INVALID_OFFERS", error, now)
            log.info("accept refused framework=%s: %s", fw.id, error)
            return
        agent = self.agents.get(offers[0].agent_id)
        role = offers[0].role
        remaining = offers[0].resources
        for offer in offers[1:]:
            remaining = remaining + offer.resources
        for op in accept.operations:
            if op.type in ("LAUNCH", "LAUNCH_GROUP"):
                remaining = self._launch(fw, agent, role, op, remaining, now)
            elif op.type in ("RESERVE", "UNRESERVE", "CREATE", "DESTROY"):
                log.info("operation %s not supported yet framework=%s (ignored)", op.type, fw.id)
            else:
                log.info("unknown operation %r framework=%s (ignored)", op.type, fw.id)
        if remaining and agent is not None:
            self.allocator.recover(fw.id, agent.id, remaining, refuse_seconds=refuse, now=now, role=role)

    def _validate_task(
        self, fw: Framework, agent: Agent, task: m.TaskInfo, available: Resources, batch: set[str]
    ) -> tuple[Resources | None, str | None]:
        tid = task.task_id.value
        err = validate_id(tid, "task id")
        if err:
            return None, err
        if tid in fw.tasks or tid in batch:
            return None, f"Task ID '{tid}' is already in use"
        if task.agent_id.value != agent.id:
            return None, f"Task uses agent {task.agent_id.value} but the offer is for agent {agent.id}"
        if (task.command is None) == (task.executor is None):
            return None, "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
        if task.command is not None and task.command.shell and not task.command.value:
            return None, "Task's CommandInfo has no 'value' to run"
        try:
            res = Resources.from_proto(task.resources)
            if task.executor is not None and task.executor.resources:
                ex_id = task.executor.executor_id.value
                if ex_id not in fw.executors.get(agent.id, {}):
                    res = res + Resources.from_proto(task.executor.resources)
        except (ResourceParseError, ValueError) as e:
            return None, f"Task uses invalid resources: {e}"
        if not res:
            return None, "Task uses no resources"
        if not available.contains(res):
            return None, f"Task uses more resources ({res}) than available ({available})"
        return res, None

    def _launch(
        self, fw: Framework, agent: Agent | None, role: str, op: m.Operation, available: Resources, now: float
    ) -> Resources:
        if op.type == "LAUNCH":
            tasks = op.launch.task_infos if op.launch else []
            executor = None
        else:
            if op.launch_group is None:
                return available
            tasks = op.launch_group.task_group.tasks
            executor = op.launch_group.executor
        if agent is None or not agent.connected:
            reason = "REASON_AGENT_DISCONNECTED" if agent else "REASON_AGENT_REMOVED"
            self._drop_tasks(fw, tasks, reason, "Agent is not connected", now)
            return available
        accepted: list[tuple[m.TaskInfo, Resources]] = []
        batch: set[str] = set()
        group_error: str | None = None
        for task in tasks:
            if executor is not None and task.executor is None:
                task.executor = executor
            res, err = self._validate_task(fw, agent, task, available, batch)
            if err is not None:
                if executor is not None:
                    group_error = err
                    break
                log.info("task invalid framework=%s task=%s: %s", fw.id, task.task_id.value, err)
                self._task_error(fw, agent, task, "REASON_TASK_INVALID", err, now)
                continue
            assert res is not None
            available = available - res
            batch.add(task.task_id.value)
            accepted.append((task, res))
        if group_error is not None:
            # A task group is delivered atomically: one bad task fails them all.
            for task in tasks:
                self._task_error(fw, agent, task, "REASON_TASK_GROUP_INVALID", group_error, now)
            return available + sum((r for _, r in accepted), Resources())
        for task, _ in accepted:
            if task.executor is not None:
                fw.executors.setdefault(agent.id, {})[task.executor.executor_id.value] = task.executor
        for task, res in accepted:
            tid = task.task_id.value
            t = Task(
                id=tid,
                framework_id=fw.id,
                agent_id=agent.id,
                name=task.name,
                role=role,
                resources=res,
                info=task,
                executor_id=task.executor.executor_id.value if task.executor else None,
            )
            t.statuses.append(("TASK_STAGING", now))
            fw.tasks[tid] = t
            agent.tasks.add((fw.id, tid))
            self.metrics["master/messages_launch_tasks"] += 1
            log.debug("task launching framework=%s agent=%s task=%s", fw.id, agent.id, tid)
        if executor is None:
            for task, _ in accepted:
                self.out.append(ToAgent(agent.id, ch.RunTask(agent_id=agent.id, framework=fw.info, task=task)))
        elif accepted:
            self.out.append(
                ToAgent(
                    agent.id,
                    ch.RunTask(
                        agent_id=agent.id,
                        framework=fw.info,
                        executor=executor,
                        task_group=[t for t, _ in accepted],
                    ),
                )
            )
        return available

    def _drop_tasks(self, fw: Framework, tasks: list[m.TaskInfo], reason: str, message: str, now: float) -> None:
        """Tasks that never reached an agent: TASK_DROPPED (TASK_LOST for frameworks that are
        not partition aware)."""
        state = self._lost_state(fw, "TASK_DROPPED")
        for task in tasks:
            self._send_update(
                fw, _status(task.task_id.value, state, agent_id=task.agent_id.value, reason=reason, message=message, now=now)
            )
            self.metrics["master/tasks_dropped" if fw.partition_aware else "master/tasks_lost"] += 1

    def _task_error(self, fw: Framework, agent: Agent, task: m.TaskInfo, reason: str, message: str, now: float) -> None:
        self.metrics["master/tasks_error"] += 1
        self._send_update(
            fw, _status(task.task_id.value, "TASK_ERROR", agent_id=agent.id, reason=reason, message=message, now=now)
        )

    def revive(self, framework_id: str, roles: list[str] | None) -> None:
        fw = self.framework(framework_id)
        roles = roles or None
        if roles is None:
            fw.suppressed_roles.clear()
        else:
            fw.suppressed_roles.difference_update(roles)
        self.allocator.revive(fw.id, roles)
        self.wants_allocation = True
        self.version += 1

    def suppress(self, framework_id: str, roles: list[str] | None) -> None:
        fw = self.framework(framework_id)
        roles = roles or None
        fw.suppressed_roles.update(roles or fw.roles)
        self.allocator.suppress(fw.id, roles)
        self.version += 1

    # ------------------------------------------------------------------ tasks
    def find_task(self, task_id: str, framework_id: str | None = None) -> Task | None:
        if framework_id is not None:
            fw = self.frameworks.get(framework_id)
            return fw.tasks.get(task_id) if fw else None
        for fw in self.frameworks.values():
            t = fw.tasks.get(task_id)
            if t is not None:
                return t
        return None

    def kill(self, framework_id: str, kill: m.Kill, now: float) -> None:
        fw = self.framework(framework_id)
        self._kill_task(fw, kill.task_id.value, kill.kill_policy, now)

    def _kill_task(self, fw: Framework, task_id: str, policy: m.KillPolicy | None, now: float) -> bool:
        task = fw.tasks.get(task_id)
        if task is None:
            # Mesos: killing an unknown task answers TASK_LOST (TASK_UNKNOWN if partition aware).
            self._send_update(
                fw,
                _status(
                    task_id,
                    self._lost_state(fw, "TASK_UNKNOWN"),
                    reason="REASON_RECONCILIATION",
                    message="Attempted to kill an unknown task",
                    now=now,
                ),
            )
            return False
        if task.state in m.TERMINAL_STATES:
            return True
        log.info("task kill requested framework=%s agent=%s task=%s", fw.id, task.agent_id, task_id)
        self.out.append(
            ToAgent(
                task.agent_id,
                ch.KillTask(agent_id=task.agent_id, framework_id=fw.id, task_id=task_id, kill_policy=policy),
            )
        )
        return True

    def operator_kill(self, task_id: str, now: float) -> Task | None:
        for fw in self.frameworks.values():
            if task_id in fw.tasks:
                self._kill_task(fw, task_id, None, now)
                return fw.tasks[task_id]
        return None

    def shutdown_executor(self, framework_id: str, call: m.Shutdown) -> None:
        fw = self.framework(framework_id)
        self.out.append(
            ToAgent(
                call.agent_id.value,
                ch.ShutdownExecutor(
                    agent_id=call.agent_id.value, framework_id=fw.id, executor_id=call.executor_id.value
                ),
            )
        )

    def acknowledge(self, framework_id: str, ack: m.Acknowledge, now: float) -> None:
        fw = self.framework(framework_id)
        if len(ack.uuid) != 16:
            raise CallError(400, "Not a valid UUID: 'uuid' must be 16 bytes")
        task = fw.tasks.get(ack.task_id.value)
        if task is not None and task.unacked is not None and task.unacked.uuid == ack.uuid:
            task.unacked = None
            if task.state in m.TERMINAL_STATES:
                self._complete_task(fw, task)
        agent_id = ack.agent_id.value
        if agent_id in self.agents:
            self.out.append(
                ToAgent(
                    agent_id,
                    ch.AckUpdate(agent_id=agent_id, framework_id=fw.id, task_id=ack.task_id.value, uuid=ack.uuid),
                )
            )

    def _complete_task(self, fw: Framework, task: Task) -> None:
        fw.tasks.pop(task.id, None)
        fw.completed_tasks.append(task)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.discard((fw.id, task.id))
        self.version += 1

    def _release_task(self, fw: Framework | None, task: Task) -> None:
        if task.resources_released:
            return
        task.resources_released = True
        if task.agent_id in self.agents:
            self.allocator.recover(task.framework_id, task.agent_id, task.resources, role=task.role)
            self.wants_allocation = True

    def reconcile(self, framework_id: str, rec: m.Reconcile, now: float) -> None:
        fw = self.framework(framework_id)
        if not rec.tasks:
            for task in fw.tasks.values():
                if task.state not in m.TERMINAL_STATES or task.unacked is not None:
                    self._send_update(fw, self._reconciled(task, now))
            return
        for item in rec.tasks:
            tid = item.task_id.value
            task = fw.tasks.get(tid)
            if task is None:
                done = next((t for t in reversed(fw.completed_tasks) if t.id == tid), None)
                if done is not None:
                    self._send_update(fw, self._reconciled(done, now))
                    continue
                agent_id = item.agent_id.value if item.agent_id else None
                if agent_id is not None and agent_id in self.agents and not self.agents[agent_id].connected:
                    continue  # agent transitioning: Mesos sends nothing yet
                state = self._lost_state(fw, "TASK_UNKNOWN")
                self._send_update(
                    fw,
                    _status(
                        tid,
                        state,
                        agent_id=agent_id,
                        reason="REASON_RECONCILIATION",
                        message="Reconciliation: task is unknown",
                        now=now,
                    ),
                )
            else:
                self._send_update(fw, self._reconciled(task, now))

    def _reconciled(self, task: Task, now: float) -> m.TaskStatus:
        latest = task.latest
        return m.TaskStatus(
            task_id=m.ID(value=task.id),
            state=task.state,  # type: ignore[arg-type]
            source="SOURCE_MASTER",
            reason="REASON_RECONCILIATION",
            message="Reconciliation: latest task status",
            agent_id=m.ID(value=task.agent_id),
            executor_id=m.ID(value=task.executor_id) if task.executor_id else None,
            timestamp=latest.timestamp if latest and latest.timestamp else now,
            healthy=latest.healthy if latest else None,
        )

    def framework_message(self, framework_id: str, msg: m.Message) -> None:
        fw = self.framework(framework_id)
        agent_id = msg.agent_id.value
        if agent_id not in self.agents:
            log.info("framework message to unknown agent dropped framework=%s agent=%s", fw.id, agent_id)
            return
        self.out.append(
            ToAgent(
                agent_id,
                ch.FrameworkToExecutor(
                    agent_id=agent_id, framework_id=fw.id, executor_id=msg.executor_id.value, data=msg.data
                ),
            )
        )

    # ------------------------------------------------------------------ agents
    def register_agent(self, reg: ch.RegisterAgent, channel: Any, now: float) -> Agent | None:
        try:
            total = Resources.from_proto(reg.resources)
        except (ResourceParseError, ValueError) as e:
            self.out.append(ToChannel(channel, ch.Refused(key=reg.key, message=f"Invalid resources: {e}")))
            return None
        self.version += 1
        aid = reg.agent_id
        agent = self.agents.get(aid) if aid else None
        if agent is not None:
            # Re-registration over a new channel (agent restart or reconnect).
            same_channel = agent.channel is channel
            agent.channel = channel
            agent.key = reg.key
            agent.connected = True
            agent.active = True
            agent.disconnect_deadline = None
            agent.reregistered_time = now
            agent.hostname, agent.port = reg.hostname, reg.port
            if agent.total != total:
                agent.total = total
                agent.resources_proto = reg.resources
                self.allocator.update_agent(agent.id, total)
            self.allocator.activate_agent(agent.id)
            self.metrics["master/slave_reregistrations"] += 1
            log.info("agent re-registered agent=%s hostname=%s port=%d", agent.id, agent.hostname, agent.port)
            self._persist_agent(agent)
            self._reconcile_agent_tasks(agent, reg.tasks, now, same_channel=same_channel)
        else:
            if aid is None or validate_id(aid, "agent id") is not None:
                aid = f"{self.master_id}-S{self._next_agent}"
                self._next_agent += 1
            agent = Agent(
                id=aid,
                hostname=reg.hostname,
                port=reg.port,
                total=total,
                resources_proto=reg.resources,
                attributes=reg.attributes,
                registered_time=now,
                channel=channel,
                key=reg.key,
                version=reg.version,
            )
            self.agents[aid] = agent
            self.removed_agent_ids.discard(aid)
            self.allocator.add_agent(aid, total, hostname=reg.hostname, attributes=agent.attribute_map())
            self.metrics["master/slave_registrations"] += 1
            self._persist_agent(agent)
            log.info("agent registered agent=%s hostname=%s port=%d resources=%s", aid, reg.hostname, reg.port, total)
            self._reconcile_agent_tasks(agent, reg.tasks, now)
        self.out.append(
            ToChannel(channel, ch.AgentRegistered(key=reg.key, agent_id=agent.id, master_id=self.master_id))
        )
        self.wants_allocation = True
        return agent

    def _persist_agent(self, agent: Agent) -> None:
        self.registry.put_agent(
            AgentRecord(agent.id, agent.hostname, agent.port, agent.resources_proto, agent.attributes, agent.registered_time)
        )

    def recover(self, now: float) -> None:
        """Load the registry after a master (re)start.

        Frameworks come back disconnected with their failover deadline (the full
        ``failover_timeout`` from now if they were connected when the master died); agents come
        back disconnected until they re-register and report their tasks, or are removed after
        ``agent_reregister_timeout``.
        """
        self.removed_framework_ids |= self.registry.removed_framework_ids()
        for rec in self.registry.frameworks():
            info = rec.info
            fw = Framework(id=rec.id, info=info, registered_time=rec.registered_time, connected=False, active=False)
            fw.failover_deadline = rec.failover_deadline if rec.failover_deadline is not None else now + info.failover_timeout
            self.frameworks[rec.id] = fw
            self.allocator.add_framework(rec.id, fw.roles, gpu_aware=info.has_capability("GPU_RESOURCES"), active=False)
        for rec in self.registry.agents():
            try:
                total = Resources.from_proto(rec.resources)
            except (ResourceParseError, ValueError):
                continue
            agent = Agent(
                id=rec.id, hostname=rec.hostname, port=rec.port, total=total, resources_proto=rec.resources,
                attributes=rec.attributes, registered_time=rec.registered_time, connected=False,
                disconnect_deadline=now + self.agent_reregister_timeout,
            )
            self.agents[rec.id] = agent
            self.allocator.add_agent(rec.id, total, hostname=rec.hostname, attributes=agent.attribute_map())
            self.allocator.deactivate_agent(rec.id)
        if self.frameworks or self.agents:
            self.version += 1
            log.info("registry recovered frameworks=%d agents=%d", len(self.frameworks), len(self.agents))

    def _reconcile_agent_tasks(
        self, agent: Agent, reports: list[ch.TaskReport], now: float, same_channel: bool = True
    ) -> None:
        """Match the agent's running tasks with what the master knows.

        Tasks the master forgot (it failed over) are re-adopted; tasks the master already
        declared lost are killed so nothing runs that no framework knows about; tasks the
        master thought were on the agent but that it no longer reports become LOST.
        """
        reported: set[tuple[str, str]] = set()
        for rep in reports:
            key = (rep.framework_id, rep.task.task_id.value)
            reported.add(key)
            fw = self.frameworks.get(rep.framework_id)
            if rep.framework_id in self.removed_framework_ids:
                self.out.append(ToAgent(agent.id, ch.ShutdownFramework(agent_id=agent.id, framework_id=rep.framework_id)))
                continue
            if fw is None and rep.framework is not None:
                # The master failed over: re-create the framework, disconnected, until it re-subscribes.
                info = rep.framework
                fw = Framework(id=rep.framework_id, info=info, registered_time=now, connected=False, active=False)
                fw.failover_deadline = now + max(info.failover_timeout, 0.0)
                self.frameworks[fw.id] = fw
                self.allocator.add_framework(fw.id, fw.roles, gpu_aware=info.has_capability("GPU_RESOURCES"), active=False)
            if fw is None:
                continue
            task = fw.tasks.get(rep.task.task_id.value)
            if task is None:
                if any(t.id == rep.task.task_id.value for t in fw.completed_tasks):
                    self.out.append(
                        ToAgent(agent.id, ch.KillTask(agent_id=agent.id, framework_id=fw.id, task_id=rep.task.task_id.value))
                    )
                    continue
                try:
                    res = Resources.from_proto(rep.task.resources)
                except (ResourceParseError, ValueError):
                    res = Resources()
                role = fw.roles[0]
                task = Task(
                    id=rep.task.task_id.value,
                    framework_id=fw.id,
                    agent_id=agent.id,
                    name=rep.task.name,
                    role=role,
                    resources=res,
                    info=rep.task,
                    executor_id=rep.executor_id,
                    state=rep.state,
                )
                task.statuses.append((rep.state, now))
                fw.tasks[task.id] = task
                agent.tasks.add(key)
                if rep.state not in m.TERMINAL_STATES:
                    self.allocator.add_allocation(fw.id, role, agent.id, res)
                else:
                    task.resources_released = True
            elif rep.state != task.state and task.state not in m.TERMINAL_STATES and rep.state not in m.TERMINAL_STATES:
                task.state = rep.state
        for fid, tid in list(agent.tasks):
            if (fid, tid) in reported:
                continue
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if fw is None or task is None or task.state in m.TERMINAL_STATES:
                continue
            if same_channel and task.state == "TASK_STAGING" and len(task.statuses) == 1 and task.statuses[0][1] >= now - 5:
                # Launch still in flight towards the agent on this channel. (Over a new channel
                # it went down the dead one and will never arrive.)
                continue
            self._master_terminal(fw, task, self._lost_state(fw, "TASK_GONE"), "REASON_AGENT_RESTARTED",
                                  "Task was not found on the agent after it re-registered", now)

    def _master_terminal(self, fw: Framework, task: Task, state: str, reason: str, message: str, now: float) -> None:
        task.state = state
        task.statuses.append((state, now))
        status = _status(task.id, state, agent_id=task.agent_id, executor_id=task.executor_id,
                         reason=reason, message=message, now=now)
        task.latest = status
        self.metrics["master/tasks_lost" if state == "TASK_LOST" else "master/tasks_dropped"] += 1
        self._release_task(fw, task)
        self._send_update(fw, status)
        self._complete_task(fw, task)
        log.info("task %s framework=%s agent=%s task=%s reason=%s", state, fw.id, task.agent_id, task.id, reason)

    def channel_lost(self, channel: Any, now: float) -> None:
        """The channel of an agent process broke: its agents are disconnected, not gone yet."""
        for agent in self.agents.values():
            if agent.channel is channel and agent.connected:
                self.version += 1
                agent.connected = False
                agent.channel = None
                agent.disconnect_deadline = now + self.agent_reregister_timeout
                self.allocator.deactivate_agent(agent.id)
                for _oid, offer in list(self.offers.items()):
                    if offer.agent_id == agent.id:
                        self._rescind(offer, now)
                log.info("agent disconnected agent=%s deadline=%.0fs", agent.id, self.agent_reregister_timeout)

    def remove_agent(self, agent_id: str, now: float, reason: str, message: str) -> None:
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return
        self.version += 1
        self.removed_agent_ids.add(agent_id)
        self.registry.remove_agent(agent_id)
        self.metrics["master/slave_removals"] += 1
        log.info("agent removed agent=%s reason=%s tasks=%d", agent_id, reason, len(agent.tasks))
        for _oid, offer in list(self.offers.items()):
            if offer.agent_id == agent_id:
                self._rescind(offer, now)
        notified: set[str] = set()
        for fid, tid in list(agent.tasks):
            fw = self.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if fw is None or task is None:
                continue
            if task.state in m.TERMINAL_STATES:
                if task.unacked is None:
                    self._complete_task(fw, task)
                continue
            task.resources_released = True
            self._master_terminal(fw, task, self._lost_state(fw, "TASK_GONE"), reason, message, now)
            notified.add(fid)
        for fw in self.frameworks.values():
            fw.executors.pop(agent_id, None)
            if fw.connected:
                self._emit(fw, m.Event(type="FAILURE", failure=m.Failure(agent_id=m.ID(value=agent_id))))
        self.allocator.remove_agent(agent_id)
        self.wants_allocation = True

    def status_update(self, upd: ch.StatusUpdate, now: float) -> None:
        fw = self.frameworks.get(upd.framework_id)
        status = upd.status
        status.agent_id = m.ID(value=upd.agent_id)
        if fw is None:
            if upd.framework_id in self.removed_framework_ids and status.uuid:
                # Nobody will ever acknowledge it: stop the agent retrying.
                self.out.append(
                    ToAgent(
                        upd.agent_id,
                        ch.AckUpdate(
                            agent_id=upd.agent_id, framework_id=upd.framework_id,
                            task_id=status.task_id.value, uuid=status.uuid,
                        ),
                    )
                )
            self.metrics["master/invalid_status_updates"] += 1
            return
        self.metrics["master/messages_status_update"] += 1
        self.metrics["master/valid_status_updates"] += 1
        self.version += 1
        task = fw.tasks.get(status.task_id.value)
        if task is None:
            done = next((t for t in reversed(fw.completed_tasks) if t.id == status.task_id.value), None)
            if done is not None and status.uuid:
                # The agent resends an update the framework already acknowledged (it died before
                # the ACK reached it): answer for the framework, so every task has exactly one
                # terminal update at its framework.
                self.out.append(
                    ToAgent(
                        upd.agent_id,
                        ch.AckUpdate(agent_id=upd.agent_id, framework_id=fw.id, task_id=done.id, uuid=status.uuid),
                    )
                )
                return
            # Unknown: forward so the framework can acknowledge it.
            self._send_update(fw, status)
            return
        if task.unacked is not None and task.unacked.uuid == status.uuid:
            self._send_update(fw, status)  # agent retry of the same update
            return
        if task.state in m.TERMINAL_STATES and status.state not in m.TERMINAL_STATES:
            # A late non-terminal update (e.g. RUNNING after the master declared LOST): ignore state.
            pass
        elif task.state not in m.TERMINAL_STATES or status.state in m.TERMINAL_STATES:
            was_terminal = task.state in m.TERMINAL_STATES
            task.state = status.state
            task.statuses.append((status.state, status.timestamp or now))
            task.latest = status
            if status.state in m.TERMINAL_STATES and not was_terminal:
                key = "master/" + status.state.removeprefix("TASK_").lower().replace("gone_by_operator", "gone")
                key = key.replace("master/", "master/tasks_")
                self.metrics[key] = self.metrics.get(key, 0) + 1
                self._release_task(fw, task)
                log.info("task %s framework=%s agent=%s task=%s message=%s", status.state, fw.id,
                         upd.agent_id, task.id, status.message or "")
        if status.uuid:
            task.unacked = status
        self._send_update(fw, status)

    def executor_exited(self, msg: ch.ExecutorExited) -> None:
        fw = self.frameworks.get(msg.framework_id)
        if fw is None:
            return
        fw.executors.get(msg.agent_id, {}).pop(msg.executor_id, None)
        self._emit(
            fw,
            m.Event(
                type="FAILURE",
                failure=m.Failure(
                    agent_id=m.ID(value=msg.agent_id), executor_id=m.ID(value=msg.executor_id), status=msg.status
                ),
            ),
        )

    def executor_message(self, msg: ch.ExecutorToFramework) -> None:
        fw = self.frameworks.get(msg.framework_id)
        if fw is None:
            return
        self._emit(
            fw,
            m.Event(
                type="MESSAGE",
                message=m.EventMessage(
                    agent_id=m.ID(value=msg.agent_id), executor_id=m.ID(value=msg.executor_id), data=msg.data
                ),
            ),
        )

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Expire framework failover deadlines and agents that did not come back."""
        for fw in list(self.frameworks.values()):
            if not fw.connected and fw.failover_deadline is not None and now >= fw.failover_deadline:
                self.remove_framework(fw.id, now, reason="failover timeout expired")
        for agent in list(self.agents.values()):
            if not agent.connected and agent.disconnect_deadline is not None and now >= agent.disconnect_deadline:
                self.remove_agent(agent.id, now, "REASON_AGENT_REMOVED",
                                  "Agent stopped answering and was removed")


def _operation_tasks(op: m.Operation) -> list[m.TaskInfo]:
    if op.type == "LAUNCH" and op.launch is not None:
        return op.launch.task_infos
    if op.type == "LAUNCH_GROUP" and op.launch_group is not None:
        return op.launch_group.task_group.tasks
    return []


def _agent_url(agent: Agent) -> dict[str, Any]:
    return {"scheme": "http", "address": {"hostname": agent.hostname, "ip": agent.hostname, "port": agent.port}, "path": "/slave(1)"}


def new_uuid() -> bytes:
    return uuidlib.uuid4().bytes
