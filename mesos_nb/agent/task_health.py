"""Task health checks: one :class:`~mesos_nb.agent.health.HealthChecker` per running task
that asks for one; a change of health is a TASK_RUNNING update with ``healthy`` set, and too
many failures kill the task (REASON_TASK_HEALTH_CHECK_STATUS_UPDATED).

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import logging

from mesos_nb.protocol.messages import TERMINAL_STATES

from .records import ExecutorEntry, TaskEntry

logger = logging.getLogger("mesos_nb.agent")


class TaskHealth:
    def _start_health(self, task: TaskEntry, ex: ExecutorEntry) -> None:
        if task.health is not None or task.state in TERMINAL_STATES:
            return
        from .health import HealthChecker

        fw = self.frameworks.get(ex.framework_id)
        try:
            user = self._user(fw, ex, task.info.command) if fw is not None else None
        except LookupError:  # the user vanished since the launch: never check as the agent instead
            logger.warning("no health checks: unknown user agent=%s framework=%s task=%s",
                           self.agent_id, ex.framework_id, task.task_id)
            return
        task.health = HealthChecker(
            task.info.health_check, cwd=ex.directory, env=self._environment(
                self.frameworks[ex.framework_id], ex, task) if ex.framework_id in self.frameworks else dict(self._base_env),
            on_change=lambda healthy, t=task: self._health_changed(t, healthy),
            on_kill=lambda message, t=task: self._health_kill(t, message), user=user,
        )
        task.health.start()

    def _stop_health(self, task: TaskEntry) -> None:
        if task.health is not None:
            task.health.stop()

    def _health_changed(self, task: TaskEntry, healthy: bool) -> None:
        if task.state != "TASK_RUNNING":
            return
        self._update(task, "TASK_RUNNING", reason="REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", healthy=healthy)

    def _health_kill(self, task: TaskEntry, message: str) -> None:
        if task.state in TERMINAL_STATES:
            return
        logger.warning("task unhealthy, killing agent=%s framework=%s task=%s: %s", self.agent_id,
                       task.framework_id, task.task_id, message)
        task.kill_reason = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
        self.kill_task(task.framework_id, task.task_id)
