"""Requested tasks, their handles, the one offer matcher, and a framework that keeps a set
of command tasks running (:class:`TaskPool`).

Every framework in mesos-nb that runs command tasks — ``mesos-nb run``, the notebook's
framework, the Dask/Spark/ipyparallel launchers — describes a task as a :class:`TaskSpec`,
follows it through a :class:`TaskHandle` and places it with :func:`match_offer`:

* a handle's ``state`` is ``PENDING`` (asked for, no offer yet), then the Mesos states
  (``TASK_STAGING`` once LAUNCH is sent);
* its ``phase`` is ``requested``, ``launching`` (STAGING/STARTING), ``running``
  (RUNNING/KILLING) or the terminal state in lower case (``finished``, ``failed``, ...).

:func:`match_offer` is pure: given one offer and the pending handles, it returns the
``TaskInfo``s to launch (several tasks may share one offer; first come, first served),
honouring resources, the offer's role (unreserved first, then the role's reservation),
``KEY=VALUE`` attribute constraints, ports, and a request pinned to one offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesos_nb.protocol.messages import (
    ID,
    TERMINAL_STATES,
    Capability,
    Filters,
    FrameworkInfo,
    Offer,
    TaskInfo,
)
from mesos_nb.protocol.resources import Resources

from .driver import MesosError, Scheduler, SchedulerDriver
from .stream import normalize_master
from .tasks import command_info, matches_attributes, new_task_id, offer_role, request, take_from

log = logging.getLogger("mesos_nb.scheduler.pool")

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
    """One requested task: id, state and its history, agent, ports, last message.

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
            self.cond.notify_all()
        self._changed()

    def _changed(self) -> None:
        """Called after every state change (on whatever thread made it)."""

    def launching(self, offer: Offer, ports: list[int]) -> None:
        self.agent_id = offer.agent_id.value
        self.hostname = offer.hostname
        self.ports = ports
        self._set("TASK_STAGING")

    def requeue(self, why: str | None) -> None:
        """The LAUNCH call failed: back to waiting for an offer."""
        self.agent_id = self.hostname = None
        self.ports = []
        self._set(PENDING, why)

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


# ============================================================================ the matcher
def unfit_reason(offer: Offer, spec: TaskSpec) -> str | None:
    """Why ``offer`` cannot hold ``spec`` (None when it can)."""
    if spec.offer_id is not None and spec.offer_id != offer.id.value:
        return f"the task waits for offer {spec.offer_id}"
    if spec.constraints and not matches_attributes(offer, spec.constraints):
        return "no offered agent has " + ", ".join(f"{k}={v}" for k, v in spec.constraints.items())
    have = Resources.from_proto(offer.resources)
    if take_from(have, offer_role(offer), spec.amounts, spec.ports) is None:
        left = have.scalars()
        return (f"each task needs {spec.describe()}; the offer from {offer.hostname} has "
                + " ".join(f"{k}:{left.get(k, 0):g}" for k in spec.amounts))
    return None


def match_offer(offer: Offer, pending: Sequence[TaskHandle]) -> list[tuple[TaskInfo, TaskHandle]]:
    """The tasks of ``pending`` (in order) that ``offer`` holds, as ``TaskInfo``s ready to
    LAUNCH on it. Pure: the handles are not changed."""
    have = Resources.from_proto(offer.resources)
    role = offer_role(offer)
    out: list[tuple[TaskInfo, TaskHandle]] = []
    for task in pending:
        spec = task.spec
        if spec is None or (spec.offer_id is not None and spec.offer_id != offer.id.value):
            continue
        if spec.constraints and not matches_attributes(offer, spec.constraints):
            continue
        res = take_from(have, role, spec.amounts, spec.ports)
        if res is None:
            continue
        have = have - res
        ports = [p for b, e in res.ranges("ports") for p in range(b, e + 1)]
        cmd = spec.cmd(offer.hostname, ports) if callable(spec.cmd) else spec.cmd
        out.append((TaskInfo(name=spec.name, task_id=ID(value=task.id), agent_id=offer.agent_id,
                             resources=res.to_proto(role),
                             command=command_info(cmd, dict(spec.env) or None),
                             container=dict(spec.container) if spec.container else None), task))
    return out


def ports_of(info: TaskInfo) -> list[int]:
    return [p for b, e in Resources.from_proto(info.resources).ranges("ports") for p in range(b, e + 1)]


def framework_info(name: str, role: str, failover_timeout: float, framework_id: str | None,
                   gpus: bool = False) -> FrameworkInfo:
    caps = [Capability(type="MULTI_ROLE")] + ([Capability(type="GPU_RESOURCES")] if gpus else [])
    return FrameworkInfo(user=current_user(), name=name, roles=[role or "*"], capabilities=caps,
                         failover_timeout=failover_timeout,
                         id=ID(value=framework_id) if framework_id else None)


# ============================================================================ the pool
class TaskPool(Scheduler):
    """One framework on ``master`` running the tasks it is given.

    It subscribes through the asyncio :class:`SchedulerDriver` on a private event-loop
    thread; ``submit(TaskSpec)`` queues a request and returns its :class:`TaskHandle` at once;
    leftover offers are declined, and the framework SUPPRESSes offers while nothing waits and
    REVIVEs when something new is asked for. Every public method is thread-safe.
    ``failover_timeout`` > 0 keeps the framework and its tasks on the master after this
    process is gone, so that ``TaskPool(..., framework_id=...)`` can take them over.
    """

    def __init__(self, master: str, name: str = "mesos-nb", *, role: str = "*",
                 failover_timeout: float = 0.0, framework_id: str | None = None,
                 start_timeout: float = 15.0, gpus: bool = False) -> None:
        self.master = normalize_master(master)
        self.gpus = gpus  # GPU_RESOURCES capability: offers from GPU agents
        self.name = name
        self.role = role or "*"
        self.failover_timeout = float(failover_timeout)
        self.framework_id = framework_id
        self.start_timeout = start_timeout
        self.tasks: dict[str, TaskHandle] = {}
        self._pending: list[TaskHandle] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.driver: SchedulerDriver | None = None
        self._suppressed = False
        self.offers_seen = 0
        self.last_offer: float | None = None
        self.pending_since: float | None = None
        self.why_waiting = ""
        self.error: str | None = None
        self.listeners: list[Callable[[TaskHandle], None]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Subscribe (re-subscribe when ``framework_id`` was given); returns the framework id."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            ready.set()
            loop.run_forever()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"mesos-nb-pool-{self.name}", daemon=True)
        self._thread.start()
        ready.wait()
        info = framework_info(self.name, self.role, self.failover_timeout, self.framework_id,
                              gpus=self.gpus)

        async def go() -> str:
            self.driver = SchedulerDriver(self, info, self.master, start_timeout=self.start_timeout,
                                          reconcile_on_subscribe=True)
            return await self.driver.start()

        try:
            self.framework_id = self._run(go(), timeout=self.start_timeout + 5)
        except BaseException:
            self._stop_loop()
            raise
        return self.framework_id

    def _run(self, coro: Any, timeout: float | None = 30.0) -> Any:
        if self._loop is None:
            raise RuntimeError("the task pool is not started")
        if threading.current_thread() is self._thread:
            raise RuntimeError("TaskPool._run called from its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _soon(self, coro_fn: Callable[[], Any]) -> None:
        """Run ``coro_fn()`` on the loop without waiting (from any thread)."""
        if self._loop is None or self._loop.is_closed():
            return

        def go() -> None:
            t = asyncio.ensure_future(coro_fn())
            t.add_done_callback(_log_failure)

        self._loop.call_soon_threadsafe(go)

    def stop(self, teardown: bool = True) -> None:
        """Stop; ``teardown`` ends the framework (its tasks are killed), otherwise the master
        keeps it for ``failover_timeout`` seconds."""
        if self.driver is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._run(self.driver.stop(failover=not teardown), timeout=15)
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    @property
    def connected(self) -> bool:
        return bool(self.driver and self.driver.connected)

    # ------------------------------------------------------------------ API (any thread)
    def submit(self, spec: TaskSpec) -> TaskHandle:
        tid = spec.task_id or new_task_id(spec.name)
        if tid in self.tasks and not self.tasks[tid].done:
            raise ValueError(f"task {tid} already exists in this pool")
        task = TaskHandle(tid, spec)
        self.tasks[tid] = task

        async def go() -> None:
            self._pending.append(task)
            if self.pending_since is None:
                self.pending_since = time.monotonic()
            await self._revive()

        self._soon(go)
        return task

    def kill(self, task_id: str) -> None:
        task = self.tasks.get(task_id)

        async def go() -> None:
            if task is not None and task in self._pending:
                self._pending.remove(task)
                task._set("TASK_KILLED", "killed before it was launched")
                self._notify(task)
                return
            if task is not None and task.done:
                return
            if self.driver is not None:
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.kill(task_id, task.agent_id if task else None)

        self._soon(go)

    def reconcile(self) -> None:
        async def go() -> None:
            if self.driver is not None:
                await self.driver.reconcile()

        self._soon(go)

    def status(self) -> dict[str, Any]:
        """Counts per phase plus the reason the requested tasks still wait."""
        counts: dict[str, Any] = {"requested": 0, "launching": 0, "running": 0, "finished": 0, "failed": 0}
        for t in list(self.tasks.values()):
            p = t.phase
            counts[p if p in ("requested", "launching", "running", "finished") else "failed"] += 1
        counts["offers_seen"] = self.offers_seen
        counts["waiting"] = self.why_waiting if counts["requested"] else ""
        return counts

    # ------------------------------------------------------------------ callbacks (loop thread)
    def _notify(self, task: TaskHandle) -> None:
        for fn in list(self.listeners):
            try:
                fn(task)
            except Exception:  # a listener must not break the driver
                log.exception("task listener failed")

    async def _revive(self) -> None:
        if self.driver is None or not self.driver.connected:
            return
        with contextlib.suppress(MesosError, ConnectionError):
            await self.driver.revive()
            self._suppressed = False

    async def offers(self, driver: Any, offers: list[Offer]) -> None:
        self.offers_seen += len(offers)
        self.last_offer = time.monotonic()
        decline: list[Any] = []
        for offer in offers:
            launches = match_offer(offer, self._pending)
            for t in self._pending:
                if t.spec is not None and all(t is not x for _, x in launches):
                    why = unfit_reason(offer, t.spec)
                    if why:
                        self.why_waiting = f"no offer fits: {why}"
            if not launches:
                decline.append(offer.id)
                continue
            for info, t in launches:
                self._pending.remove(t)
                t.launching(offer, ports_of(info))
                self._notify(t)
            try:
                await driver.launch([offer.id], [i for i, _ in launches], Filters(refuse_seconds=0.0))
            except (MesosError, ConnectionError) as e:
                self.why_waiting = f"the launch on {offer.hostname} failed ({e}); trying again"
                for _, t in reversed(launches):
                    t.requeue(self.why_waiting)
                    self._pending.insert(0, t)
        if not self._pending:
            self.pending_since = None
            self.why_waiting = ""
        if decline:
            with contextlib.suppress(MesosError, ConnectionError):
                await driver.decline(decline, refuse_seconds=1.0 if self._pending else 30.0)
        if not self._pending and not self._suppressed:
            with contextlib.suppress(MesosError, ConnectionError):
                await driver.suppress()
                self._suppressed = True

    async def update(self, driver: Any, status: Any) -> None:
        tid = status.task_id.value
        task = self.tasks.get(tid)
        if task is None:  # known from before this process (reconciliation)
            task = TaskHandle(tid, None)
            self.tasks[tid] = task
        if status.agent_id is not None and not task.agent_id:
            task.agent_id = status.agent_id.value
        task._set(status.state, status.message, status.reason)
        self._notify(task)

    def error(self, driver: Any, message: str) -> None:
        self.error = message
        framework_ended(self.tasks.values(), message)

    def heartbeat(self, driver: Any) -> None:
        # say why we wait when offers stop coming at all
        if self._pending and self.pending_since is not None:
            if self.last_offer is None or time.monotonic() - self.last_offer > 3:
                waited = time.monotonic() - self.pending_since
                self.why_waiting = (
                    f"no offer for {waited:.0f} s: the cluster's free resources are used by other "
                    "tasks or frameworks (or the role's quota/weight holds this framework back)")


def _log_failure(t: asyncio.Future) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("task pool operation failed: %s", t.exception())


__all__ = ["LAUNCHING", "PENDING", "RUNNING", "TaskHandle", "TaskPool", "TaskSpec", "current_user", "image_container",
           "framework_ended", "framework_info", "match_offer", "ports_of", "unfit_reason"]
