"""A framework that keeps a set of command tasks running: the shared engine under the Dask,
Spark and ipyparallel launchers.

:class:`TaskPool` subscribes to a master as one framework (through the SDK's asyncio
:class:`~mesos_nb.scheduler.SchedulerDriver`, on a private event-loop thread) and runs the
tasks it is asked for: ``submit(TaskSpec)`` queues a request and returns a :class:`PoolTask`
at once; offers are matched first-come first-served (several tasks may share one offer);
leftover offers are declined, and the framework SUPPRESSes offers while nothing waits and
REVIVEs when something new is asked for. Every public method is thread-safe.

Each task's phase is one of ``requested`` (waiting for an offer), ``launching`` (LAUNCH
sent, STAGING/STARTING), ``running`` or a terminal Mesos state, and :meth:`TaskPool.status`
says why requests still wait (no offer for N s, or the largest offer is too small).
A task's sandbox ``stdout``/``stderr`` stay readable after it died (:meth:`TaskPool.logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mesos_nb.protocol.messages import (
    ID,
    Capability,
    Filters,
    FrameworkInfo,
    Offer,
    TaskInfo,
)
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import MesosError, Scheduler, SchedulerDriver
from mesos_nb.scheduler.stream import normalize_master
from mesos_nb.scheduler.tasks import (
    command_info,
    matches_attributes,
    new_task_id,
    offer_role,
    request,
)

log = logging.getLogger("mesos_nb.frameworks")

TERMINAL = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
})
LAUNCHING = frozenset({"LAUNCHING", "TASK_STAGING", "TASK_STARTING"})


@dataclass
class TaskSpec:
    """What to run. ``cmd`` is a shell command, or a function ``(hostname, ports) -> str``
    called when the offer is chosen (for commands that must know their host and ports)."""

    cmd: str | Callable[[str, list[int]], str]
    cpus: float = 1.0
    mem: float = 256.0
    gpus: float = 0.0
    disk: float = 0.0
    ports: int = 0
    name: str = "task"
    task_id: str | None = None
    constraints: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def amounts(self) -> dict[str, float]:
        return request(cpus=self.cpus, mem=self.mem, gpus=self.gpus, disk=self.disk)


class PoolTask:
    """One task of a pool: its id, phase, agent, ports and last status."""

    def __init__(self, task_id: str, spec: TaskSpec | None) -> None:
        self.id = task_id
        self.spec = spec
        self.state = "REQUESTED"
        self.agent_id: str | None = None
        self.hostname: str | None = None
        self.ports: list[int] = []
        self.message: str | None = None
        self.reason: str | None = None
        self.created = time.time()
        self.cond = threading.Condition()

    @property
    def phase(self) -> str:
        if self.state == "REQUESTED":
            return "requested"
        if self.state in LAUNCHING:
            return "launching"
        if self.state in ("TASK_RUNNING", "TASK_KILLING"):
            return "running"
        return self.state.removeprefix("TASK_").lower()

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def _set(self, state: str, message: str | None = None, reason: str | None = None) -> None:
        with self.cond:
            self.state = state
            if message:
                self.message = message
            if reason:
                self.reason = reason
            self.cond.notify_all()

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
        return f"<PoolTask {self.id} {self.phase}{where}>"


def local_ip_for(master: str) -> str:
    """The address of this machine as seen from the master (the interface routing to it)."""
    url = normalize_master(master)
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port or 5050)))
        return s.getsockname()[0]
    return "127.0.0.1"


def _take(have: Resources, spec: TaskSpec, role: str) -> Resources | None:
    """What to launch ``spec`` with out of ``have`` (unreserved first, then the role's)."""
    amounts = spec.amounts
    for res_role in ("*", role):
        want = Resources.scalars_of(role=res_role, **amounts)
        if not have.contains(want):
            continue
        if spec.ports:
            try:
                want = want + have.pick_ports(spec.ports)
            except ValueError:
                return None
        return want
    return None


class TaskPool(Scheduler):
    """One framework on ``master`` running the tasks it is given (see the module doc).

    ``failover_timeout`` > 0 keeps the framework and its tasks on the master after this
    process is gone, so that ``TaskPool(..., framework_id=...)`` can take them over.
    """

    def __init__(self, master: str, name: str = "mesos-nb", *, role: str = "*",
                 failover_timeout: float = 0.0, framework_id: str | None = None,
                 start_timeout: float = 15.0) -> None:
        self.master = normalize_master(master)
        self.name = name
        self.role = role or "*"
        self.failover_timeout = float(failover_timeout)
        self.framework_id = framework_id
        self.start_timeout = start_timeout
        self.tasks: dict[str, PoolTask] = {}
        self._pending: list[PoolTask] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.driver: SchedulerDriver | None = None
        self._suppressed = False
        self.offers_seen = 0
        self.last_offer: float | None = None
        self.pending_since: float | None = None
        self.why_waiting = ""
        self.error: str | None = None
        self.listeners: list[Callable[[PoolTask], None]] = []

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
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "nobody"
        info = FrameworkInfo(
            user=user, name=self.name, roles=[self.role], capabilities=[Capability(type="MULTI_ROLE")],
            failover_timeout=self.failover_timeout,
            id=ID(value=self.framework_id) if self.framework_id else None,
        )

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
    def submit(self, spec: TaskSpec) -> PoolTask:
        tid = spec.task_id or new_task_id(spec.name)
        if tid in self.tasks and not self.tasks[tid].done:
            raise ValueError(f"task {tid} already exists in this pool")
        task = PoolTask(tid, spec)
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
        counts = {"requested": 0, "launching": 0, "running": 0, "finished": 0, "failed": 0}
        for t in list(self.tasks.values()):
            p = t.phase
            if p in ("requested", "launching", "running"):
                counts[p] += 1
            elif p == "finished":
                counts["finished"] += 1
            else:
                counts["failed"] += 1
        counts["offers_seen"] = self.offers_seen
        counts["waiting"] = self.why_waiting if counts["requested"] else ""
        return counts

    def logs(self, task_id: str, files: tuple[str, ...] = ("stdout", "stderr")) -> dict[str, str]:
        """The task's sandbox files (also after it died), read through the agent's /files/read."""
        from mesos_nb import cli

        task = self.tasks.get(task_id)
        out: dict[str, str] = {}
        try:
            state = cli.master_state(self.master)
            agent_id = task.agent_id if task and task.agent_id else None
            if agent_id is None:
                t, _fw = cli.find_task(state, task_id)
                agent_id = t.get("slave_id", "")
            agent = cli.agent_url_for(state, agent_id)
            directory = cli.sandbox_dir(agent, self.framework_id, task_id)
            if not directory:
                return out
            for name in files:
                buf = io.StringIO()
                cli.FileFollower(agent, f"{directory}/{name}", buf).poll()
                out[name] = buf.getvalue()
        except cli.CLIError as e:
            out["error"] = str(e)
        return out

    # ------------------------------------------------------------------ callbacks (loop thread)
    def _notify(self, task: PoolTask) -> None:
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
            infos = self._match(offer)
            if not infos:
                decline.append(offer.id)
                continue
            try:
                await driver.launch([offer.id], [i for i, _ in infos], Filters(refuse_seconds=0.0))
            except (MesosError, ConnectionError) as e:
                for _, t in infos:
                    t.state = "REQUESTED"
                    t.hostname = t.agent_id = None
                    self._pending.insert(0, t)
                self.why_waiting = f"the launch on {offer.hostname} failed ({e}); trying again"
                continue
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

    def _match(self, offer: Offer) -> list[tuple[TaskInfo, PoolTask]]:
        have = Resources.from_proto(offer.resources)
        role = offer_role(offer)
        out: list[tuple[TaskInfo, PoolTask]] = []
        for task in list(self._pending):
            spec = task.spec
            assert spec is not None
            if spec.constraints and not matches_attributes(offer, spec.constraints):
                self.why_waiting = ("no offer fits: no offered agent has " +
                                    ", ".join(f"{k}={v}" for k, v in spec.constraints.items()))
                continue
            res = _take(have, spec, role)
            if res is None:
                left = have.scalars()
                self.why_waiting = (
                    f"no offer fits: each task needs {_amounts(spec)}; the offer from "
                    f"{offer.hostname} has {_amounts_of(left, spec)}")
                continue
            have = have - res
            ports = [p for b, e in res.ranges("ports") for p in range(b, e + 1)]
            cmd = spec.cmd(offer.hostname, ports) if callable(spec.cmd) else spec.cmd
            info = TaskInfo(name=spec.name, task_id=ID(value=task.id), agent_id=offer.agent_id,
                            resources=res.to_proto(role), command=command_info(cmd, dict(spec.env) or None))
            self._pending.remove(task)
            task.agent_id = offer.agent_id.value
            task.hostname = offer.hostname
            task.ports = ports
            task._set("LAUNCHING")
            self._notify(task)
            out.append((info, task))
        return out

    async def update(self, driver: Any, status: Any) -> None:
        tid = status.task_id.value
        task = self.tasks.get(tid)
        if task is None:  # known from before this process (reconciliation)
            task = PoolTask(tid, None)
            self.tasks[tid] = task
        if status.agent_id is not None and not task.agent_id:
            task.agent_id = status.agent_id.value
        task._set(status.state, status.message, status.reason)
        self._notify(task)

    def error(self, driver: Any, message: str) -> None:
        self.error = message
        for t in self.tasks.values():
            if not t.done:
                t._set("TASK_LOST", f"the master ended the framework: {message}")

    def heartbeat(self, driver: Any) -> None:
        # say why we wait when offers stop coming at all
        if self._pending and self.pending_since is not None:
            if self.last_offer is None or time.monotonic() - self.last_offer > 3:
                waited = time.monotonic() - self.pending_since
                self.why_waiting = (
                    f"no offer for {waited:.0f} s: the cluster's free resources are used by other "
                    "tasks or frameworks (or the role's quota/weight holds this framework back)")


def _amounts(spec: TaskSpec) -> str:
    parts = [f"{k}:{v:g}" for k, v in spec.amounts.items()]
    if spec.ports:
        parts.append(f"ports:{spec.ports}")
    return " ".join(parts)


def _amounts_of(left: Mapping[str, float], spec: TaskSpec) -> str:
    return " ".join(f"{k}:{left.get(k, 0):g}" for k in spec.amounts)


def _log_failure(t: asyncio.Future) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("task pool operation failed: %s", t.exception())


__all__ = ["LAUNCHING", "TERMINAL", "PoolTask", "TaskPool", "TaskSpec", "local_ip_for"]
