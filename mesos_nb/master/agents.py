"""Agent lifecycle: registration and re-registration (with task reconciliation), channel
loss, removal, the re-registration deadline, and agents coming back from the registry.

Functions over :class:`~mesos_nb.master.state.MasterState`. An agent whose channel breaks is
disconnected, not gone: it has ``unreachable_timeout`` to come back (one recovered after a
master failover has ``agent_reregister_timeout``) before it is marked unreachable
(:mod:`.reachability`); an unreachable agent that re-registers gets its tasks back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..protocol import channel as ch
from ..protocol import messages as m
from ..protocol.resources import ResourceParseError, Resources
from . import frameworks, offers, partitions, reachability, tasks
from .effects import AgentRecord, RemoveAgent, SaveAgent, SaveAgentPrincipal, ToAgent, ToChannel
from .model import Agent, Framework, Task
from .slices import AGENT_SLICE, TASK_SLICE
from .state import MasterState, agent_record, lost_state
from .validation import validate_id

log = logging.getLogger("mesos_nb.master")


def register_agent(st: MasterState, reg: ch.RegisterAgent, channel: Any, now: float,
                   principal: str | None = None) -> Agent | None:
    try:
        total = Resources.from_proto(reg.resources)
    except (ResourceParseError, ValueError) as e:
        st.out.append(ToChannel(channel, ch.Refused(key=reg.key, message=f"Invalid resources: {e}")))
        return None
    st.version += 1
    aid = reg.agent_id
    if aid is not None and aid in st.gone:
        log.warning("agent refused: marked gone agent=%s hostname=%s", aid, reg.hostname)
        st.out.append(ToChannel(channel, ch.Refused(
            key=reg.key, message=f"Agent {aid} was marked gone by an operator and may not re-register")))
        return None
    readmitted = aid is not None and st.unreachable.pop(aid, None) is not None
    if readmitted:
        st.metrics["master/slaves_unreachable"] = len(st.unreachable)
        log.info("unreachable agent re-registering agent=%s hostname=%s tasks=%d", aid, reg.hostname, len(reg.tasks))
    agent = st.agents.get(aid) if aid else None
    if agent is not None:
        # Re-registration over a new channel (agent restart or reconnect).
        same_channel = agent.channel is channel
        agent.channel = channel
        agent.key = reg.key
        agent.connected = True
        agent.active = True
        agent.disconnect_deadline = None
        agent.reregistered_time = now
        agent.hostname, agent.port, agent.scheme = reg.hostname, reg.port, reg.scheme
        if agent.total != total:
            agent.total = total
            agent.resources = reg.resources
            st.allocator.update_agent(agent.id, total)
        st.allocator.activate_agent(agent.id)
        st.metrics["master/slave_reregistrations"] += 1
        log.info("agent re-registered agent=%s hostname=%s port=%d", agent.id, agent.hostname, agent.port)
        st.out.append(SaveAgent(agent_record(agent)))
        reconcile_agent_tasks(st, agent, reg.tasks, now, same_channel=same_channel)
        readopt_executors(st, agent, reg.executors, now)
    else:
        if aid is None or validate_id(aid, "agent id") is not None:
            aid = st.ids.agent()
        agent = Agent(
            id=aid,
            hostname=reg.hostname,
            port=reg.port,
            total=total,
            resources=reg.resources,
            attributes=reg.attributes,
            registered_time=now,
            channel=channel,
            key=reg.key,
            version=reg.version,
            scheme=reg.scheme,
        )
        st.agents[aid] = agent
        st.removed_agents.pop(aid, None)
        st.allocator.add_agent(aid, total, hostname=reg.hostname, attributes=agent.attribute_map())
        st.metrics["master/slave_registrations"] += 1
        st.out.append(SaveAgent(agent_record(agent)))
        log.info("agent registered agent=%s hostname=%s port=%d resources=%s", aid, reg.hostname, reg.port, total)
        reconcile_agent_tasks(st, agent, reg.tasks, now)
        readopt_executors(st, agent, reg.executors, now)
        if readmitted:
            reachability.forget_unreported(st, aid, now)
    if agent.id not in st.agent_principals:  # its owner from now on, across failovers (security.py checks)
        st.agent_principals[agent.id] = principal
        st.out.append(SaveAgentPrincipal(agent.id, principal))
    st.out.append(ToChannel(channel, ch.AgentRegistered(key=reg.key, agent_id=agent.id, master_id=st.master_id)))
    st.wants_allocation = True
    return agent


def recover(st: MasterState, records: list[AgentRecord], now: float) -> None:
    """Agents from the registry come back disconnected until they re-register and report their
    tasks, or are removed after ``agent_reregister_timeout``."""
    for rec in records:
        try:
            total = Resources.from_proto(rec.resources)
        except (ResourceParseError, ValueError):
            continue
        agent = Agent(
            id=rec.id, hostname=rec.hostname, port=rec.port, total=total, resources=rec.resources,
            attributes=rec.attributes, registered_time=rec.registered_time, connected=False,
            disconnect_deadline=now + st.agent_reregister_timeout,
        )
        st.agents[rec.id] = agent
        st.allocator.add_agent(rec.id, total, hostname=rec.hostname, attributes=agent.attribute_map())
        st.allocator.deactivate_agent(rec.id)


def reconcile_agent_tasks(
    st: MasterState, agent: Agent, reports: list[ch.TaskReport], now: float, same_channel: bool = True
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
        fw = st.frameworks.get(rep.framework_id)
        if rep.framework_id in st.removed_framework_ids:
            st.out.append(ToAgent(agent.id, ch.ShutdownFramework(agent_id=agent.id, framework_id=rep.framework_id)))
            continue
        if fw is None and rep.framework is not None:
            fw = frameworks.adopt(st, rep.framework_id, rep.framework, now)
        if fw is None:
            continue
        task = fw.tasks.get(rep.task.task_id.value)
        if task is None and reachability.readopt(st, fw, agent, rep, now):
            continue
        if task is None:
            if any(t.id == rep.task.task_id.value for t in fw.completed_tasks):
                st.out.append(
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
                st.allocator.add_allocation(fw.id, role, agent.id, res)
            else:
                task.resources_released = True
        elif rep.state != task.state and task.state not in m.TERMINAL_STATES and rep.state not in m.TERMINAL_STATES:
            task.state = rep.state
    for fid, tid in list(agent.tasks):
        if (fid, tid) in reported:
            continue
        fw = st.frameworks.get(fid)
        task = fw.tasks.get(tid) if fw else None
        if fw is None or task is None or task.state in m.TERMINAL_STATES:
            continue
        if same_channel and task.state == "TASK_STAGING" and len(task.statuses) == 1 and task.statuses[0][1] >= now - 5:
            # Launch still in flight towards the agent on this channel. (Over a new channel
            # it went down the dead one and will never arrive.)
            continue
        tasks.master_terminal(st, fw, task, lost_state(fw, "TASK_GONE"), "REASON_AGENT_RESTARTED",
                              "Task was not found on the agent after it re-registered", now)


def readopt_executors(st: MasterState, agent: Agent, reports: list[ch.ExecutorReport], now: float) -> None:
    """Custom executors this master does not know on the agent (it failed over): each holds
    its own resources until it ends, charged when it started, so they are allocated again
    here, also for an executor that has no task right now."""
    for rep in reports:
        if rep.framework_id in st.removed_framework_ids:
            continue  # its tasks' reports shut the framework down on the agent
        fw = st.frameworks.get(rep.framework_id)
        if fw is None and rep.framework is not None:
            fw = frameworks.adopt(st, rep.framework_id, rep.framework, now)
        ex_id = rep.executor.executor_id.value
        if fw is None or ex_id in fw.executors.get(agent.id, {}):
            continue
        try:
            own = Resources.from_proto(rep.executor.resources) if rep.executor.resources else Resources()
        except (ResourceParseError, ValueError):
            own = Resources()
        role = fw.roles[0]
        tasks.track_executor(fw, agent.id, rep.executor, {ex_id: own}, role)
        if own:
            st.allocator.add_allocation(fw.id, role, agent.id, own)
        log.info("executor re-adopted agent=%s framework=%s executor=%s resources=%s", agent.id, fw.id, ex_id, own)
        st.version += 1


def channel_lost(st: MasterState, channel: Any, now: float) -> None:
    """The channel of an agent process broke: its agents are disconnected, not gone yet."""
    for agent in st.agents.values():
        if agent.channel is channel:
            disconnect(st, agent, now)


def disconnect(st: MasterState, agent: Agent, now: float) -> None:
    """One agent of a broken channel (the shell does a big channel's agents in slices)."""
    if not agent.connected:
        return
    st.version += 1
    agent.connected = False
    agent.channel = None
    agent.disconnect_deadline = now + st.unreachable_timeout
    st.allocator.deactivate_agent(agent.id)
    offers.rescind_agent(st, agent.id, now)
    log.info("agent disconnected agent=%s unreachable_in=%.0fs", agent.id, st.unreachable_timeout)


def remove_agent(st: MasterState, agent_id: str, now: float, reason: str, message: str,
                 state: str | None = None) -> None:
    """Forget the agent; its live tasks end ``state`` (default: TASK_GONE, or TASK_LOST for a
    framework that is not partition aware)."""
    for _ in remove_agent_steps(st, agent_id, now, reason, message, state):
        pass


def remember_removed(st: MasterState, agent_id: str) -> None:
    """Keep a removed agent's id and owner; past ``max_removed_agents`` the oldest is forgotten
    with its owner (an id in the list is neither admitted nor unreachable: admitting pops it)."""
    st.removed_agents[agent_id] = None
    for old in partitions.drop_oldest(st.removed_agents, st.max_removed_agents):
        st.agent_principals.pop(old, None)


def remove_agent_steps(st: MasterState, agent_id: str, now: float, reason: str, message: str,
                       state: str | None = None) -> Iterator[None]:
    """:func:`remove_agent` as steps: forgotten at the first, its tasks ended a slice per
    step (an agent that shuts down running 10,000 tasks)."""
    agent = st.agents.pop(agent_id, None)
    if agent is None:
        return
    st.version += 1
    remember_removed(st, agent_id)
    st.out.append(RemoveAgent(agent_id))
    st.metrics["master/slave_removals"] += 1
    log.info("agent removed agent=%s reason=%s tasks=%d", agent_id, reason, len(agent.tasks))

    def gone(fw: Framework, task: Task) -> None:
        task.resources_released = True
        tasks.master_terminal(st, fw, task, state or lost_state(fw, "TASK_GONE"), reason, message, now)

    yield from reachability.release_agent_steps(st, agent, now, gone)


EXPIRED = "did not re-register in time"


def due(st: MasterState, now: float) -> list[Agent]:
    """Disconnected agents whose re-registration deadline has passed."""
    return [a for a in st.agents.values()
            if not a.connected and a.disconnect_deadline is not None and now >= a.disconnect_deadline]


def expire_steps(st: MasterState, now: float) -> Iterator[None]:
    """Disconnected agents whose re-registration deadline has passed become unreachable, in
    steps (a broken channel's agents all come due at the same tick, see :func:`lose_steps`);
    one that re-registered meanwhile is left alone."""
    return lose_steps(st, due(st, now), lambda a: not a.connected,
                      lambda a: reachability.mark_unreachable_steps(st, a.id, now, EXPIRED))


def lose_steps(st: MasterState, todo: list[Agent], still: Callable[[Agent], bool],
               lose: Callable[[Agent], Iterator[None] | None]) -> Iterator[None]:
    """``lose`` (mark unreachable, disconnect: its steps, if any) each agent of ``todo`` that
    is still admitted, the same record, and ``still(agent)`` when its turn comes; a step ends
    after ``AGENT_SLICE`` agents or ``TASK_SLICE`` of their tasks (10,000 agents in one step
    took 0.1-0.2 s)."""
    agents_n = tasks_n = 0
    for agent in todo:
        if st.agents.get(agent.id) is not agent or not still(agent):
            continue
        agents_n += 1
        tasks_n += len(agent.tasks)
        steps = lose(agent)
        if steps is not None:
            yield from steps
        if agents_n >= AGENT_SLICE or tasks_n >= TASK_SLICE:
            agents_n = tasks_n = 0
            yield
    if agents_n:
        yield
