"""Typed views of the read-only JSON endpoints (``/master/state``, ``/master/frameworks``,
``/master/slaves``, ``/master/tasks``, the agent's ``/state``, ``/files/read``), and the
documents the master renders them as.

They live in the protocol layer so that the clients that decode these bodies and the server
code that renders them share one definition:

* a ``*View`` is what a reader decodes: every field has a default and unknown fields are
  ignored, so a newer server (or real Apache Mesos) adding fields must not break a reader;
* a ``*Doc`` subclasses its view as the master renders it: every field written (as Mesos
  writes them, even when empty), the fields Mesos omits when unset ``UNSET``, and unknown
  fields refused when decoded, so a test decoding a rendered body into it shows that every
  key the master emits is declared here.

The views declare their fields in the order the master writes them (the docs keep that order
and add their own after), so the JSON keeps Mesos's key order. Resource summaries stay
``dict[str, Any]`` because Mesos renders scalars as numbers and ranges (``ports``) as text in
the same object.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec
from msgspec import UNSET, UnsetType

from .messages import TERMINAL_STATES

AGENT_CAPABILITIES = ["MULTI_ROLE", "HIERARCHICAL_ROLE"]


class _View(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


_DOC_CONFIG: dict[str, Any] = {"kw_only": True, "omit_defaults": False, "forbid_unknown_fields": True}
_LIST = msgspec.field(default_factory=list)


class _Doc(msgspec.Struct, **_DOC_CONFIG):
    """A rendered-only record (no reader needs a looser view of it)."""


def _doc(view: type[Any], name: str, doc: str, **changed: Any) -> type[Any]:
    """``view`` as the server renders it: a subclass writing every field and refusing unknown
    ones when decoded, with the fields in ``changed`` retyped or added (``name=type``, or
    ``name=(type, default)``). A type that admits ``UnsetType`` defaults to ``UNSET`` (Mesos
    omits the field when unset); a retyped field otherwise keeps the view's default.

    msgspec puts a redeclared field after the base's others, so every field from the first
    retyped one on is redeclared here, in the view's order: the JSON keeps the view's key order
    (Mesos's), and a field added to the view later cannot move."""
    spec: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(view):
        if spec or f.name in changed:
            kept = f.default if f.default_factory is msgspec.NODEFAULT else msgspec.field(
                default_factory=f.default_factory)
            spec.append(_field(f.name, changed.pop(f.name, f.type), kept))
    spec.extend(_field(n, t, msgspec.NODEFAULT) for n, t in changed.items())
    cls = msgspec.defstruct(name, spec, bases=(view,), module=__name__, **_DOC_CONFIG)
    cls.__doc__ = doc
    return cls


def _field(name: str, t: Any, kept: Any) -> tuple[str, Any, Any]:
    if isinstance(t, tuple):
        return (name, *t)
    if UnsetType in get_args(t):
        return (name, t, UNSET)
    if kept is msgspec.NODEFAULT:
        raise TypeError(f"a field the view lacks needs a default: {name}")
    return (name, t, kept)


def _scalar(summary: dict[str, Any], name: str) -> float:
    try:
        return float(summary.get(name, 0) or 0)
    except (TypeError, ValueError):
        return 0.0


# ---------------------------------------------------------------------------------- tasks
class _Named(_View):
    """What Mesos writes first for tasks and frameworks alike."""

    id: str = ""
    name: str = ""


class TaskView(_Named):
    framework_id: str = ""
    executor_id: str = ""
    slave_id: str = ""
    state: str = ""
    role: str | None = None
    resources: dict[str, Any] = {}

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


TaskDoc = _doc(
    TaskView, "TaskDoc",
    """A task as the master renders it (``/master/state``, ``/master/tasks``): every field a
    :class:`TaskView` reads, plus the master's extras; ``message`` and ``labels`` only when the
    task has them.""",
    agent_id=(str, ""), statuses=(list[dict[str, Any]], _LIST), message=str | UnsetType, labels=(Any, UNSET),
)


# ----------------------------------------------------------------------------- frameworks
class FrameworkView(_Named):
    user: str = ""
    hostname: str = ""
    webui_url: str = ""
    roles: list[str] = []
    role: str | None = None
    capabilities: list[str] = []
    failover_timeout: float = 0.0
    checkpoint: bool = False
    active: bool = True
    connected: bool | None = None
    recovered: bool = False
    registered_time: float = 0.0
    unregistered_time: float = 0.0
    offered_resources: dict[str, Any] = {}
    suppressed_roles: list[str] = []
    used_resources: dict[str, Any] = {}
    resources: dict[str, Any] = {}  # used + offered
    reregistered_time: float | None = None
    principal: str | None = None
    tasks: list[TaskView] = []
    unreachable_tasks: list[TaskView] = []
    completed_tasks: list[TaskView] = []

    @property
    def role_list(self) -> list[str]:
        return self.roles or ([self.role] if self.role else [])


class OfferDoc(_Doc):
    """An outstanding offer in a framework's ``offers``."""

    id: str
    framework_id: str
    slave_id: str
    allocation_info: dict[str, str]  # {"role": ...}
    resources: dict[str, Any]


class FrameworkExecutorDoc(_Doc):
    """An executor in a framework's ``executors`` (the master's, not the agent's, shape)."""

    executor_id: str
    name: str
    framework_id: str
    slave_id: str
    resources: dict[str, Any]
    command: dict[str, Any]


FrameworkDoc = _doc(
    FrameworkView, "FrameworkDoc",
    """A framework as the master renders it. The task, offer and executor lists are written in
    ``/master/state`` and ``/master/frameworks``, not in ``/master/state-summary``.""",
    reregistered_time=float | UnsetType, principal=str | UnsetType,
    tasks=list[TaskDoc] | UnsetType, unreachable_tasks=list[TaskDoc] | UnsetType,
    completed_tasks=list[TaskDoc] | UnsetType,
    offers=list[OfferDoc] | UnsetType, executors=list[FrameworkExecutorDoc] | UnsetType,
)


# --------------------------------------------------------------------------------- agents
class AgentView(_View):
    id: str = ""
    pid: str | None = None
    hostname: str = ""
    port: int | None = None
    registered_time: float = 0.0
    resources: dict[str, Any] = {}
    used_resources: dict[str, Any] = {}
    offered_resources: dict[str, Any] = {}
    reserved_resources: dict[str, dict[str, Any]] = {}  # role -> summary
    unreserved_resources: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    active: bool = True
    deactivated: bool = False  # DEACTIVATE_AGENT or a drain
    connected: bool | None = None
    version: str = ""
    capabilities: list[str] = []
    reregistered_time: float | None = None
    drain_info: dict[str, Any] | None = None  # DRAIN_AGENT's {"state": DRAINING|DRAINED, "config"}
    estimated_drain_start_time_seconds: float | None = None

    def scalar(self, name: str, used: bool = False) -> float:
        return _scalar(self.used_resources if used else self.resources, name)

    @property
    def url(self) -> str:
        """The agent's HTTP base URL (from hostname:port, else from its ``pid``)."""
        if (not self.hostname or not self.port) and "@" in (self.pid or ""):
            return "http://" + (self.pid or "").split("@", 1)[1]
        return f"http://{self.hostname}:{self.port}"


AgentDoc = _doc(
    AgentView, "AgentDoc",
    """An agent as the master renders it; the re-registration and drain fields only when set.""",
    reregistered_time=float | UnsetType, drain_info=dict[str, Any] | UnsetType,
    estimated_drain_start_time_seconds=float | UnsetType,
)


# ------------------------------------------------------------------------- master documents
class LeaderInfo(_View):
    id: str = ""
    pid: str | None = None
    port: int | None = None
    hostname: str = ""


LeaderInfoDoc = _doc(LeaderInfo, "LeaderInfoDoc", "The master's ``leader_info``.")


class MasterState(_View):
    """``/master/state`` (also the shape of ``/state.json``)."""

    version: str = "?"
    build_date: str = ""
    build_time: float = 0.0
    build_user: str = ""
    start_time: float | None = None
    elected_time: float | None = None
    id: str = "?"
    pid: str | None = None
    hostname: str = ""
    capabilities: list[str] = []
    activated_slaves: float = 0  # counts, but Apache Mesos writes them as doubles (metrics gauges)
    deactivated_slaves: float = 0
    unreachable_slaves: float = 0
    leader: str | None = "?"
    leader_info: LeaderInfo | None = None
    flags: dict[str, str] = {}
    slaves: list[AgentView] = []
    recovered_slaves: list[AgentView] = []
    frameworks: list[FrameworkView] = []
    completed_frameworks: list[FrameworkView] = []
    orphan_tasks: list[TaskView] = []
    unregistered_frameworks: list[str] = []


MasterStateDoc = _doc(
    MasterState, "MasterStateDoc", "``/master/state`` as the master renders it.",
    leader_info=LeaderInfoDoc | None, slaves=list[AgentDoc], recovered_slaves=list[AgentDoc],
    frameworks=list[FrameworkDoc], completed_frameworks=list[FrameworkDoc], orphan_tasks=list[TaskDoc],
)


def _lists(path: str, name: str, **lists: tuple[Any, Any]) -> tuple[type[Any], type[Any]]:
    """The reader view and the rendered document of an endpoint that is only lists
    (``name=(view item, doc item)``): the same keys, read leniently and written whole."""
    view = msgspec.defstruct(f"{name}View", [(k, list[v], []) for k, (v, _) in lists.items()],
                             bases=(_View,), module=__name__)
    view.__doc__ = f"``{path}``."
    doc = _doc(view, f"{name}Doc", f"``{path}`` as the master renders it.",
               **{k: list[d] for k, (v, d) in lists.items() if d is not v})
    return view, doc


FrameworksView, FrameworksDoc = _lists(
    "/master/frameworks", "Frameworks", frameworks=(FrameworkView, FrameworkDoc),
    completed_frameworks=(FrameworkView, FrameworkDoc), unregistered_frameworks=(str, str))
AgentsView, AgentsDoc = _lists("/master/slaves", "Agents", slaves=(AgentView, AgentDoc),
                               recovered_slaves=(AgentView, AgentDoc))
TasksView, TasksDoc = _lists("/master/tasks", "Tasks", tasks=(TaskView, TaskDoc))


# ---------------------------------------------------------------------- /master/state-summary
COUNTED_STATES = (
    "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
    "TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_UNREACHABLE",
)
_COUNTS = {state: (int, 0) for state in COUNTED_STATES}

SummaryAgentDoc = _doc(
    AgentDoc, "SummaryAgentDoc",
    "An agent in ``/master/state-summary``: its tasks counted by state, its frameworks' ids.",
    **_COUNTS, framework_ids=(list[str], _LIST),
)
SummaryFrameworkDoc = _doc(
    FrameworkDoc, "SummaryFrameworkDoc",
    """A framework in ``/master/state-summary`` (no task, offer or executor lists): its tasks
    counted by state, the ids of the agents its live tasks are on.""",
    **_COUNTS, slave_ids=(list[str], _LIST),
)


class StateSummaryDoc(_Doc):
    """``/master/state-summary``, the light ``/master/state`` tools poll instead."""

    hostname: str
    slaves: list[SummaryAgentDoc]
    frameworks: list[SummaryFrameworkDoc]


# -------------------------------------------------------------------- the agent's /state
AgentTaskDoc = _doc(
    TaskView, "AgentTaskDoc",
    """A task as the agent renders it: no ``role`` (the agent writes none), its updates as
    ``{state, timestamp}``, ``labels`` only when it has them.""",
    role=str | UnsetType, statuses=(list[dict[str, Any]], _LIST), labels=(Any, UNSET),
)


class ExecutorView(_View):
    id: str = ""
    name: str = ""
    source: str = ""
    container: str = ""
    directory: str = ""
    resources: dict[str, Any] = {}
    type: str = ""  # DEFAULT (the command executor) or CUSTOM
    tasks: list[TaskView] = []
    queued_tasks: list[TaskView] = []
    completed_tasks: list[TaskView] = []

    def task_ids(self) -> set[str]:
        return {t.id for t in (*self.tasks, *self.queued_tasks, *self.completed_tasks)}


ExecutorDoc = _doc(
    ExecutorView, "ExecutorDoc", "An executor in the agent's ``/state``.",
    tasks=list[AgentTaskDoc], queued_tasks=list[AgentTaskDoc], completed_tasks=list[AgentTaskDoc],
)


class AgentFrameworkView(_View):
    id: str = ""
    name: str = ""
    user: str = ""
    failover_timeout: float = 0.0
    checkpoint: bool = False
    hostname: str = ""
    executors: list[ExecutorView] = []
    completed_executors: list[ExecutorView] = []
    principal: str | None = None
    roles: list[str] = []  # a MULTI_ROLE framework's …
    role: str | None = None  # … or another's one role


AgentFrameworkDoc = _doc(
    AgentFrameworkView, "AgentFrameworkDoc",
    "A framework in the agent's ``/state``: ``roles`` for a MULTI_ROLE one, else ``role``.",
    executors=list[ExecutorDoc], completed_executors=list[ExecutorDoc],
    principal=str | UnsetType, roles=list[str] | UnsetType, role=str | UnsetType,
)


class AgentState(_View):
    """The agent's ``/state``."""

    version: str = ""
    build_date: str = ""
    build_time: float = 0.0
    build_user: str = ""
    start_time: float = 0.0
    id: str = ""
    pid: str = ""
    hostname: str = ""
    capabilities: list[str] = []
    resources: dict[str, Any] = {}
    reserved_resources: dict[str, dict[str, Any]] = {}  # role -> summary
    unreserved_resources: dict[str, Any] = {}
    reserved_resources_full: dict[str, list[Any]] = {}  # role -> Resource protos
    unreserved_resources_full: list[Any] = []
    attributes: dict[str, Any] = {}
    master_hostname: str | None = None
    flags: dict[str, str] = {}
    frameworks: list[AgentFrameworkView] = []
    completed_frameworks: list[AgentFrameworkView] = []


AgentStateDoc = _doc(
    AgentState, "AgentStateDoc", "The agent's ``/state`` as the agent renders it.",
    frameworks=list[AgentFrameworkDoc], completed_frameworks=list[AgentFrameworkDoc],
)


class FileChunk(_View):
    """``/files/read``: ``offset`` is the file size when asked with ``offset=-1``."""

    offset: int = 0
    data: str = ""


def decode(raw: bytes, view: type[Any]) -> Any:
    """Decode a JSON body into ``view``; raises :class:`msgspec.ValidationError` /
    :class:`msgspec.DecodeError` on a body that is not that shape."""
    return msgspec.json.decode(raw, type=view)


__all__ = [
    "AGENT_CAPABILITIES",
    "AgentDoc",
    "AgentFrameworkDoc",
    "AgentFrameworkView",
    "AgentState",
    "AgentStateDoc",
    "AgentTaskDoc",
    "AgentView",
    "AgentsDoc",
    "AgentsView",
    "COUNTED_STATES",
    "ExecutorDoc",
    "ExecutorView",
    "FileChunk",
    "FrameworkDoc",
    "FrameworkExecutorDoc",
    "FrameworkView",
    "FrameworksDoc",
    "FrameworksView",
    "LeaderInfo",
    "LeaderInfoDoc",
    "MasterState",
    "MasterStateDoc",
    "OfferDoc",
    "StateSummaryDoc",
    "SummaryAgentDoc",
    "SummaryFrameworkDoc",
    "TaskDoc",
    "TaskView",
    "TasksDoc",
    "TasksView",
    "decode",
]
