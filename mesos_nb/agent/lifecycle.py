"""Ending things: killing a task (TASK_KILLING, SIGTERM, grace, SIGKILL), shutting down an
executor or a framework, and the bookkeeping when an executor is done (resources and GPUs
back, EXECUTOR_EXITED to the master, checkpoint sentinel, completed lists).

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import asyncio
import logging
import os

from mesos_nb.protocol.channel import (
    ExecutorExited,
    KillTask,
    ShutdownAgent,
    ShutdownExecutor,
    ShutdownFramework,
)
from mesos_nb.protocol.messages import TERMINAL_STATES, KillPolicy
from mesos_nb.protocol.resources import Resources

from . import checkpoint as ckpt
from .records import ExecutorEntry, FrameworkEntry, TaskEntry

logger = logging.getLogger("mesos_nb.agent")


def _grace_seconds(policy: KillPolicy | None) -> float | None:
    if policy is not None and policy.grace_period is not None:
        return max(0.0, policy.grace_period.nanoseconds / 1e9)
    return None


class Lifecycle:
    def _on_kill_task(self, msg: KillTask) -> None:
        self.kill_task(msg.framework_id, msg.task_id, msg.kill_policy)

    def kill_task(self, framework_id: str, task_id: str, kill_policy: KillPolicy | None = None) -> asyncio.Task | None:
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            logger.warning("kill for unknown task agent=%s framework=%s task=%s", self.agent_id, framework_id, task_id)
            return None
        if task.state in TERMINAL_STATES:
            return None
        if kill_policy is not None:
            task.kill_policy = kill_policy
        if task.kill_requested:
            return task.killing
        task.kill_requested = True
        logger.info("killing task agent=%s framework=%s task=%s", self.agent_id, framework_id, task_id)
        fw = self.frameworks.get(framework_id)
        ex = fw.executors.get(task.executor_id) if fw else None
        if fw is None or ex is None:
            return None
        if not ex.command_executor:
            if task_id not in ex.launched:
                # Still queued for an executor that has not subscribed: it never ran.
                for _, tasks in ex.queued:
                    tasks[:] = [t for t in tasks if t.task_id.value != task_id]
                ex.queued = [(g, ts) for g, ts in ex.queued if ts]
                self._update(task, "TASK_KILLED", reason="REASON_TASK_KILLED_DURING_LAUNCH",
                             message="Task killed before it was launched", source="SOURCE_AGENT")
                if not ex.tasks and ex.state in ("LAUNCHING", "REGISTERING") and not ex.launched:
                    self._spawn(self._shutdown_executor(fw, ex))
            elif ex.stream is not None:
                self._send_kill(ex, task)
            return None
        if ex.container is not None:
            task.killing = self._spawn(self._kill(fw, ex, task))
        return task.killing

    def _grace_for(self, task: TaskEntry) -> float:
        for policy in (task.kill_policy, task.info.kill_policy):
            g = _grace_seconds(policy)
            if g is not None:
                return g
        return self.config.executor_shutdown_grace_period

    async def _kill(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry) -> None:
        if ex.container is None or ex.container.exited:
            return
        if fw.info.has_capability("TASK_KILLING_STATE"):
            self._update(task, "TASK_KILLING")
        await self.containerizer.destroy(ex.container, self._grace_for(task))

    def _executor_grace(self, ex: ExecutorEntry) -> float:
        g = ex.info.shutdown_grace_period
        return g.nanoseconds / 1e9 if g is not None else self.config.executor_shutdown_grace_period

    async def _shutdown_executor(self, fw: FrameworkEntry, ex: ExecutorEntry) -> None:
        """SHUTDOWN event, then destroy the container after the grace period."""
        if ex.state == "TERMINATED":
            return
        for task in ex.tasks.values():
            task.kill_requested = True
        if ex.command_executor:
            for task_id in list(ex.tasks):
                self.kill_task(fw.framework_id, task_id)
            return
        ex.state = "TERMINATING"
        if ex.stream is not None:
            ex.stream.send({"type": "SHUTDOWN"})
        grace = self._executor_grace(ex) if ex.stream is not None else 0.0
        if ex.container is not None and not ex.container.exited:
            await self.containerizer.destroy(ex.container, grace)

    def _on_shutdown_executor(self, msg: ShutdownExecutor) -> None:
        fw = self.frameworks.get(msg.framework_id)
        ex = fw.executors.get(msg.executor_id) if fw else None
        if fw is None or ex is None:
            logger.warning("shutdown for unknown executor agent=%s framework=%s executor=%s",
                           self.agent_id, msg.framework_id, msg.executor_id)
            return
        self._spawn(self._shutdown_executor(fw, ex))

    def _on_shutdown_agent(self, msg: ShutdownAgent) -> None:
        """The master removed this agent (its machine is DOWN): every framework's tasks end."""
        logger.warning("agent shut down by the master agent=%s: %s", self.agent_id, msg.message)
        for framework_id in list(self.frameworks):
            self._spawn(self.shutdown_framework(framework_id))

    def _on_shutdown_framework(self, msg: ShutdownFramework) -> None:
        self._spawn(self.shutdown_framework(msg.framework_id))

    async def shutdown_framework(self, framework_id: str) -> None:
        logger.info("shutting down framework agent=%s framework=%s", self.agent_id, framework_id)
        await self._kill_all(framework_id)
        # No one will acknowledge these updates any more (the master removed the framework).
        self.status_updates.cleanup_framework(framework_id)
        for key in [k for k in self.tasks if k[0] == framework_id]:
            del self.tasks[key]
        if self.agent_id:
            fmeta = ckpt.framework_meta(self.config.work_dir, self.agent_id, framework_id)
            self._pid_log.close(fmeta)
            ckpt.remove_tree(fmeta)
        self._checkpointed_fw.discard(framework_id)

    async def _kill_all(self, framework_id: str | None = None) -> None:
        waits = []
        for fw_id, fw in list(self.frameworks.items()):
            if framework_id is not None and fw_id != framework_id:
                continue
            for ex in list(fw.executors.values()):
                if ex.command_executor:
                    for task_id in list(ex.tasks):
                        self.kill_task(fw_id, task_id)
                else:
                    self._spawn(self._shutdown_executor(fw, ex))
                if ex.container is not None:
                    waits.append(ex.container.exit_future)
        if waits:
            await asyncio.gather(*(asyncio.shield(w) for w in waits), return_exceptions=True)
        # Let the per-task coroutines turn the exits into TASK_KILLED updates.
        pending = [t for t in self._bg if not t.done() and t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.executor_shutdown_grace_period + 5)

    async def kill_all_tasks(self) -> None:
        await self._kill_all(None)

    def _executor_done(self, fw: FrameworkEntry, ex: ExecutorEntry, status: int | None) -> None:
        ex_id = ex.executor_id
        ex.state = "TERMINATED"
        ex.cancel_timer()
        if fw.executors.get(ex_id) is ex:
            del fw.executors[ex_id]
            fw.completed_executors.append(ex)
            if not ex.command_executor:
                self._sub_used(ex.resources)
            self._free_gpus.extend(ex.gpus)
            ex.gpus = []
        for task in ex.tasks.values():
            self._stop_health(task)
        self.counters["executors_terminated"] += 1
        if self.agent_id is not None and status is not None and not ex.command_executor:  # FAILURE: custom only
            self._send(ExecutorExited(agent_id=self.agent_id, framework_id=ex.framework_id,
                                      executor_id=ex_id, status=status if status >= 0 else 0))
        if ex.run_meta is not None:
            ckpt.write_sentinel(ex.run_meta) if ex.checkpoint else None
        self._maybe_gc(fw.framework_id, ex_id)
        self._maybe_complete_framework(fw)

    def _forget_everything(self) -> None:
        """The master gave us a new id: every task it knew here was already declared lost."""
        for fw_id, fw in list(self.frameworks.items()):
            for ex in list(fw.executors.values()):
                if ex.stream is not None:
                    ex.stream.close()
                if ex.container is not None and not ex.container.exited:
                    self._spawn(self.containerizer.destroy(ex.container, 0))
                if ex.run_meta:
                    ckpt.remove_tree(os.path.dirname(os.path.dirname(ex.run_meta)))
            self.status_updates.cleanup_framework(fw_id)
        self.frameworks.clear()
        self.tasks.clear()
        self.used = Resources()
        self._pid_log.close()
        self._checkpointed_fw.clear()
        self._sandbox_parents.clear()
        if self.agent_id:
            ckpt.remove_tree(ckpt.agent_meta(self.config.work_dir, self.agent_id))
