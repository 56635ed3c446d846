"""The built-in command executor: a task with a ``command`` and no executor runs as one
container whose executor id is the task id (as Mesos' command executor). Updates:
TASK_STARTING -> TASK_RUNNING -> TASK_FINISHED | TASK_FAILED | TASK_KILLED, decided from the
process's exit status (or the isolator's memory limitation).

Tasks of checkpointing frameworks run under ``supervisor.py``, which writes the exit status
to the checkpoint so a restarted agent still learns how a task ended.

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from mesos_nb.protocol.messages import ID, ExecutorInfo, FrameworkInfo, TaskInfo
from mesos_nb.protocol.parsed_resources import task_resources

from . import sandbox
from .containerizer import LaunchError, LaunchSpec, describe_status
from .environment import command_argv
from .records import ExecutorEntry, FrameworkEntry, TaskEntry
from .users import UnknownUser

logger = logging.getLogger("mesos_nb.agent")

SWITCHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "switchboard.py")
COMMAND_EXECUTOR_MEM = 32 * 1024 * 1024  # Mesos' command executor overhead, added to supervised limits


def _wants_tty(info: TaskInfo) -> bool:
    container = info.container
    return isinstance(container, dict) and isinstance(container.get("tty_info"), dict)


class CommandExecutor:
    def _launch_command_task(self, fw_info: FrameworkInfo, task: TaskInfo) -> None:
        fw_id = fw_info.id.value if fw_info.id else ""
        task_id = task.task_id.value
        if (fw_id, task_id) in self.tasks:
            logger.warning("duplicate RUN_TASK ignored agent=%s framework=%s task=%s",
                           self.agent_id, fw_id, task_id)
            return
        ex_id = task_id  # the command executor's id is the task id, as in Mesos
        if not (sandbox.valid_id(fw_id) and sandbox.valid_id(task_id)):
            self._agent_update(fw_id, task_id, ex_id, "TASK_FAILED", reason="REASON_TASK_INVALID",
                               message="Invalid framework or task id")
            return
        try:
            resources = task_resources(task.resources)
        except ValueError as e:
            self._agent_update(fw_id, task_id, ex_id, "TASK_FAILED", reason="REASON_TASK_INVALID",
                               message=f"Invalid task resources: {e}")
            return
        container_id = str(uuid.uuid4())
        assert self.agent_id is not None
        try:
            directory = sandbox.create_sandbox(self.config.work_dir, self.agent_id, fw_id, ex_id, container_id,
                                               known=self._sandbox_parents)
        except OSError as e:
            self._agent_update(fw_id, task_id, ex_id, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED",
                               message=f"Failed to create sandbox: {e}")
            return
        fw = self._framework(fw_info)
        ex_info = ExecutorInfo(
            executor_id=ID(value=ex_id), framework_id=ID(value=fw_id), name=f"Command Executor (Task: {task_id})",
            source=task_id, command=task.command, resources=task.resources,
        )
        ex = ExecutorEntry(ex_info, fw_id, container_id, directory, command_executor=True, resources=resources)
        fw.executors[ex_id] = ex
        entry = TaskEntry(task, fw_id, ex_id, resources)
        ex.tasks[task_id] = entry
        self.tasks[(fw_id, task_id)] = entry
        self._attach(fw_id, ex_id, directory)
        self._add_used(resources)
        self.counters["launched_tasks"] += 1
        try:
            self._checkpoint_launch(fw, ex, [entry])
        except OSError:
            logger.exception("checkpoint failed agent=%s framework=%s task=%s", self.agent_id, fw_id, task_id)
        self._spawn(self._run_command_task(fw, ex, entry))

    async def _run_command_task(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry) -> None:
        fw_id, task_id = ex.framework_id, task.task_id
        # TASK_STARTING leaves while the container starts (the launcher helper forks it; the
        # containerizer's own blocking Popen path yields first): its acknowledgement (framework →
        # master → here) travels meanwhile, and TASK_RUNNING, which must wait for it (one update
        # in flight per task), goes out as soon as the process runs.
        self._update(task, "TASK_STARTING")
        cmd = task.info.command
        if cmd is not None and cmd.uris and not task.kill_requested:
            error = await self._fetch(ex, cmd.uris)
            if error is not None:
                logger.warning("fetch failed agent=%s framework=%s task=%s: %s", self.agent_id, fw_id, task_id, error)
                self._update(task, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED", message=error)
                self._executor_done(fw, ex, None)
                return
        if task.kill_requested:
            self._update(task, "TASK_KILLED", reason="REASON_TASK_KILLED_DURING_LAUNCH",
                         message="Task killed before it was launched")
            self._executor_done(fw, ex, None)
            return
        supervised = ex.checkpoint and ex.run_meta is not None
        try:
            image, volumes, limits = self._container_launch(
                task.info.container, task.info.command, task.resources, [task.info.labels],
                COMMAND_EXECUTOR_MEM if supervised else 0)
            executable, argv = (None, []) if image is not None else command_argv(task.info.command)  # type: ignore[arg-type]
            if image is None and _wants_tty(task.info):  # a TTY task runs under its I/O switchboard (task attach)
                executable, argv = None, [sys.executable, "-S", SWITCHBOARD, ex.container_id, executable or "", *argv]
            user = self._prepare_sandbox(fw, ex, task.info.command)
            volumes = volumes + self._volume_mounts(ex, task.resources, user, image)
            ex.gpus = self._take_gpus(task.resources)
            status_path = None
            if supervised:
                assert ex.run_meta is not None
                status_path = os.path.join(ex.run_meta, "exit.status")
            spec = LaunchSpec(
                container_id=ex.container_id, argv=argv, executable=executable,
                env=self._environment(fw, ex, task), cwd=ex.directory,
                stdout_path=os.path.join(ex.directory, "stdout"),
                stderr_path=os.path.join(ex.directory, "stderr"),
                limits=limits, status_path=status_path, image=image, volumes=volumes, user=user,
            )
            container = await self.containerizer.launch(spec)
        except (LaunchError, UnknownUser) as e:
            logger.warning("task launch failed agent=%s framework=%s task=%s: %s",
                           self.agent_id, fw_id, task_id, e)
            self._update(task, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED", message=str(e))
            self._executor_done(fw, ex, None)
            return
        ex.container = container
        ex.state = "RUNNING"
        self._checkpoint_container(ex, container, "command")
        logger.info("task started agent=%s framework=%s task=%s pid=%d", self.agent_id, fw_id, task_id, container.pid)
        self._update(task, "TASK_RUNNING", container_status={
            "container_id": {"value": ex.container_id}, "executor_pid": container.pid,
        })
        if task.info.health_check is not None:
            self._start_health(task, ex)
        if task.kill_requested and task.killing is None:
            task.killing = self._spawn(self._kill(fw, ex, task))
        await self._watch_command(fw, ex, task)

    async def _watch_command(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry) -> None:
        assert ex.container is not None
        status = await ex.container.wait()
        self._command_exited(fw, ex, task, status)

    def _command_exited(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry, status: int) -> None:
        ok, message = describe_status(status)
        limitation = ex.container.limitation if ex.container is not None else None
        if limitation:
            assert ex.container is not None
            self._update(task, "TASK_FAILED", reason=ex.container.limitation_reason, message=limitation)
        elif task.kill_requested:
            self._update(task, "TASK_KILLED", message=message, reason=task.kill_reason)
        elif ok:
            self._update(task, "TASK_FINISHED", message=message)
        else:
            self._update(task, "TASK_FAILED", message=message)  # Mesos' command executor sets no reason
        logger.info("task %s agent=%s framework=%s task=%s: %s", task.state.lower()[5:], self.agent_id,
                    fw.framework_id, task.task_id, limitation or message)
        self._executor_done(fw, ex, status)
