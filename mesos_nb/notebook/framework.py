"""The notebook's framework: one per kernel, created on first use, reconnectable after a restart.

Threads: the SDK's :class:`BlockingSchedulerDriver` runs the asyncio driver on a private loop
thread, and every callback (offers, updates, rescinds) runs there. All offer bookkeeping
(held offers, pending requests, matching) happens on that loop thread only; the kernel's
thread hands work over with :meth:`NotebookFramework._call_soon` and reads task state
through each :class:`Task`'s condition variable.

Offer policy: pending requests are matched to offers as they arrive; offers left over are
held while an offer browser is open, otherwise declined (for 1 s while something waits,
else ``idle_refuse`` seconds). A new request REVIVEs, clearing earlier decline filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mesos_nb.client import MasterClient, MesosClientError
from mesos_nb.protocol.messages import Filters, Offer
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import BlockingSchedulerDriver, MesosError, Scheduler
from mesos_nb.scheduler.pool import (
    TaskSpec,
    framework_ended,
    framework_info,
    image_container,
    match_offer,
    ports_of,
)
from mesos_nb.scheduler.tasks import attributes_match, matches_attributes, new_task_id, request

from .display import amounts_text
from .errors import MesosNotebookError
from .offers_table import offer_amounts
from .saved import load_saved, save
from .task import Task
from .warm import WarmExecutors, WarmTask, shape_key, warm_spec


class NotebookFramework(Scheduler):
    """The notebook's framework on ``master_url``; ``start()`` subscribes (or re-subscribes)."""

    def __init__(self, master_url: str, *, name: str = "notebook", role: str = "*",
                 failover_timeout: float = 3600.0, key: str | None = None,
                 idle_refuse: float = 30.0) -> None:
        self.master_url = master_url.rstrip("/")
        self.name = name
        self.role = role or "*"
        self.failover_timeout = float(failover_timeout)
        self.key = key
        self.idle_refuse = idle_refuse
        self.driver: BlockingSchedulerDriver | None = None
        self.framework_id: str | None = None
        self.reconnected = False
        self.tasks: dict[str, Task] = {}
        self.held: dict[str, Offer] = {}
        self.offers_received = 0
        self._pending: list[Task] = []
        self._holders = 0
        self._listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: str | None = None
        self._pending_since: float | None = None
        self.warm = WarmExecutors()
        self._role_reasons: dict[tuple, tuple[float, str | None]] = {}  # request -> (asked at, why)

    # ------------------------------------------------------------------ lifecycle
    @property
    def _save_key(self) -> str | None:
        return f"{self.master_url} {self.key}" if self.key else None

    def start(self) -> str:
        saved = load_saved().get(self._save_key or "", {}) if self._save_key else {}
        fid = saved.get("framework_id")
        try:
            self.framework_id = self._subscribe(fid)
            self.reconnected = bool(fid) and self.framework_id == fid
        except MesosError as e:
            if not fid:
                raise MesosNotebookError(f"the master at {self.master_url} refused the framework ({e.message or e})") from None
            # "Framework has been removed" (e.g. its failover timeout passed): start afresh
            self.framework_id = self._subscribe(None)
        if self._save_key:
            save(self._save_key, {"framework_id": self.framework_id, "master": self.master_url,
                                   "name": self.name, "saved": time.time()})
        return self.framework_id

    def _subscribe(self, fid: str | None) -> str:
        info = framework_info(self.name, self.role, self.failover_timeout, fid)
        self.driver = BlockingSchedulerDriver(self, info, self.master_url, start_timeout=10.0,
                                              reconcile_on_subscribe=True)
        try:
            return self.driver.start()
        except ConnectionError as e:
            self.driver = None
            raise MesosNotebookError(str(e)) from None
        except MesosError:
            self.driver = None
            raise

    @property
    def connected(self) -> bool:
        return bool(self.driver and self.driver.connected)

    def close(self, teardown: bool = False) -> None:
        """Stop the driver. ``teardown`` ends the framework on the master (its tasks are killed);
        otherwise it stays for ``failover_timeout`` so the next kernel can reconnect."""
        d, self.driver = self.driver, None
        if d is None:
            return
        with contextlib.suppress(Exception):
            d.stop(failover=not teardown)
        if teardown and self._save_key:
            with contextlib.suppress(OSError):
                save(self._save_key, None)
        for t in self.tasks.values():
            if not t.done and teardown:
                t._set("TASK_KILLED", "the framework was torn down")
        self._notify()

    # ------------------------------------------------------------------ listeners
    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            with contextlib.suppress(Exception):
                fn()

    # ------------------------------------------------------------------ loop-thread hand-over
    def _call_soon(self, coro_fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + 5.0
        while self._loop is None and self.driver is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # the subscribed callback runs just after start() returns
        if self._loop is None or self.driver is None:
            raise MesosNotebookError("the notebook's framework is not connected; run %mesos connect")
        fut = asyncio.run_coroutine_threadsafe(coro_fn(), self._loop)
        return fut.result(timeout)

    # ------------------------------------------------------------------ callbacks (loop thread)
    def subscribed(self, driver: Any, framework_id: str, master_info: Any) -> None:
        self._loop = asyncio.get_running_loop()

    async def offers(self, driver: Any, offers: list[Offer]) -> None:
        for o in offers:
            self.held[o.id.value] = o
        self.offers_received += len(offers)
        await self._match()

    async def rescind(self, driver: Any, offer_id: Any) -> None:
        oid = getattr(offer_id, "value", offer_id)
        self.held.pop(str(oid), None)
        self._notify()

    async def update(self, driver: Any, status: Any) -> None:
        tid = status.task_id.value
        task = self.tasks.get(tid)
        if task is None:  # a task from before a kernel restart, learnt by reconciliation
            task = Task(self, tid, tid, "(started before this kernel connected)", None)
            self.tasks[tid] = task
        if status.agent_id is not None and not task.agent_id:
            task.agent_id = status.agent_id.value
        if isinstance(task, WarmTask) and status.data is not None:
            task.data = status.data
        task._set(status.state, status.message, status.reason)
        self._notify()

    def message(self, driver: Any, agent_id: str, executor_id: str, data: bytes) -> None:
        """Output of a warm task, sent by its executor while the task runs."""
        from mesos_nb.frameworks.pyexec import parse_output

        out = parse_output(data)
        if out is not None:
            task = self.tasks.get(out[0])
            if isinstance(task, WarmTask):
                task.add_output(out[1], out[2], out[3])

    def failure(self, driver: Any, agent_id: str | None, executor_id: str | None, status: int | None) -> None:
        self.warm.executor_failed(executor_id, status)

    def error(self, driver: Any, message: str) -> None:
        self._error = message
        framework_ended(self.tasks.values(), message)

    # ------------------------------------------------------------------ matching (loop thread)
    def _why(self, task: Task) -> str:
        spec = task.spec
        assert spec is not None
        if spec.offer_id is not None:
            if spec.offer_id not in self.held:
                return f"offer {spec.offer_id} is no longer held (declined, used or rescinded)"
            return f"offer {spec.offer_id} does not hold {amounts_text(task.requested)}"
        role_why = self._role_reason(task)
        if not self.held:
            waited = time.monotonic() - (self._pending_since or time.monotonic())
            if waited < 3:
                return f"requested {amounts_text(task.requested)}; waiting for an offer"
            if role_why:
                return f"requested {amounts_text(task.requested)}; no offer for {waited:.0f} s: {role_why}"
            return (f"requested {amounts_text(task.requested)}; no offer for {waited:.0f} s: the "
                    "cluster's free resources are used by other tasks or frameworks (or the role's "
                    "quota/weight holds this framework back)")
        if role_why:
            return f"no offer fits: requested {amounts_text(task.requested)}; {role_why}"
        best = max(self.held.values(), key=lambda o: offer_amounts(o).get("cpus", 0))
        have = offer_amounts(best)
        have_text = amounts_text({k: have.get(k, 0) for k in task.requested})
        if task.constraints and not any(matches_attributes(o, task.constraints) for o in self.held.values()):
            return f"no offer fits: none of the {len(self.held)} offers is from an agent with " + \
                ", ".join(f"{k}={v}" for k, v in task.constraints.items())
        return (f"no offer fits: requested {amounts_text(task.requested)}; the largest of "
                f"{len(self.held)} offers has {have_text} (on {best.hostname})")

    async def _match(self) -> None:
        if self.driver is None:  # closed while an event was on its way
            return
        drv = self.driver.driver
        for offer in list(self.held.values()):
            launches = match_offer(offer, self._pending)
            warm: list[tuple[Any, WarmTask]] = []
            if self.warm.pending:
                have = Resources.from_proto(offer.resources)
                for info, _ in launches:
                    have = have - Resources.from_proto(info.resources)
                warm = self.warm.match(offer, have, self.framework_id)
            if not launches and not warm:
                continue
            self.held.pop(offer.id.value, None)
            for info, task in launches:
                self._pending.remove(task)
                task.launching(offer, ports_of(info))
            for _, wtask in warm:
                wtask.launching(offer, [])
            try:
                await drv.launch([offer.id], [i for i, _ in launches] + [i for i, _ in warm],
                                 Filters(refuse_seconds=0.0))
            except (MesosError, ConnectionError) as e:
                for _, task in launches + warm:
                    task.requeue(None)
                    task._note_waiting(f"the launch on {offer.hostname} failed ({e}); trying again")
                self._pending.extend(t for _, t in launches)
                self.warm.launch_failed(warm)
        for task in self._pending + self.warm.pending:
            task.offers_seen = self.offers_received
            task._note_waiting(self._why(task))
        if not self._pending and not self.warm.pending:
            self._pending_since = None
        if self.held:
            keep = self._holders > 0
            ids = [oid for oid, o in self.held.items() if not keep and not self.warm.holds_agent(o.agent_id.value)]
            if ids:
                refuse = 1.0 if (self._pending or self.warm.pending) else self.idle_refuse
                for oid in ids:
                    self.held.pop(oid, None)
                with contextlib.suppress(MesosError, ConnectionError):
                    await drv.decline(ids, refuse_seconds=refuse)
        self._notify()

    # ------------------------------------------------------------------ API (kernel thread)
    def check_fits_somewhere(self, amounts: Mapping[str, float], constraints: Mapping[str, str]) -> None:
        """Raise a one-sentence error when no agent of the cluster could ever hold the request."""
        try:
            state = MasterClient(self.master_url).state()
        except MesosClientError as e:
            raise MesosNotebookError(str(e)) from None
        agents = [s for s in state.slaves if s.active]
        if not agents:
            raise MesosNotebookError(f"the master at {self.master_url} has no agents: start one "
                                     "(mesos-nb agent --master ...) or use %mesos local")
        candidates = [s for s in agents if attributes_match(s.attributes, constraints)]
        if not candidates:
            raise MesosNotebookError("no agent has the attributes " + ", ".join(
                f"{k}={v}" for k, v in constraints.items()))
        for s in candidates:
            if all(s.scalar(k) >= v for k, v in amounts.items()):
                return
        biggest = max(candidates, key=lambda s: s.scalar("cpus"))
        raise MesosNotebookError(
            f"no agent could ever fit {amounts_text(dict(amounts))}: the largest agent "
            f"({biggest.hostname}) has {amounts_text({k: biggest.scalar(k) for k in amounts})}")

    def submit(self, cmd: str | Sequence[str], *, cpus: float = 1.0, mem: float = 256.0,
               gpus: float = 0.0, disk: float = 0.0, name: str | None = None,
               constraints: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
               offer_id: str | None = None, check: bool = True, image: str | None = None) -> Task:
        """Queue a command task; it launches on the first fitting offer (or on ``offer_id``),
        in the Docker ``image`` when one is given."""
        amounts = request(cpus=cpus, mem=mem, gpus=gpus, disk=disk)
        if not amounts:
            raise MesosNotebookError("a task needs some resources: give --cpus or --mem")
        constraints = dict(constraints or {})
        if check and offer_id is None:
            self.check_fits_somewhere(amounts, constraints)
        text = cmd if isinstance(cmd, str) else " ".join(cmd)
        name = name or (text.split()[0].rsplit("/", 1)[-1] if text.split() else "task")
        spec = TaskSpec(cmd=cmd, cpus=cpus, mem=mem, gpus=gpus, disk=disk, name=name,
                        constraints=constraints, env=dict(env or {}), offer_id=offer_id,
                        container=image_container(image) if image else None)
        task = Task(self, new_task_id(name), name, text, spec)

        async def go() -> None:
            self.tasks[task.id] = task
            self._pending.append(task)
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            if offer_id is None and not any(match_offer(o, [task]) for o in self.held.values()):
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.driver.revive()  # type: ignore[union-attr]
            await self._match()

        self._call_soon(go)
        return task

    def submit_warm(self, payload: bytes, *, cpus: float, mem: float, gpus: float = 0.0, disk: float = 0.0,
                    name: str = "cell", constraints: Mapping[str, str] | None = None,
                    preload: Sequence[str] = (), idle_timeout: float = 600.0,
                    executor_cpus: float = 0.5, executor_mem: float = 128.0,
                    future: Any = None, on_done: Any = None, check: bool = True) -> WarmTask:
        """Queue a task for the warm executor of its shape (started with the first such task)."""
        amounts = request(cpus=cpus, mem=mem, gpus=gpus, disk=disk)
        if not amounts:
            raise MesosNotebookError("a task needs some resources: give --cpus or --mem")
        constraints = dict(constraints or {})
        ex_amounts = request(cpus=executor_cpus, mem=executor_mem)
        key = shape_key(amounts, constraints, preload)
        ex = self.warm.by_key.get(key)
        if check and (ex is None or not ex.alive):  # a live executor's agent held such a task already
            need = dict(amounts)
            for k, v in ex_amounts.items():
                need[k] = need.get(k, 0.0) + v
            self.check_fits_somewhere(need, constraints)
        spec = warm_spec(name, cpus, mem, gpus, disk, constraints)
        task = WarmTask(self, name, spec, payload, key, preload, idle_timeout, ex_amounts, future, on_done)

        async def go() -> None:
            self.tasks[task.id] = task
            self.warm.pending.append(task)
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            await self._match()
            if task in self.warm.pending:
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.driver.revive()  # type: ignore[union-attr]

        self._call_soon(go)
        return task

    def kill(self, task: Task) -> None:
        async def go() -> None:
            for queue in (self._pending, self.warm.pending):
                if task in queue:
                    queue.remove(task)  # type: ignore[arg-type]
                    task._set("TASK_KILLED", "killed before it was launched")
                    return
            if not task.done:
                await self.driver.driver.kill(task.id, task.agent_id)  # type: ignore[union-attr]

        try:
            self._call_soon(go)
        except (MesosError, ConnectionError) as e:
            raise MesosNotebookError(f"the master refused to kill {task.id} ({e})") from None

    def decline(self, offer_id: str, refuse_seconds: float = 1.0) -> None:
        async def go() -> None:
            if self.held.pop(offer_id, None) is not None:
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.driver.decline([offer_id], refuse_seconds=refuse_seconds)  # type: ignore[union-attr]
            self._notify()

        self._call_soon(go)

    def hold_offers(self, on: bool) -> None:
        """While any holder is on, leftover offers are kept (for the offer browser)."""

        async def go() -> None:
            self._holders += 1 if on else -1
            if on:
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.driver.revive()  # type: ignore[union-attr]
            await self._match()

        self._call_soon(go)

    def _role_reason(self, task: Task) -> str | None:
        """The role's part of why ``task`` waits (quota limit used up, free resources reserved
        or held back for other roles), as last asked of the master (see refresh_waiting)."""
        got = self._role_reasons.get(tuple(sorted(task.requested.items())))
        return got[1] if got else None

    def _ask_role_reasons(self) -> None:
        """Ask the master (from the waiting thread, never the event loop) at most every 2 s."""
        from .roles_magics import wait_reason

        now = time.monotonic()
        for task in list(self._pending):
            key = tuple(sorted(task.requested.items()))
            asked = self._role_reasons.get(key)
            if asked is None or now - asked[0] >= 2.0:
                self._role_reasons[key] = (now, wait_reason(self.master_url, self.role, dict(task.requested)))

    def refresh_waiting(self) -> None:
        """Recompute why each pending task waits (time passes even when no offer arrives)."""
        if self._pending and self._pending_since is not None and time.monotonic() - self._pending_since >= 2:
            with contextlib.suppress(Exception):  # a reason is a courtesy: never fail the wait for it
                self._ask_role_reasons()

        async def go() -> None:
            for task in self._pending + self.warm.pending:
                task._note_waiting(self._why(task))

        with contextlib.suppress(MesosNotebookError, TimeoutError):
            self._call_soon(go, timeout=5)

    def held_offers(self) -> list[Offer]:
        async def go() -> list[Offer]:
            return list(self.held.values())

        return self._call_soon(go)

    def find(self, ident: str) -> Task | None:
        if ident in self.tasks:
            return self.tasks[ident]
        matches = [t for tid, t in self.tasks.items() if tid.startswith(ident)]
        return matches[0] if len(matches) == 1 else None


__all__ = ["NotebookFramework", "Task"]
