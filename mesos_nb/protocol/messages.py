"""Typed Mesos v1 messages, JSON-encoded exactly as Mesos encodes protobuf.

Why msgspec structs: decoding enforces proto2 ``required`` fields and types with a
message that names the field, ignores unknown fields (as stout's JSON parser does), maps
``bytes`` fields to base64, and is fast enough for the launch hot path. Fields whose inner
shape mesos-nb only passes through (containers, health checks, labels…) are typed ``Any``
so that nothing a framework sends is lost on the way to its executor.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import msgspec
from msgspec import Struct

# Mesos defaults that messages leave implicit: the master's port, and how often the master sends
# HEARTBEAT (it says so in SUBSCRIBED; a scheduler assumes this until then).
DEFAULT_MASTER_PORT = 5050
DEFAULT_HEARTBEAT_INTERVAL = 15.0


class _Msg(Struct, omit_defaults=True, kw_only=True, gc=False):
    """Base: omit unset optionals on the wire, keyword construction. ``gc=False``: a message
    is a tree (never part of a reference cycle), so the cyclic collector need not track it;
    a master of 50,000 agents holds millions of them."""


def _one_of(name: str, head: type[_Msg], bodies: dict[str, Any]) -> Any:
    """A message whose ``type`` names the one body that is set: each body's field is its type's
    name in lower case (``LAUNCH_GROUP`` -> ``launch_group``, which is how Mesos names them and
    how the master finds a body), after ``head``'s fields and in the table's order. The field
    list is made from the table so that it cannot drift from the type names; a body typed
    ``Any`` is passed through as it came."""
    fields = [(t.lower(), body if body is Any else body | None, None) for t, body in bodies.items()]
    return msgspec.defstruct(name, fields, bases=(head,), module=__name__)


class ID(_Msg):
    value: str


# Mesos has one wrapper message per kind of id; on the wire they are all {"value": ...}.
FrameworkID = AgentID = OfferID = TaskID = ExecutorID = ContainerID = ID


# --------------------------------------------------------------------------- values
class Scalar(_Msg):
    value: float


class Range(_Msg):
    begin: int
    end: int


class Ranges(_Msg):
    range: list[Range] = []


class ValueSet(_Msg):
    item: list[str] = []


class Text(_Msg):
    value: str


class AllocationInfo(_Msg):
    role: str | None = None


ResourceType = Literal["SCALAR", "RANGES", "SET"]


class _NamedValue(_Msg):
    """What a resource and an attribute both are: a name and a Mesos ``Value``, whose ``type``
    says which one of the value fields below it is set."""

    name: str
    type: Literal["SCALAR", "RANGES", "SET", "TEXT"]
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: ValueSet | None = None


class Resource(_NamedValue):
    type: ResourceType  # a resource is never TEXT (the field keeps its place on the wire)
    role: str | None = None
    allocation_info: AllocationInfo | None = None
    reservation: Any = None
    reservations: list[Any] | None = None
    disk: Any = None
    revocable: Any = None
    shared: Any = None
    provider_id: Any = None


class Attribute(_NamedValue):
    text: Text | None = None


class DurationInfo(_Msg):
    nanoseconds: int


class Capability(_Msg):
    type: str | None = None


# --------------------------------------------------------------------------- frameworks
class FrameworkInfo(_Msg):
    user: str
    name: str
    id: ID | None = None
    failover_timeout: float = 0.0
    checkpoint: bool = False
    role: str | None = None
    roles: list[str] = []
    hostname: str | None = None
    principal: str | None = None
    webui_url: str | None = None
    capabilities: list[Capability] = []
    labels: Any = None
    offer_filters: Any = None

    def all_roles(self) -> list[str]:
        """MULTI_ROLE frameworks use ``roles``; others the deprecated ``role`` (default "*")."""
        if self.roles:
            return list(self.roles)
        return [self.role or "*"]

    def has_capability(self, name: str) -> bool:
        return any(c.type == name for c in self.capabilities)


# --------------------------------------------------------------------------- tasks
class EnvironmentVariable(_Msg):
    name: str
    type: str | None = None
    value: str | None = None
    secret: Any = None


class Environment(_Msg):
    variables: list[EnvironmentVariable] = []


class CommandInfo(_Msg):
    value: str | None = None
    shell: bool = True
    arguments: list[str] = []
    uris: list[Any] = []
    environment: Environment | None = None
    user: str | None = None


class KillPolicy(_Msg):
    grace_period: DurationInfo | None = None


class ExecutorInfo(_Msg):
    executor_id: ID
    type: str | None = None
    framework_id: ID | None = None
    command: CommandInfo | None = None
    container: Any = None
    resources: list[Resource] = []
    name: str | None = None
    source: str | None = None
    data: bytes | None = None
    discovery: Any = None
    shutdown_grace_period: DurationInfo | None = None
    labels: Any = None


class TaskInfo(_Msg):
    name: str
    task_id: ID
    agent_id: ID
    resources: list[Resource] = []
    executor: ExecutorInfo | None = None
    command: CommandInfo | None = None
    container: Any = None
    health_check: Any = None
    check: Any = None
    kill_policy: KillPolicy | None = None
    data: bytes | None = None
    labels: Any = None
    discovery: Any = None
    max_completion_time: DurationInfo | None = None
    limits: dict[str, Any] | None = None


class TaskGroupInfo(_Msg):
    """Tasks an executor runs together (LAUNCH_GROUP), all or none."""

    tasks: list[TaskInfo] = []


# A task's states, split into the ones it leaves and the terminal ones (Mesos never moves a task
# out of those); the Literal accepts both, TERMINAL_STATES is read from the second.
_LiveState = Literal[
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_UNREACHABLE",
    "TASK_UNKNOWN",
]
_TerminalState = Literal[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_ERROR",
    "TASK_LOST",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
]
TaskState = Literal[_LiveState, _TerminalState]

TERMINAL_STATES: frozenset[str] = frozenset(get_args(_TerminalState))


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES


class TaskStatus(_Msg):
    task_id: ID
    state: TaskState
    message: str | None = None
    source: Literal["SOURCE_MASTER", "SOURCE_AGENT", "SOURCE_EXECUTOR"] | None = None
    reason: str | None = None
    data: bytes | None = None
    agent_id: ID | None = None
    executor_id: ID | None = None
    timestamp: float | None = None
    uuid: bytes | None = None  # set when the framework must ACKNOWLEDGE the update (echoing it)
    healthy: bool | None = None
    check_status: Any = None
    labels: Any = None
    container_status: Any = None
    unreachable_time: Any = None
    limitation: Any = None


class Filters(_Msg):
    refuse_seconds: float = 5.0


class Offer(_Msg):
    id: ID
    framework_id: ID
    agent_id: ID
    hostname: str
    url: Any = None
    domain: Any = None
    resources: list[Resource] = []
    attributes: list[Attribute] = []
    executor_ids: list[ID] = []
    allocation_info: AllocationInfo | None = None
    unavailability: Any = None  # Unavailability JSON: the agent's machine is in a maintenance window


class Unavailability(_Msg):
    """A maintenance window: ``start`` (TimeInfo, ns since the epoch) and an optional length."""

    start: DurationInfo
    duration: DurationInfo | None = None


class InverseOffer(_Msg):
    """The master asks a framework to give back an agent's resources for a maintenance window."""

    id: ID
    framework_id: ID
    unavailability: Unavailability
    url: Any = None
    agent_id: ID | None = None
    resources: list[Resource] = []


# --------------------------------------------------------------------------- operations
class Launch(_Msg):
    task_infos: list[TaskInfo] = []


class LaunchGroup(_Msg):
    executor: ExecutorInfo
    task_group: TaskGroupInfo


class Reserve(_Msg):
    resources: list[Resource] = []
    source: list[Resource] | None = None


class Unreserve(_Msg):
    resources: list[Resource] = []


class _OperationHead(_Msg):
    type: str | None = None
    id: Any = None


# Offer.Operation: what ACCEPT does with the offered resources.
Operation = _one_of("Operation", _OperationHead, {
    "LAUNCH": Launch,
    "LAUNCH_GROUP": LaunchGroup,
    "RESERVE": Reserve,
    "UNRESERVE": Unreserve,
    "CREATE": Any,
    "DESTROY": Any,
    "GROW_VOLUME": Any,
    "SHRINK_VOLUME": Any,
})


# --------------------------------------------------------------------------- scheduler calls
class Subscribe(_Msg):
    framework_info: FrameworkInfo
    suppressed_roles: list[str] = []
    offer_constraints: Any = None


class Accept(_Msg):
    offer_ids: list[ID] = []
    operations: list[Operation] = []
    filters: Filters | None = None


class Decline(_Msg):
    offer_ids: list[ID] = []
    filters: Filters | None = None


class InverseOfferAnswer(_Msg):
    """The body of ACCEPT_INVERSE_OFFERS and DECLINE_INVERSE_OFFERS."""

    inverse_offer_ids: list[ID] = []
    filters: Filters | None = None


class Roles(_Msg):
    roles: list[str] = []


class _TaskOnAgent(_Msg):
    """How a call names a task: its id and, where the framework knows it, its agent."""

    task_id: ID
    agent_id: ID | None = None


class Kill(_TaskOnAgent):
    kill_policy: KillPolicy | None = None


class Shutdown(_Msg):
    executor_id: ID
    agent_id: ID


class Acknowledge(_Msg):
    agent_id: ID
    task_id: ID
    uuid: bytes


class ReconcileTask(_TaskOnAgent):
    """One task RECONCILE asks the state of."""


class Reconcile(_Msg):
    tasks: list[ReconcileTask] = []


class Message(_Msg):
    agent_id: ID
    executor_id: ID
    data: bytes


class _Call(_Msg):
    """A v1 API call (scheduler or executor): ``type`` names the one field below it that is set;
    the framework it speaks for (every call but a scheduler's first SUBSCRIBE names it)."""

    type: str | None = None
    framework_id: ID | None = None


# The scheduler calls that carry a body (TEARDOWN and UNKNOWN carry none).
_CALL_BODIES: dict[str, Any] = {
    "SUBSCRIBE": Subscribe,
    "ACCEPT": Accept,
    "DECLINE": Decline,
    "REVIVE": Roles,
    "SUPPRESS": Roles,
    "KILL": Kill,
    "SHUTDOWN": Shutdown,
    "ACKNOWLEDGE": Acknowledge,
    "RECONCILE": Reconcile,
    "MESSAGE": Message,
    "REQUEST": Any,
    "UPDATE_FRAMEWORK": Any,
    "ACCEPT_INVERSE_OFFERS": Any,
    "DECLINE_INVERSE_OFFERS": Any,
    "ACKNOWLEDGE_OPERATION_STATUS": Any,
    "RECONCILE_OPERATIONS": Any,
}
Call = _one_of("Call", _Call, _CALL_BODIES)
CALL_TYPES: frozenset[str] = frozenset({*_CALL_BODIES, "TEARDOWN", "UNKNOWN"})


# --------------------------------------------------------------------------- scheduler events
class MasterAddress(_Msg):
    hostname: str | None = None
    ip: str | None = None  # dotted quad; MasterInfo.ip is the older uint32 form
    port: int | None = None


class MasterInfo(_Msg):
    id: str
    ip: int
    port: int = DEFAULT_MASTER_PORT
    pid: str | None = None
    hostname: str | None = None
    version: str | None = None
    address: MasterAddress | None = None
    capabilities: list[Capability] = []


class Subscribed(_Msg):
    framework_id: ID
    heartbeat_interval_seconds: float | None = None
    master_info: MasterInfo | None = None


class Offers(_Msg):
    offers: list[Offer] = []


class Rescind(_Msg):
    offer_id: ID


class Update(_Msg):
    status: TaskStatus


# Event.Message has Call.Message's fields (an executor's bytes, the other way round).
EventMessage = Message


class Failure(_Msg):
    agent_id: ID | None = None
    executor_id: ID | None = None
    status: int | None = None


class Error(_Msg):
    message: str


class _EventHead(_Msg):
    type: str


# The scheduler events that carry a body (HEARTBEAT carries none).
Event = _one_of("Event", _EventHead, {
    "SUBSCRIBED": Subscribed,
    "OFFERS": Offers,
    "RESCIND": Rescind,
    "UPDATE": Update,
    "MESSAGE": EventMessage,
    "FAILURE": Failure,
    "ERROR": Error,
    "UPDATE_OPERATION_STATUS": Any,
    "INVERSE_OFFERS": Any,  # {"inverse_offers": [InverseOffer JSON]}
    "RESCIND_INVERSE_OFFER": Any,  # {"inverse_offer_id": {"value": …}}
})


# --------------------------------------------------------------------------- executor calls
# The v1 executor API's Call (POST /api/v1/executor on the agent); its Update is the scheduler
# Event.Update's shape ({"status": TaskStatus}), its Message carries only the bytes.
class ExecutorSubscribe(_Msg):
    unacknowledged_tasks: list[TaskInfo] = []
    unacknowledged_updates: list[Update] = []


class ExecutorMessage(_Msg):
    data: bytes


class ExecutorCall(_Call):
    executor_id: ID | None = None
    subscribe: ExecutorSubscribe | None = None
    update: Update | None = None
    message: ExecutorMessage | None = None


# --------------------------------------------------------------------------- codec
_encoder = msgspec.json.Encoder()


def encode(msg: Any) -> bytes:
    return _encoder.encode(msg)


class ProtocolError(ValueError):
    """A message failed to decode or validate; ``str()`` is safe to send back to the client."""


_decoders: dict[type, msgspec.json.Decoder] = {}


def decode(data: bytes | str, typ: type) -> Any:
    """Decode JSON into ``typ`` with Mesos-like error sentences."""
    dec = _decoders.get(typ)
    if dec is None:
        dec = _decoders[typ] = msgspec.json.Decoder(typ)
    try:
        return dec.decode(data)
    except msgspec.ValidationError as e:
        text = str(e)
        if text.startswith("Object missing required field"):
            raise ProtocolError("Missing required fields: " + text.split("Object missing required field ", 1)[1]) from None
        raise ProtocolError("Failed to validate: " + text) from None
    except msgspec.DecodeError as e:
        raise ProtocolError(f"Failed to parse JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("Failed to parse JSON: nested too deeply") from None


def convert(obj: Any, typ: type) -> Any:
    """Like :func:`decode` but from already-parsed Python objects."""
    try:
        return msgspec.convert(obj, typ)
    except msgspec.ValidationError as e:
        raise ProtocolError("Failed to validate: " + str(e)) from None


def to_builtins(msg: Any) -> Any:
    return msgspec.to_builtins(msg)

