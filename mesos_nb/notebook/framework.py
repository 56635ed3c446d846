"""The notebook's framework: one per kernel, created on first use, reconnectable after a restart.

It is the SDK's :class:`~mesos_nb.scheduler.pool.TaskPool` (one offer matcher, one task
handle, the per-task "why it waits" sentence, offer holds, SUPPRESS once idle) with what a
notebook adds: the framework id saved per notebook (re-used after a kernel restart), warm
executors as a placer of the pool (``warm.py``), the output of warm cells (framework
MESSAGEs), the role's part of why a task waits (asked of the master from the waiting thread),
and one-sentence errors.

Threads: the pool's private loop thread runs every driver callback and owns all offer state;
the kernel's thread hands work over with :meth:`NotebookFramework._call_soon` (which waits
for the answer) and reads task state through each :class:`Task`'s condition variable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, ClassVar

from mesos_nb.client import MasterClient, MesosClientError
from mesos_nb.client.fits import never_fits
from mesos_nb.scheduler import MesosError
from mesos_nb.scheduler.pool import TaskHandle, TaskPool, TaskSpec, image_container
from mesos_nb.scheduler.tasks import new_task_id, request

from .display import amounts_text
from .errors import MesosNotebookError
from .saved import load_saved, save
from .task import Task
from .warm import WarmExecutors, WarmTask, shape_key, warm_spec


class NotebookFramework(TaskPool):
    """The notebook's framework on ``master_url``; ``start()`` subscribes (or re-subscribes)."""

    not_started: ClassVar[str] = "the notebook's framework is not connected; run %mesos connect"
    amounts_text: ClassVar[Callable[[Mapping[str, float]], str]] = staticmethod(amounts_text)

    def __init__(self, master_url: str, *, name: str = "notebook", role: str = "*",
                 failover_timeout: float = 3600.0, key: str | None = None,
                 idle_refuse: float = 30.0, gpus: bool = False) -> None:
        super().__init__(master_url, name, role=role, failover_timeout=failover_timeout,
                         start_timeout=10.0, idle_refuse=idle_refuse, gpus=gpus)
        self.key = key
        self.reconnected = False
        self.warm = WarmExecutors()
        self.placers.append(self.warm)
        self._role_reasons: dict[tuple, tuple[float, str | None]] = {}  # request -> (asked at, why)

    @property
    def master_url(self) -> str:
        return self.master

    # ------------------------------------------------------------------ lifecycle
    @property
    def _save_key(self) -> str | None:
        return f"{self.master_url} {self.key}" if self.key else None

    def start(self) -> str:
        saved = load_saved().get(self._save_key or "", {}) if self._save_key else {}
        fid = saved.get("framework_id")
        try:
            self._subscribe(fid)
            self.reconnected = bool(fid) and self.framework_id == fid
        except MesosError as e:
            if not fid:
                raise MesosNotebookError(f"the master at {self.master_url} refused the framework ({e.message or e})") from None
            # "Framework has been removed" (e.g. its failover timeout passed): start afresh
            self._subscribe(None)
        assert self.framework_id is not None
        if self._save_key:
            save(self._save_key, {"framework_id": self.framework_id, "master": self.master_url,
                                   "name": self.name, "saved": time.time()})
        return self.framework_id

    def _subscribe(self, fid: str | None) -> str:
        self.framework_id = fid
        try:
            return super().start()
        except ConnectionError as e:
            raise MesosNotebookError(str(e)) from None

    def close(self, teardown: bool = False) -> None:
        """Stop the driver. ``teardown`` ends the framework on the master (its tasks are killed);
        otherwise it stays for ``failover_timeout`` so the next kernel can reconnect."""
        if self.driver is None:
            return
        self.stop(teardown=teardown)
        if teardown and self._save_key:
            with contextlib.suppress(OSError):
                save(self._save_key, None)
        for t in self.tasks.values():
            if not t.done and teardown:
                t._set("TASK_KILLED", "the framework was torn down")
        self._offers_changed()

    # ------------------------------------------------------------------ listeners (offer browser)
    def add_listener(self, fn: Callable[[], None]) -> None:
        self.offer_listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self.offer_listeners.remove(fn)

    # ------------------------------------------------------------------ loop-thread hand-over
    def _call_soon(self, coro_fn: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 30.0) -> Any:
        """Run ``coro_fn()`` on the pool's loop thread and wait for its answer."""
        return self._checked(lambda: self._run(coro_fn(), timeout))

    def _checked(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` (a pool call that waits for the loop), failing in one sentence when closed."""
        if self.driver is None:
            raise MesosNotebookError(self.not_started)
        try:
            return fn()
        except RuntimeError as e:
            raise MesosNotebookError(str(e)) from None

    # ------------------------------------------------------------------ callbacks (loop thread)
    def adopt(self, task_id: str) -> TaskHandle:
        """A task from before a kernel restart, learnt by reconciliation."""
        return Task(self, task_id, task_id, "(started before this kernel connected)", None)

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

    # ------------------------------------------------------------------ API (kernel thread)
    def check_fits_somewhere(self, amounts: Mapping[str, float], constraints: Mapping[str, str]) -> None:
        """Raise a one-sentence error when no agent of the cluster could ever hold the request."""
        try:
            state = MasterClient(self.master_url).state()
        except MesosClientError as e:
            raise MesosNotebookError(str(e)) from None
        gap = never_fits(state.slaves, amounts, constraints)
        if gap is None:
            return
        if gap.reason == "no_agents":
            raise MesosNotebookError(f"the master at {self.master_url} has no agents: start one "
                                     "(mesos-nb agent --master ...) or use %mesos local")
        if gap.reason == "attributes":
            raise MesosNotebookError("no agent has the attributes " + ", ".join(
                f"{k}={v}" for k, v in constraints.items()))
        biggest = gap.biggest
        assert biggest is not None
        raise MesosNotebookError(
            f"no agent could ever fit {amounts_text(dict(amounts))}: the largest agent "
            f"({biggest.hostname}) has {amounts_text({k: biggest.scalar(k) for k in amounts})}")

    def submit(self, cmd: str | Sequence[str], *, cpus: float = 1.0, mem: float = 256.0,
               gpus: float = 0.0, disk: float = 0.0, name: str | None = None,
               constraints: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
               offer_id: str | None = None, check: bool = True, image: str | None = None) -> Task:  # type: ignore[override]
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
        self._call_soon(lambda: self._enqueue(task))
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
        self._call_soon(lambda: self._enqueue(task, self.warm))
        return task

    def kill(self, task: Task) -> None:  # type: ignore[override]
        """Kill ``task`` (a pending one is just dropped); a refusal is one sentence."""
        try:
            self._call_soon(lambda: self._kill(task.id))
        except (MesosError, ConnectionError) as e:
            raise MesosNotebookError(f"the master refused to kill {task.id} ({e})") from None

    def decline(self, offer_id: str, refuse_seconds: float = 1.0) -> None:
        self._checked(lambda: super(NotebookFramework, self).decline(offer_id, refuse_seconds))

    def hold_offers(self, on: bool) -> None:
        """While any holder is on, leftover offers are kept (for the offer browser)."""
        self._checked(lambda: super(NotebookFramework, self).hold_offers(on))

    def held_offers(self) -> list[Any]:
        return self._checked(super().held_offers)

    def role_reason(self, task: TaskHandle) -> str | None:
        """The role's part of why ``task`` waits (quota limit used up, free resources reserved
        or held back for other roles), as last asked of the master (see refresh_waiting)."""
        got = self._role_reasons.get(tuple(sorted(task.spec.amounts.items()))) if task.spec else None
        return got[1] if got else None

    def _ask_role_reasons(self) -> None:
        """Ask the master (from the waiting thread, never the event loop) at most every 2 s."""
        from .roles_magics import wait_reason

        now = time.monotonic()
        for task in list(self._pending):
            if task.spec is None:
                continue
            key = tuple(sorted(task.spec.amounts.items()))
            asked = self._role_reasons.get(key)
            if asked is None or now - asked[0] >= 2.0:
                self._role_reasons[key] = (now, wait_reason(self.master_url, self.role, dict(task.spec.amounts)))

    def refresh_waiting(self) -> None:
        """Recompute why each pending task waits (time passes even when no offer arrives)."""
        if self._pending and self.pending_since is not None and time.monotonic() - self.pending_since >= 2:
            with contextlib.suppress(Exception):  # a reason is a courtesy: never fail the wait for it
                self._ask_role_reasons()
        if self.driver is not None:
            super().refresh_waiting()

    def find(self, ident: str) -> Task | None:
        if ident in self.tasks:
            return self.tasks[ident]
        matches = [t for tid, t in self.tasks.items() if tid.startswith(ident)]
        return matches[0] if len(matches) == 1 else None


__all__ = ["NotebookFramework", "Task"]
