"""The agent's records of what it runs: one :class:`FrameworkEntry` per framework, holding its
:class:`ExecutorEntry` objects, each holding its :class:`TaskEntry` objects.

Plain mutable records with ``__slots__`` (one is made per launch, so they stay cheap); the
behaviour that changes them lives in the Agent's modules (see README.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from mesos_nb.protocol.messages import ExecutorInfo, FrameworkInfo, KillPolicy, TaskInfo
from mesos_nb.protocol.resources import Resources

from .containerizer import Container

MAX_COMPLETED_FRAMEWORKS = 50
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150
MAX_COMPLETED_TASKS_PER_EXECUTOR = 200

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
                 *, command_executor: bool, resources: Resources | None = None) -> None:
        self.info = info
        self.framework_id = framework_id
        self.container_id = container_id
        self.directory = directory
        self.tasks: dict[str, TaskEntry] = {}
        self.completed_tasks: deque[TaskEntry] = deque(maxlen=MAX_COMPLETED_TASKS_PER_EXECUTOR)
        self.container: Container | None = None
        self.command_executor = command_executor
        # ``resources``: already parsed from ``info.resources`` by the caller (not parsed twice)
        self.resources = resources if resources is not None else \
            Resources.from_proto(info.resources) if info.resources else Resources()
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

    def cancel_timer(self) -> None:
        """Stop the (re-)registration timeout, if one is armed."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class FrameworkEntry:
    __slots__ = ("info", "executors", "completed_executors")

    def __init__(self, info: FrameworkInfo) -> None:
        self.info = info
        self.executors: dict[str, ExecutorEntry] = {}
        self.completed_executors: deque[ExecutorEntry] = deque(maxlen=MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK)

    @property
    def framework_id(self) -> str:
        return self.info.id.value if self.info.id else ""


__all__ = [
    "TaskEntry", "ExecutorEntry", "FrameworkEntry", "MAX_COMPLETED_FRAMEWORKS",
    "MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK", "MAX_COMPLETED_TASKS_PER_EXECUTOR",
]
