"""The v1 operator API's JSON shapes (``master.proto`` ``Response.Get*``), built from the records.

Pure functions of the core's records (:mod:`mesos_nb.master.model`), shared by the
request/response calls (:mod:`.operator_api`) and the SUBSCRIBE stream
(:mod:`.operator_stream`), so a task looks the same in GET_TASKS, SUBSCRIBED and TASK_ADDED.
Unset fields are omitted, as Mesos' protobuf-to-JSON writer omits them.
"""

from __future__ import annotations

from typing import Any

from ..protocol import messages as m
from ..protocol.resources import Resources
from ..protocol.version import VERSION
from .model import Agent, Framework, Task

AGENT_CAPABILITIES = ("MULTI_ROLE", "HIERARCHICAL_ROLE")


def ns(seconds: float) -> dict[str, int]:
    return {"nanoseconds": int(seconds * 1e9)}


def _id(value: str) -> dict[str, str]:
    return {"value": value}


def _resources(r: Resources) -> list[Any]:
    return m.to_builtins(r.to_proto())


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
    d = {"task_id": _id(task.id), "state": state, "timestamp": timestamp, "agent_id": _id(task.agent_id)}
    cs = container_status(task)
    if cs is not None:
        d["container_status"] = cs
    if task.executor_id:
        d["executor_id"] = _id(task.executor_id)
    return d


def task(t: Task) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": t.name,
        "task_id": _id(t.id),
        "framework_id": _id(t.framework_id),
        "agent_id": _id(t.agent_id),
        "state": t.state,
        "resources": _resources(t.resources),
        "statuses": [task_status(t, s, ts) for s, ts in reported_statuses(t)],
    }
    if t.executor_id:
        d["executor_id"] = _id(t.executor_id)
    info = t.info
    for key in ("labels", "discovery", "container", "health_check"):
        value = getattr(info, key, None)
        if value is not None:
            d[key] = m.to_builtins(value)
    if t.latest is not None and t.latest.uuid:
        d["status_update_state"] = t.latest.state
    return d


def agent(a: Agent, allocated: Resources, offered: Resources) -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": a.hostname,
        "port": a.port,
        "resources": m.to_builtins(a.resources),
        "id": _id(a.id),
    }
    if a.attributes:
        info["attributes"] = m.to_builtins(a.attributes)
    d: dict[str, Any] = {
        "agent_info": info,
        "active": a.connected and a.active,
        "deactivated": not a.active,
        "version": a.version or VERSION,
        "pid": a.pid,
        "registered_time": ns(a.registered_time),
        "total_resources": _resources(a.total),
        "allocated_resources": _resources(allocated),
        "offered_resources": _resources(offered),
        "capabilities": [{"type": c} for c in AGENT_CAPABILITIES],
    }
    if a.reregistered_time:
        d["reregistered_time"] = ns(a.reregistered_time)
    return d


def framework(fw: Framework, allocated: Resources, offered: Resources) -> dict[str, Any]:
    d: dict[str, Any] = {
        "framework_info": m.to_builtins(fw.info),
        "active": fw.active,
        "connected": fw.connected,
        "recovered": False,
        "registered_time": ns(fw.registered_time),
        "allocated_resources": _resources(allocated),
        "offered_resources": _resources(offered),
    }
    d["framework_info"].setdefault("id", _id(fw.id))
    if fw.reregistered_time:
        d["reregistered_time"] = ns(fw.reregistered_time)
    if fw.unregistered_time:
        d["unregistered_time"] = ns(fw.unregistered_time)
    return d


def executors(fw: Framework) -> list[dict[str, Any]]:
    out = []
    for agent_id, exs in fw.executors.items():
        for ex in exs.values():
            info = m.to_builtins(ex)
            info.setdefault("framework_id", _id(fw.id))
            out.append({"executor_info": info, "agent_id": _id(agent_id)})
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

    def agent(self, a: Agent) -> dict[str, Any]:
        d = agent(a, self._allocated.get(a.id, Resources()), self._offered.get(a.id, Resources()))
        d.update(drain_fields(self.core, a.id))
        return d

    def framework(self, fw: Framework) -> dict[str, Any]:
        return framework(fw, self._fw_allocated.get(fw.id, Resources()), self._fw_offered.get(fw.id, Resources()))

    def get_agents(self) -> dict[str, Any]:
        return {"agents": [self.agent(a) for a in self.core.agents.values()], "recovered_agents": []}

    def get_frameworks(self) -> dict[str, Any]:
        core = self.core
        return {
            "frameworks": [self.framework(fw) for fw in core.frameworks.values()],
            "completed_frameworks": [
                framework(fw, Resources(), Resources()) for fw in core.completed_frameworks
            ],
        }

    def get_executors(self) -> dict[str, Any]:
        return {"executors": [e for fw in self.core.frameworks.values() for e in executors(fw)]}

    def get_tasks(self) -> dict[str, Any]:
        core = self.core
        tasks, unreachable, completed = [], [], []
        for fw in core.frameworks.values():
            for t in fw.tasks.values():  # terminal but unacknowledged tasks are still `tasks`, as in Mesos
                (unreachable if t.state == "TASK_UNREACHABLE" else tasks).append(task(t))
            completed.extend(task(t) for t in fw.completed_tasks)
        for fw in core.completed_frameworks:
            completed.extend(task(t) for t in list(fw.tasks.values()) + list(fw.completed_tasks))
        return {"tasks": tasks, "unreachable_tasks": unreachable, "completed_tasks": completed}

    def get_state(self) -> dict[str, Any]:
        return {
            "get_tasks": self.get_tasks(),
            "get_executors": self.get_executors(),
            "get_frameworks": self.get_frameworks(),
            "get_agents": self.get_agents(),
        }

    def get_roles(self, weights: dict[str, float], raw: bool = False) -> dict[str, Any]:
        """GET_ROLES; with ``raw`` each role keeps its allocation as ``Resources`` (for v0 /roles)."""
        roles: dict[str, dict[str, Any]] = {}
        for fw in self.core.frameworks.values():
            for role in fw.roles:
                r = roles.setdefault(role, {"name": role, "weight": weights.get(role, 1.0), "frameworks": [],
                                            "_res": Resources()})
                r["frameworks"].append(_id(fw.id))
            for t in fw.tasks.values():
                if t.state not in m.TERMINAL_STATES and t.role in roles:
                    roles[t.role]["_res"] = roles[t.role]["_res"] + t.resources
        for role, w in weights.items():
            roles.setdefault(role, {"name": role, "weight": w, "frameworks": [], "_res": Resources()})
        out = []
        for name in sorted(roles):
            r = roles[name]
            res = r.pop("_res")
            r["resources"] = res if raw else _resources(res)
            if not r["frameworks"]:
                del r["frameworks"]
            out.append(r)
        return {"roles": out}
