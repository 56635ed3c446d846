"""The v1 operator API's answers (``master.proto`` ``Response.Get*``), built from the records
as the typed documents of :mod:`mesos_nb.protocol.operator_state`.

Pure functions of the core's records (:mod:`mesos_nb.master.model`), shared by the
request/response calls (:mod:`.operator_api`), the SUBSCRIBE stream (:mod:`.operator_stream`)
and the incremental ``GET_STATE`` (:mod:`.state_render_v1`), so a task looks the same in
GET_TASKS, SUBSCRIBED and TASK_ADDED. Unset fields are ``UNSET`` (omitted), as Mesos'
protobuf-to-JSON writer omits them. A nested message may be held as its builtins (the dict
``m.to_builtins`` gives): it encodes the same, and the docs declare its type for readers.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET

from ..protocol import messages as m
from ..protocol import operator_state as ops
from ..protocol.resources import Resources
from ..protocol.version import VERSION
from .model import Agent, Framework, Task

AGENT_CAPABILITIES = ("MULTI_ROLE", "HIERARCHICAL_ROLE")
_CAPABILITIES = [m.Capability(type=c) for c in AGENT_CAPABILITIES]


def ns(seconds: float) -> m.DurationInfo:
    return m.DurationInfo(nanoseconds=int(seconds * 1e9))


def _id(value: str) -> m.ID:
    return m.ID(value=value)


def _resources(r: Resources) -> list[Any]:
    return m.to_builtins(r.to_proto())


def _set(value: Any) -> Any:
    """A message field as protobuf-JSON writes it: omitted when unset."""
    return UNSET if value is None else m.to_builtins(value)


def reported_statuses(task: Task) -> list[tuple[str, float]]:
    """The updates the task really had: the master's own launch-time TASK_STAGING is no status."""
    return [(s, ts) for s, ts in task.statuses if s != "TASK_STAGING"]


def container_status(task: Task) -> Any:
    """The task's container, as the agent reported it (the same for every update of a task)."""
    latest = task.latest
    return latest.container_status if latest is not None else None


def task_status(task: Task, state: str, timestamp: float) -> dict[str, Any]:
    latest = task.latest
    if latest is not None and latest.state == state and (latest.timestamp or timestamp) == timestamp:
        d = m.to_builtins(latest)
        d.pop("uuid", None)
        if "data" in d:
            d.pop("data")
        return d
    d = {"task_id": {"value": task.id}, "state": state, "timestamp": timestamp, "agent_id": {"value": task.agent_id}}
    cs = container_status(task)
    if cs is not None:
        d["container_status"] = cs
    if task.executor_id:
        d["executor_id"] = {"value": task.executor_id}
    return d


def task(t: Task) -> Any:
    """The task as a :class:`~mesos_nb.protocol.operator_state.TaskDoc`."""
    info, latest = t.info, t.latest
    return ops.TaskDoc(
        name=t.name, task_id=_id(t.id), framework_id=_id(t.framework_id), agent_id=_id(t.agent_id),
        state=t.state, resources=_resources(t.resources),
        statuses=[task_status(t, s, ts) for s, ts in reported_statuses(t)],
        executor_id=_id(t.executor_id) if t.executor_id else UNSET,
        labels=_set(getattr(info, "labels", None)), discovery=_set(getattr(info, "discovery", None)),
        container=_set(getattr(info, "container", None)), health_check=_set(getattr(info, "health_check", None)),
        status_update_state=latest.state if latest is not None and latest.uuid else UNSET,
    )


def task_added(t: Task) -> Any:
    """The task as SUBSCRIBE's ``TASK_ADDED`` announces it: as launched, its updates to follow."""
    return msgspec.structs.replace(task(t), state="TASK_STAGING", statuses=[])


def agent(a: Agent, allocated: Resources, offered: Resources, **drain: Any) -> Any:
    """The agent as a :class:`~mesos_nb.protocol.operator_state.AgentDoc`; ``drain``: its
    :func:`drain_fields`."""
    info = ops.AgentInfoDoc(hostname=a.hostname, port=a.port, resources=m.to_builtins(a.resources), id=_id(a.id),
                           attributes=m.to_builtins(a.attributes) if a.attributes else UNSET)
    return ops.AgentDoc(
        agent_info=info, active=a.connected and a.active, deactivated=not a.active, version=a.version or VERSION,
        pid=a.pid, registered_time=ns(a.registered_time), total_resources=_resources(a.total),
        allocated_resources=_resources(allocated), offered_resources=_resources(offered),
        capabilities=_CAPABILITIES, reregistered_time=ns(a.reregistered_time) if a.reregistered_time else UNSET,
        **drain,
    )


def framework(fw: Framework, allocated: Resources, offered: Resources) -> Any:
    """The framework as a :class:`~mesos_nb.protocol.operator_state.FrameworkDoc`."""
    info = m.to_builtins(fw.info)
    info.setdefault("id", {"value": fw.id})
    return ops.FrameworkDoc(
        framework_info=info, active=fw.active, connected=fw.connected, recovered=False,
        registered_time=ns(fw.registered_time), allocated_resources=_resources(allocated),
        offered_resources=_resources(offered),
        reregistered_time=ns(fw.reregistered_time) if fw.reregistered_time else UNSET,
        unregistered_time=ns(fw.unregistered_time) if fw.unregistered_time else UNSET,
    )


def executors(fw: Framework) -> list[Any]:
    """The framework's executors as :class:`~mesos_nb.protocol.operator_state.ExecutorDoc`."""
    out = []
    for agent_id, exs in fw.executors.items():
        for ex in exs.values():
            info = m.to_builtins(ex)
            info.setdefault("framework_id", {"value": fw.id})
            out.append(ops.ExecutorDoc(executor_info=info, agent_id=_id(agent_id)))
    return out


def drain_fields(core: Any, agent_id: str) -> dict[str, Any]:
    """An agent's ``drain_info`` and ``estimated_drain_start_time`` (kept by the core's
    maintenance state, not the agent record); empty when it is not draining."""
    drain = core.maintenance.drains.get(agent_id)
    if drain is None:
        return {}
    started = core.maintenance.drain_started.get(agent_id)
    return {"drain_info": drain} if started is None else {"drain_info": drain, "estimated_drain_start_time": ns(started)}


def drain_key(core: Any, agent_id: str) -> tuple[Any, ...]:
    """What an agent's rendered drain fields depend on (for the renderers' per-agent caches):
    the drain record is changed in place, so its value, not its identity, is the key."""
    drain = core.maintenance.drains.get(agent_id)
    return () if drain is None else (repr(drain), core.maintenance.drain_started.get(agent_id))


class StateView:
    """One pass over the core's records, giving every GET_* answer."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self._allocated: dict[str, Resources] = {}
        self._fw_allocated: dict[str, Resources] = {}
        for fw in core.frameworks.values():
            total = Resources()
            held = [(t.agent_id, t.resources) for t in fw.tasks.values() if t.state not in m.TERMINAL_STATES]
            for agent_id, res in held + fw.executor_usage():  # tasks and the executors' own
                total = total + res
                self._allocated[agent_id] = self._allocated.get(agent_id, Resources()) + res
            self._fw_allocated[fw.id] = total
        self._offered: dict[str, Resources] = {}
        self._fw_offered: dict[str, Resources] = {}
        for o in core.offers.values():
            self._offered[o.agent_id] = self._offered.get(o.agent_id, Resources()) + o.resources
            self._fw_offered[o.framework_id] = self._fw_offered.get(o.framework_id, Resources()) + o.resources

    def agent(self, a: Agent) -> Any:
        return agent(a, self._allocated.get(a.id, Resources()), self._offered.get(a.id, Resources()),
                     **drain_fields(self.core, a.id))

    def framework(self, fw: Framework) -> Any:
        return framework(fw, self._fw_allocated.get(fw.id, Resources()), self._fw_offered.get(fw.id, Resources()))

    def get_agents(self) -> Any:
        return ops.GetAgentsDoc(agents=[self.agent(a) for a in self.core.agents.values()], recovered_agents=[])

    def get_frameworks(self) -> Any:
        core = self.core
        return ops.GetFrameworksDoc(
            frameworks=[self.framework(fw) for fw in core.frameworks.values()],
            completed_frameworks=[framework(fw, Resources(), Resources()) for fw in core.completed_frameworks],
        )

    def get_executors(self) -> Any:
        return ops.GetExecutorsDoc(executors=[e for fw in self.core.frameworks.values() for e in executors(fw)])

    def get_tasks(self) -> Any:
        core = self.core
        tasks, unreachable, completed = [], [], []
        for fw in core.frameworks.values():
            for t in fw.tasks.values():  # terminal but unacknowledged tasks are still `tasks`, as in Mesos
                (unreachable if t.state == "TASK_UNREACHABLE" else tasks).append(task(t))
            completed.extend(task(t) for t in fw.completed_tasks)
        for fw in core.completed_frameworks:
            completed.extend(task(t) for t in list(fw.tasks.values()) + list(fw.completed_tasks))
        return ops.GetTasksDoc(tasks=tasks, unreachable_tasks=unreachable, completed_tasks=completed)

    def get_state(self) -> Any:
        return ops.GetStateDoc(get_tasks=self.get_tasks(), get_executors=self.get_executors(),
                              get_frameworks=self.get_frameworks(), get_agents=self.get_agents())

    def get_roles(self, weights: dict[str, float]) -> Any:
        """GET_ROLES: every role a framework is subscribed to or a weight is set for, by name."""
        frameworks: dict[str, list[m.ID]] = {}
        used: dict[str, Resources] = {}
        for fw in self.core.frameworks.values():
            for role in fw.roles:
                frameworks.setdefault(role, []).append(_id(fw.id))
                used.setdefault(role, Resources())
            for t in fw.tasks.values():
                if t.state not in m.TERMINAL_STATES and t.role in used:
                    used[t.role] = used[t.role] + t.resources
        return ops.GetRolesDoc(roles=[
            ops.RoleDoc(name=name, weight=weights.get(name, 1.0), frameworks=frameworks.get(name) or UNSET,
                       resources=_resources(used.get(name, Resources())))
            for name in sorted({*frameworks, *weights})])
