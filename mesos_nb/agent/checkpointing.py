"""When the agent checkpoints what (the on-disk format is ``checkpoint.py``): framework,
executor and task infos before a launch, each container's pid after it, and the removal of
an ended executor's checkpoint once none of its updates awaits an ack.

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import logging
import os
import time

from . import checkpoint as ckpt
from .containerizer import Container
from .pid_identity import process_start
from .records import ExecutorEntry, FrameworkEntry, TaskEntry

logger = logging.getLogger("mesos_nb.agent")


class Checkpointing:
    def _checkpoints(self, fw_id: str) -> bool:
        fw = self.frameworks.get(fw_id) or self.completed_frameworks.get(fw_id)
        return bool(fw and fw.info.checkpoint)

    def _task_meta_dir(self, fw_id: str, task_id: str) -> str | None:
        entry = self.tasks.get((fw_id, task_id))
        if entry is None or not self._checkpoints(fw_id) or self.agent_id is None:
            return None
        # A framework whose last executor ended is "completed" here while its final updates
        # still await acks: those acks must be checkpointed too, or a restarted agent would
        # resend updates the framework already acknowledged.
        fw = self.frameworks.get(fw_id) or self.completed_frameworks.get(fw_id)
        ex = fw.executors.get(entry.executor_id) if fw else None
        if ex is None:
            for done in (fw.completed_executors if fw else ()):
                if done.executor_id == entry.executor_id:
                    ex = done
        if ex is None or ex.run_meta is None:
            return None
        return os.path.join(ex.run_meta, "tasks", task_id)

    def _checkpoint_launch(self, fw: FrameworkEntry, ex: ExecutorEntry, tasks: list[TaskEntry]) -> None:
        """framework.info, executor.info and task.info before anything runs, fsync'd, for
        checkpointing frameworks. The others get an unsynced framework.info once and, per
        container, one line in the framework's pid log (:meth:`_checkpoint_container`), so a
        restarted agent can kill what they left running -- nothing per task here."""
        sync = bool(fw.info.checkpoint)
        wd, aid = self.config.work_dir, self.agent_id or ""
        if fw.framework_id not in self._checkpointed_fw:
            ckpt.checkpoint_framework(wd, aid, fw.info, sync=sync)
            self._checkpointed_fw.add(fw.framework_id)
        ex.checkpoint = sync
        if not sync:
            ex.run_meta = None
            return
        ckpt.checkpoint_executor(wd, aid, fw.framework_id, ex.info, sync=sync)
        ex.run_meta = ckpt.run_meta(wd, aid, fw.framework_id, ex.executor_id, ex.container_id)
        for t in tasks:
            ckpt.checkpoint_task(os.path.join(ex.run_meta, "tasks", t.task_id), t.info)

    def _checkpoint_container(self, ex: ExecutorEntry, container: Container, kind: str) -> None:
        if ex.run_meta is None:
            if not ex.checkpoint and self.agent_id is not None:
                try:
                    # No /proc read on the launch path: at restart the process is recognised
                    # by the MESOS_CONTAINER_ID in its environment (pid_identity.kill_if_ours).
                    self._pid_log.append(ckpt.framework_meta(self.config.work_dir, self.agent_id, ex.framework_id), {
                        "pid": container.pid, "container_id": ex.container_id})
                except OSError:
                    logger.exception("cannot record a container's pid agent=%s executor=%s", self.agent_id,
                                     ex.executor_id)
            return
        try:
            ckpt.checkpoint_run(ex.run_meta, {
                "pid": container.pid, "start_time": process_start(container.pid), "kind": kind,
                "directory": ex.directory, "cpus": container.limits.cpus, "mem_bytes": container.limits.mem_bytes,
                "disk_bytes": container.limits.disk_bytes,
                "launched": time.time(), "gpus": ex.gpus,
            }, sync=ex.checkpoint)
        except OSError:
            logger.exception("cannot checkpoint container agent=%s executor=%s", self.agent_id, ex.executor_id)

    def _checkpoint_limits(self, ex: ExecutorEntry, container: Container) -> None:
        """After a resize: run.info keeps the limits the container has now (not those it
        started with), else a restarted agent would adopt it with its launch-time limits."""
        if ex.run_meta is None:
            return
        try:
            ckpt.checkpoint_run_limits(ex.run_meta, {
                "cpus": container.limits.cpus, "mem_bytes": container.limits.mem_bytes,
                "disk_bytes": container.limits.disk_bytes}, sync=ex.checkpoint)
        except OSError:
            logger.exception("cannot checkpoint resized limits agent=%s framework=%s executor=%s",
                             self.agent_id, ex.framework_id, ex.executor_id)

    def _maybe_gc(self, fw_id: str, ex_id: str) -> None:
        """Drop an ended executor's checkpoint once none of its tasks awaits an ack."""
        fw = self.frameworks.get(fw_id) or self.completed_frameworks.get(fw_id)
        if fw is None or ex_id in fw.executors or not fw.info.checkpoint:
            return
        if any(k[0] == fw_id and t.executor_id == ex_id for k, t in self.tasks.items()):
            return
        if self.agent_id:
            ckpt.remove_tree(ckpt.executor_meta(self.config.work_dir, self.agent_id, fw_id, ex_id))
