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
import base64
import contextlib
import logging
import os
import sys
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import psutil

from mesos_nb.protocol.channel import (
    AckUpdate,
    AgentRegistered,
    ExecutorExited,
    ExecutorToFramework,
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
from mesos_nb.protocol.version import VERSION

from . import checkpoint as ckpt
from . import sandbox
from .attributes import parse_attributes
from .config import AgentConfig
from .containerizer import (
    UNKNOWN_STATUS,
    Container,
    Containerizer,
    LaunchError,
    LaunchSpec,
    describe_status,
    make_containerizer,
    read_status_file,
)
from .detect import detect_resources
from .isolation import Limits
from .status_updates import StatusUpdateManager, UpdateStore

logger = logging.getLogger("mesos_nb.agent")

MAX_COMPLETED_FRAMEWORKS = 50
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150
MAX_COMPLETED_TASKS_PER_EXECUTOR = 200
MAX_PORT_ENV = 1000  # PORT0..PORTn are set only for tasks with at most this many ports
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")
SWITCHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "switchboard.py")
COMMAND_EXECUTOR_MEM = 32 * 1024 * 1024  # Mesos' command executor overhead, added to supervised limits


class TaskEntry:
    __slots__ = (
        "info", "framework_id", "executor_id", "state", "statuses", "resources",
        "kill_requested", "kill_policy", "killing", "health", "kill_reason",
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
        self.health: Any = None  # health.HealthChecker
        self.kill_reason: str | None = None

    @property
    def task_id(self) -> str:
        return self.info.task_id.value


class ExecutorEntry:
    __slots__ = (
        "info", "framework_id", "container_id", "directory", "tasks", "completed_tasks",
        "container", "command_executor", "resources", "state", "stream", "queued", "launched",
        "checkpoint", "run_meta", "timer", "gpus", "recovered", "failure_reason",
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
        # LAUNCHING -> REGISTERING -> RUNNING -> TERMINATING -> TERMINATED (custom executors)
        self.state = "LAUNCHING"
        self.stream: Any = None  # executor_api.ExecutorStream while subscribed
        self.queued: list[tuple[bool, list[TaskInfo]]] = []  # (is_group, tasks) until SUBSCRIBE
        self.launched: set[str] = set()  # task ids sent in LAUNCH / LAUNCH_GROUP
        self.checkpoint = False
        self.run_meta: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.gpus: list[int] = []
        self.recovered = False
        self.failure_reason: str | None = None

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


def _wants_tty(info: TaskInfo) -> bool:
    container = info.container
    return isinstance(container, dict) and isinstance(container.get("tty_info"), dict)


def _grace_seconds(policy: KillPolicy | None) -> float | None:
    if policy is not None and policy.grace_period is not None:
        return max(0.0, policy.grace_period.nanoseconds / 1e9)
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (seconds since boot): with the pid, a process's identity. Read
    straight from /proc: it is on every launch's path, and psutil.Process costs 10× more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19]) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start_time: float | None) -> bool:
    st = _process_start(pid)
    if st is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return start_time is None or abs(st - start_time) < 1.0


def _runs_container(pid: int, container_id: str | None) -> bool:
    """Whether ``pid`` is still the process this agent started for ``container_id`` (not a
    recycled pid): its environment names the container."""
    if not container_id:
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return b"MESOS_CONTAINER_ID=" + container_id.encode() + b"\0" in env


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
        self.recovering = False
        self.counters = {
            "tasks_finished": 0, "tasks_failed": 0, "tasks_killed": 0, "tasks_lost": 0,
            "launched_tasks": 0, "executors_terminated": 0, "status_updates": 0,
            "valid_framework_messages": 0, "invalid_framework_messages": 0,
            "recovered_executors": 0, "recovery_errors": 0,
        }
        self._send: Callable[[Any], None] = send or (lambda msg: None)
        self.store = store if store is not None else ckpt.DiskUpdateStore(self._task_meta_dir)
        self.status_updates = StatusUpdateManager(
            self._send_update,
            retry_min=config.status_update_retry_min,
            retry_max=config.status_update_retry_max,
            store=self.store,
        )
        self.status_updates.paused = True  # until registered
        self._bg: set[asyncio.Task] = set()
        self._base_env = dict(os.environ)
        self._checkpointed_fw: set[str] = set()
        self._pid_log = ckpt.PidLog()  # non-checkpointing frameworks: pids only, unsynced
        self._sandbox_parents: set[str] = set()  # .../frameworks/<fw>/executors made already
        ngpus = int(self.total.scalar("gpus")) if "gpus" in self.total.names() else 0
        self._free_gpus: list[int] = list(range(ngpus))
        self.health = None  # health.HealthChecks, created lazily
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

    @property
    def isolation(self) -> str:
        iso = getattr(self.containerizer, "isolator", None)
        return iso.name if iso is not None else "custom"

    def set_sender(self, send: Callable[[Any], None]) -> None:
        self._send = send

    def agent_info(self) -> dict[str, Any]:
        return {
            "id": {"value": self.agent_id or ""}, "hostname": self.hostname, "port": self.port,
            "resources": msgspec_builtins(self.total.to_proto()),
            "attributes": msgspec_builtins(self.attributes),
        }

    def _reported_state(self, entry: TaskEntry) -> str:
        """Terminal tasks whose terminal update is not acknowledged yet are reported in their
        last non-terminal state: the (retried) update itself tells the master how they ended."""
        if not is_terminal(entry.state):
            return entry.state
        for state, _ in reversed(entry.statuses):
            if not is_terminal(state):
                return state
        return "TASK_STAGING"

    def register_message(self) -> RegisterAgent:
        """REGISTER (first time) or re-REGISTER (known ``agent_id`` + running tasks)."""
        reports = []
        if self.agent_id is not None:
            for entry in self.tasks.values():
                fw = self.frameworks.get(entry.framework_id) or self.completed_frameworks.get(entry.framework_id)
                reports.append(TaskReport(
                    framework_id=entry.framework_id, task=entry.info, state=self._reported_state(entry),
                    executor_id=entry.executor_id, framework=fw.info if fw else None,
                ))
        return RegisterAgent(
            key=self.key, hostname=self.hostname, port=self.port,
            resources=self.total.to_proto(), attributes=self.attributes,
            agent_id=self.agent_id, version=VERSION, tasks=reports,
        )

    def on_registered(self, msg: AgentRegistered) -> None:
        changed = self.agent_id is not None and self.agent_id != msg.agent_id
        if changed:
            logger.warning("agent id changed old=%s new=%s: the master no longer knows this agent's tasks; "
                           "killing them", self.agent_id, msg.agent_id)
            self._forget_everything()
        first = self.agent_id is None or changed
        self.agent_id = msg.agent_id
        self.master_id = msg.master_id
        self.registered = True
        logger.info("agent %s agent=%s master=%s port=%d isolation=%s",
                    "registered" if first else "re-registered", self.agent_id, self.master_id, self.port,
                    self.isolation)
        try:
            ckpt.checkpoint_agent(self.config.work_dir, self.agent_id, {
                "id": {"value": self.agent_id}, "hostname": self.hostname, "port": self.port,
            })
        except OSError:
            logger.exception("cannot checkpoint the agent id agent=%s", self.agent_id)
        self.status_updates.resend_all()

    def on_disconnected(self) -> None:
        self.registered = False
        self.status_updates.pause()

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

    # ------------------------------------------------------------------ checkpoint paths
    def _checkpoints(self, fw_id: str) -> bool:
        fw = self.frameworks.get(fw_id)
        return bool(fw and fw.info.checkpoint)

    def _task_meta_dir(self, fw_id: str, task_id: str) -> str | None:
        entry = self.tasks.get((fw_id, task_id))
        if entry is None or not self._checkpoints(fw_id) or self.agent_id is None:
            return None
        fw = self.frameworks.get(fw_id)
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
                    # by the MESOS_CONTAINER_ID in its environment (see _kill_pid).
                    self._pid_log.append(ckpt.framework_meta(self.config.work_dir, self.agent_id, ex.framework_id), {
                        "pid": container.pid, "container_id": ex.container_id})
                except OSError:
                    logger.exception("cannot record a container's pid agent=%s executor=%s", self.agent_id,
                                     ex.executor_id)
            return
        try:
            ckpt.checkpoint_run(ex.run_meta, {
                "pid": container.pid, "start_time": _process_start(container.pid), "kind": kind,
                "directory": ex.directory, "cpus": container.limits.cpus, "mem_bytes": container.limits.mem_bytes,
                "launched": time.time(), "gpus": ex.gpus,
            }, sync=ex.checkpoint)
        except OSError:
            logger.exception("cannot checkpoint container agent=%s executor=%s", self.agent_id, ex.executor_id)

    def _maybe_gc(self, fw_id: str, ex_id: str) -> None:
        """Drop an ended executor's checkpoint once none of its tasks awaits an ack."""
        fw = self.frameworks.get(fw_id) or self.completed_frameworks.get(fw_id)
        if fw is None or ex_id in fw.executors or not fw.info.checkpoint:
            return
        if any(k[0] == fw_id and t.executor_id == ex_id for k, t in self.tasks.items()):
            return
        if self.agent_id:
            ckpt.remove_tree(ckpt.executor_meta(self.config.work_dir, self.agent_id, fw_id, ex_id))

    # ------------------------------------------------------------------ frameworks
    def _framework(self, info: FrameworkInfo) -> FrameworkEntry:
        fw_id = info.id.value if info.id else ""
        fw = self.frameworks.get(fw_id)
        if fw is None:
            fw = self.completed_frameworks.pop(fw_id, None) or FrameworkEntry(info)
            self.frameworks[fw_id] = fw
        if fw.info != info:
            self._checkpointed_fw.discard(fw_id)
        fw.info = info
        return fw

    def _maybe_complete_framework(self, fw: FrameworkEntry) -> None:
        if fw.executors:
            return
        fw_id = fw.framework_id
        if not fw.info.checkpoint and self.agent_id:
            self._pid_log.reset(ckpt.framework_meta(self.config.work_dir, self.agent_id, fw_id))
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
        executor = msg.executor or (tasks[0].executor if tasks else None)
        self._launch_with_executor(info, executor, tasks, fw_id, group=msg.task is None)

    def _refuse(self, fw_id: str, tasks: list[TaskInfo], ex_id: str, reason: str, message: str) -> None:
        for task in tasks:
            self._agent_update(fw_id, task.task_id.value, ex_id, "TASK_FAILED", reason=reason, message=message)
        logger.warning("tasks refused agent=%s framework=%s tasks=%s: %s", self.agent_id, fw_id,
                       ",".join(t.task_id.value for t in tasks), message)

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
                executor = msgspec_replace(executor, framework_id=ID(value=fw_id))
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
        if ex.stream is not None:
            self._send_launch(ex, group, tasks)
        else:
            ex.queued.append((group, tasks))
        if new_executor:
            self._spawn(self._run_executor(fw, ex))

    def _send_launch(self, ex: ExecutorEntry, group: bool, tasks: list[TaskInfo]) -> None:
        tasks = [t for t in tasks if t.task_id.value not in ex.launched and t.task_id.value in ex.tasks]
        if not tasks:
            return
        for t in tasks:
            ex.launched.add(t.task_id.value)
        if group:
            ex.stream.send({"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": msgspec_builtins(tasks)}}})
        else:
            for t in tasks:
                ex.stream.send({"type": "LAUNCH", "launch": {"task": msgspec_builtins(t)}})

    async def _run_executor(self, fw: FrameworkEntry, ex: ExecutorEntry) -> None:
        """Fetch, start the executor's command in its own session, wait for it to subscribe
        (registration timeout) and then for it to exit."""
        cmd = ex.info.command
        assert cmd is not None
        if cmd.uris:
            from .fetcher import FetchError, fetch_all

            try:
                await fetch_all(cmd.uris, ex.directory, cache_dir=os.path.join(self.config.work_dir, "fetcher"),
                                cache_size=self.config.fetcher_cache_size)
            except FetchError as e:
                self._fail_executor_tasks(ex, "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to fetch URIs: {e}")
                self._executor_done(fw, ex, None)
                return
        if ex.state != "LAUNCHING":  # killed or shut down while fetching
            self._executor_done(fw, ex, None)
            return
        first = next(iter(ex.tasks.values()), None)
        limits = self._limits(ex.resources + sum((t.resources for t in ex.tasks.values()), Resources()))
        ex.gpus = self._take_gpus(ex.resources, *(t.resources for t in ex.tasks.values()))
        try:
            executable, argv = self._argv(cmd)
            env = self._environment(fw, ex, first, command=cmd, extra_resources=[t.resources for t in ex.tasks.values()])
            spec = LaunchSpec(
                container_id=ex.container_id, argv=argv, executable=executable, env=env, cwd=ex.directory,
                stdout_path=os.path.join(ex.directory, "stdout"), stderr_path=os.path.join(ex.directory, "stderr"),
                limits=limits,
            )
            container = await self.containerizer.launch(spec)
        except LaunchError as e:
            self._fail_executor_tasks(ex, "REASON_CONTAINER_LAUNCH_FAILED", str(e))
            self._executor_done(fw, ex, None)
            return
        ex.container = container
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
        if ex.timer is not None:
            ex.timer.cancel()
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
                "REASON_CONTAINER_LIMITATION_MEMORY",) else state
            self._update(task, st, reason=reason, message=message, source="SOURCE_AGENT")
        ex.queued.clear()

    def _executor_exited(self, fw: FrameworkEntry, ex: ExecutorEntry, status: int) -> None:
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        ex.state = "TERMINATED"
        if ex.stream is not None:
            ex.stream.close()
            ex.stream = None
        _, message = describe_status(status)
        limitation = ex.container.limitation if ex.container is not None else None
        if limitation:
            self._fail_executor_tasks(ex, "REASON_CONTAINER_LIMITATION_MEMORY", limitation)
        else:
            self._fail_executor_tasks(ex, "REASON_EXECUTOR_TERMINATED", f"Executor terminated: {message}")
        logger.info("executor exited agent=%s framework=%s executor=%s: %s", self.agent_id, fw.framework_id,
                    ex.executor_id, message)
        self._executor_done(fw, ex, status)

    # ------------------------------------------------------------------ executor API (called by executor_api)
    def executor_subscribed(self, ex: ExecutorEntry, stream: Any, sub: Any) -> str | None:
        fw = self.frameworks.get(ex.framework_id)
        if fw is None:
            return "Framework cannot be found"
        if ex.stream is not None:
            ex.stream.close()
        first = not ex.launched and not ex.recovered
        ex.stream = stream
        ex.state = "RUNNING"
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        unacked = {t.task_id.value for t in sub.unacknowledged_tasks}
        ex.launched |= unacked & set(ex.tasks)
        logger.info("executor %s agent=%s framework=%s executor=%s", "subscribed" if first else "re-subscribed",
                    self.agent_id, fw.framework_id, ex.executor_id)
        stream.send({"type": "SUBSCRIBED", "subscribed": {
            "executor_info": msgspec_builtins(ex.info), "framework_info": msgspec_builtins(fw.info),
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

    # ------------------------------------------------------------------ command tasks
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
        ex = ExecutorEntry(ex_info, fw_id, container_id, directory, command_executor=True)
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

    @staticmethod
    def _limits(r: Resources, extra_mem: int = 0) -> Limits:
        names = r.names()
        cpus = r.scalar("cpus") if "cpus" in names else 0.0
        mem = int(r.scalar("mem") * 1024 * 1024) if "mem" in names else 0
        return Limits(cpus=cpus, mem_bytes=mem + extra_mem if mem else 0)

    def _take_gpus(self, *resources: Resources) -> list[int]:
        n = int(sum(r.scalar("gpus") for r in resources if "gpus" in r.names()))
        taken, self._free_gpus = self._free_gpus[:n], self._free_gpus[n:]
        return taken

    def _environment(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry | None, *,
                     command: CommandInfo | None = None, extra_resources: list[Resources] | None = None) -> dict[str, str]:
        env = dict(self._base_env)
        cfg = self.config
        env.update({
            "MESOS_FRAMEWORK_ID": ex.framework_id,
            "MESOS_EXECUTOR_ID": ex.executor_id,
            "MESOS_DIRECTORY": ex.directory,
            "MESOS_SANDBOX": ex.directory,
            "MESOS_SLAVE_ID": self.agent_id or "",
            "MESOS_AGENT_ID": self.agent_id or "",
            "MESOS_SLAVE_PID": self.pid,
            "MESOS_AGENT_ENDPOINT": self.endpoint,
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{cfg.executor_shutdown_grace_period:g}secs",
            "MESOS_CONTAINER_ID": ex.container_id,
            "LIBPROCESS_PORT": "0",
        })
        for k in ("MESOS_CHECKPOINT", "MESOS_RECOVERY_TIMEOUT", "MESOS_SUBSCRIPTION_BACKOFF_MAX", "MESOS_TASK_ID"):
            env.pop(k, None)
        if fw.info.checkpoint:
            # pymesos treats any non-empty MESOS_CHECKPOINT as true: set it only when checkpointing.
            env["MESOS_CHECKPOINT"] = "1"
            env["MESOS_RECOVERY_TIMEOUT"] = f"{cfg.recovery_timeout:g}secs"
            env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = f"{cfg.executor_reregistration_timeout:g}secs"
        if ex.command_executor and task is not None:
            env["MESOS_TASK_ID"] = task.task_id
        ports: list[int] = []
        sources = [task.resources] if (ex.command_executor and task is not None) else [ex.resources, *(extra_resources or [])]
        for r in sources:
            if "ports" in r.names():
                for b, e in r.ranges("ports"):
                    if e - b < MAX_PORT_ENV:
                        ports.extend(range(b, e + 1))
        if ports and len(ports) <= MAX_PORT_ENV:
            for i, p in enumerate(ports):
                env[f"PORT{i}"] = str(p)
            env["PORT"] = str(ports[0])
            env["PORTS"] = ",".join(map(str, ports))
        if self._free_gpus or ex.gpus or "gpus" in self.total.names():
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ex.gpus))
        cmd = command if command is not None else (task.info.command if task is not None else None)
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
        cmd = task.info.command
        if cmd is not None and cmd.uris and not task.kill_requested:
            from .fetcher import FetchError, fetch_all

            try:
                await fetch_all(cmd.uris, ex.directory, cache_dir=os.path.join(self.config.work_dir, "fetcher"),
                                cache_size=self.config.fetcher_cache_size)
            except FetchError as e:
                logger.warning("fetch failed agent=%s framework=%s task=%s: %s", self.agent_id, fw_id, task_id, e)
                self._update(task, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED",
                             message=f"Failed to fetch URIs: {e}")
                self._executor_done(fw, ex, None)
                return
        if task.kill_requested:
            self._update(task, "TASK_KILLED", reason="REASON_TASK_KILLED_DURING_LAUNCH",
                         message="Task killed before it was launched")
            self._executor_done(fw, ex, None)
            return
        supervised = ex.checkpoint and ex.run_meta is not None
        try:
            executable, argv = self._argv(task.info.command)  # type: ignore[arg-type]
            if _wants_tty(task.info):  # a TTY task runs under its I/O switchboard (task attach)
                executable, argv = None, [sys.executable, "-S", SWITCHBOARD, ex.container_id, executable or "", *argv]
            ex.gpus = self._take_gpus(task.resources)
            status_path = None
            if supervised:
                assert ex.run_meta is not None
                status_path = os.path.join(ex.run_meta, "exit.status")
                argv = [sys.executable, "-S", SUPERVISOR, status_path, executable or "", *argv]
                executable = None
            spec = LaunchSpec(
                container_id=ex.container_id, argv=argv, executable=executable,
                env=self._environment(fw, ex, task), cwd=ex.directory,
                stdout_path=os.path.join(ex.directory, "stdout"),
                stderr_path=os.path.join(ex.directory, "stderr"),
                limits=self._limits(task.resources, COMMAND_EXECUTOR_MEM if supervised else 0),
                status_path=status_path,
            )
            container = await self.containerizer.launch(spec)
        except LaunchError as e:
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
            self._update(task, "TASK_FAILED", reason="REASON_CONTAINER_LIMITATION_MEMORY", message=limitation)
        elif task.kill_requested:
            self._update(task, "TASK_KILLED", message=message, reason=task.kill_reason)
        elif ok:
            self._update(task, "TASK_FINISHED", message=message)
        else:
            self._update(task, "TASK_FAILED", message=message)  # Mesos' command executor sets no reason
        logger.info("task %s agent=%s framework=%s task=%s: %s", task.state.lower()[5:], self.agent_id,
                    fw.framework_id, task.task_id, limitation or message)
        self._executor_done(fw, ex, status)

    def _executor_done(self, fw: FrameworkEntry, ex: ExecutorEntry, status: int | None) -> None:
        ex_id = ex.executor_id
        ex.state = "TERMINATED"
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
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

    # ------------------------------------------------------------------ status updates
    def _make_status(self, task_id: str, ex_id: str, state: str, source: str,
                     reason: str | None, message: str | None, container_status: Any = None) -> TaskStatus:
        return TaskStatus(
            task_id=ID(value=task_id), state=state, message=message, source=source,  # type: ignore[arg-type]
            reason=reason, agent_id=ID(value=self.agent_id or ""), executor_id=ID(value=ex_id),
            timestamp=time.time(), uuid=uuid.uuid4().bytes, container_status=container_status,
        )

    def _update(self, task: TaskEntry, state: str, *, reason: str | None = None, message: str | None = None,
                source: str = "SOURCE_EXECUTOR", container_status: Any = None, healthy: bool | None = None) -> None:
        if is_terminal(task.state):
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
        if not is_terminal(task.state):
            if task.health is not None and status.state == "TASK_RUNNING" and status.healthy is None:
                status.healthy = task.health.healthy
            task.state = status.state
            task.statuses.append((status.state, status.timestamp or time.time()))
            if is_terminal(status.state):
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
        try:
            ok = self.status_updates.acknowledge(msg.framework_id, msg.task_id, msg.uuid)
        except OSError:
            logger.exception("cannot checkpoint an ack agent=%s task=%s", self.agent_id, msg.task_id)
            ok = False
        if ok:
            entry = self.tasks.get((msg.framework_id, msg.task_id))
            if entry is not None and is_terminal(entry.state) and \
                    self.status_updates.latest_state(msg.framework_id, msg.task_id) is None:
                del self.tasks[(msg.framework_id, msg.task_id)]
                self._maybe_gc(msg.framework_id, entry.executor_id)

    # ------------------------------------------------------------------ health checks
    def _start_health(self, task: TaskEntry, ex: ExecutorEntry) -> None:
        if task.health is not None or is_terminal(task.state):
            return
        from .health import HealthChecker

        task.health = HealthChecker(
            task.info.health_check, cwd=ex.directory, env=self._environment(
                self.frameworks[ex.framework_id], ex, task) if ex.framework_id in self.frameworks else dict(os.environ),
            on_change=lambda healthy, t=task: self._health_changed(t, healthy),
            on_kill=lambda message, t=task: self._health_kill(t, message),
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
        if is_terminal(task.state):
            return
        logger.warning("task unhealthy, killing agent=%s framework=%s task=%s: %s", self.agent_id,
                       task.framework_id, task.task_id, message)
        task.kill_reason = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
        self.kill_task(task.framework_id, task.task_id)

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

    def _send_kill(self, ex: ExecutorEntry, task: TaskEntry) -> None:
        kill: dict[str, Any] = {"task_id": {"value": task.task_id}}
        if task.kill_policy is not None:
            kill["kill_policy"] = msgspec_builtins(task.kill_policy)
        ex.stream.send({"type": "KILL", "kill": kill})

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

    # ------------------------------------------------------------------ recovery
    def previous_port(self) -> int:
        """The port the previous agent process listened on (recovered executors call it back)."""
        if not self.config.recover:
            return 0
        state = ckpt.read_state(self.config.work_dir)
        port = state.slave_info.get("port") if state is not None else None
        return port if isinstance(port, int) else 0

    def recover(self) -> None:
        """Re-attach to what the previous agent process left running (before registering)."""
        if not self.config.recover:
            return
        state = ckpt.read_state(self.config.work_dir)
        if state is None:
            return
        self.recovering = True
        try:
            self._recover(state)
        finally:
            self.recovering = False

    def _recover(self, state: ckpt.RecoveredState) -> None:
        self.agent_id = state.agent_id
        logger.info("recovering agent=%s frameworks=%d%s", state.agent_id, len(state.frameworks),
                    " (host rebooted)" if state.rebooted else "")
        for fw_id, rf in state.frameworks.items():
            if not rf.info.checkpoint:
                # Nothing of a non-checkpointing framework may outlive the agent.
                for rex in rf.executors.values():
                    for run in rex.runs:
                        self._kill_orphan(run)
                for rec in rf.pids:
                    self._kill_pid(rec["pid"], rec.get("start_time"), rec.get("container_id"))
                ckpt.remove_tree(rf.path)
                continue
            fw = self._framework(rf.info)
            self._checkpointed_fw.add(fw_id)
            for ex_id, rex in rf.executors.items():
                runs = sorted(rex.runs, key=lambda r: r.info.get("launched", 0))
                for old in runs[:-1]:
                    self._kill_orphan(old)
                    ckpt.remove_tree(old.path)
                if not runs:
                    ckpt.remove_tree(rex.path)
                    continue
                try:
                    self._recover_executor(fw, rex, runs[-1], state.rebooted)
                except Exception:
                    self.counters["recovery_errors"] += 1
                    logger.exception("cannot recover executor agent=%s framework=%s executor=%s",
                                     self.agent_id, fw_id, ex_id)
            self._maybe_complete_framework(fw)

    def _kill_orphan(self, run: ckpt.RecoveredRun) -> None:
        pid = run.info.get("pid")
        if isinstance(pid, int):
            self._kill_pid(pid, run.info.get("start_time"), run.container_id)

    def _kill_pid(self, pid: int, start_time: float | None, container_id: str | None) -> None:
        ours = _alive(pid, start_time) if start_time is not None else _runs_container(pid, container_id)
        if ours:
            logger.info("killing an orphaned container pid=%d container=%s", pid, container_id)
            with contextlib.suppress(OSError):
                os.killpg(pid, 9)

    def _recover_executor(self, fw: FrameworkEntry, rex: ckpt.RecoveredExecutor, run: ckpt.RecoveredRun,
                          rebooted: bool) -> None:
        fw_id = fw.framework_id
        command = run.info.get("kind") == "command"
        ex = ExecutorEntry(rex.info, fw_id, run.container_id, run.info.get("directory", ""), command_executor=command)
        ex.checkpoint = True
        ex.recovered = True
        ex.run_meta = run.path
        ex.gpus = [g for g in run.info.get("gpus", []) if g in self._free_gpus]
        self._free_gpus = [g for g in self._free_gpus if g not in ex.gpus]
        ex_id = ex.executor_id
        fw.executors[ex_id] = ex
        self._attach(fw_id, ex_id, ex.directory)
        if not command:
            self._add_used(ex.resources)
        live = 0
        for tid, rt in run.tasks.items():
            try:
                res = Resources.from_proto(rt.info.resources)
            except ValueError:
                res = Resources()
            entry = TaskEntry(rt.info, fw_id, ex_id, res)
            entry.state = rt.state
            entry.statuses = [(u.state, u.timestamp or 0.0) for u in rt.updates]
            self.store.load(fw_id, tid, rt.records) if isinstance(self.store, ckpt.DiskUpdateStore) else None
            unacked = rt.unacked()
            if is_terminal(entry.state) and not unacked:
                ex.completed_tasks.append(entry)
                continue
            self.tasks[(fw_id, tid)] = entry
            if is_terminal(entry.state):
                ex.completed_tasks.append(entry)
            else:
                ex.tasks[tid] = entry
                self._add_used(res)
                live += 1
            if any(u.state != "TASK_STAGING" for u in rt.updates) or not command:
                ex.launched.add(tid)
            for st in unacked:
                self.status_updates.update(StatusUpdate(agent_id=self.agent_id or "", framework_id=fw_id, status=st),
                                           checkpoint=False)
        pid = run.info.get("pid")
        alive = (not rebooted and not run.sentinel and isinstance(pid, int)
                 and _alive(pid, run.info.get("start_time")))
        limits = Limits(cpus=run.info.get("cpus", 0.0), mem_bytes=run.info.get("mem_bytes", 0))
        container = None
        if alive:
            assert isinstance(pid, int)
            container = self.containerizer.recover(run.container_id, pid, ex.directory, limits=limits,
                                                   status_path=run.status_path if command else None)
        self.counters["recovered_executors"] += 1
        logger.info("recovered executor agent=%s framework=%s executor=%s live_tasks=%d running=%s",
                    self.agent_id, fw_id, ex_id, live, container is not None)
        if command:
            task = next(iter(ex.tasks.values()), None)
            if container is not None and task is not None:
                ex.container = container
                ex.state = "RUNNING"
                if task.info.health_check is not None and task.state == "TASK_RUNNING":
                    self._start_health(task, ex)
                self._spawn(self._watch_command(fw, ex, task))
            elif task is not None:
                status = read_status_file(run.status_path)
                self._command_exited(fw, ex, task, status if status is not None else UNKNOWN_STATUS)
            else:
                if container is not None:
                    self._spawn(self.containerizer.destroy(container, 0))
                self._executor_done(fw, ex, None)
            return
        if container is not None:
            ex.container = container
            ex.state = "REGISTERING"
            self._arm_registration(fw, ex, self.config.executor_reregistration_timeout,
                                   "REASON_EXECUTOR_REREGISTRATION_TIMEOUT")
            self._spawn(self._watch_executor(fw, ex))
        else:
            self._executor_exited(fw, ex, UNKNOWN_STATUS)

    async def close(self) -> None:
        self.status_updates.close()
        for fw in self.frameworks.values():
            for ex in fw.executors.values():
                if ex.timer is not None:
                    ex.timer.cancel()
                if ex.stream is not None:
                    ex.stream.close()
                for t in ex.tasks.values():
                    self._stop_health(t)
        for t in list(self._bg):
            if not t.done():
                t.cancel()
        if self._bg:
            await asyncio.gather(*self._bg, return_exceptions=True)
        self.containerizer.close()
        self._pid_log.close()

    # ------------------------------------------------------------------ views
    def running_tasks(self) -> list[TaskEntry]:
        return [t for t in self.tasks.values() if not is_terminal(t.state)]


def msgspec_builtins(obj: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(obj)


def msgspec_replace(obj: Any, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(obj, **changes)



__all__ = ["Agent", "TaskEntry", "ExecutorEntry", "FrameworkEntry", "VERSION"]
