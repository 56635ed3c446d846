"""A framework that runs the tasks it is given (:class:`TaskPool`): the one offer handling of
mesos-nb. ``mesos-nb run`` places its task with the same matcher; the notebook's framework,
the Dask/Spark/ipyparallel launchers and the kernel provisioner *are* task pools.

What a pool does with offers (all on its private event-loop thread):

* every offer is *held* (``held``) and matched at once against the pending command tasks
  (:func:`~mesos_nb.scheduler.matcher.match_offer`), then against the pending tasks of each
  :class:`~mesos_nb.scheduler.matcher.Placer` (tasks of another kind, e.g. the notebook's
  warm-executor cells) on what is left; a new task is matched against the held offers first;
* offers left over are declined (refused 1 s while something waits, else ``idle_refuse``) —
  unless someone holds offers (:meth:`TaskPool.hold_offers`, e.g. an offer browser that
  launches onto a chosen offer with ``TaskSpec.offer_id``), or a placer keeps that offer;
* every pending task carries a sentence saying why it waits (``TaskHandle.waiting``,
  :func:`~mesos_nb.scheduler.matcher.waiting_reason`), refreshed after each round, on
  heartbeats while no offer comes, and by :meth:`TaskPool.refresh_waiting`;
* with ``suppress_when_idle`` the framework SUPPRESSes offers once nothing waits, nothing is
  held and nobody holds offers, and REVIVEs when a task is asked for or a hold begins;
* a failed LAUNCH puts the tasks back in front of the queue with the failure as their reason.

The names of :mod:`.handle` and :mod:`.matcher` are re-exported here for older imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from mesos_nb.protocol import event_loop
from mesos_nb.protocol.messages import Filters, Offer
from mesos_nb.protocol.resources import Resources

from .driver import MesosError, Scheduler, SchedulerDriver
from .handle import (
    LAUNCHING,
    PENDING,
    RUNNING,
    TaskHandle,
    TaskSpec,
    current_user,
    framework_ended,
    framework_info,
    image_container,
)
from .matcher import Placer, amounts_text, match_offer, ports_of, unfit_reason, waiting_reason
from .stream import normalize_master
from .tasks import new_task_id

log = logging.getLogger("mesos_nb.scheduler.pool")


class TaskPool(Scheduler):
    """One framework on ``master`` running the tasks it is given.

    It subscribes through the asyncio :class:`SchedulerDriver` on a private event-loop
    thread; ``submit(TaskSpec)`` queues a request and returns its :class:`TaskHandle` at once.
    Every public method is thread-safe; those that answer (``hold_offers``, ``decline``,
    ``held_offers``) wait for the loop thread. ``failover_timeout`` > 0 keeps the framework
    and its tasks on the master after this process is gone, so that
    ``TaskPool(..., framework_id=...)`` can take them over.
    """

    not_started: ClassVar[str] = "the task pool is not started"
    amounts_text: ClassVar[Callable[[Mapping[str, float]], str]] = staticmethod(amounts_text)

    def __init__(self, master: str, name: str = "mesos-nb", *, role: str = "*",
                 failover_timeout: float = 0.0, framework_id: str | None = None,
                 start_timeout: float = 15.0, gpus: bool = False, suppress_when_idle: bool = True,
                 idle_refuse: float = 30.0) -> None:
        self.master = normalize_master(master)
        self.gpus = gpus  # GPU_RESOURCES capability: offers from GPU agents
        self.name = name
        self.role = role or "*"
        self.failover_timeout = float(failover_timeout)
        self.framework_id = framework_id
        self.start_timeout = start_timeout
        self.suppress_when_idle = suppress_when_idle
        self.idle_refuse = idle_refuse
        self.tasks: dict[str, TaskHandle] = {}
        self.held: dict[str, Offer] = {}
        self.placers: list[Placer] = []
        self._pending: list[TaskHandle] = []
        self._holders = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.driver: SchedulerDriver | None = None
        self._suppressed = False
        self._flow = asyncio.Lock()  # one matching round or REVIVE at a time (callbacks interleave)
        self.offers_seen = 0
        self.last_offer: float | None = None
        self.pending_since: float | None = None
        # ``error`` stays the callback until the master sends ERROR; then it is that message
        self.listeners: list[Callable[[TaskHandle], None]] = []  # a task changed state
        self.offer_listeners: list[Callable[[], None]] = []  # held offers or reasons changed

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Subscribe (re-subscribe when ``framework_id`` was given); returns the framework id."""
        ready = threading.Event()

        def run() -> None:
            loop = event_loop.new_loop()
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
            self.driver = None
            raise
        return self.framework_id

    def _run(self, coro: Any, timeout: float | None = 30.0) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError(self.not_started)
        if threading.current_thread() is self._thread:
            coro.close()
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
        driver, self.driver = self.driver, None
        if driver is not None and self._loop is not None and not self._loop.is_closed():
            try:
                self._run(driver.stop(failover=not teardown), timeout=15)
            except Exception as e:  # noqa: BLE001 - stopping must go on; the operator is told
                log.warning("framework stop failed framework_id=%s teardown=%s: %s",
                            driver.framework_id, teardown, e or type(e).__name__)
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
        """Queue a command task; returns its handle at once (placed on the loop thread)."""
        tid = spec.task_id or new_task_id(spec.name)
        if tid in self.tasks and not self.tasks[tid].done:
            raise ValueError(f"task {tid} already exists in this pool")
        task = TaskHandle(tid, spec)
        self.tasks[tid] = task
        self._soon(lambda: self._enqueue(task))
        return task

    def kill(self, task_id: str) -> None:
        async def go() -> None:
            with contextlib.suppress(MesosError, ConnectionError):
                await self._kill(task_id)

        self._soon(go)

    def reconcile(self) -> None:
        async def go() -> None:
            if self.driver is not None:
                await self.driver.reconcile()

        self._soon(go)

    def hold_offers(self, on: bool) -> None:
        """Begin (``on``) or end one hold: while any hold is on, offers left over are kept in
        ``held`` (not declined) and the framework is never SUPPRESSed; a new hold REVIVEs."""

        async def go() -> None:
            self._holders += 1 if on else -1
            if on:
                await self._revive()
            await self._match()

        self._run(go())

    def decline(self, offer_id: str, refuse_seconds: float = 1.0) -> None:
        """Give one held offer back; its resources are refused for ``refuse_seconds``."""

        async def go() -> None:
            if self.held.pop(offer_id, None) is not None and self.driver is not None:
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.decline([offer_id], refuse_seconds=refuse_seconds)
            self._offers_changed()

        self._run(go())

    def held_offers(self) -> list[Offer]:
        async def go() -> list[Offer]:
            return list(self.held.values())

        return self._run(go())

    def refresh_waiting(self) -> None:
        """Say again why each pending task waits (time passes even when no offer arrives)."""

        async def go() -> None:
            self._explain_all()

        with contextlib.suppress(RuntimeError, TimeoutError):
            self._run(go(), timeout=5)

    @property
    def why_waiting(self) -> str:
        """The reason of the first task still waiting ("" when none waits)."""
        first = next(iter(self._waiting()), None)
        return (first.waiting or "") if first is not None else ""

    def status(self) -> dict[str, Any]:
        """Counts per phase plus the reason the requested tasks still wait."""
        counts: dict[str, Any] = {"requested": 0, "launching": 0, "running": 0, "finished": 0, "failed": 0}
        for t in list(self.tasks.values()):
            p = t.phase
            counts[p if p in ("requested", "launching", "running", "finished") else "failed"] += 1
        counts["offers_seen"] = self.offers_seen
        counts["waiting"] = self.why_waiting if counts["requested"] else ""
        return counts

    # ------------------------------------------------------------------ hooks for subclasses
    def role_reason(self, task: TaskHandle) -> str | None:
        """The role's part of why ``task`` waits (quota, others' reservations), if known."""
        return None

    def adopt(self, task_id: str) -> TaskHandle:
        """A handle for a task this process did not submit (learnt by reconciliation)."""
        return TaskHandle(task_id, None)

    # ------------------------------------------------------------------ loop thread
    def _waiting(self) -> list[TaskHandle]:
        return self._pending + [t for p in self.placers for t in p.pending]

    async def _enqueue(self, task: TaskHandle, placer: Placer | None = None) -> None:
        """Queue ``task`` (for ``placer``, else as a command task), try the held offers, and
        REVIVE when it still waits for offers in general."""
        self.tasks[task.id] = task
        (placer.pending if placer is not None else self._pending).append(task)
        if self.pending_since is None:
            self.pending_since = time.monotonic()
        await self._match()
        if task.state == PENDING and (task.spec is None or task.spec.offer_id is None):
            await self._revive()

    async def _kill(self, task_id: str) -> None:
        """Drop a task still waiting; ask the master to kill a launched one (may raise)."""
        task = self.tasks.get(task_id)
        if task is not None:
            for queue in (self._pending, *(p.pending for p in self.placers)):
                if task in queue:
                    queue.remove(task)
                    task._set("TASK_KILLED", "killed before it was launched")
                    self._notify(task)
                    return
            if task.done:
                return
        if self.driver is not None:
            await self.driver.kill(task_id, task.agent_id if task else None)

    def _notify(self, task: TaskHandle) -> None:
        for fn in list(self.listeners):
            try:
                fn(task)
            except Exception:  # a listener must not break the driver
                log.exception("task listener failed")

    def _offers_changed(self) -> None:
        for fn in list(self.offer_listeners):
            try:
                fn()
            except Exception:
                log.exception("offer listener failed")

    async def _revive(self) -> None:
        if self.driver is None or not self.driver.connected:
            return
        async with self._flow:
            with contextlib.suppress(MesosError, ConnectionError):
                await self.driver.revive()
                self._suppressed = False

    def _explain(self, task: TaskHandle) -> str:
        assert task.spec is not None
        waited = time.monotonic() - (self.pending_since or time.monotonic())
        return waiting_reason(task.spec, self.held, waited, self.role_reason(task), type(self).amounts_text)

    def _explain_all(self) -> None:
        for task in self._waiting():
            if task.spec is not None:
                task.note_waiting(self._explain(task), self.offers_seen)

    async def _match(self) -> None:
        """Place what waits on the held offers; give back (or keep) the rest."""
        async with self._flow:
            drv = self.driver
            if drv is not None:  # None: stopped while an event was on its way
                await self._match_held(drv)
        self._offers_changed()

    async def _match_held(self, drv: SchedulerDriver) -> None:
        for offer in list(self.held.values()):
            if offer.id.value not in self.held:  # declined or rescinded while a LAUNCH was awaited
                continue
            launches = match_offer(offer, self._pending)
            have = Resources.from_proto(offer.resources)
            for info, _ in launches:
                have = have - Resources.from_proto(info.resources)
            placed: list[tuple[Placer, list]] = []
            for placer in self.placers:
                got = placer.match(offer, have, self.framework_id) if placer.pending else []
                for info, _ in got:
                    have = have - Resources.from_proto(info.resources)
                placed.append((placer, got))
            others = [x for _, got in placed for x in got]
            if not launches and not others:
                continue
            self.held.pop(offer.id.value, None)
            for info, task in launches:
                self._pending.remove(task)
                task.launching(offer, ports_of(info))
                self._notify(task)
            for _, task in others:
                task.launching(offer, [])
                self._notify(task)
            try:
                await drv.launch([offer.id], [i for i, _ in launches + others], Filters(refuse_seconds=0.0))
            except (MesosError, ConnectionError) as e:
                why = f"the launch on {offer.hostname} failed ({e}); trying again"
                for _, task in launches + others:
                    task.requeue(why)
                self._pending[:0] = [t for _, t in launches]
                for placer, got in placed:
                    if got:
                        placer.launch_failed(got)
        self._explain_all()
        if not self._waiting():
            self.pending_since = None
        if self.held and self._holders == 0:
            ids = [oid for oid, o in self.held.items() if not any(p.keeps(o) for p in self.placers)]
            if ids:
                for oid in ids:
                    self.held.pop(oid, None)
                with contextlib.suppress(MesosError, ConnectionError):
                    await drv.decline(ids, refuse_seconds=1.0 if self._waiting() else self.idle_refuse)
        # decided after the awaits above: a task queued meanwhile waits for this round's end
        # (the lock), then REVIVEs, so a SUPPRESS never lands after the REVIVE it needs
        if (self.suppress_when_idle and not self._waiting() and not self.held and self._holders == 0
                and not self._suppressed and drv.connected):
            with contextlib.suppress(MesosError, ConnectionError):
                await drv.suppress()
                self._suppressed = True

    # ------------------------------------------------------------------ driver callbacks
    async def offers(self, driver: Any, offers: list[Offer]) -> None:
        self.offers_seen += len(offers)
        self.last_offer = time.monotonic()
        for o in offers:
            self.held[o.id.value] = o
        await self._match()

    def rescind(self, driver: Any, offer_id: Any) -> None:
        self.held.pop(str(getattr(offer_id, "value", offer_id)), None)
        self._offers_changed()

    async def update(self, driver: Any, status: Any) -> None:
        tid = status.task_id.value
        task = self.tasks.get(tid)
        if task is None:  # known from before this process (reconciliation)
            task = self.tasks[tid] = self.adopt(tid)
        if status.agent_id is not None and not task.agent_id:
            task.agent_id = status.agent_id.value
        if status.data is not None:
            task.data = status.data
        task._set(status.state, status.message, status.reason)
        self._notify(task)

    def error(self, driver: Any, message: str) -> None:
        self.error = message  # type: ignore[assignment,method-assign]
        framework_ended(self.tasks.values(), message)

    def heartbeat(self, driver: Any) -> None:
        # time passes while no offer comes: say so (offers, when they come, say more)
        if self.last_offer is None or time.monotonic() - self.last_offer > 3:
            self._explain_all()
            self._offers_changed()
        if self.held and self._holders == 0:
            # offers a placer kept (e.g. for a warm executor's next cell) go back once it stops
            # keeping them, even when no other offer comes (an idle pool is SUPPRESSed)
            self._soon(self._match)


def _log_failure(t: asyncio.Future) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("task pool operation failed: %s", t.exception())


__all__ = ["LAUNCHING", "PENDING", "RUNNING", "Placer", "TaskHandle", "TaskPool", "TaskSpec", "current_user",
           "framework_ended", "framework_info", "image_container", "match_offer", "ports_of", "unfit_reason",
           "waiting_reason"]
