"""One agent: its identity, resources, frameworks/executors/tasks, and the handlers for the
messages the master sends it over the channel.

Data flow: ``AgentProcess`` decodes a channel frame and calls :meth:`Agent.handle` for each
message addressed to this agent. RUN_TASK creates the sandbox and starts the built-in
command executor logic (:meth:`Agent._run_command_task`), which launches the task through
the :class:`~mesos_nb.agent.containerizer.Containerizer` and turns process events into
``TaskStatus`` updates. Updates go through the :class:`StatusUpdateManager` (retried until
ACK) and out through the ``send`` callback the process installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from mesos_nb.protocol.channel import (
    AckUpdate,
    AgentRegistered,
    ExecutorExited,
    FrameworkToExecutor,
    KillTask,
    RegisterAgent,
    RunTask,
    ShutdownExecutor,
    ShutdownFramework,
    StatusUpdate,
    TaskReport,
)
from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskInfo,
    TaskStatus,
    is_terminal,
)
from mesos_nb.protocol.resources import Resources

from . import sandbox
from .attributes import parse_attributes
from .config import AgentConfig
from .containerizer import (
    Container,
    Containerizer,
    LaunchError,
    LaunchSpec,
    describe_status,
    make_containerizer,
)
from .detect import detect_resources
from .status_updates import StatusUpdateManager, UpdateStore

logger = logging.getLogger("mesos_nb.agent")

VERSION = "1.12.0"
MAX_COMPLETED_FRAMEWORKS = 50
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150
MAX_COMPLETED_TASKS_PER_EXECUTOR = 200
MAX_PORT_ENV = 1000  # PORT0..PORTn are set only for tasks with at most this many ports


class TaskEntry:
    __slots__ = (
        "info", "framework_id", "executor_id", "state", "statuses", "resources",
        "kill_requested", "kill_policy", "killing",
    )

    def __init__(self, info: TaskInfo, framework_id: str, executor_id: str, resources: Resources) -> None:
        self.info = info
        self.framework_id = framework_id
        self.executor_id = executor_id
        self.state = "TASK_STAGING"
        self.statuses: list[tuple[str, float]] = []
        self.resources = resources
        self.kill_requested = False
        self.kill_policy: KillPolicy | None = None
        self.killing: asyncio.Task | None = None

    @property
    def task_id(self) -> str:
        return self.info.task_id.value


class ExecutorEntry:
    __slots__ = (
        "info", "framework_id", "container_id", "directory", "tasks", "completed_tasks",
        "container", "command_executor", "resources",
    )

    def __init__(self, info: ExecutorInfo, framework_id: str, container_id: str, directory: str,
                 *, command_executor: bool) -> None:
        self.info = info
        self.framework_id = framework_id
        self.container_id = container_id
        self.directory = directory
        self.tasks: dict[str, TaskEntry] = {}
        self.completed_tasks: deque[TaskEntry] = deque(maxlen=MAX_COMPLETED_TASKS_PER_EXECUTOR)
        self.container: Container | None = None
        self.command_executor = command_executor
        self.resources = Resources.from_proto(info.resources) if info.resources else Resources()

    @property
    def executor_id(self) -> str:
        return self.info.executor_id.value


class FrameworkEntry:
    __slots__ = ("info", "executors", "completed_executors")

    def __init__(self, info: FrameworkInfo) -> None:
        self.info = info
        self.executors: dict[str, ExecutorEntry] = {}
        self.completed_executors: deque[ExecutorEntry] = deque(maxlen=MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK)

    @property
    def framework_id(self) -> str:
        return self.info.id.value if self.info.id else ""


def _grace_seconds(policy: KillPolicy | None) -> float | None:
    if policy is not None and policy.grace_period is not None:
        return max(0.0, policy.grace_period.nanoseconds / 1e9)
    return None


class Agent:
    """State and message handlers of one agent. Hosted by an ``AgentProcess``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        key: str = "a0",
        send: Callable[[Any], None] | None = None,
        containerizer: Containerizer | None = None,
        store: UpdateStore | None = None,
        total: Resources | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.agent_id: str | None = None
        self.master_id: str | None = None
        self.hostname = config.resolved_hostname()
        self.attributes = parse_attributes(config.attributes)
        self.total: Resources = total if total is not None else detect_resources(
            config.resources, config.work_dir, gpus=config.detect_gpus
        )
        self.used = Resources()
        self.containerizer = containerizer or make_containerizer(config.isolation)
        self.port: int = config.port
        self.frameworks: dict[str, FrameworkEntry] = {}
        self.completed_frameworks: OrderedDict[str, FrameworkEntry] = OrderedDict()
        self.tasks: dict[tuple[str, str], TaskEntry] = {}  # live + terminal-but-unacked
        self.files: dict[str, str] = {}  # attached virtual/real path -> real directory
        self.start_time = time.time()
        self.registered = False
        self.counters = {
            "tasks_finished": 0, "tasks_failed": 0, "tasks_killed": 0, "tasks_lost": 0,
            "launched_tasks": 0, "executors_terminated": 0, "status_updates": 0,
            "valid_framework_messages": 0, "invalid_framework_messages": 0,
        }
        self._send: Callable[[Any], None] = send or (lambda msg: None)
        self.status_updates = StatusUpdateManager(
            self._send_update,
            retry_min=config.status_update_retry_min,
            retry_max=config.status_update_retry_max,
            store=store,
        )
        self.status_updates.paused = True  # until registered
        self._bg: set[asyncio.Task] = set()
        self._base_env = dict(os.environ)
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunTask: self._on_run_task,
            KillTask: self._on_kill_task,
            AckUpdate: self._on_ack,
            ShutdownFramework: self._on_shutdown_framework,
            ShutdownExecutor: self._on_shutdown_executor,
            FrameworkToExecutor: self._on_framework_message,
        }

    # ------------------------------------------------------------------ identity
    @property
    def host(self) -> str:
        return self.config.host

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("", "0.0.0.0", "::") else self.hostname
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        host = self.config.host if self.config.host not in ("", "0.0.0.0", "::") else self.hostname
        return f"{host}:{self.port}"

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.endpoint}"

    def set_sender(self, send: Callable[[Any], None]) -> None:
        self._send = send

    def register_message(self) -> RegisterAgent:
        """REGISTER (first time) or re-REGISTER (known ``agent_id`` + running tasks)."""
        reports = []
        if self.agent_id is not None:
            for entry in self.tasks.values():
                fw = self.frameworks.get(entry.framework_id) or self.completed_frameworks.get(entry.framework_id)
                reports.append(TaskReport(
                    framework_id=entry.framework_id, task=entry.info, state=entry.state,
                    executor_id=entry.executor_id, framework=fw.info if fw else None,
                ))
        return RegisterAgent(
            key=self.key, hostname=self.hostname, port=self.port,
            resources=self.total.to_proto(), attributes=self.attributes,
            agent_id=self.agent_id, version=VERSION, tasks=reports,
        )

    def on_registered(self, msg: AgentRegistered) -> None:
        if self.agent_id is not None and self.agent_id != msg.agent_id:
            logger.warning("agent id changed old=%s new=%s", self.agent_id, msg.agent_id)
        first = self.agent_id is None
        self.agent_id = msg.agent_id
        self.master_id = msg.master_id
        self.registered = True
        logger.info("agent %s agent=%s master=%s port=%d",
                    "registered" if first else "re-registered", self.agent_id, self.master_id, self.port)
        self.status_updates.resend_all()

    def on_disconnected(self) -> None:
        self.registered = False
        self.status_updates.pause()

    # ------------------------------------------------------------------ dispatch
    def handle(self, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            logger.warning("unexpected message agent=%s type=%s", self.agent_id, type(msg).__name__)
            return
        handler(msg)

    def _spawn(self, coro: Any) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg_done)
        return t

    def _bg_done(self, t: asyncio.Task) -> None:
        self._bg.discard(t)
        if not t.cancelled() and t.exception() is not None:
            logger.error("agent background task failed agent=%s", self.agent_id, exc_info=t.exception())

    # ------------------------------------------------------------------ frameworks
    def _framework(self, info: FrameworkInfo) -> FrameworkEntry:
        fw_id = info.id.value if info.id else ""
        fw = self.frameworks.get(fw_id)
        if fw is None:
            fw = self.completed_frameworks.pop(fw_id, None) or FrameworkEntry(info)
            self.frameworks[fw_id] = fw
        fw.info = info
        return fw

    def _maybe_complete_framework(self, fw: FrameworkEntry) -> None:
        if fw.executors:
            return
        fw_id = fw.framework_id
        if self.frameworks.get(fw_id) is fw:
            del self.frameworks[fw_id]
            self.completed_frameworks[fw_id] = fw
            while len(self.completed_frameworks) > MAX_COMPLETED_FRAMEWORKS:
                self.completed_frameworks.popitem(last=False)

    # ------------------------------------------------------------------ RUN_TASK
    def _on_run_task(self, msg: RunTask) -> None:
        info = msg.framework
        fw_id = info.id.value if info.id else ""
        if msg.task is not None and msg.executor is None and msg.task.executor is None and msg.task.command is not None:
            self._launch_command_task(info, msg.task)
            return
        tasks = [msg.task] if msg.task is not None else list(msg.task_group)
        self._launch_with_executor(info, msg.executor or (tasks[0].executor if tasks else None), tasks, fw_id)

    def _launch_with_executor(self, info: FrameworkInfo, executor: ExecutorInfo | None,
                              tasks: list[TaskInfo], fw_id: str) -> None:
        """Custom executors and LAUNCH_GROUP: not supported yet; each task fails."""
        for task in tasks:
            ex_id = executor.executor_id.value if executor else task.task_id.value
            self._agent_update(
                fw_id, task.task_id.value, ex_id, "TASK_FAILED",
                reason="REASON_CONTAINER_LAUNCH_FAILED",
                message="custom executors are not supported yet",
            )
            logger.warning("task refused agent=%s framework=%s task=%s: custom executors are not supported yet",
                           self.agent_id, fw_id, task.task_id.value)

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
            resources = Resources.from_proto(task.resources)
        except ValueError as e:
            self._agent_update(fw_id, task_id, ex_id, "TASK_FAILED", reason="REASON_TASK_INVALID",
                               message=f"Invalid task resources: {e}")
            return
        container_id = str(uuid.uuid4())
        assert self.agent_id is not None
        try:
            directory = sandbox.create_sandbox(self.config.work_dir, self.agent_id, fw_id, ex_id, container_id)
        except OSError as e:
            self._agent_update(fw_id, task_id, ex_id, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED",
                               message=f"Failed to create sandbox: {e}")
            return
        fw = self._framework(fw_info)
        ex_info = ExecutorInfo(
            executor_id=ID(value=ex_id), framework_id=ID(value=fw_id), name=f"Command Executor (Task: {task_id})",
            source=task_id, command=task.command, resources=task.resources,
        )
        ex = ExecutorEntry(ex_info, fw_id, container_id, directory, command_executor=True)
        fw.executors[ex_id] = ex
        entry = TaskEntry(task, fw_id, ex_id, resources)
        ex.tasks[task_id] = entry
        self.tasks[(fw_id, task_id)] = entry
        self._attach(fw_id, ex_id, directory)
        self._add_used(resources)
        self.counters["launched_tasks"] += 1
        self._spawn(self._run_command_task(fw, ex, entry))

    def _attach(self, fw_id: str, ex_id: str, directory: str) -> None:
        self.files[directory] = directory
        self.files[sandbox.latest_link(self.config.work_dir, self.agent_id or "", fw_id, ex_id)] = directory
        self.files[sandbox.virtual_path(fw_id, ex_id)] = directory

    def _add_used(self, r: Resources) -> None:
        try:
            self.used = self.used + r
        except ValueError:
            logger.exception("resource accounting failed agent=%s", self.agent_id)

    def _sub_used(self, r: Resources) -> None:
        try:
            self.used = self.used - r
        except ValueError:
            logger.exception("resource accounting failed agent=%s", self.agent_id)

    def _environment(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry) -> dict[str, str]:
        env = dict(self._base_env)
        cfg = self.config
        env.update({
            "MESOS_FRAMEWORK_ID": ex.framework_id,
            "MESOS_EXECUTOR_ID": ex.executor_id,
            "MESOS_TASK_ID": task.task_id,
            "MESOS_DIRECTORY": ex.directory,
            "MESOS_SANDBOX": ex.directory,
            "MESOS_SLAVE_ID": self.agent_id or "",
            "MESOS_AGENT_ID": self.agent_id or "",
            "MESOS_SLAVE_PID": self.pid,
            "MESOS_AGENT_ENDPOINT": self.endpoint,
            "MESOS_CHECKPOINT": "1" if fw.info.checkpoint else "0",
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{cfg.executor_shutdown_grace_period:g}secs",
            "MESOS_CONTAINER_ID": ex.container_id,
            "LIBPROCESS_PORT": "0",
        })
        if "ports" in task.resources.names():
            ports = [p for b, e in task.resources.ranges("ports") if e - b < MAX_PORT_ENV for p in range(b, e + 1)]
            if ports and len(ports) <= MAX_PORT_ENV:
                for i, p in enumerate(ports):
                    env[f"PORT{i}"] = str(p)
                env["PORT"] = str(ports[0])
                env["PORTS"] = ",".join(map(str, ports))
        cmd = task.info.command
        if cmd is not None and cmd.environment is not None:
            for var in cmd.environment.variables:
                if (var.type in (None, "VALUE")) and var.value is not None:
                    env[var.name] = var.value
        return env

    @staticmethod
    def _argv(cmd: CommandInfo) -> tuple[str | None, list[str]]:
        if cmd.value is None or cmd.value == "":
            raise LaunchError("Failed to launch container: the command has no 'value'")
        if cmd.shell:
            return None, ["/bin/sh", "-c", cmd.value]
        # Mesos: execvp(value, arguments) -- arguments[0] is argv[0].
        return cmd.value, list(cmd.arguments) if cmd.arguments else [cmd.value]

    async def _run_command_task(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry) -> None:
        fw_id, task_id = ex.framework_id, task.task_id
        self._update(task, "TASK_STARTING")
        if task.kill_requested:
            self._update(task, "TASK_KILLED", reason="REASON_TASK_KILLED_DURING_LAUNCH",
                         message="Task killed before it was launched")
            self._executor_done(fw, ex, None)
            return
        try:
            executable, argv = self._argv(task.info.command)  # type: ignore[arg-type]
            spec = LaunchSpec(
                container_id=ex.container_id, argv=argv, executable=executable,
                env=self._environment(fw, ex, task), cwd=ex.directory,
                stdout_path=os.path.join(ex.directory, "stdout"),
                stderr_path=os.path.join(ex.directory, "stderr"),
            )
            container = await self.containerizer.launch(spec)
        except LaunchError as e:
            logger.warning("task launch failed agent=%s framework=%s task=%s: %s",
                           self.agent_id, fw_id, task_id, e)
            self._update(task, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED", message=str(e))
            self._executor_done(fw, ex, None)
            return
        ex.container = container
        logger.info("task started agent=%s framework=%s task=%s pid=%d", self.agent_id, fw_id, task_id, container.pid)
        self._update(task, "TASK_RUNNING", container_status={
            "container_id": {"value": ex.container_id}, "executor_pid": container.pid,
        })
        if task.kill_requested and task.killing is None:
            task.killing = self._spawn(self._kill(fw, ex, task))
        status = await container.wait()
        ok, message = describe_status(status)
        if task.kill_requested:
            self._update(task, "TASK_KILLED", message=message)
        elif ok:
            self._update(task, "TASK_FINISHED", message=message)
        else:
            self._update(task, "TASK_FAILED", reason="REASON_COMMAND_EXECUTOR_FAILED", message=message)
        logger.info("task %s agent=%s framework=%s task=%s: %s", task.state.lower()[5:], self.agent_id,
                    fw_id, task_id, message)
        self._executor_done(fw, ex, status)

    def _executor_done(self, fw: FrameworkEntry, ex: ExecutorEntry, status: int | None) -> None:
        ex_id = ex.executor_id
        if fw.executors.get(ex_id) is ex:
            del fw.executors[ex_id]
            fw.completed_executors.append(ex)
        self.counters["executors_terminated"] += 1
        if self.agent_id is not None and status is not None:
            self._send(ExecutorExited(agent_id=self.agent_id, framework_id=ex.framework_id,
                                      executor_id=ex_id, status=status))
        self._maybe_complete_framework(fw)

    # ------------------------------------------------------------------ status updates
    def _make_status(self, task_id: str, ex_id: str, state: str, source: str,
                     reason: str | None, message: str | None, container_status: Any = None) -> TaskStatus:
        return TaskStatus(
            task_id=ID(value=task_id), state=state, message=message, source=source,  # type: ignore[arg-type]
            reason=reason, agent_id=ID(value=self.agent_id or ""), executor_id=ID(value=ex_id),
            timestamp=time.time(), uuid=uuid.uuid4().bytes, container_status=container_status,
        )

    def _update(self, task: TaskEntry, state: str, *, reason: str | None = None, message: str | None = None,
                source: str = "SOURCE_EXECUTOR", container_status: Any = None) -> None:
        if is_terminal(task.state):
            return
        status = self._make_status(task.task_id, task.executor_id, state, source, reason, message, container_status)
        task.state = state
        task.statuses.append((state, status.timestamp or 0.0))
        if is_terminal(state):
            self._task_terminated(task)
        self.counters["status_updates"] += 1
        self.status_updates.update(StatusUpdate(
            agent_id=self.agent_id or "", framework_id=task.framework_id, status=status))

    def _task_terminated(self, task: TaskEntry) -> None:
        self._sub_used(task.resources)
        key = {"TASK_FINISHED": "tasks_finished", "TASK_FAILED": "tasks_failed",
               "TASK_KILLED": "tasks_killed", "TASK_LOST": "tasks_lost"}.get(task.state)
        if key:
            self.counters[key] += 1
        fw = self.frameworks.get(task.framework_id)
        ex = fw.executors.get(task.executor_id) if fw else None
        if ex is not None and ex.tasks.pop(task.task_id, None) is not None:
            ex.completed_tasks.append(task)

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
        if self.status_updates.acknowledge(msg.framework_id, msg.task_id, msg.uuid):
            entry = self.tasks.get((msg.framework_id, msg.task_id))
            if entry is not None and is_terminal(entry.state) and \
                    self.status_updates.latest_state(msg.framework_id, msg.task_id) is None:
                del self.tasks[(msg.framework_id, msg.task_id)]

    # ------------------------------------------------------------------ kill / shutdown
    def _on_kill_task(self, msg: KillTask) -> None:
        self.kill_task(msg.framework_id, msg.task_id, msg.kill_policy)

    def kill_task(self, framework_id: str, task_id: str, kill_policy: KillPolicy | None = None) -> asyncio.Task | None:
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            logger.warning("kill for unknown task agent=%s framework=%s task=%s", self.agent_id, framework_id, task_id)
            return None
        if is_terminal(task.state):
            return None
        if kill_policy is not None:
            task.kill_policy = kill_policy
        if task.kill_requested:
            return task.killing
        task.kill_requested = True
        logger.info("killing task agent=%s framework=%s task=%s", self.agent_id, framework_id, task_id)
        fw = self.frameworks.get(framework_id)
        ex = fw.executors.get(task.executor_id) if fw else None
        if fw is not None and ex is not None and ex.container is not None:
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

    def _on_shutdown_executor(self, msg: ShutdownExecutor) -> None:
        fw = self.frameworks.get(msg.framework_id)
        ex = fw.executors.get(msg.executor_id) if fw else None
        if ex is None:
            logger.warning("shutdown for unknown executor agent=%s framework=%s executor=%s",
                           self.agent_id, msg.framework_id, msg.executor_id)
            return
        for task_id in list(ex.tasks):
            self.kill_task(msg.framework_id, task_id)

    def _on_shutdown_framework(self, msg: ShutdownFramework) -> None:
        self._spawn(self.shutdown_framework(msg.framework_id))

    async def shutdown_framework(self, framework_id: str) -> None:
        logger.info("shutting down framework agent=%s framework=%s", self.agent_id, framework_id)
        await self._kill_all(framework_id)
        # No one will acknowledge these updates any more (the master removed the framework).
        self.status_updates.cleanup_framework(framework_id)
        for key in [k for k in self.tasks if k[0] == framework_id]:
            del self.tasks[key]

    async def _kill_all(self, framework_id: str | None = None) -> None:
        waits = []
        for fw_id, fw in list(self.frameworks.items()):
            if framework_id is not None and fw_id != framework_id:
                continue
            for ex in list(fw.executors.values()):
                for task_id in list(ex.tasks):
                    self.kill_task(fw_id, task_id)
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

    def _on_framework_message(self, msg: FrameworkToExecutor) -> None:
        self.counters["invalid_framework_messages"] += 1
        logger.info("framework message dropped (no executor API yet) agent=%s framework=%s executor=%s bytes=%d",
                    self.agent_id, msg.framework_id, msg.executor_id, len(msg.data))

    async def close(self) -> None:
        self.status_updates.close()
        for t in list(self._bg):
            if not t.done():
                t.cancel()
        if self._bg:
            await asyncio.gather(*self._bg, return_exceptions=True)
        self.containerizer.close()

    # ------------------------------------------------------------------ views
    def running_tasks(self) -> list[TaskEntry]:
        return [t for t in self.tasks.values() if not is_terminal(t.state)]


__all__ = ["Agent", "TaskEntry", "ExecutorEntry", "FrameworkEntry", "VERSION"]
