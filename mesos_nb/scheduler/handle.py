"""A requested task and its handle: what every framework of mesos-nb that runs tasks (``mesos-nb
run``, the notebook, the Dask/Spark/ipyparallel launchers, the provisioner) describes and follows.

* :class:`TaskSpec` says what to run (command, resources, constraints, ports, a pinned offer);
* :class:`TaskHandle` follows it: ``state`` is ``PENDING`` (asked for, no offer yet), then the
  Mesos states (``TASK_STAGING`` once LAUNCH is sent); ``phase`` is ``requested``,
  ``launching`` (STAGING/STARTING), ``running`` (RUNNING/KILLING) or the terminal state in lower
  case (``finished``, ``failed``, ...); ``waiting`` is the sentence saying why a ``PENDING``
  task is not placed yet (set by :class:`~mesos_nb.scheduler.pool.TaskPool`).
"""

from __future__ import annotations

import getpass
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesos_nb.protocol.messages import ID, TERMINAL_STATES, Capability, FrameworkInfo, Offer

from .tasks import request

PENDING = "PENDING"
LAUNCHING = frozenset({"TASK_STAGING", "TASK_STARTING"})
RUNNING = frozenset({"TASK_RUNNING", "TASK_KILLING"})


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "nobody"


@dataclass
class TaskSpec:
    """What to run. ``cmd`` is a shell command (a string, or an argv list that is quoted), or a
    function ``(hostname, ports) -> str`` called when the offer is chosen (for commands that
    must know their host and ports). ``offer_id`` pins the task to that one offer."""

    cmd: str | Sequence[str] | Callable[[str, list[int]], str]
    cpus: float = 1.0
    mem: float = 256.0
    gpus: float = 0.0
    disk: float = 0.0
    ports: int = 0
    name: str = "task"
    task_id: str | None = None
    constraints: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    offer_id: str | None = None
    container: Mapping[str, Any] | None = None  # a ContainerInfo (see image_container)

    @property
    def amounts(self) -> dict[str, float]:
        return request(cpus=self.cpus, mem=self.mem, gpus=self.gpus, disk=self.disk)

    def describe(self) -> str:
        parts = [f"{k}:{v:g}" for k, v in self.amounts.items()]
        if self.ports:
            parts.append(f"ports:{self.ports}")
        return " ".join(parts)


def image_container(image: str, volumes: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A Mesos-containerizer ``ContainerInfo`` running in the Docker ``image`` (no daemon:
    the agent provisions the rootfs), with ``(host_path, container_path)`` read-only volumes."""
    info: dict[str, Any] = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}}
    if volumes:
        info["volumes"] = [{"container_path": c, "host_path": h, "mode": "RO"} for h, c in volumes]
    return info


class TaskHandle:
    """One requested task: id, state and its history, agent, ports, last message, and while it
    is ``PENDING`` the sentence saying why it waits (``waiting``).

    Thread-safe: the driver's loop thread sets states, other threads wait on ``cond``.
    Subclasses react to changes in :meth:`_changed` (the notebook refreshes its displays).
    """

    def __init__(self, task_id: str, spec: TaskSpec | None) -> None:
        self.id = task_id
        self.spec = spec
        self.created = time.time()
        self.history: list[tuple[float, str]] = [(self.created, PENDING)]
        self.agent_id: str | None = None
        self.hostname: str | None = None
        self.ports: list[int] = []
        self.message: str | None = None
        self.reason: str | None = None
        self.waiting: str | None = "waiting for an offer"
        self.offers_seen = 0  # offers the framework had received when ``waiting`` was last said
        self.data: bytes | None = None  # the last TaskStatus.data (e.g. a remote call's result)
        self.cond = threading.Condition()

    @property
    def state(self) -> str:
        return self.history[-1][1]

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def phase(self) -> str:
        s = self.state
        if s == PENDING:
            return "requested"
        if s in LAUNCHING:
            return "launching"
        if s in RUNNING or s not in TERMINAL_STATES:
            return "running"
        return s.removeprefix("TASK_").lower()

    def _set(self, state: str, message: str | None = None, reason: str | None = None) -> None:
        with self.cond:
            if state != self.state:
                self.history.append((time.time(), state))
                self.message, self.reason = message, reason
            elif message:
                self.message, self.reason = message, reason or self.reason
            if self.state != PENDING:
                self.waiting = None
            self.cond.notify_all()
        self._changed()

    def _changed(self) -> None:
        """Called after every change of state or of ``waiting`` (on whatever thread made it)."""

    def note_waiting(self, why: str, offers_seen: int | None = None) -> None:
        """Say why the task still waits (the pool's loop thread, after each matching round)."""
        with self.cond:
            if offers_seen is not None:
                self.offers_seen = offers_seen
            changed = why != self.waiting
            self.waiting = why
        if changed:
            self._changed()

    def launching(self, offer: Offer, ports: list[int]) -> None:
        self.agent_id = offer.agent_id.value
        self.hostname = offer.hostname
        self.ports = ports
        self._set("TASK_STAGING")

    def requeue(self, why: str) -> None:
        """The LAUNCH call failed: back to waiting for an offer, ``why`` said as its reason."""
        self.agent_id = self.hostname = None
        self.ports = []
        self._set(PENDING)
        self.note_waiting(why)

    def wait_for(self, states: set[str] | frozenset[str], timeout: float) -> bool:
        """Block until the state is one of ``states`` or terminal; True when it is in ``states``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.state not in states and not self.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
            return self.state in states

    def __repr__(self) -> str:
        where = f" on {self.hostname}" if self.hostname else ""
        return f"<TaskHandle {self.id} {self.phase}{where}>"


def framework_ended(tasks: Iterable[TaskHandle], message: str) -> None:
    """The master sent ERROR (the framework is gone): every live task is lost to us."""
    for t in tasks:
        if not t.done:
            t._set("TASK_LOST", f"the master ended the framework: {message}")


def framework_info(name: str, role: str, failover_timeout: float, framework_id: str | None,
                   gpus: bool = False) -> FrameworkInfo:
    caps = [Capability(type="MULTI_ROLE")] + ([Capability(type="GPU_RESOURCES")] if gpus else [])
    return FrameworkInfo(user=current_user(), name=name, roles=[role or "*"], capabilities=caps,
                         failover_timeout=failover_timeout,
                         id=ID(value=framework_id) if framework_id else None)


__all__ = ["LAUNCHING", "PENDING", "RUNNING", "TaskHandle", "TaskSpec", "current_user", "framework_ended",
           "framework_info", "image_container"]
