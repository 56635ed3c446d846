"""The agent channel: how agents and the master talk.

One agent *process* opens one WebSocket to the master (``GET /api/v1/agent-channel``)
and multiplexes every agent it hosts over it, the way libprocess multiplexes actors over
one socket: ``mesos-nb local`` hosts a few agents, the scale benchmark 50,000 on a handful
of descriptors. Each WebSocket text frame carries a JSON *array* of messages, so a sender
coalesces whatever it queued in one event-loop turn into one frame. Every message names the
agent it is for or from (``agent_id``; before registration, the process-local ``key``).

Authentication: the agent sends ``Authorization: Bearer <secret>`` on the upgrade request
(the master's ``--agent-secret``); TLS is ``wss://``. Neither changes the messages.

Liveness: the master sends ``PING`` every ``agent_ping_timeout`` seconds; the agent process
answers ``PONG``. After ``max_agent_ping_timeouts`` unanswered pings (or the socket
closing), every agent on that channel is *disconnected*; agents that do not re-register
within the same window are removed and their tasks reported ``TASK_LOST``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Union

import msgspec

from .messages import (
    Attribute,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    Resource,
    TaskInfo,
    TaskStatus,
)


class _Ch(msgspec.Struct, omit_defaults=True, kw_only=True, tag_field="type", gc=False):
    pass


class _OfFramework(_Ch):
    """A message about one framework's work on one agent."""

    agent_id: str
    framework_id: str


class _OfExecutor(_OfFramework):
    """A message about one executor of a framework on an agent."""

    executor_id: str


# ------------------------------------------------------------------ agent -> master
class TaskReport(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A task the agent already runs, reported when it (re-)registers."""

    framework_id: str
    task: TaskInfo
    state: str
    executor_id: str | None = None
    framework: FrameworkInfo | None = None


class ExecutorReport(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A custom executor the agent runs, reported when it re-registers (Mesos' executor_infos):
    a master that failed over learns the resources the executor holds itself, also while it
    has no task."""

    framework_id: str
    executor: ExecutorInfo
    framework: FrameworkInfo | None = None


class RegisterAgent(_Ch, tag="REGISTER"):
    key: str  # unique within the channel; echoed back in REGISTERED
    hostname: str
    port: int  # the agent's HTTP port (/state, /files, /api/v1/executor)
    resources: list[Resource]
    attributes: list[Attribute] = []
    agent_id: str | None = None  # set when re-registering (agent restart, master failover)
    version: str | None = None
    tasks: list[TaskReport] = []
    scheme: str = "http"  # "https" when the agent's listener serves TLS (older agents: http)
    executors: list[ExecutorReport] = []  # live custom executors (older agents: none)


class StatusUpdate(_OfFramework, tag="STATUS_UPDATE"):
    """A reliable task status update (has ``status.uuid``); retried until ACK."""

    status: TaskStatus
    # The task's newest state at the agent (Mesos' ``StatusUpdate.latest_state``), set when newer
    # updates wait behind this one: a terminal one lets the master take the task's resources
    # back now, before the framework has acknowledged the updates in between.
    latest_state: str | None = None


class ExecutorExited(_OfExecutor, tag="EXECUTOR_EXITED"):
    status: int  # raw wait status, as Mesos reports it in FAILURE


class ExecutorToFramework(_OfExecutor, tag="EXECUTOR_MESSAGE"):
    data: bytes


class UnregisterAgent(_Ch, tag="UNREGISTER"):
    """Graceful agent shutdown: its tasks are gone and the master should say so now."""

    agent_id: str


class Pong(_Ch, tag="PONG"):
    seq: int = 0


# ------------------------------------------------------------------ master -> agent
class AgentRegistered(_Ch, tag="REGISTERED"):
    key: str
    agent_id: str
    master_id: str


class RunTask(_Ch, tag="RUN_TASK"):
    """LAUNCH (``task``) or LAUNCH_GROUP (``task_group`` with ``executor``)."""

    agent_id: str
    framework: FrameworkInfo  # with id set
    task: TaskInfo | None = None
    executor: ExecutorInfo | None = None
    task_group: list[TaskInfo] = []


class KillTask(_OfFramework, tag="KILL_TASK"):
    task_id: str
    kill_policy: KillPolicy | None = None


class AckUpdate(_OfFramework, tag="ACK"):
    task_id: str
    uuid: bytes


class ShutdownFramework(_OfFramework, tag="SHUTDOWN_FRAMEWORK"):
    pass


class ShutdownExecutor(_OfExecutor, tag="SHUTDOWN_EXECUTOR"):
    pass


class FrameworkToExecutor(_OfExecutor, tag="FRAMEWORK_MESSAGE"):
    data: bytes


class ShutdownAgent(_Ch, tag="SHUTDOWN_AGENT"):
    """The agent's machine went DOWN for maintenance: kill everything it runs (Mesos'
    ShutdownMessage); the master refuses it until the machine is UP again."""

    agent_id: str
    message: str


class Ping(_Ch, tag="PING"):
    seq: int = 0


class CheckpointResources(_Ch, tag="CHECKPOINT_RESOURCES"):
    """The agent's total after a reservation or volume operation: the agent persists it
    and reports it when it re-registers (Mesos' CheckpointResourcesMessage)."""

    agent_id: str
    resources: list[Resource]


class Refused(_Ch, tag="REFUSED"):
    """The master will not take this agent (bad registration); ``message`` says why."""

    key: str
    message: str


ToMaster = Union[RegisterAgent, StatusUpdate, ExecutorExited, ExecutorToFramework, UnregisterAgent, Pong]
ToAgent = Union[
    AgentRegistered,
    RunTask,
    KillTask,
    AckUpdate,
    ShutdownFramework,
    ShutdownExecutor,
    FrameworkToExecutor,
    Ping,
    Refused,
    CheckpointResources,
    ShutdownAgent,
]

_enc = msgspec.json.Encoder()
_dec_to_master = msgspec.json.Decoder(list[ToMaster])
_dec_to_agent = msgspec.json.Decoder(list[ToAgent])


# A frame's bounds: both ends split what they queued into frames of at most this many
# messages and (where one message is not itself larger) this many bytes, far under the
# 16 MiB a WebSocket message may have at the master; a reader then handles one bounded
# frame at a time, and a re-registering process with 100,000 task reports is no longer
# one message the master refuses.
MAX_FRAME_MESSAGES = 1000
MAX_FRAME_BYTES = 4 * 1024 * 1024
HANDLE_SLICE = 100  # messages of one frame a receiver handles per event-loop step


def encode_frame(msgs: list[Any]) -> bytes:
    return _enc.encode(msgs)


def encode_frames(
    msgs: list[Any], max_messages: int = MAX_FRAME_MESSAGES, max_bytes: int = MAX_FRAME_BYTES
) -> Iterator[bytes]:
    """``msgs`` as consecutive frames (in order), each within the bounds above."""
    for i in range(0, len(msgs), max_messages):
        yield from _bounded(msgs[i:i + max_messages], max_bytes)


def _bounded(msgs: list[Any], max_bytes: int) -> Iterator[bytes]:
    frame = _enc.encode(msgs)
    if len(frame) <= max_bytes or len(msgs) == 1:
        yield frame
        return
    half = len(msgs) // 2
    yield from _bounded(msgs[:half], max_bytes)
    yield from _bounded(msgs[half:], max_bytes)


def decode_to_master(frame: bytes | str) -> list[Any]:
    return _dec_to_master.decode(frame)


def decode_to_agent(frame: bytes | str) -> list[Any]:
    return _dec_to_agent.decode(frame)

