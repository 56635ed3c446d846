"""Typed views of the v1 operator API's read answers (``master.proto``'s ``Response.Get*``:
``GET_STATE``, ``GET_TASKS``, ``GET_AGENTS``, ``GET_FRAMEWORKS``, ``GET_EXECUTORS``,
``GET_ROLES``), and the documents the master renders them as.

The same split as :mod:`.state` (the v0 endpoints): a ``*View`` is what a reader decodes (every
field defaulted, unknown fields ignored), a ``*Doc`` is the view as the master writes it (every
field written, the ones protobuf-JSON omits when unset ``UNSET``, unknown fields refused when
decoded). The master's renderers (``master/operator_views.py``, ``master/state_render_v1.py``)
build the docs, so a test decoding a rendered answer into them shows every key is declared.

The nested protobuf messages are :mod:`.messages`' structs (``ID``, ``DurationInfo``,
``Resource``, ``FrameworkInfo``, ``ExecutorInfo``, …): the wire types already declared for the
scheduler API. Those are lenient readers, so the strict tests also check that a decoded answer
encodes back to the same JSON (no key dropped). Fields keep the order the master writes them
(not ``master.proto``'s), so the JSON is byte for byte what it was when these were dicts; a
status stays ``dict[str, Any]``, since the latest one is the agent's ``TaskStatus`` as sent and
the earlier ones are written in another key order.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from .messages import ID, Attribute, Capability, DurationInfo, ExecutorInfo, FrameworkInfo, Resource
from .state import _doc, _View

_REQUIRED = msgspec.NODEFAULT


# ---------------------------------------------------------------------------------- tasks
class TaskView(_View):
    """``Task``: what GET_TASKS lists, and SUBSCRIBE's ``TASK_ADDED`` carries."""

    name: str = ""
    task_id: ID | None = None
    framework_id: ID | None = None
    agent_id: ID | None = None
    state: str = ""
    resources: list[Resource] = []
    statuses: list[dict[str, Any]] = []
    executor_id: ID | None = None
    labels: Any = None
    discovery: Any = None
    container: Any = None
    health_check: Any = None
    status_update_state: str | None = None  # the latest update, when it awaits acknowledgement


TaskDoc = _doc(
    TaskView, "TaskDoc",
    """A task as the master renders it; the executor, the ``TaskInfo`` extras and
    ``status_update_state`` only when set.""",
    task_id=(ID, _REQUIRED), framework_id=(ID, _REQUIRED), agent_id=(ID, _REQUIRED),
    executor_id=ID | UnsetType, labels=(Any, UNSET), discovery=(Any, UNSET), container=(Any, UNSET),
    health_check=(Any, UNSET), status_update_state=str | UnsetType,
)


# --------------------------------------------------------------------------------- agents
class AgentInfoView(_View):
    hostname: str = ""
    port: int | None = None
    resources: list[Resource] = []
    id: ID | None = None
    attributes: list[Attribute] = []


AgentInfoDoc = _doc(AgentInfoView, "AgentInfoDoc", "An agent's ``agent_info``; ``attributes`` only when it has some.",
                    id=(ID, _REQUIRED), attributes=list[Attribute] | UnsetType)


class AgentView(_View):
    """``GetAgents.Agent``."""

    agent_info: AgentInfoView | None = None
    active: bool = False
    deactivated: bool = False  # DEACTIVATE_AGENT or a drain
    version: str = ""
    pid: str | None = None
    registered_time: DurationInfo | None = None
    total_resources: list[Resource] = []
    allocated_resources: list[Resource] = []
    offered_resources: list[Resource] = []
    capabilities: list[Capability] = []
    reregistered_time: DurationInfo | None = None
    drain_info: dict[str, Any] | None = None  # DRAIN_AGENT's {"state": DRAINING|DRAINED, "config"}
    estimated_drain_start_time: DurationInfo | None = None


AgentDoc = _doc(
    AgentView, "AgentDoc",
    """An agent as the master renders it; the re-registration and drain fields only when set.""",
    agent_info=(AgentInfoDoc, _REQUIRED), registered_time=(DurationInfo, _REQUIRED),
    reregistered_time=DurationInfo | UnsetType, drain_info=dict[str, Any] | UnsetType,
    estimated_drain_start_time=DurationInfo | UnsetType,
)


# ----------------------------------------------------------------------------- frameworks
class FrameworkView(_View):
    """``GetFrameworks.Framework``."""

    framework_info: FrameworkInfo | None = None
    active: bool = False
    connected: bool = False
    recovered: bool = False
    registered_time: DurationInfo | None = None
    allocated_resources: list[Resource] = []
    offered_resources: list[Resource] = []
    reregistered_time: DurationInfo | None = None
    unregistered_time: DurationInfo | None = None


FrameworkDoc = _doc(
    FrameworkView, "FrameworkDoc", "A framework as the master renders it; the later times only when set.",
    framework_info=(FrameworkInfo, _REQUIRED), registered_time=(DurationInfo, _REQUIRED),
    reregistered_time=DurationInfo | UnsetType, unregistered_time=DurationInfo | UnsetType,
)


# ------------------------------------------------------------------------------ executors
class ExecutorView(_View):
    """``GetExecutors.Executor``."""

    executor_info: ExecutorInfo | None = None
    agent_id: ID | None = None


ExecutorDoc = _doc(ExecutorView, "ExecutorDoc", "An executor as the master renders it.",
                   executor_info=(ExecutorInfo, _REQUIRED), agent_id=(ID, _REQUIRED))


# ---------------------------------------------------------------------------------- roles
class RoleView(_View):
    """``Role``: a role with a weight, frameworks or both."""

    name: str = ""
    weight: float = 1.0
    frameworks: list[ID] = []
    resources: list[Resource] = []


RoleDoc = _doc(RoleView, "RoleDoc", "A role as the master renders it; ``frameworks`` only when it has some.",
               weight=(float, _REQUIRED), frameworks=list[ID] | UnsetType)


# ------------------------------------------------------------------------------- answers
def _lists(name: str, doc: str, **lists: tuple[Any, Any]) -> tuple[type[Any], type[Any]]:
    """The reader view and the rendered document of an answer that is only lists
    (``name=(view item, doc item)``)."""
    view = msgspec.defstruct(f"{name}View", [(k, list[v], msgspec.field(default_factory=list))
                                             for k, (v, _) in lists.items()], bases=(_View,), module=__name__)
    view.__doc__ = doc
    return view, _doc(view, f"{name}Doc", f"{doc} as the master renders it.",
                      **{k: list[d] for k, (_, d) in lists.items()})


GetTasksView, GetTasksDoc = _lists("GetTasks", "``GetTasks``", tasks=(TaskView, TaskDoc),
                                   unreachable_tasks=(TaskView, TaskDoc), completed_tasks=(TaskView, TaskDoc))
GetExecutorsView, GetExecutorsDoc = _lists("GetExecutors", "``GetExecutors``", executors=(ExecutorView, ExecutorDoc))
GetFrameworksView, GetFrameworksDoc = _lists("GetFrameworks", "``GetFrameworks``",
                                             frameworks=(FrameworkView, FrameworkDoc),
                                             completed_frameworks=(FrameworkView, FrameworkDoc))
GetAgentsView, GetAgentsDoc = _lists("GetAgents", "``GetAgents``", agents=(AgentView, AgentDoc),
                                     recovered_agents=(AgentView, AgentDoc))
GetRolesView, GetRolesDoc = _lists("GetRoles", "``GetRoles``", roles=(RoleView, RoleDoc))


class GetStateView(_View):
    """``GetState``: the four answers above in one."""

    get_tasks: GetTasksView = msgspec.field(default_factory=GetTasksView)
    get_executors: GetExecutorsView = msgspec.field(default_factory=GetExecutorsView)
    get_frameworks: GetFrameworksView = msgspec.field(default_factory=GetFrameworksView)
    get_agents: GetAgentsView = msgspec.field(default_factory=GetAgentsView)


GetStateDoc = _doc(GetStateView, "GetStateDoc", "``GetState`` as the master renders it.",
                   get_tasks=(GetTasksDoc, _REQUIRED), get_executors=(GetExecutorsDoc, _REQUIRED),
                   get_frameworks=(GetFrameworksDoc, _REQUIRED), get_agents=(GetAgentsDoc, _REQUIRED))

# The answer's ``type`` and the field that carries it.
CALLS = {"GET_STATE": (GetStateView, GetStateDoc), "GET_TASKS": (GetTasksView, GetTasksDoc),
         "GET_EXECUTORS": (GetExecutorsView, GetExecutorsDoc),
         "GET_FRAMEWORKS": (GetFrameworksView, GetFrameworksDoc), "GET_AGENTS": (GetAgentsView, GetAgentsDoc),
         "GET_ROLES": (GetRolesView, GetRolesDoc)}


def _answer(self: Any) -> Any:
    """The answer its ``type`` names (``None`` for a call not in :data:`CALLS`)."""
    return getattr(self, self.type.lower(), None) if self.type in CALLS else None


ResponseView = msgspec.defstruct(
    "ResponseView", [("type", str, ""), *((call.lower(), view | None, None) for call, (view, _) in CALLS.items())],
    bases=(_View,), module=__name__, namespace={"answer": _answer})
ResponseView.__doc__ = """A ``Response`` to one of :data:`CALLS`: its ``type`` and the answer in
the field named after it (``get_state`` for ``GET_STATE``); ``answer()`` gives that answer."""
ResponseDoc = _doc(ResponseView, "ResponseDoc", "A ``Response`` to one of :data:`CALLS` as the master writes it.",
                   **{call.lower(): doc | UnsetType for call, (_, doc) in CALLS.items()})


def decode_response(raw: bytes, call: str | None = None) -> Any:
    """A ``Response`` body decoded into :class:`ResponseView`; with ``call``, its answer (a
    ``Get*View``). Raises :class:`ValueError` when the body answers another call."""
    resp = msgspec.json.decode(raw, type=ResponseView)
    if call is None:
        return resp
    if resp.type != call:
        raise ValueError(f"expected a {call} response, got {resp.type or 'no type'}")
    return resp.answer()


__all__ = [
    "CALLS", "AgentDoc", "AgentInfoDoc", "AgentInfoView", "AgentView", "ExecutorDoc", "ExecutorView",
    "FrameworkDoc", "FrameworkView", "GetAgentsDoc", "GetAgentsView", "GetExecutorsDoc", "GetExecutorsView",
    "GetFrameworksDoc", "GetFrameworksView", "GetRolesDoc", "GetRolesView", "GetStateDoc", "GetStateView",
    "GetTasksDoc", "GetTasksView", "ResponseDoc", "ResponseView", "RoleDoc", "RoleView", "TaskDoc", "TaskView",
    "decode_response",
]
