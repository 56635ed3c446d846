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
import getpass
import html
import io
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mesos_nb.protocol.messages import Capability, Filters, FrameworkInfo, Offer
from mesos_nb.scheduler import BlockingSchedulerDriver, MesosError, Scheduler
from mesos_nb.scheduler.tasks import (
    command_task,
    fits,
    matches_attributes,
    new_task_id,
    offer_attributes,
    request,
)

from .display import LiveLine, Logs, amounts_text, badge, html_table, in_kernel, num
from .embedded import state_dir
from .errors import MesosNotebookError

TERMINAL = {
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
}


def _cli() -> Any:
    from mesos_nb import cli

    return cli


def master_state(master_url: str) -> dict[str, Any]:
    cli = _cli()
    try:
        return cli.get_json(master_url + "/master/state")
    except cli.CLIError as e:
        raise MesosNotebookError(str(e)) from None


def offer_amounts(offer: Offer) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in offer.resources:
        if r.scalar is not None:
            out[r.name] = out.get(r.name, 0.0) + float(r.scalar.value)
    return out


def offer_ports(offer: Offer) -> str:
    spans = []
    for r in offer.resources:
        if r.name == "ports" and r.ranges is not None:
            spans += [f"{x.begin}-{x.end}" for x in r.ranges.range]
    return ",".join(spans)


# ============================================================================ persistence
def frameworks_file() -> Any:
    return state_dir() / "notebook-frameworks.json"


def notebook_key() -> str | None:
    """What identifies this notebook across kernel restarts: the notebook's path when Jupyter
    tells the kernel (``JPY_SESSION_NAME``), else the kernel id; None outside a kernel."""
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    with contextlib.suppress(Exception):
        from ipykernel import get_connection_file

        base = os.path.basename(get_connection_file())
        if base.startswith("kernel-") and base.endswith(".json"):
            return base[len("kernel-"):-len(".json")]
    return None


def _load_saved() -> dict[str, Any]:
    try:
        data = json.loads(frameworks_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(key: str, entry: dict[str, Any] | None) -> None:
    path = frameworks_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _load_saved()
    if entry is None:
        data.pop(key, None)
    else:
        data[key] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


# ============================================================================ Task
class Task:
    """A task this notebook started: ``.state``, ``.wait()``, ``.logs()``, ``.kill()``.

    Its display updates live in a notebook (state, agent, why it is still waiting).
    """

    def __init__(self, framework: NotebookFramework, task_id: str, name: str, command: str,
                 amounts: Mapping[str, float], constraints: Mapping[str, str] | None = None) -> None:
        self.framework = framework
        self.id = task_id
        self.name = name
        self.command = command
        self.requested = dict(amounts)
        self.constraints = dict(constraints or {})
        self.created = time.time()
        self.agent_id: str | None = None
        self.hostname: str | None = None
        self.message: str | None = None
        self.reason: str | None = None
        self.waiting: str | None = "waiting for an offer"
        self.history: list[tuple[float, str]] = [(self.created, "PENDING")]
        self.offers_seen = 0
        self.offers_unfit = 0
        self._sandbox: str | None = None
        self._cond = threading.Condition()
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        return self.history[-1][1]

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def phase(self) -> str:
        """pending, launching, running or done."""
        s = self.state
        if s == "PENDING":
            return "pending"
        if s in ("TASK_STAGING", "TASK_STARTING"):
            return "launching"
        if s in TERMINAL:
            return "done"
        return "running"

    def _set(self, state: str, message: str | None = None, reason: str | None = None) -> None:
        with self._cond:
            if state != self.state or message != self.message:
                if state != self.state:
                    self.history.append((time.time(), state))
                self.message = message
                self.reason = reason
            if state != "PENDING":
                self.waiting = None
            self._cond.notify_all()
        self._refresh_displays()

    def _note_waiting(self, why: str) -> None:
        with self._cond:
            changed = why != self.waiting
            self.waiting = why
        if changed:
            self._refresh_displays()

    def wait(self, timeout: float | None = None) -> Task:
        """Block until the task is finished (any terminal state); returns the task.

        Raises a one-sentence error if ``timeout`` seconds pass first (the task keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last_why = time.monotonic()
        while not self.done:
            if self.state == "PENDING" and time.monotonic() - last_why >= 1.0:
                last_why = time.monotonic()
                self.framework.refresh_waiting()
            with self._cond:
                if self.done:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    why = f" ({self.waiting})" if self.state == "PENDING" and self.waiting else ""
                    raise MesosNotebookError(
                        f"task {self.id} is still {self.state} after {num(timeout)} s{why}")
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        return self

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the task runs or ends; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.phase in ("pending", "launching") and self.state != "TASK_STARTING":
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        return True

    def kill(self, wait: float | None = 15.0) -> Task:
        """Kill the task (a pending one is just dropped); waits up to ``wait`` s for the end."""
        self.framework.kill(self)
        if wait:
            with contextlib.suppress(MesosNotebookError):
                self.wait(wait)
        return self

    # ------------------------------------------------------------------ sandbox
    def agent_url(self) -> str:
        if not self.agent_id:
            raise MesosNotebookError(f"task {self.id} has not been launched yet ({self.state})")
        cli = _cli()
        try:
            return cli.agent_url_for(master_state(self.framework.master_url), self.agent_id)
        except cli.CLIError as e:
            raise MesosNotebookError(str(e)) from None

    def sandbox(self, timeout: float = 10.0) -> tuple[str, str]:
        """``(agent_url, sandbox directory)``; waits up to ``timeout`` s for the agent to know it."""
        agent = self.agent_url()
        if self._sandbox:
            return agent, self._sandbox
        cli = _cli()
        deadline = time.monotonic() + timeout
        while True:
            try:
                d = cli.sandbox_dir(agent, self.framework.framework_id, self.id)
            except cli.CLIError as e:
                raise MesosNotebookError(str(e)) from None
            if d:
                self._sandbox = d
                return agent, d
            if time.monotonic() >= deadline:
                raise MesosNotebookError(f"the agent at {agent} has no sandbox for task {self.id}")
            time.sleep(0.1)

    @property
    def sandbox_dir(self) -> str:
        return self.sandbox()[1]

    def read_file(self, name: str) -> str:
        """The whole text of a file in the task's sandbox (``stdout``, ``stderr``, ...)."""
        agent, d = self.sandbox()
        return read_sandbox_file(agent, f"{d}/{name}")

    def logs(self) -> Logs:
        """The task's stdout and stderr as they are now."""
        return Logs(self.id, self.read_file("stdout"), self.read_file("stderr"))

    # ------------------------------------------------------------------ display
    def _lines(self) -> list[str]:
        where = f" on {self.hostname} ({self.agent_id})" if self.agent_id else ""
        lines = [f"Task {self.id}  {self.state}{where}",
                 f"  command: {self.command}",
                 f"  requested: {amounts_text(self.requested)}"
                 + (f"  where {', '.join(f'{k}={v}' for k, v in self.constraints.items())}"
                    if self.constraints else "")]
        if self.state == "PENDING" and self.waiting:
            lines.append(f"  waiting: {self.waiting}")
        if self.message or self.reason:
            lines.append(f"  message: {self.message or ''}{f' ({self.reason})' if self.reason else ''}")
        if len(self.history) > 1:
            t0 = self.history[0][0]
            lines.append("  history: " + " -> ".join(
                f"{s.replace('TASK_', '')} +{t - t0:.1f}s" if i else s.replace("TASK_", "")
                for i, (t, s) in enumerate(self.history)))
        return lines

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        rows = [("state", badge(self.state)),
                ("agent", html.escape(f"{self.hostname} ({self.agent_id})") if self.agent_id else "-"),
                ("command", f"<code>{html.escape(self.command)}</code>"),
                ("requested", html.escape(amounts_text(self.requested)))]
        if self.constraints:
            rows.append(("on agents with", html.escape(", ".join(f"{k}={v}" for k, v in self.constraints.items()))))
        if self.state == "PENDING" and self.waiting:
            rows.append(("waiting", html.escape(self.waiting)))
        if self.message or self.reason:
            rows.append(("message", html.escape(f"{self.message or ''} {self.reason or ''}".strip())))
        if len(self.history) > 1:
            t0 = self.history[0][0]
            rows.append(("history", " &rarr; ".join(
                html.escape(s.replace("TASK_", "") + (f" +{t - t0:.1f}s" if i else ""))
                for i, (t, s) in enumerate(self.history))))
        body = "".join(f'<tr><th style="text-align:left">{k}</th><td style="text-align:left">{v}</td></tr>'
                       for k, v in rows)
        return f"<div><b>Task <code>{html.escape(self.id)}</code></b><table>{body}</table></div>"

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if in_kernel() and not self.done:
            self._handles.append(display(self._bundle(), raw=True, display_id=True))
        else:
            display(self._bundle(), raw=True)

    def _refresh_displays(self) -> None:
        for h in list(self._handles):
            with contextlib.suppress(Exception):
                h.update(self._bundle(), raw=True)
        if self.done:
            self._handles.clear()


def read_sandbox_file(agent_url: str, path: str) -> str:
    cli = _cli()
    buf = io.StringIO()
    try:
        cli.FileFollower(agent_url, path, buf).poll()
    except cli.CLIError as e:
        raise MesosNotebookError(str(e)) from None
    return buf.getvalue()


class _Request:
    __slots__ = ("task", "cmd", "env", "offer_id")

    def __init__(self, task: Task, cmd: str | Sequence[str], env: Mapping[str, str] | None,
                 offer_id: str | None) -> None:
        self.task = task
        self.cmd = cmd
        self.env = dict(env or {})
        self.offer_id = offer_id


# ============================================================================ the framework
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
        self._pending: list[_Request] = []
        self._holders = 0
        self._listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: str | None = None
        self._pending_since: float | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def _save_key(self) -> str | None:
        return f"{self.master_url} {self.key}" if self.key else None

    def start(self) -> str:
        saved = _load_saved().get(self._save_key or "", {}) if self._save_key else {}
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
            _save(self._save_key, {"framework_id": self.framework_id, "master": self.master_url,
                                   "name": self.name, "saved": time.time()})
        return self.framework_id

    def _subscribe(self, fid: str | None) -> str:
        from mesos_nb.protocol.messages import ID

        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "nobody"
        info = FrameworkInfo(user=user, name=self.name, roles=[self.role],
                             capabilities=[Capability(type="MULTI_ROLE")],
                             failover_timeout=self.failover_timeout,
                             id=ID(value=fid) if fid else None)
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
                _save(self._save_key, None)
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
            task = Task(self, tid, tid, "(started before this kernel connected)", {})
            self.tasks[tid] = task
        if status.agent_id is not None and not task.agent_id:
            task.agent_id = status.agent_id.value
        task._set(status.state, status.message, status.reason)
        self._notify()

    def error(self, driver: Any, message: str) -> None:
        self._error = message
        for t in self.tasks.values():
            if not t.done:
                t._set("TASK_LOST", f"the master ended the framework: {message}")

    # ------------------------------------------------------------------ matching (loop thread)
    def _fit_offer(self, req: _Request) -> Offer | None:
        if req.offer_id is not None:
            o = self.held.get(req.offer_id)
            return o if o is not None and fits(o, req.task.requested, req.task.constraints) else None
        for o in self.held.values():
            if fits(o, req.task.requested, req.task.constraints):
                return o
        return None

    def _why(self, req: _Request) -> str:
        task = req.task
        if req.offer_id is not None:
            if req.offer_id not in self.held:
                return f"offer {req.offer_id} is no longer held (declined, used or rescinded)"
            return f"offer {req.offer_id} does not hold {amounts_text(task.requested)}"
        if not self.held:
            waited = time.monotonic() - (self._pending_since or time.monotonic())
            if waited < 3:
                return f"requested {amounts_text(task.requested)}; waiting for an offer"
            return (f"requested {amounts_text(task.requested)}; no offer for {waited:.0f} s: the "
                    "cluster's free resources are used by other tasks or frameworks (or the role's "
                    "quota/weight holds this framework back)")
        best = max(self.held.values(), key=lambda o: offer_amounts(o).get("cpus", 0))
        have = offer_amounts(best)
        have_text = amounts_text({k: have.get(k, 0) for k in task.requested})
        if task.constraints and not any(matches_attributes(o, task.constraints) for o in self.held.values()):
            return f"no offer fits: none of the {len(self.held)} offers is from an agent with " + \
                ", ".join(f"{k}={v}" for k, v in task.constraints.items())
        return (f"no offer fits: requested {amounts_text(task.requested)}; the largest of "
                f"{len(self.held)} offers has {have_text} (on {best.hostname})")

    async def _match(self) -> None:
        assert self.driver is not None
        drv = self.driver.driver
        for req in list(self._pending):
            offer = self._fit_offer(req)
            if offer is None:
                req.task.offers_seen = self.offers_received
                req.task._note_waiting(self._why(req))
                continue
            self._pending.remove(req)
            self.held.pop(offer.id.value, None)
            task = req.task
            info = command_task(offer, req.cmd, name=task.name, task_id=task.id,
                                env=req.env or None, **_launch_amounts(task.requested))
            task.agent_id = offer.agent_id.value
            task.hostname = offer.hostname
            task._note_waiting(f"launching on {offer.hostname}")
            try:
                await drv.launch([offer.id], [info], Filters(refuse_seconds=0.0))
                task._set("TASK_STAGING", None)
            except (MesosError, ConnectionError) as e:
                task.agent_id = task.hostname = None
                task._note_waiting(f"the launch on {offer.hostname} failed ({e}); trying again")
                self._pending.append(req)
        if not self._pending:
            self._pending_since = None
        if self._holders <= 0 and self.held:
            refuse = 1.0 if self._pending else self.idle_refuse
            ids = list(self.held)
            self.held.clear()
            with contextlib.suppress(MesosError, ConnectionError):
                await drv.decline(ids, refuse_seconds=refuse)
        self._notify()

    # ------------------------------------------------------------------ API (kernel thread)
    def check_fits_somewhere(self, amounts: Mapping[str, float], constraints: Mapping[str, str]) -> None:
        """Raise a one-sentence error when no agent of the cluster could ever hold the request."""
        state = master_state(self.master_url)
        agents = [s for s in state.get("slaves", []) if s.get("active", True)]
        if not agents:
            raise MesosNotebookError(f"the master at {self.master_url} has no agents: start one "
                                     "(mesos-nb agent --master ...) or use %mesos local")
        def attrs_ok(s: dict[str, Any]) -> bool:
            have = {k: str(v) for k, v in (s.get("attributes") or {}).items()}
            return all(have.get(k) == v or _numeq(have.get(k), v) for k, v in constraints.items())

        candidates = [s for s in agents if attrs_ok(s)]
        if not candidates:
            raise MesosNotebookError("no agent has the attributes " + ", ".join(
                f"{k}={v}" for k, v in constraints.items()))
        for s in candidates:
            res = s.get("resources") or {}
            if all(float(res.get(k, 0) or 0) >= v for k, v in amounts.items()):
                return
        biggest = max(candidates, key=lambda s: float((s.get("resources") or {}).get("cpus", 0) or 0))
        res = biggest.get("resources") or {}
        raise MesosNotebookError(
            f"no agent could ever fit {amounts_text(dict(amounts))}: the largest agent "
            f"({biggest.get('hostname')}) has {amounts_text({k: float(res.get(k, 0) or 0) for k in amounts})}")

    def submit(self, cmd: str | Sequence[str], *, cpus: float = 1.0, mem: float = 256.0,
               gpus: float = 0.0, disk: float = 0.0, name: str | None = None,
               constraints: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
               offer_id: str | None = None, check: bool = True) -> Task:
        """Queue a command task; it launches on the first fitting offer (or on ``offer_id``)."""
        amounts = request(cpus=cpus, mem=mem, gpus=gpus, disk=disk)
        if not amounts:
            raise MesosNotebookError("a task needs some resources: give --cpus or --mem")
        constraints = dict(constraints or {})
        if check and offer_id is None:
            self.check_fits_somewhere(amounts, constraints)
        text = cmd if isinstance(cmd, str) else " ".join(cmd)
        name = name or (text.split()[0].rsplit("/", 1)[-1] if text.split() else "task")
        task = Task(self, new_task_id(name), name, text, amounts, constraints)
        req = _Request(task, cmd, env, offer_id)

        async def go() -> None:
            self.tasks[task.id] = task
            self._pending.append(req)
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            if self._fit_offer(req) is None and offer_id is None:
                with contextlib.suppress(MesosError, ConnectionError):
                    await self.driver.driver.revive()  # type: ignore[union-attr]
            await self._match()

        self._call_soon(go)
        return task

    def kill(self, task: Task) -> None:
        async def go() -> None:
            for req in list(self._pending):
                if req.task is task:
                    self._pending.remove(req)
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

    def refresh_waiting(self) -> None:
        """Recompute why each pending task waits (time passes even when no offer arrives)."""

        async def go() -> None:
            for req in self._pending:
                req.task._note_waiting(self._why(req))

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


def _numeq(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _launch_amounts(amounts: Mapping[str, float]) -> dict[str, float]:
    known = ("cpus", "mem", "gpus", "disk")
    return {k: float(amounts.get(k, 0.0)) for k in known}


def offer_rows(offers: Sequence[Offer]) -> list[list[str]]:
    rows = []
    for o in offers:
        a = offer_amounts(o)
        rows.append([o.id.value, f"{o.hostname} ({o.agent_id.value})", num(a.get("cpus", 0)),
                     num(a.get("mem", 0)), num(a.get("disk", 0)), num(a.get("gpus", 0)),
                     offer_ports(o), ";".join(f"{k}:{v}" for k, v in offer_attributes(o).items())])
    return rows


OFFER_HEADERS = ["OFFER", "AGENT", "CPUS", "MEM", "DISK", "GPUS", "PORTS", "ATTRIBUTES"]


def offers_html(offers: Sequence[Offer]) -> str:
    return html_table(OFFER_HEADERS, offer_rows(offers))


__all__ = ["NotebookFramework", "OFFER_HEADERS", "Task", "TERMINAL", "frameworks_file", "master_state",
           "notebook_key", "offer_amounts", "offer_rows", "read_sandbox_file", "LiveLine"]
