"""Custom executors and task groups (``TaskInfo.executor``, LAUNCH_GROUP): the agent starts
the executor's command, waits for it to SUBSCRIBE on the v1 executor API (registration
timeout), then hands it LAUNCH / LAUNCH_GROUP / KILL / MESSAGE / SHUTDOWN events and takes
its UPDATEs, which go out reliably like the agent's own.

Executor states: LAUNCHING -> REGISTERING -> RUNNING -> TERMINATING -> TERMINATED.
``executor_api.py`` parses the HTTP calls and calls :meth:`CustomExecutors.executor_subscribed`,
:meth:`~CustomExecutors.executor_update`, :meth:`~CustomExecutors.executor_message` and
:meth:`~CustomExecutors.executor_disconnected`.

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
import uuid
from typing import Any

import msgspec

from mesos_nb.protocol.channel import ExecutorToFramework, FrameworkToExecutor
from mesos_nb.protocol.messages import ID, ExecutorInfo, FrameworkInfo, TaskInfo, TaskStatus
from mesos_nb.protocol.resources import Resources

from . import checkpoint as ckpt
from . import sandbox
from . import volumes as persistent_volumes
from .containerizer import LaunchError, LaunchSpec, describe_status
from .environment import command_argv, limits_for
from .records import ExecutorEntry, FrameworkEntry, TaskEntry
from .users import UnknownUser

logger = logging.getLogger("mesos_nb.agent")


def _has_image(container: Any) -> bool:
    mesos = container.get("mesos") if isinstance(container, dict) else None
    return isinstance(mesos, dict) and mesos.get("image") is not None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CustomExecutors:
    def _launch_with_executor(self, info: FrameworkInfo, executor: ExecutorInfo | None,
                              tasks: list[TaskInfo], fw_id: str, *, group: bool = False) -> None:
        """Tasks for a custom executor (``TaskInfo.executor``) or a task group (LAUNCH_GROUP)."""
        if not tasks:
            return
        if executor is None:
            self._refuse(fw_id, tasks, tasks[0].task_id.value, "REASON_TASK_INVALID",
                         "Task has neither a command nor an executor")
            return
        ex_id = executor.executor_id.value
        if not (sandbox.valid_id(fw_id) and sandbox.valid_id(ex_id) and all(sandbox.valid_id(t.task_id.value) for t in tasks)):
            self._refuse(fw_id, tasks, ex_id, "REASON_TASK_INVALID", "Invalid framework, executor or task id")
            return
        fresh = [t for t in tasks if (fw_id, t.task_id.value) not in self.tasks]
        if len(fresh) != len(tasks):
            logger.warning("duplicate RUN_TASK ignored agent=%s framework=%s", self.agent_id, fw_id)
            if not fresh:
                return
            tasks = fresh
        try:
            task_res = [Resources.from_proto(t.resources) for t in tasks]
        except ValueError as e:
            self._refuse(fw_id, tasks, ex_id, "REASON_TASK_INVALID", f"Invalid task resources: {e}")
            return
        fw = self._framework(info)
        ex = fw.executors.get(ex_id)
        if ex is not None and ex.state in ("TERMINATING", "TERMINATED"):
            self._refuse(fw_id, tasks, ex_id, "REASON_EXECUTOR_TERMINATED", "Executor is terminating")
            return
        new_executor = ex is None
        if ex is None:
            if executor.command is None or not executor.command.value:
                self._refuse(fw_id, tasks, ex_id, "REASON_TASK_INVALID", "ExecutorInfo has no command")
                self._maybe_complete_framework(fw)
                return
            if executor.framework_id is None:
                executor = msgspec.structs.replace(executor, framework_id=ID(value=fw_id))
            container_id = str(uuid.uuid4())
            try:
                directory = sandbox.create_sandbox(self.config.work_dir, self.agent_id or "", fw_id, ex_id, container_id,
                                                   known=self._sandbox_parents)
                Resources.from_proto(executor.resources)
            except (OSError, ValueError) as e:
                self._refuse(fw_id, tasks, ex_id, "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to create executor: {e}")
                self._maybe_complete_framework(fw)
                return
            ex = ExecutorEntry(executor, fw_id, container_id, directory, command_executor=False)
            fw.executors[ex_id] = ex
            self._attach(fw_id, ex_id, directory)
            self._add_used(ex.resources)
        elif any(persistent_volumes.volumes_in(r) for r in task_res):
            # A task joining a running executor: its volumes are linked into the executor's
            # sandbox (the container's mounts are made already).
            try:
                persistent_volumes.attach(self.config.work_dir, ex.directory, sum(task_res, Resources()),
                                          bind=False, user=self._user(fw, ex, ex.info.command))
            except (persistent_volumes.VolumeError, OSError, UnknownUser) as e:
                self._refuse(fw_id, tasks, ex_id, "REASON_CONTAINER_LAUNCH_FAILED", str(e))
                return
        entries = []
        for t, res in zip(tasks, task_res, strict=True):
            entry = TaskEntry(t, fw_id, ex_id, res)
            ex.tasks[entry.task_id] = entry
            self.tasks[(fw_id, entry.task_id)] = entry
            self._add_used(res)
            self.counters["launched_tasks"] += 1
            entries.append(entry)
        try:
            if new_executor:
                self._checkpoint_launch(fw, ex, entries)
            elif ex.checkpoint and ex.run_meta:
                for e in entries:
                    ckpt.checkpoint_task(os.path.join(ex.run_meta, "tasks", e.task_id), e.info)
        except OSError as e:
            logger.exception("checkpoint failed agent=%s framework=%s", self.agent_id, fw_id)
            for entry in entries:
                self._update(entry, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED", source="SOURCE_AGENT",
                             message=f"Failed to checkpoint the task: {e}")
            return
        if not new_executor:
            self._resize_container(ex)  # grown before the executor hears of the task
        if ex.stream is not None:
            self._send_launch(ex, group, tasks)
        else:
            ex.queued.append((group, tasks))
        if new_executor:
            self._spawn(self._run_executor(fw, ex))

    def _resize_container(self, ex: ExecutorEntry) -> None:
        """A custom executor's container holds its own resources plus its live tasks' (Mesos'
        containerizer ``update``): it grows when a task is launched into it and shrinks when
        one ends."""
        c = ex.container
        if c is None or c.exited or ex.command_executor:
            return
        want = limits_for(ex.resources + sum((t.resources for t in ex.tasks.values()), Resources()), io=c.limits.io)
        if (want.cpus, want.mem_bytes, want.disk_bytes) == (c.limits.cpus, c.limits.mem_bytes, c.limits.disk_bytes):
            return
        try:
            self.containerizer.update(c, want)
        except OSError as e:
            logger.warning("executor container not resized agent=%s framework=%s executor=%s: %s",
                           self.agent_id, ex.framework_id, ex.executor_id, e)
            return
        self._checkpoint_limits(ex, c)
        logger.info("executor container resized agent=%s framework=%s executor=%s cpus=%g mem=%dMB tasks=%d",
                    self.agent_id, ex.framework_id, ex.executor_id, c.limits.cpus, c.limits.mem_bytes >> 20,
                    len(ex.tasks))

    def _send_launch(self, ex: ExecutorEntry, group: bool, tasks: list[TaskInfo]) -> None:
        tasks = [t for t in tasks if t.task_id.value not in ex.launched and t.task_id.value in ex.tasks]
        if not tasks:
            return
        for t in tasks:
            ex.launched.add(t.task_id.value)
        if group:
            ex.stream.send({"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": msgspec.to_builtins(tasks)}}})
        else:
            for t in tasks:
                ex.stream.send({"type": "LAUNCH", "launch": {"task": msgspec.to_builtins(t)}})

    async def _run_executor(self, fw: FrameworkEntry, ex: ExecutorEntry) -> None:
        """Fetch, start the executor's command in its own session, wait for it to subscribe
        (registration timeout) and then for it to exit."""
        cmd = ex.info.command
        assert cmd is not None
        if cmd.uris:
            error = await self._fetch(ex, cmd.uris)
            if error is not None:
                self._fail_executor_tasks(ex, "REASON_CONTAINER_LAUNCH_FAILED", error)
                self._executor_done(fw, ex, None)
                return
        if ex.state != "LAUNCHING":  # killed or shut down while fetching
            self._executor_done(fw, ex, None)
            return
        first = next(iter(ex.tasks.values()), None)
        ex.gpus = self._take_gpus(ex.resources, *(t.resources for t in ex.tasks.values()))
        try:
            if ex.info.container is None and any(_has_image(t.info.container) for t in ex.tasks.values()):
                raise LaunchError("A task's own image inside an executor's container is not supported; "
                                  "give ExecutorInfo.container the image")
            everything = ex.resources + sum((t.resources for t in ex.tasks.values()), Resources())
            image, volumes, limits = self._container_launch(
                ex.info.container, cmd, everything, [ex.info.labels, *(t.info.labels for t in ex.tasks.values())])
            executable, argv = (None, []) if image is not None else command_argv(cmd)
            env = self._environment(fw, ex, first, command=cmd, extra_resources=[t.resources for t in ex.tasks.values()])
            user = self._prepare_sandbox(fw, ex, cmd)
            spec = LaunchSpec(
                container_id=ex.container_id, argv=argv, executable=executable, env=env, cwd=ex.directory,
                stdout_path=os.path.join(ex.directory, "stdout"), stderr_path=os.path.join(ex.directory, "stderr"),
                limits=limits, image=image, volumes=volumes + self._volume_mounts(ex, everything, user, image),
                user=user,
            )
            container = await self.containerizer.launch(spec)
        except (LaunchError, UnknownUser) as e:
            self._fail_executor_tasks(ex, "REASON_CONTAINER_LAUNCH_FAILED", str(e))
            self._executor_done(fw, ex, None)
            return
        ex.container = container
        self._resize_container(ex)  # tasks launched or ended while it started
        self._checkpoint_container(ex, container, "executor")
        logger.info("executor started agent=%s framework=%s executor=%s pid=%d", self.agent_id, fw.framework_id,
                    ex.executor_id, container.pid)
        if ex.state == "LAUNCHING":
            ex.state = "REGISTERING"
            self._arm_registration(fw, ex, self.config.executor_registration_timeout,
                                   "REASON_EXECUTOR_REGISTRATION_TIMEOUT")
        elif ex.state == "TERMINATING":
            self._spawn(self.containerizer.destroy(container, 0))
        await self._watch_executor(fw, ex)

    async def _watch_executor(self, fw: FrameworkEntry, ex: ExecutorEntry) -> None:
        assert ex.container is not None
        status = await ex.container.wait()
        self._executor_exited(fw, ex, status)

    def _arm_registration(self, fw: FrameworkEntry, ex: ExecutorEntry, timeout: float, reason: str) -> None:
        ex.cancel_timer()
        ex.timer = asyncio.get_running_loop().call_later(timeout, self._registration_timeout, fw, ex, reason, timeout)

    def _registration_timeout(self, fw: FrameworkEntry, ex: ExecutorEntry, reason: str, timeout: float) -> None:
        ex.timer = None
        if ex.state != "REGISTERING":
            return
        what = "register" if reason == "REASON_EXECUTOR_REGISTRATION_TIMEOUT" else "re-register"
        logger.warning("executor did not %s within %gs agent=%s framework=%s executor=%s", what, timeout,
                       self.agent_id, fw.framework_id, ex.executor_id)
        ex.failure_reason = reason
        self._fail_executor_tasks(ex, reason, f"Executor did not {what} within {timeout:g} secs")
        ex.state = "TERMINATING"
        if ex.container is not None and not ex.container.exited:
            self._spawn(self.containerizer.destroy(ex.container, 0))

    def _fail_executor_tasks(self, ex: ExecutorEntry, reason: str, message: str, state: str = "TASK_FAILED") -> None:
        for task in list(ex.tasks.values()):
            st = "TASK_KILLED" if task.kill_requested and state == "TASK_FAILED" and reason not in (
                "REASON_CONTAINER_LIMITATION_MEMORY", "REASON_CONTAINER_LIMITATION_DISK") else state
            self._update(task, st, reason=reason, message=message, source="SOURCE_AGENT")
        ex.queued.clear()

    def _executor_exited(self, fw: FrameworkEntry, ex: ExecutorEntry, status: int) -> None:
        ex.cancel_timer()
        ex.state = "TERMINATED"
        if ex.stream is not None:
            ex.stream.close()
            ex.stream = None
        _, message = describe_status(status)
        limitation = ex.container.limitation if ex.container is not None else None
        if limitation:
            assert ex.container is not None
            self._fail_executor_tasks(ex, ex.container.limitation_reason, limitation)
        else:
            self._fail_executor_tasks(ex, "REASON_EXECUTOR_TERMINATED", f"Executor terminated: {message}")
        logger.info("executor exited agent=%s framework=%s executor=%s: %s", self.agent_id, fw.framework_id,
                    ex.executor_id, message)
        self._executor_done(fw, ex, status)

    def executor_subscribed(self, ex: ExecutorEntry, stream: Any, sub: Any) -> str | None:
        fw = self.frameworks.get(ex.framework_id)
        if fw is None:
            return "Framework cannot be found"
        if ex.stream is not None:
            ex.stream.close()
        first = not ex.launched and not ex.recovered
        ex.stream = stream
        ex.state = "RUNNING"
        ex.cancel_timer()
        unacked = {t.task_id.value for t in sub.unacknowledged_tasks}
        ex.launched |= unacked & set(ex.tasks)
        logger.info("executor %s agent=%s framework=%s executor=%s", "subscribed" if first else "re-subscribed",
                    self.agent_id, fw.framework_id, ex.executor_id)
        stream.send({"type": "SUBSCRIBED", "subscribed": {
            "executor_info": msgspec.to_builtins(ex.info), "framework_info": msgspec.to_builtins(fw.info),
            "agent_info": self.agent_info(), "container_id": {"value": ex.container_id},
        }})
        for upd in sub.unacknowledged_updates:
            if upd.status.uuid is not None and len(upd.status.uuid) == 16:
                self.executor_update(ex, upd.status, ack=False)
        queued, ex.queued = ex.queued, []
        for group, tasks in queued:
            self._send_launch(ex, group, tasks)
        for task in ex.tasks.values():  # kills that arrived while it was (re)subscribing
            if task.kill_requested and task.task_id in ex.launched:
                self._send_kill(ex, task)
        return None

    def executor_disconnected(self, ex: ExecutorEntry, stream: Any) -> None:
        if ex.stream is not stream:
            return
        ex.stream = None
        if ex.state == "RUNNING":
            ex.state = "REGISTERING"
            fw = self.frameworks.get(ex.framework_id)
            if fw is not None and fw.info.checkpoint:
                # A checkpointing executor re-subscribes (with backoff); give it the recovery window.
                self._arm_registration(fw, ex, self.config.recovery_timeout, "REASON_EXECUTOR_REREGISTRATION_TIMEOUT")
            elif fw is not None:
                logger.info("executor disconnected (framework does not checkpoint): shutting it down "
                            "agent=%s executor=%s", self.agent_id, ex.executor_id)
                self._spawn(self._shutdown_executor(fw, ex))

    def executor_update(self, ex: ExecutorEntry, status: TaskStatus, *, ack: bool = True) -> str | None:
        task = ex.tasks.get(status.task_id.value)
        if task is None:
            done = self.tasks.get((ex.framework_id, status.task_id.value))
            if done is None or done.executor_id != ex.executor_id:
                return f"Task {status.task_id.value} is not known to executor {ex.executor_id}"
            task = done
        status.agent_id = ID(value=self.agent_id or "")
        status.executor_id = ID(value=ex.executor_id)
        status.source = "SOURCE_EXECUTOR"
        if status.timestamp is None:
            status.timestamp = time.time()
        self._forward(task, status)
        if ack and ex.stream is not None:
            ex.stream.send({"type": "ACKNOWLEDGED", "acknowledged": {
                "task_id": {"value": status.task_id.value}, "uuid": _b64(status.uuid or b"")}})
        if status.state == "TASK_RUNNING" and task.info.health_check is not None:
            self._start_health(task, ex)
        return None

    def executor_message(self, ex: ExecutorEntry, data: bytes) -> None:
        if self.agent_id is None:
            return
        self._send(ExecutorToFramework(agent_id=self.agent_id, framework_id=ex.framework_id,
                                       executor_id=ex.executor_id, data=data))

    def _send_kill(self, ex: ExecutorEntry, task: TaskEntry) -> None:
        kill: dict[str, Any] = {"task_id": {"value": task.task_id}}
        if task.kill_policy is not None:
            kill["kill_policy"] = msgspec.to_builtins(task.kill_policy)
        ex.stream.send({"type": "KILL", "kill": kill})

    def _on_framework_message(self, msg: FrameworkToExecutor) -> None:
        fw = self.frameworks.get(msg.framework_id)
        ex = fw.executors.get(msg.executor_id) if fw else None
        if ex is None or ex.stream is None:
            self.counters["invalid_framework_messages"] += 1
            logger.info("framework message dropped (executor not subscribed) agent=%s framework=%s executor=%s",
                        self.agent_id, msg.framework_id, msg.executor_id)
            return
        self.counters["valid_framework_messages"] += 1
        ex.stream.send({"type": "MESSAGE", "message": {"data": _b64(msg.data)}})
