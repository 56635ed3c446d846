"""Task state changes: each new state is recorded on the task, counted, and sent reliably
through the :class:`~mesos_nb.agent.status_updates.StatusUpdateManager` (checkpointed for
checkpointing frameworks, retried until the master's ACK, which drops the finished task).

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from mesos_nb.protocol.channel import AckUpdate, StatusUpdate
from mesos_nb.protocol.messages import ID, TERMINAL_STATES, TaskStatus

from .records import TaskEntry

logger = logging.getLogger("mesos_nb.agent")

_TERMINAL_COUNTERS = {"TASK_FINISHED": "tasks_finished", "TASK_FAILED": "tasks_failed",
                      "TASK_KILLED": "tasks_killed", "TASK_LOST": "tasks_lost"}


def update_uuid() -> bytes:
    """A random (version 4) UUID's 16 bytes, as ``uuid.uuid4().bytes`` but without the UUID
    object (a third of its cost; three of these per task)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


class TaskStatusUpdates:
    def _make_status(self, task_id: str, ex_id: str, state: str, source: str,
                     reason: str | None, message: str | None, container_status: Any = None) -> TaskStatus:
        return TaskStatus(
            task_id=ID(value=task_id), state=state, message=message, source=source,  # type: ignore[arg-type]
            reason=reason, agent_id=ID(value=self.agent_id or ""), executor_id=ID(value=ex_id),
            timestamp=time.time(), uuid=update_uuid(), container_status=container_status,
        )

    def _update(self, task: TaskEntry, state: str, *, reason: str | None = None, message: str | None = None,
                source: str = "SOURCE_EXECUTOR", container_status: Any = None, healthy: bool | None = None) -> None:
        if task.state in TERMINAL_STATES:
            return
        if container_status is None:  # every update names the task's container, as Mesos' agent adds it
            container_status = self._container_status(task)
        status = self._make_status(task.task_id, task.executor_id, state, source, reason, message, container_status)
        status.healthy = healthy
        self._forward(task, status)

    def _container_status(self, task: TaskEntry) -> dict[str, Any] | None:
        fw = self.frameworks.get(task.framework_id)
        ex = fw.executors.get(task.executor_id) if fw else None
        return {"container_id": {"value": ex.container_id}} if ex is not None else None

    def _forward(self, task: TaskEntry, status: TaskStatus) -> None:
        """Record ``status`` as the task's latest state and send it reliably."""
        if task.state not in TERMINAL_STATES:
            if task.health is not None and status.state == "TASK_RUNNING" and status.healthy is None:
                status.healthy = task.health.healthy
            task.state = status.state
            task.statuses.append((status.state, status.timestamp or time.time()))
            if status.state in TERMINAL_STATES:
                self._task_terminated(task)
        self.counters["status_updates"] += 1
        try:
            self.status_updates.update(StatusUpdate(
                agent_id=self.agent_id or "", framework_id=task.framework_id, status=status))
        except OSError:
            logger.exception("cannot checkpoint a status update agent=%s task=%s", self.agent_id, task.task_id)

    def _task_terminated(self, task: TaskEntry) -> None:
        self._sub_used(task.resources)
        self._stop_health(task)
        key = _TERMINAL_COUNTERS.get(task.state)
        if key:
            self.counters[key] += 1
        fw = self.frameworks.get(task.framework_id)
        ex = fw.executors.get(task.executor_id) if fw else None
        if ex is not None and ex.tasks.pop(task.task_id, None) is not None:
            ex.completed_tasks.append(task)
            self._resize_container(ex)  # a custom executor's container shrinks by the task

    def _agent_update(self, fw_id: str, task_id: str, ex_id: str, state: str, *,
                      reason: str | None = None, message: str | None = None) -> None:
        """An update for a task the agent never ran (source SOURCE_AGENT)."""
        status = self._make_status(task_id, ex_id, state, "SOURCE_AGENT", reason, message)
        self.counters["status_updates"] += 1
        if state == "TASK_FAILED":
            self.counters["tasks_failed"] += 1
        self.status_updates.update(StatusUpdate(agent_id=self.agent_id or "", framework_id=fw_id, status=status))

    def _send_update(self, update: StatusUpdate) -> None:
        self._send(update)

    def _on_ack(self, msg: AckUpdate) -> None:
        try:
            ok = self.status_updates.acknowledge(msg.framework_id, msg.task_id, msg.uuid)
        except OSError:
            logger.exception("cannot checkpoint an ack agent=%s task=%s", self.agent_id, msg.task_id)
            ok = False
        if ok:
            entry = self.tasks.get((msg.framework_id, msg.task_id))
            if entry is not None and entry.state in TERMINAL_STATES and \
                    self.status_updates.latest_state(msg.framework_id, msg.task_id) is None:
                del self.tasks[(msg.framework_id, msg.task_id)]
                self._maybe_gc(msg.framework_id, entry.executor_id)
