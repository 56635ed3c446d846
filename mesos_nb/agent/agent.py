"""One agent: its identity, resources and records, and the dispatch of the messages the
master sends it over the channel. The work is done by the mixins it is composed of, one job
each, all over this one state object (see README.md for the data flow):

* :class:`~.command_executor.CommandExecutor` -- command tasks (the built-in executor);
* :class:`~.custom_executors.CustomExecutors` -- custom executors and task groups, and the
  calls of the v1 executor API;
* :class:`~.task_status.TaskStatusUpdates` -- task state changes, sent reliably; ACKs;
* :class:`~.task_health.TaskHealth` -- health checks;
* :class:`~.lifecycle.Lifecycle` -- kills and shutdowns, an executor's end;
* :class:`~.checkpointing.Checkpointing` -- what is checkpointed when;
* :class:`~.recovery.Recovery` -- re-attaching after a restart.

``AgentProcess`` decodes a channel frame and calls :meth:`Agent.handle` for each message
addressed to this agent; updates go out through the ``send`` callback it installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from mesos_nb.protocol.channel import (
    AckUpdate,
    AgentRegistered,
    CheckpointResources,
    ExecutorReport,
    FrameworkToExecutor,
    KillTask,
    RegisterAgent,
    RunTask,
    ShutdownAgent,
    ShutdownExecutor,
    ShutdownFramework,
    TaskReport,
)
from mesos_nb.protocol.messages import TERMINAL_STATES, CommandInfo, FrameworkInfo, TaskInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.protocol.version import VERSION

from . import checkpoint as ckpt
from . import resources_checkpoint, sandbox, volumes
from .attributes import parse_attributes
from .auth import executor_key, executor_token, read_credentials
from .checkpointing import Checkpointing
from .command_executor import CommandExecutor
from .config import AgentConfig
from .container_images import ContainerImages
from .container_spec import ImageSpec, VolumeSpec, parse_container
from .containerizer import Containerizer, LaunchError, make_containerizer
from .custom_executors import CustomExecutors
from .detect import detect_resources
from .environment import base_environment, build_environment, limits_for
from .http_auth import check_config as check_http_auth
from .io_control import block_device, io_limits
from .isolation import Limits
from .lifecycle import Lifecycle
from .records import MAX_COMPLETED_FRAMEWORKS, ExecutorEntry, FrameworkEntry, TaskEntry
from .recovery import Recovery
from .status_updates import StatusUpdateManager, UpdateStore
from .task_health import TaskHealth
from .task_status import TaskStatusUpdates
from .users import User, chown_sandbox, resolve_user, user_for

logger = logging.getLogger("mesos_nb.agent")


class Agent(CommandExecutor, CustomExecutors, TaskStatusUpdates, TaskHealth, Lifecycle, Checkpointing, Recovery):
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
        self.base_total = self.total
        self.total = resources_checkpoint.load(config.work_dir, self.total)
        try:
            volumes.sync(config.work_dir, self.total, self.total)  # a volume checkpointed just before a crash
        except OSError as e:
            logger.error("cannot prepare persistent volumes: %s", e)
        self.used = Resources()
        self.images = ContainerImages(config.docker_registry, config.resolved_store_dir(),
                                      max_bytes=config.image_store_max_bytes)
        self.containerizer = containerizer or make_containerizer(
            config.isolation, images=self.images, work_dir=config.work_dir,
            disk_watch_interval=config.container_disk_watch_interval,
            enforce_disk_quota=config.enforce_container_disk_quota, cgroups_root=config.cgroups_root)
        if getattr(self.containerizer, "images", self.images) is None:
            self.containerizer.images = self.images  # type: ignore[attr-defined]
        self._io_device: str | None = None
        self.port: int = config.port
        self.tls = False  # set by the AgentProcess when its listener serves https
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
        # Never the agent's own environment (its credential, MESOS_NB_* settings): see environment.py.
        self._base_env = base_environment(os.environ, config.executor_environment_variables)
        self.executor_key: bytes | None = executor_key(config.work_dir) if config.authenticate_http_executors else None
        self.http_credentials: dict[str, str] = (read_credentials(config.http_credentials)
                                                 if config.http_credentials else {})
        check_http_auth(config, self.http_credentials)  # fail at start, not on the first request
        self._checkpointed_fw: set[str] = set()
        self._pid_log = ckpt.PidLog()  # non-checkpointing frameworks: pids only, unsynced
        self._sandbox_parents: set[str] = set()  # .../frameworks/<fw>/executors made already
        ngpus = int(self.total.scalar("gpus")) if "gpus" in self.total.names() else 0
        self._free_gpus: list[int] = list(range(ngpus))
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunTask: self._on_run_task,
            KillTask: self._on_kill_task,
            AckUpdate: self._on_ack,
            ShutdownFramework: self._on_shutdown_framework,
            ShutdownAgent: self._on_shutdown_agent,
            ShutdownExecutor: self._on_shutdown_executor,
            FrameworkToExecutor: self._on_framework_message,
            CheckpointResources: self._on_checkpoint_resources,
        }

    # ------------------------------------------------------------------ identity
    @property
    def host(self) -> str:
        return self.config.host

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("", "0.0.0.0", "::") else self.hostname
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

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
            "resources": msgspec.to_builtins(self.total.to_proto()),
            "attributes": msgspec.to_builtins(self.attributes),
        }

    def _reported_state(self, entry: TaskEntry) -> str:
        """Terminal tasks whose terminal update is not acknowledged yet are reported in their
        last non-terminal state: the (retried) update itself tells the master how they ended."""
        if entry.state not in TERMINAL_STATES:
            return entry.state
        for state, _ in reversed(entry.statuses):
            if state not in TERMINAL_STATES:
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
            agent_id=self.agent_id, version=VERSION, tasks=reports, scheme="https" if self.tls else "http",
            executors=self._executor_reports() if self.agent_id is not None else [],
        )

    def _executor_reports(self) -> list[ExecutorReport]:
        """The live custom executors (with or without tasks): what they hold themselves is
        charged by the master only when it saw them start, so one that failed over relearns it here."""
        return [ExecutorReport(framework_id=fw.framework_id, executor=ex.info, framework=fw.info)
                for fw in self.frameworks.values() for ex in fw.executors.values()
                if not ex.command_executor and ex.state not in ("TERMINATING", "TERMINATED")]

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

    def _on_run_task(self, msg: RunTask) -> None:
        info = msg.framework
        fw_id = info.id.value if info.id else ""
        if msg.task is not None and msg.executor is None and msg.task.executor is None and msg.task.command is not None:
            self._launch_command_task(info, msg.task)
            return
        tasks = [msg.task] if msg.task is not None else list(msg.task_group)
        executor = msg.executor or (tasks[0].executor if tasks else None)
        self._launch_with_executor(info, executor, tasks, fw_id, group=msg.task is None)

    def _on_checkpoint_resources(self, msg: CheckpointResources) -> None:
        old = self.total
        try:
            self.total = resources_checkpoint.save(self.config.work_dir, self.base_total, msg.resources)
            volumes.sync(self.config.work_dir, old, self.total)  # new volumes made, destroyed ones deleted
        except (OSError, ValueError) as e:
            logger.error("cannot checkpoint resources agent=%s: %s", self.agent_id, e)
            return
        logger.info("resources checkpointed agent=%s total=%s", self.agent_id, self.total)

    def _refuse(self, fw_id: str, tasks: list[TaskInfo], ex_id: str, reason: str, message: str) -> None:
        for task in tasks:
            self._agent_update(fw_id, task.task_id.value, ex_id, "TASK_FAILED", reason=reason, message=message)
        logger.warning("tasks refused agent=%s framework=%s tasks=%s: %s", self.agent_id, fw_id,
                       ",".join(t.task_id.value for t in tasks), message)

    # ------------------------------------------------------------------ frameworks and resources
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

    def _take_gpus(self, *resources: Resources) -> list[int]:
        n = int(sum(r.scalar("gpus") for r in resources if "gpus" in r.names()))
        taken, self._free_gpus = self._free_gpus[:n], self._free_gpus[n:]
        return taken

    # ------------------------------------------------------------------ launch helpers
    def _environment(self, fw: FrameworkEntry, ex: ExecutorEntry, task: TaskEntry | None, *,
                     command: CommandInfo | None = None,
                     extra_resources: list[Resources] | None = None) -> dict[str, str]:
        """The environment of ``ex``'s container (for the command executor: of ``task``)."""
        command_task = task if ex.command_executor else None
        ports: Iterable[Resources] = ([command_task.resources] if command_task is not None
                                      else [ex.resources, *(extra_resources or [])])
        has_gpus = bool(self._free_gpus or ex.gpus) or "gpus" in self.total.names()
        return build_environment(
            self._base_env, self.config, agent_id=self.agent_id or "", agent_pid=self.pid,
            endpoint=self.endpoint, framework_id=ex.framework_id, executor_id=ex.executor_id,
            container_id=ex.container_id, directory=ex.directory, checkpoint=bool(fw.info.checkpoint),
            task_id=command_task.task_id if command_task is not None else None, port_sources=ports,
            gpus=ex.gpus if has_gpus else None,
            command=command if command is not None else (task.info.command if task is not None else None),
            token=executor_token(self.executor_key, ex.container_id) if self.executor_key is not None else None,
        )

    def _container_launch(self, container: Any, command: CommandInfo | None, resources: Resources,
                          labels: Iterable[Any] = (), extra_mem: int = 0
                          ) -> tuple[ImageSpec | None, list[VolumeSpec], Limits]:
        """The image, volumes and limits a launch asks for (``ContainerInfo``, labels,
        resources); LaunchError with a sentence when it asks for what is not supported."""
        try:
            name, cached, volumes = parse_container(container)
            io = None
            if getattr(getattr(self.containerizer, "isolator", None), "io", False):
                if self._io_device is None:
                    self._io_device = block_device(self.config.work_dir)
                for lab in labels:
                    io = io_limits(lab, self._io_device) or io
        except ValueError as e:
            raise LaunchError(str(e)) from None
        image = None
        if name:
            cmd = command or CommandInfo(shell=False)
            env = {v.name: v.value for v in (cmd.environment.variables if cmd.environment else [])
                   if v.type in (None, "VALUE") and v.value is not None}
            image = ImageSpec(name, cached, shell=bool(cmd.shell), value=cmd.value or None,
                              arguments=tuple(cmd.arguments or ()), task_env=env, user=cmd.user or None)
        return image, volumes, limits_for(resources, extra_mem, io=io)

    def _volume_mounts(self, ex: ExecutorEntry, resources: Resources, user: User | None,
                       image: ImageSpec | None) -> list[VolumeSpec]:
        """The persistent volumes of ``resources`` put into ``ex``'s sandbox (volumes.py): the
        bind mounts to add when the container has a mount namespace, else symlinks made now."""
        bind = image is not None or bool(getattr(getattr(self.containerizer, "isolation", None),
                                                 "filesystem_linux", False))
        try:
            return volumes.attach(self.config.work_dir, ex.directory, resources, bind=bind, user=user)
        except (volumes.VolumeError, OSError) as e:
            raise LaunchError(str(e)) from None

    def _user(self, fw: FrameworkEntry, ex: ExecutorEntry, command: CommandInfo | None) -> User | None:
        """The user ``ex``'s container runs as (None: as the agent). Raises users.UnknownUser."""
        ex_cmd = ex.info.command
        name = user_for(self.config.switch_user, command.user if command is not None else None,
                        ex_cmd.user if ex_cmd is not None else None, fw.info.user)
        return resolve_user(name) if name else None

    def _prepare_sandbox(self, fw: FrameworkEntry, ex: ExecutorEntry, command: CommandInfo | None) -> User | None:
        """Resolve the container's user and hand it the sandbox (stdout/stderr made first, so
        they are the user's too). Raises users.UnknownUser."""
        user = self._user(fw, ex, command)
        if user is not None:
            for name in ("stdout", "stderr"):
                os.close(os.open(os.path.join(ex.directory, name), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            chown_sandbox(ex.directory, user)
        return user

    async def _fetch(self, ex: ExecutorEntry, uris: list[Any]) -> str | None:
        """Fetch ``uris`` into ``ex``'s sandbox (through the agent's cache); the failure, if any."""
        from .fetcher import FetchError, fetch_all

        try:
            await fetch_all(uris, ex.directory, cache_dir=os.path.join(self.config.work_dir, "fetcher"),
                            cache_size=self.config.fetcher_cache_size)
        except FetchError as e:
            return f"Failed to fetch URIs: {e}"
        return None

    # ------------------------------------------------------------------ teardown and views
    async def close(self) -> None:
        self.status_updates.close()
        for fw in self.frameworks.values():
            for ex in fw.executors.values():
                ex.cancel_timer()
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
        await self.images.close()
        self._pid_log.close()

    def running_tasks(self) -> list[TaskEntry]:
        return [t for t in self.tasks.values() if t.state not in TERMINAL_STATES]


__all__ = ["Agent", "TaskEntry", "ExecutorEntry", "FrameworkEntry", "VERSION"]
