"""Task transitions: status updates, acknowledgements, kills, reconciliation, and the messages
between frameworks and executors.

Functions over :class:`~mesos_nb.master.state.MasterState`. A status update is forwarded with
its ``uuid``; the task keeps it as ``unacked`` until the framework acknowledges it (it is
re-sent on re-subscription), and the acknowledgement goes on to the agent, whose status-update
manager then sends the next update of that task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ..protocol import channel as ch
from ..protocol import messages as m
from ..protocol.resources import Resources
from . import partitions
from .effects import ToAgent
from .model import Framework, Task
from .state import MasterState, lost_state, make_status

log = logging.getLogger("mesos_nb.master")

# a terminal state's counter: TASK_FINISHED -> master/tasks_finished (TASK_GONE_BY_OPERATOR -> tasks_gone)
_TERMINAL_METRICS = {
    s: "master/tasks_" + s.removeprefix("TASK_").lower().replace("gone_by_operator", "gone")
    for s in m.TERMINAL_STATES
}


# ------------------------------------------------------------------ bookkeeping
def release_task(st: MasterState, task: Task) -> None:
    """Give a task's resources back to the allocator, once."""
    if task.resources_released:
        return
    task.resources_released = True
    if task.agent_id in st.agents:
        st.allocator.recover(task.framework_id, task.agent_id, task.resources, role=task.role)
        st.wants_allocation = True


def track_executor(fw: Framework, agent_id: str, info: m.ExecutorInfo, starting: dict[str, Resources],
                   role: str) -> None:
    """Record an executor a launch runs on ``agent_id``; one it starts (in ``starting``) holds
    its own resources until it ends (:func:`executor_exited`), not until its first task does."""
    ex_id = info.executor_id.value
    fw.executors.setdefault(agent_id, {})[ex_id] = info
    own = starting.get(ex_id)
    if own:
        fw.executor_resources[(agent_id, ex_id)] = (own, role)


def complete_task(st: MasterState, fw: Framework, task: Task) -> None:
    fw.tasks.pop(task.id, None)
    fw.completed_tasks.append(task)
    agent = st.agents.get(task.agent_id)
    if agent is not None:
        agent.tasks.discard((fw.id, task.id))
    st.version += 1


def master_terminal(st: MasterState, fw: Framework, task: Task, state: str, reason: str, message: str, now: float) -> None:
    """The master itself ends a task (its agent is gone or forgot it) and tells the framework."""
    task.state = state
    task.statuses.append((state, now))
    status = make_status(task.id, state, agent_id=task.agent_id, executor_id=task.executor_id,
                         reason=reason, message=message, now=now)
    task.latest = status
    st.metrics["master/tasks_lost" if state == "TASK_LOST" else "master/tasks_dropped"] += 1
    release_task(st, task)
    st.send_update(fw, status)
    complete_task(st, fw, task)
    log.info("task %s framework=%s agent=%s task=%s reason=%s", state, fw.id, task.agent_id, task.id, reason)


def drop_tasks(st: MasterState, fw: Framework, tasks: list[m.TaskInfo], reason: str, message: str, now: float) -> None:
    """Tasks that never reached an agent: TASK_DROPPED (TASK_LOST for frameworks that are
    not partition aware)."""
    state = lost_state(fw, "TASK_DROPPED")
    for task in tasks:
        st.send_update(
            fw, make_status(task.task_id.value, state, agent_id=task.agent_id.value, reason=reason, message=message, now=now)
        )
        st.metrics["master/tasks_dropped" if fw.partition_aware else "master/tasks_lost"] += 1


def task_error(st: MasterState, fw: Framework, agent_id: str, task: m.TaskInfo, reason: str, message: str, now: float) -> None:
    st.metrics["master/tasks_error"] += 1
    st.send_update(
        fw, make_status(task.task_id.value, "TASK_ERROR", agent_id=agent_id, reason=reason, message=message, now=now)
    )


def find_task(st: MasterState, task_id: str, framework_id: str | None = None) -> Task | None:
    if framework_id is not None:
        fw = st.frameworks.get(framework_id)
        return fw.tasks.get(task_id) if fw else None
    for fw in st.frameworks.values():
        t = fw.tasks.get(task_id)
        if t is not None:
            return t
    return None


# ------------------------------------------------------------------ scheduler calls
def kill_task(st: MasterState, fw: Framework, task_id: str, policy: m.KillPolicy | None, now: float) -> bool:
    task = fw.tasks.get(task_id)
    if task is None:
        # Mesos: killing an unknown task answers TASK_LOST (TASK_UNKNOWN if partition aware).
        st.send_update(
            fw,
            make_status(
                task_id,
                lost_state(fw, "TASK_UNKNOWN"),
                reason="REASON_RECONCILIATION",
                message="Attempted to kill an unknown task",
                now=now,
            ),
        )
        return False
    if task.state in m.TERMINAL_STATES:
        return True
    log.info("task kill requested framework=%s agent=%s task=%s", fw.id, task.agent_id, task_id)
    st.out.append(
        ToAgent(
            task.agent_id,
            ch.KillTask(agent_id=task.agent_id, framework_id=fw.id, task_id=task_id, kill_policy=policy),
        )
    )
    return True


def operator_kill(st: MasterState, task_id: str, now: float) -> Task | None:
    for fw in st.frameworks.values():
        if task_id in fw.tasks:
            kill_task(st, fw, task_id, None, now)
            return fw.tasks[task_id]
    return None


def shutdown_executor(st: MasterState, fw: Framework, call: m.Shutdown) -> None:
    st.out.append(
        ToAgent(
            call.agent_id.value,
            ch.ShutdownExecutor(agent_id=call.agent_id.value, framework_id=fw.id, executor_id=call.executor_id.value),
        )
    )


def acknowledge(st: MasterState, fw: Framework, ack: m.Acknowledge) -> None:
    task = fw.tasks.get(ack.task_id.value)
    if task is not None and task.unacked is not None and task.unacked.uuid == ack.uuid:
        # Only the acknowledgement of the terminal update itself completes the task (Mesos keys
        # this on the acknowledged update's state): an agent that restarted may resend an older
        # update first, and its ack must not make the master answer the terminal one itself.
        acked_terminal = task.unacked.state in m.TERMINAL_STATES
        task.unacked = None
        if acked_terminal and task.state in m.TERMINAL_STATES:
            complete_task(st, fw, task)
    agent_id = ack.agent_id.value
    if agent_id in st.agents:
        st.out.append(
            ToAgent(
                agent_id,
                ch.AckUpdate(agent_id=agent_id, framework_id=fw.id, task_id=ack.task_id.value, uuid=ack.uuid),
            )
        )


RECONCILE_SLICE = 1000  # tasks answered per step of a resumable RECONCILE


def reconcile_steps(
    st: MasterState, fw: Framework, rec: m.Reconcile, now: float, slice_size: int = RECONCILE_SLICE
) -> Iterator[None]:
    """RECONCILE as resumable steps of ``slice_size`` tasks (100,000 tasks in one call must
    not hold the master); a later step stops if the framework is gone meanwhile."""
    if not rec.tasks:
        for i, task in enumerate(list(fw.tasks.values())):
            if i and not i % slice_size:
                yield
                if st.frameworks.get(fw.id) is not fw:
                    return
            if task.state not in m.TERMINAL_STATES or task.unacked is not None:
                st.send_update(fw, reconciled(task, now))
        return
    completed: dict[str, Task] | None = None  # id -> newest completed task, built on first need
    for i, item in enumerate(rec.tasks):
        if i and not i % slice_size:
            yield
            if st.frameworks.get(fw.id) is not fw:
                return
            completed = None
        tid = item.task_id.value
        task = fw.tasks.get(tid)
        if task is not None:
            st.send_update(fw, reconciled(task, now))
            continue
        if completed is None:
            completed = {t.id: t for t in fw.completed_tasks}
        done = completed.get(tid)
        if done is not None:
            st.send_update(fw, reconciled(done, now))
            continue
        agent_id = item.agent_id.value if item.agent_id else None
        gone = fw.unreachable_tasks.get(tid)
        if gone is not None and agent_id is None:
            agent_id = gone.agent_id
        # Mesos' order: agent recovered but not back yet -> no answer; registered -> GONE;
        # unreachable -> UNREACHABLE; gone -> GONE_BY_OPERATOR; otherwise UNKNOWN.
        if agent_id is None:
            standing = partitions.AgentStanding.UNKNOWN
        elif agent_id in st.agents:
            standing = (partitions.AgentStanding.REGISTERED if st.agents[agent_id].connected
                        else partitions.AgentStanding.RECOVERED)
        elif agent_id in st.unreachable:
            standing = partitions.AgentStanding.UNREACHABLE
        elif agent_id in st.gone:
            standing = partitions.AgentStanding.GONE
        else:
            standing = partitions.AgentStanding.UNKNOWN
        d = partitions.reconcile_unknown_task(standing, fw.partition_aware)
        if d is None:
            continue  # agent transitioning: Mesos sends nothing yet
        status = make_status(tid, d.state, agent_id=agent_id, reason=d.reason, message=d.message, now=now)
        if gone is not None and standing is partitions.AgentStanding.UNREACHABLE and gone.latest is not None:
            status.unreachable_time = gone.latest.unreachable_time
        st.send_update(fw, status)


def reconciled(task: Task, now: float) -> m.TaskStatus:
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


def framework_message(st: MasterState, fw: Framework, msg: m.Message) -> None:
    agent_id = msg.agent_id.value
    if agent_id not in st.agents:
        log.info("framework message to unknown agent dropped framework=%s agent=%s", fw.id, agent_id)
        return
    st.out.append(
        ToAgent(
            agent_id,
            ch.FrameworkToExecutor(agent_id=agent_id, framework_id=fw.id, executor_id=msg.executor_id.value, data=msg.data),
        )
    )


# ------------------------------------------------------------------ agent messages
def status_update(st: MasterState, upd: ch.StatusUpdate, now: float) -> None:
    fw = st.frameworks.get(upd.framework_id)
    status = upd.status
    status.agent_id = m.ID(value=upd.agent_id)
    if fw is None:
        if upd.framework_id in st.removed_framework_ids and status.uuid:
            # Nobody will ever acknowledge it: stop the agent retrying.
            st.out.append(
                ToAgent(
                    upd.agent_id,
                    ch.AckUpdate(
                        agent_id=upd.agent_id, framework_id=upd.framework_id,
                        task_id=status.task_id.value, uuid=status.uuid,
                    ),
                )
            )
        st.metrics["master/invalid_status_updates"] += 1
        return
    st.metrics["master/messages_status_update"] += 1
    st.metrics["master/valid_status_updates"] += 1
    st.version += 1
    task = fw.tasks.get(status.task_id.value)
    if task is not None and upd.latest_state in m.TERMINAL_STATES:
        release_task(st, task)  # ended at the agent (Mesos' latest_state): its resources are free now
    if task is None:
        done = next((t for t in reversed(fw.completed_tasks) if t.id == status.task_id.value), None)
        if done is not None and status.uuid:
            # The agent resends an update the framework already acknowledged (it died before
            # the ACK reached it): answer for the framework, so every task has exactly one
            # terminal update at its framework.
            st.out.append(
                ToAgent(
                    upd.agent_id,
                    ch.AckUpdate(agent_id=upd.agent_id, framework_id=fw.id, task_id=done.id, uuid=status.uuid),
                )
            )
            return
        # Unknown: forward so the framework can acknowledge it.
        st.send_update(fw, status)
        return
    if task.unacked is not None and task.unacked.uuid == status.uuid:
        st.send_update(fw, status)  # agent retry of the same update
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
            key = _TERMINAL_METRICS[status.state]
            st.metrics[key] = st.metrics.get(key, 0) + 1
            release_task(st, task)
            log.info("task %s framework=%s agent=%s task=%s message=%s", status.state, fw.id,
                     upd.agent_id, task.id, status.message or "")
    if status.uuid:
        task.unacked = status
    st.send_update(fw, status)


def executor_exited(st: MasterState, msg: ch.ExecutorExited) -> None:
    fw = st.frameworks.get(msg.framework_id)
    if fw is None:
        return
    known = fw.executors.get(msg.agent_id, {}).pop(msg.executor_id, None)
    held = fw.executor_resources.pop((msg.agent_id, msg.executor_id), None)
    if known is not None and held is not None and msg.agent_id in st.agents:
        # the executor's own resources go back now (its tasks' went back at their ends)
        st.allocator.recover(fw.id, msg.agent_id, held[0], role=held[1])
        st.wants_allocation = True
    st.version += 1
    st.emit(
        fw,
        m.Event(
            type="FAILURE",
            failure=m.Failure(agent_id=m.ID(value=msg.agent_id), executor_id=m.ID(value=msg.executor_id), status=msg.status),
        ),
    )


def executor_message(st: MasterState, msg: ch.ExecutorToFramework) -> None:
    fw = st.frameworks.get(msg.framework_id)
    if fw is None:
        return
    st.emit(
        fw,
        m.Event(
            type="MESSAGE",
            message=m.EventMessage(agent_id=m.ID(value=msg.agent_id), executor_id=m.ID(value=msg.executor_id), data=msg.data),
        ),
    )
