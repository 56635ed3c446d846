"""Warm executors for ``%%mesos task`` and ``Cluster.submit``: the kernel's side.

One :class:`WarmExecutor` per resource shape (cpus, mem, gpus, disk, ``--attr``, preloaded
modules): the first task of a shape carries the executor (``TaskInfo.executor``) and its
resources; every later task of that shape goes to the same agent and is LAUNCHed into the
running executor (no new process on the agent, only a fork in the executor). A dead executor
(killed, idle too long, its agent gone) is forgotten and the next task starts a new one under
a new executor id.

All state here changes on the pool's loop thread (see ``framework.py``), except the
output a :class:`WarmTask` buffers, which the kernel thread takes under the task's condition.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from mesos_nb.frameworks.pyexec import executor_info
from mesos_nb.frameworks.pyexec.wire import decode_result
from mesos_nb.protocol.messages import ID, Offer, TaskInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler.pool import TaskSpec
from mesos_nb.scheduler.tasks import matches_attributes, new_task_id, offer_role, request, take_from

from .task import Task

EXECUTOR_DEATH_REASONS = frozenset({
    "REASON_EXECUTOR_TERMINATED", "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
    "REASON_EXECUTOR_REREGISTRATION_TIMEOUT", "REASON_AGENT_REMOVED", "REASON_AGENT_DISCONNECTED",
    "REASON_AGENT_RESTARTED", "REASON_CONTAINER_LAUNCH_FAILED", "REASON_INVALID_OFFERS",
})
IDLE_MARGIN = 2.0  # retire an executor this long before its own idle timeout would end it


def shape_key(amounts: Mapping[str, float], constraints: Mapping[str, str], preload: Sequence[str]) -> tuple:
    return (tuple(sorted(amounts.items())), tuple(sorted(constraints.items())), tuple(preload))


def executor_pythonpath() -> list[str]:
    """What the executor needs on its path: the notebook's folder, this kernel's PYTHONPATH and
    the folder mesos_nb is imported from (the agent passes nothing of its own environment)."""
    import mesos_nb

    root = os.path.dirname(os.path.dirname(os.path.abspath(mesos_nb.__file__)))
    parts = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep), root]
    seen: list[str] = []
    for p in parts:
        if p and p not in seen:
            seen.append(p)
    return seen


class WarmExecutor:
    """One warm interpreter on one agent (or about to be started)."""

    def __init__(self, key: tuple, preload: Sequence[str], idle_timeout: float,
                 amounts: Mapping[str, float]) -> None:
        self.key = key
        self.preload = list(preload)
        self.idle_timeout = idle_timeout
        self.amounts = dict(amounts)  # the executor's own resources
        self.executor_id = f"pyexec-{uuid.uuid4().hex[:10]}"
        self.info: Any = None
        self.agent_id: str | None = None
        self.hostname: str | None = None
        self.state = "new"  # new -> launched -> dead
        self.launched_at: float | None = None
        self.last_used = time.monotonic()
        self.tasks = 0
        self.running = 0
        self.dead_why: str | None = None

    @property
    def alive(self) -> bool:
        if self.state == "dead":
            return False
        return self.running > 0 or time.monotonic() - self.last_used < self.idle_timeout - IDLE_MARGIN

    def die(self, why: str) -> None:
        if self.state != "dead":
            self.state = "dead"
            self.dead_why = why


class WarmTask(Task):
    """A task run by a warm executor: its payload, the output received so far, its result."""

    def __init__(self, framework: Any, name: str, spec: TaskSpec, payload: bytes, key: tuple,
                 preload: Sequence[str], idle_timeout: float, executor_amounts: Mapping[str, float],
                 future: Future | None = None, on_done: Callable[[WarmTask], None] | None = None) -> None:
        super().__init__(framework, new_task_id(name), name, "%%mesos task (warm cell)", spec)
        self.payload = payload
        self.key = key
        self.preload = list(preload)
        self.idle_timeout = idle_timeout
        self.executor_amounts = dict(executor_amounts)
        self.executor: WarmExecutor | None = None
        self.fresh_executor = False
        self.future = future
        self.on_done = on_done
        self.received = {"stdout": 0, "stderr": 0}
        self._early: dict[tuple[str, int], str] = {}
        self._out: list[tuple[str, str]] = []
        self.remote_pid: int | None = None
        self._ended = False

    @property
    def executor_id(self) -> str | None:
        return self.executor.executor_id if self.executor else None

    # loop thread -------------------------------------------------------------
    def add_output(self, stream: str, offset: int, text: str) -> None:
        if self.future is not None:
            return  # a submitted call's output stays in the sandbox
        with self.cond:
            if offset != self.received[stream]:
                if offset > self.received[stream]:
                    self._early[(stream, offset)] = text
                return
            while True:
                self._out.append((stream, text))
                self.received[stream] += len(text)
                text = self._early.pop((stream, self.received[stream]), None)  # type: ignore[assignment]
                if text is None:
                    break
            self.cond.notify_all()

    def _changed(self) -> None:
        super()._changed()
        if self.done and self.executor is not None and not self._ended:
            self._ended = True
            ex = self.executor
            ex.running = max(0, ex.running - 1)
            ex.last_used = time.monotonic()
            if self.reason in EXECUTOR_DEATH_REASONS or (self.message or "").startswith("the warm executor shut down"):
                ex.die(self.message or self.reason or "it ended")
        if self.done and self.on_done is not None:
            fn, self.on_done = self.on_done, None
            # off the driver's loop: a large result is read from the sandbox over HTTP
            threading.Thread(target=fn, args=(self,), name=f"resolve-{self.id}", daemon=True).start()

    # kernel thread -----------------------------------------------------------
    def take_output(self) -> list[tuple[str, str]]:
        with self.cond:
            out, self._out = self._out, []
        return out

    def expected_output(self) -> dict[str, int]:
        res = decode_result(self.data) or {}
        out = res.get("output") or {}
        return {"stdout": int(out.get("stdout", 0)), "stderr": int(out.get("stderr", 0))}


class WarmExecutors:
    """The framework's warm executors and the warm tasks waiting for an offer (loop thread): a
    :class:`~mesos_nb.scheduler.matcher.Placer` of the notebook's task pool."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, WarmExecutor] = {}
        self.by_id: dict[str, WarmExecutor] = {}
        self.pending: list[WarmTask] = []
        self.hold_for = 30.0  # keep offers of an executor's agent this long after its last cell

    def executor_for(self, task: WarmTask) -> WarmExecutor:
        ex = self.by_key.get(task.key)
        if ex is None or not ex.alive:
            if ex is not None:
                ex.die(ex.dead_why or "idle")
            ex = WarmExecutor(task.key, task.preload, task.idle_timeout, task.executor_amounts)
            self.by_key[task.key] = ex
            self.by_id[ex.executor_id] = ex
        return ex

    def keeps(self, offer: Offer) -> bool:
        """Keep offers of this agent: a warm executor there will want them for its next cell."""
        now = time.monotonic()
        agent_id = offer.agent_id.value
        return any(ex.state == "launched" and ex.agent_id == agent_id and ex.alive
                   and (ex.running or now - ex.last_used < self.hold_for) for ex in self.by_key.values())

    def match(self, offer: Offer, have: Resources, framework_id: str | None) -> list[tuple[TaskInfo, WarmTask]]:
        """Warm tasks that ``offer`` (``have`` of it is still free) takes, as TaskInfos."""
        role = offer_role(offer)
        agent = offer.agent_id.value
        out: list[tuple[TaskInfo, WarmTask]] = []
        for task in list(self.pending):
            spec = task.spec
            assert spec is not None
            ex = self.executor_for(task)
            if ex.state == "launched" and ex.agent_id != agent:
                continue
            if spec.constraints and not matches_attributes(offer, spec.constraints):
                continue
            fresh = ex.state == "new"
            need = dict(spec.amounts)
            if fresh:
                for k, v in ex.amounts.items():
                    need[k] = need.get(k, 0.0) + v
            if take_from(have, role, need) is None:
                continue
            if fresh:
                ex_res = take_from(have, role, ex.amounts)
                assert ex_res is not None
                have = have - ex_res
                ex.info = executor_info(ex.executor_id, framework_id, python=sys.executable,
                                        pythonpath=executor_pythonpath(), preload=ex.preload,
                                        idle_timeout=ex.idle_timeout, resources=ex_res.to_proto(role))
                ex.state, ex.agent_id, ex.hostname = "launched", agent, offer.hostname
                ex.launched_at = time.monotonic()
            res = take_from(have, role, spec.amounts)
            assert res is not None
            have = have - res
            task.executor, task.fresh_executor = ex, fresh
            ex.tasks += 1
            ex.running += 1
            ex.last_used = time.monotonic()
            self.pending.remove(task)
            out.append((TaskInfo(name=task.name, task_id=ID(value=task.id), agent_id=offer.agent_id,
                                 resources=res.to_proto(role), executor=ex.info, data=task.payload), task))
        return out

    def launch_failed(self, launches: list[tuple[TaskInfo, WarmTask]]) -> None:
        """The LAUNCH call failed: the tasks wait again; an executor they would have started is forgotten."""
        for _, task in launches:
            ex = task.executor
            if ex is not None:
                ex.running = max(0, ex.running - 1)
                if task.fresh_executor:
                    ex.die("its launch failed")
            task.executor, task.fresh_executor = None, False
            self.pending.append(task)

    def executor_failed(self, executor_id: str | None, status: int | None) -> None:
        ex = self.by_id.get(executor_id or "")
        if ex is not None:
            ex.die(f"it exited (status {status})" if status is not None else "it exited")


def warm_spec(name: str, cpus: float, mem: float, gpus: float, disk: float,
              constraints: Mapping[str, str]) -> TaskSpec:
    return TaskSpec(cmd="(warm executor task)", cpus=cpus, mem=mem, gpus=gpus, disk=disk, name=name,
                    constraints=dict(constraints))


__all__ = ["WarmExecutor", "WarmExecutors", "WarmTask", "executor_pythonpath", "request", "shape_key",
           "warm_spec"]
