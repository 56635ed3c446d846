"""Typed views of the read-only JSON endpoints (``/master/state``, ``/master/frameworks``,
``/master/slaves``, ``/master/tasks``, the agent's ``/state``, ``/files/read``).

They live in the protocol layer so that the clients that decode these bodies and the server
code that renders them can agree on one shape. Every field has a default and unknown fields
are ignored: a newer server (or real Apache Mesos) adding fields must not break a reader.
Resource summaries stay ``dict[str, Any]`` because Mesos renders scalars as numbers and
ranges (``ports``) as text in the same object.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from .messages import TERMINAL_STATES


class _View(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


def _scalar(summary: dict[str, Any], name: str) -> float:
    try:
        return float(summary.get(name, 0) or 0)
    except (TypeError, ValueError):
        return 0.0


class TaskView(_View):
    id: str = ""
    name: str = ""
    framework_id: str = ""
    executor_id: str = ""
    slave_id: str = ""
    state: str = ""
    role: str | None = None
    resources: dict[str, Any] = {}

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class TaskDoc(TaskView, omit_defaults=False):
    """A task as the master renders it (``/master/state``, ``/master/tasks``): every field a
    :class:`TaskView` reads, always present as Mesos renders them, plus the master's extras;
    ``message`` and ``labels`` only when the task has them."""

    agent_id: str = ""
    statuses: list[dict[str, Any]] = []
    message: str | UnsetType = UNSET
    labels: Any = UNSET


class FrameworkView(_View):
    id: str = ""
    name: str = ""
    user: str = ""
    active: bool = True
    connected: bool | None = None
    roles: list[str] = []
    role: str | None = None
    used_resources: dict[str, Any] = {}
    tasks: list[TaskView] = []
    unreachable_tasks: list[TaskView] = []
    completed_tasks: list[TaskView] = []

    @property
    def role_list(self) -> list[str]:
        return self.roles or ([self.role] if self.role else [])


class AgentView(_View):
    id: str = ""
    pid: str | None = None
    hostname: str = ""
    port: int | None = None
    active: bool = True
    resources: dict[str, Any] = {}
    used_resources: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    deactivated: bool = False  # DEACTIVATE_AGENT or a drain
    drain_info: dict[str, Any] | None = None  # DRAIN_AGENT's {"state": DRAINING|DRAINED, "config"}

    def scalar(self, name: str, used: bool = False) -> float:
        return _scalar(self.used_resources if used else self.resources, name)

    @property
    def url(self) -> str:
        """The agent's HTTP base URL (from hostname:port, else from its ``pid``)."""
        if (not self.hostname or not self.port) and "@" in (self.pid or ""):
            return "http://" + (self.pid or "").split("@", 1)[1]
        return f"http://{self.hostname}:{self.port}"


class LeaderInfo(_View):
    id: str = ""
    pid: str | None = None
    hostname: str = ""
    port: int | None = None


class MasterState(_View):
    """``/master/state`` (also the shape of ``/state.json``)."""

    version: str = "?"
    id: str = "?"
    start_time: float | None = None
    leader: str | None = "?"
    leader_info: LeaderInfo | None = None
    slaves: list[AgentView] = []
    recovered_slaves: list[AgentView] = []
    frameworks: list[FrameworkView] = []
    completed_frameworks: list[FrameworkView] = []


class FrameworksView(_View):
    """``/master/frameworks``."""

    frameworks: list[FrameworkView] = []
    completed_frameworks: list[FrameworkView] = []


class AgentsView(_View):
    """``/master/slaves``."""

    slaves: list[AgentView] = []
    recovered_slaves: list[AgentView] = []


class TasksView(_View):
    """``/master/tasks``."""

    tasks: list[TaskView] = []


class ExecutorView(_View):
    id: str = ""
    directory: str = ""
    tasks: list[TaskView] = []
    queued_tasks: list[TaskView] = []
    completed_tasks: list[TaskView] = []

    def task_ids(self) -> set[str]:
        return {t.id for t in (*self.tasks, *self.queued_tasks, *self.completed_tasks)}


class AgentFrameworkView(_View):
    id: str = ""
    executors: list[ExecutorView] = []
    completed_executors: list[ExecutorView] = []


class AgentState(_View):
    """The agent's ``/state``."""

    id: str = ""
    frameworks: list[AgentFrameworkView] = []
    completed_frameworks: list[AgentFrameworkView] = []


class FileChunk(_View):
    """``/files/read``: ``offset`` is the file size when asked with ``offset=-1``."""

    offset: int = 0
    data: str = ""


def decode(raw: bytes, view: type[Any]) -> Any:
    """Decode a JSON body into ``view``; raises :class:`msgspec.ValidationError` /
    :class:`msgspec.DecodeError` on a body that is not that shape."""
    return msgspec.json.decode(raw, type=view)


__all__ = [
    "AgentFrameworkView",
    "AgentState",
    "AgentView",
    "AgentsView",
    "ExecutorView",
    "FileChunk",
    "FrameworkView",
    "FrameworksView",
    "LeaderInfo",
    "MasterState",
    "TaskDoc",
    "TaskView",
    "TasksView",
    "decode",
]
