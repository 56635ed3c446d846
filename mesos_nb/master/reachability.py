"""Agents that stop answering, come back, or are declared gone (Mesos 1.11 partition rules).

Functions over :class:`~mesos_nb.master.state.MasterState`; the rules themselves (which state
a framework is told, when, with which reason) are the pure functions of
:mod:`mesos_nb.master.partitions`. Why a module apart from :mod:`.agents`: registration is
about admitting agents, this is about the three ways the master stops trusting one and what
each means for its tasks:

- unreachable (missed pings / did not re-register in time): the agent leaves the admitted set
  for the registry's unreachable list; its running tasks move to the framework's
  ``unreachable_tasks`` and are reported TASK_UNREACHABLE (TASK_LOST to frameworks that are not
  PARTITION_AWARE). Nothing is killed: they may still run.
- re-admitted (an unreachable agent re-registers): its tasks are adopted again with the state
  the agent reports, and each connected framework is told that state with
  REASON_AGENT_REREGISTERED. Never killed, never duplicated.
- gone (MARK_AGENT_GONE by an operator): tasks end as TASK_GONE_BY_OPERATOR, the agent is told
  to shut its frameworks down, and it is refused if it ever returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator

from ..protocol import channel as ch
from ..protocol import messages as m
from . import offers, partitions, tasks
from .effects import MarkAgentGone, MarkAgentUnreachable, PruneAgents, ToAgent
from .model import Agent, Framework, Task
from .slices import TASK_SLICE, taking_slices
from .state import CallError, MasterState, make_status

log = logging.getLogger("mesos_nb.master")


def finished(st: MasterState, fw: Framework, task: Task) -> bool:
    """Whether the task had already ended on the agent (then it only waits for its ACK, and is
    completed here once acknowledged)."""
    if task.state not in m.TERMINAL_STATES:
        return False
    if task.unacked is None:
        tasks.complete_task(st, fw, task)
    return True


def agent_failed(st: MasterState, agent_id: str) -> None:
    """Every framework forgets the agent's executors; the connected ones are sent FAILURE."""
    for fw in st.frameworks.values():
        fw.executors.pop(agent_id, None)
        if fw.connected:
            st.emit(fw, m.Event(type="FAILURE", failure=m.Failure(agent_id=m.ID(value=agent_id))))


def release_agent_steps(st: MasterState, agent: Agent, now: float,
                        end_live_task: Callable[[Framework, Task], None]) -> Generator[None, None, int]:
    """What each way an admitted agent leaves (removed, unreachable) shares: its offers are
    rescinded and the allocator rid of it, then its ended tasks completed and each live one
    handed to ``end_live_task``, ``TASK_SLICE`` per step (an agent may run 10,000 tasks:
    one step under it takes none), then the frameworks told FAILURE. Returns how many tasks
    were live. (The agent is out of ``st.agents``: no task gives resources back meanwhile.)"""
    offers.rescind_agent(st, agent.id, now)
    st.allocator.remove_agent(agent.id)
    st.wants_allocation = True
    n = 0
    for i, part in enumerate(taking_slices(list(agent.tasks), TASK_SLICE)):
        if i:
            yield
        for fid, tid in part:
            fw = st.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw else None
            if fw is None or task is None or finished(st, fw, task):
                continue
            n += 1
            end_live_task(fw, task)
    agent_failed(st, agent.id)
    return n


def mark_unreachable(st: MasterState, agent_id: str, now: float, why: str) -> None:
    for _ in mark_unreachable_steps(st, agent_id, now, why):
        pass


def mark_unreachable_steps(st: MasterState, agent_id: str, now: float, why: str) -> Iterator[None]:
    """Move an admitted agent to the unreachable list (at once); tell every framework about
    its tasks (in steps, see :func:`release_agent_steps`)."""
    agent = st.agents.pop(agent_id, None)
    if agent is None:
        return
    st.version += 1
    st.unreachable[agent_id] = now
    st.out.append(MarkAgentUnreachable(agent_id, now))
    st.metrics["master/slave_unreachable_completed"] += 1
    st.metrics["master/slaves_unreachable"] = len(st.unreachable)
    n = yield from release_agent_steps(st, agent, now, lambda fw, task: _to_unreachable(st, fw, agent, task, now))
    log.warning("agent unreachable agent=%s hostname=%s tasks=%d why=%s", agent_id, agent.hostname, n, why)


def _to_unreachable(st: MasterState, fw: Framework, agent: Agent, task: Task, now: float) -> None:
    d = partitions.on_agent_unreachable(fw.partition_aware, now, agent.hostname)
    status = make_status(task.id, d.state, agent_id=agent.id, executor_id=task.executor_id, reason=d.reason,
                         message=d.message, now=now)
    status.unreachable_time = {"nanoseconds": int(now * 1e9)}  # Mesos TimeInfo
    task.state = "TASK_UNREACHABLE"
    task.statuses.append(("TASK_UNREACHABLE", now))
    task.latest = status
    task.resources_released = True  # the whole agent leaves the allocator
    fw.tasks.pop(task.id, None)
    fw.unreachable_tasks[task.id] = task
    st.metrics["master/tasks_unreachable"] += 1
    st.send_update(fw, status)
    log.info("task %s framework=%s agent=%s task=%s", d.state, fw.id, agent.id, task.id)


def readopt(st: MasterState, fw: Framework, agent: Agent, rep: ch.TaskReport, now: float) -> bool:
    """A re-admitted agent reports a task the master had as unreachable: adopt it again with
    the agent's state and tell the framework. Returns False if it was not unreachable here."""
    task = fw.unreachable_tasks.pop(rep.task.task_id.value, None)
    if task is None:
        return False
    task.state = rep.state
    task.agent_id = agent.id
    task.statuses.append((rep.state, now))
    d = partitions.StatusDecision(rep.state, "REASON_AGENT_REREGISTERED", message=partitions.REREGISTERED_MESSAGE)
    status = make_status(task.id, d.state, agent_id=agent.id, executor_id=task.executor_id, reason=d.reason,
                         message=d.message, now=now)
    task.latest = status
    fw.tasks[task.id] = task
    agent.tasks.add((fw.id, task.id))
    if rep.state not in m.TERMINAL_STATES:
        task.resources_released = False
        st.allocator.add_allocation(fw.id, task.role, agent.id, task.resources)
    st.send_update(fw, status)
    log.info("task re-adopted from unreachable agent framework=%s agent=%s task=%s state=%s",
             fw.id, agent.id, task.id, rep.state)
    return True


def forget_unreported(st: MasterState, agent_id: str, now: float) -> None:
    """Unreachable tasks the re-admitted agent did not report no longer exist: TASK_GONE."""
    for fw in st.frameworks.values():
        for task in [t for t in fw.unreachable_tasks.values() if t.agent_id == agent_id]:
            del fw.unreachable_tasks[task.id]
            fw.tasks[task.id] = task
            tasks.master_terminal(st, fw, task, partitions.state_for_framework("TASK_GONE", fw.partition_aware),
                                  "REASON_AGENT_RESTARTED",
                                  "Task was not found on the agent after it re-registered", now)


def mark_gone(st: MasterState, agent_id: str, now: float) -> None:
    for _ in mark_gone_steps(st, agent_id, now):
        pass


def mark_gone_steps(st: MasterState, agent_id: str, now: float) -> Iterator[None]:
    """MARK_AGENT_GONE: end the agent's tasks as TASK_GONE_BY_OPERATOR, refuse it for good.
    Gone at once (refused, out of the allocator and its offers rescinded); its tasks, live
    and unreachable, are ended ``TASK_SLICE`` per step. CallError(404) for an agent neither
    admitted nor unreachable (at the first step)."""
    if agent_id in st.gone:
        return  # already gone: nothing more to do (idempotent, as Mesos)
    agent = st.agents.get(agent_id)
    if agent is None and agent_id not in st.unreachable:
        raise CallError(404, f"Agent '{agent_id}' is not registered or unreachable")
    st.version += 1
    st.gone[agent_id] = now
    st.agent_principals.pop(agent_id, None)  # (refused by its id from now on; the registry drops it too)
    st.out.append(MarkAgentGone(agent_id, now))
    st.metrics["master/slave_removals"] += 1
    on_agent: dict[str, list[str]] = {}  # framework id -> its task ids on the agent
    if agent is not None:
        for fid, tid in agent.tasks:
            on_agent.setdefault(fid, []).append(tid)
        st.agents.pop(agent_id)
        offers.rescind_agent(st, agent_id, now)
        st.allocator.remove_agent(agent_id)
    for fw in list(st.frameworks.values()):
        if st.frameworks.get(fw.id) is not fw:
            continue  # removed meanwhile
        ended: list[Task] = []
        for task in [t for t in fw.unreachable_tasks.values() if t.agent_id == agent_id]:
            del fw.unreachable_tasks[task.id]
            fw.tasks[task.id] = task
            ended.append(task)
        ended += [t for tid in on_agent.get(fw.id, ()) for t in [fw.tasks.get(tid)] if t is not None]
        for i, part in enumerate(taking_slices(ended, TASK_SLICE)):
            if i:
                yield
            for task in part:
                if finished(st, fw, task) or fw.tasks.get(task.id) is not task:
                    continue
                d = partitions.on_agent_gone(fw.partition_aware)
                tasks.master_terminal(st, fw, task, d.state, d.reason, d.message, now)
                st.metrics["master/tasks_gone_by_operator"] += 1
        if agent is not None and (fw.id in on_agent or agent_id in fw.executors):
            st.out.append(ToAgent(agent_id, ch.ShutdownFramework(agent_id=agent_id, framework_id=fw.id)))
    st.unreachable.pop(agent_id, None)
    st.metrics["master/slaves_unreachable"] = len(st.unreachable)
    agent_failed(st, agent_id)
    st.wants_allocation = True
    log.warning("agent marked gone agent=%s", agent_id)


def prune(st: MasterState, now: float) -> None:
    """Registry GC: bound the unreachable and gone lists by age and count."""
    cfg = st.partition
    kept_u, drop_u = partitions.prune_agent_list(st.unreachable, now, cfg.registry_max_agent_age,
                                                 cfg.registry_max_agent_count)
    kept_g, drop_g = partitions.prune_agent_list(st.gone, now, cfg.registry_max_agent_age,
                                                 cfg.registry_max_agent_count)
    if drop_u or drop_g:
        st.unreachable, st.gone = kept_u, kept_g
        for aid in drop_u:  # (the registry drops a pruned unreachable agent's principal too)
            st.agent_principals.pop(aid, None)
        st.metrics["master/slaves_unreachable"] = len(st.unreachable)
        st.out.append(PruneAgents(drop_u, drop_g))
        st.version += 1
        log.info("registry pruned unreachable=%d gone=%d", len(drop_u), len(drop_g))
