"""The framework shell: the apps-and-jobs framework as one SDK scheduler.

Data flow::

    REST API ──► AppsFramework.put_app / put_job ──► State (store) ──┐
                                                                     ▼
    tick (every 0.1 s) ── reconcile.plan per app ──► KILL ──────► master
                      └── schedule.decide per job ──► new RunRecords (INITIAL)
    offers ── constraints.rejection + tasks.take ──► write Instance/Attempt ──► LAUNCH
    updates ── instance state, health, backoff; run attempts, retries ──► State
    (re)subscribed ──► explicit RECONCILE of every known task (adopt, no relaunch)

Every decision is made by the pure modules (``reconcile``, ``schedule``, ``constraints``);
this class only moves data between them, the store and the driver. The clock is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import aiohttp
import msgspec

from mesos_nb.protocol.messages import ID, Capability, FrameworkInfo, Offer, TaskStatus, is_terminal
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import MesosError, Scheduler, SchedulerDriver
from mesos_nb.scheduler.stream import normalize_master
from mesos_nb.scheduler.tasks import offer_role

from . import notebooks, sandbox
from .constraints import rejection
from .jobs import JobRunner
from .model import AppDef
from .reconcile import Backoff, Instance, after_failure, plan
from .store import State
from .tasks import app_task, app_task_id, host_ip, place_of, take

log = logging.getLogger("mesos_nb.apps")

FAILOVER_TIMEOUT = 7 * 86400.0
KILL_RETRY = 5.0
TICK = 0.1


def new_version(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AppsFramework(Scheduler):
    """Services (apps) and jobs on one master; see the module doc for the data flow."""

    def __init__(self, master: str, state: State, *, name: str = "mesos-nb-apps", roles: tuple[str, ...] = ("*",),
                 failover_timeout: float = FAILOVER_TIMEOUT, results_dir: str | None = None,
                 api_url: str = "", python: str | None = None, principal: str | None = None,
                 secret: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.master = normalize_master(master)
        self.state = state
        self.name = name
        self.roles = tuple(roles)
        self.failover_timeout = failover_timeout
        self.results_dir = results_dir
        self.api_url = api_url
        # set by the REST server when it requires credentials: the job-bound token a task's
        # fetcher presents for its notebook (never an operator's secret in a task)
        self.notebook_token: Callable[[str], str] | None = None
        self.python = python or sys.executable
        self.principal, self.secret = principal, secret
        self.clock = clock
        self.apps: dict[str, AppDef] = state.apps.all()
        self.instances: dict[str, Instance] = state.instances.all()
        self.backoffs: dict[str, Backoff] = state.backoffs.all()
        self.waiting: dict[str, dict[str, str]] = {}  # app id -> {hostname: why}
        self.jobs = JobRunner(self)
        self.driver: SchedulerDriver | None = None
        self.suppressed = False
        self._want_revive = True  # new work since the last REVIVE (new definition, ended task)
        self.reconciled_at: float | None = None
        self.subscribed_at: float | None = None
        self.ticks = 0  # ticks since the last (re)subscription, for tests and /v2/info
        self.offers_seen = 0
        self._session: aiohttp.ClientSession | None = None
        self._tick_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def framework_id(self) -> str | None:
        return self.driver.framework_id if self.driver else self.state.framework_id()

    async def start(self) -> str:
        fid = self.state.framework_id()
        info = FrameworkInfo(
            user=getpass.getuser(), name=self.name, id=ID(value=fid) if fid else None,
            failover_timeout=self.failover_timeout, checkpoint=True, roles=list(self.roles),
            capabilities=[Capability(type="MULTI_ROLE")], webui_url=self.api_url or None,
        )
        self._session = aiohttp.ClientSession()
        self.driver = SchedulerDriver(self, info, self.master, principal=self.principal, secret=self.secret)
        framework_id = await self.driver.start()
        self._tick_task = asyncio.get_running_loop().create_task(self._ticker())
        return framework_id

    async def stop(self, failover: bool = True) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._tick_task
        if self.driver is not None:
            await self.driver.stop(failover=failover)
        for t in list(self._background):
            t.cancel()
        if self._session is not None:
            await self._session.close()

    def spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ apps (called by the API)
    def put_app(self, app: AppDef, *, restart: bool = False) -> AppDef:
        """Store a new or changed definition; a changed one (or a restart) gets a new version,
        which the reconciler rolls out by its upgrade strategy. Scaling alone keeps the version."""
        now = self.clock()
        old = self.apps.get(app.id)
        same = old is not None and msgspec.structs.replace(old, instances=app.instances, version=None) == \
            msgspec.structs.replace(app, version=None)
        version = old.version if (same and not restart) else new_version(now)
        bump = now
        while old is not None and (not same or restart) and version <= (old.version or ""):
            bump += 0.001  # versions are timestamps; two changes within 1 ms still differ
            version = new_version(bump)
        app = msgspec.structs.replace(app, version=version)
        if old is None or old.version != version:
            self.backoffs.pop(app.id, None)
            self.state.backoffs.save(Backoff(), key=app.id)
        self.apps[app.id] = app
        self.state.apps.save(app)
        log.info("app saved app=%s version=%s instances=%d", app.id, version, app.instances)
        self.wake()
        return app

    def delete_app(self, app_id: str) -> None:
        self.apps.pop(app_id, None)
        self.backoffs.pop(app_id, None)
        self.waiting.pop(app_id, None)
        self.state.delete_app(app_id)
        log.info("app deleted app=%s", app_id)

    def app_instances(self, app_id: str) -> list[Instance]:
        return sorted((i for i in self.instances.values() if i.app_id == app_id), key=lambda i: i.launched_at)

    def wake(self) -> None:
        """New work: make sure offers come (REVIVE) on the next tick."""
        self._want_revive = True

    # ------------------------------------------------------------------ scheduler callbacks
    async def subscribed(self, driver: Any, framework_id: str, master_info: Any) -> None:
        self.state.save_framework_id(framework_id)
        self.subscribed_at = self.clock()
        known = [(i.task_id, i.agent_id) for i in self.instances.values() if i.agent_id]
        known += self.jobs.known_tasks()
        log.info("subscribed framework=%s reconciling=%d tasks", framework_id, len(known))
        if known:
            await driver.reconcile([(t, a) for t, a in known])
        self.reconciled_at = self.clock()
        self.ticks = 0
        self._want_revive = True

    async def offers(self, driver: Any, offers: list[Offer]) -> None:
        now = self.clock()
        self.offers_seen += len(offers)
        wanted = {a.id: plan(a, self.app_instances(a.id), self.backoffs.get(a.id, Backoff()), now).launch
                  for a in self.apps.values()}
        for offer in offers:
            have = Resources.from_proto(offer.resources)
            tasks = []
            for app in sorted(self.apps.values(), key=lambda a: a.id):
                while wanted.get(app.id, 0) > 0:
                    task, have, why = self._place(app, offer, have, now)
                    if task is None:
                        self.waiting.setdefault(app.id, {})[offer.hostname] = why or ""
                        break
                    tasks.append(task)
                    wanted[app.id] -= 1
                    self.waiting.get(app.id, {}).pop(offer.hostname, None)
            job_tasks, have = self.jobs.place(offer, have, now)
            tasks += job_tasks
            try:
                if tasks:
                    await driver.launch([offer.id], tasks)
                else:
                    pending = any(wanted.values()) or self.jobs.pending(now)
                    await driver.decline([offer.id], refuse_seconds=1.0 if pending else 30.0)
            except (MesosError, ConnectionError) as e:
                log.warning("offer answer failed offer=%s: %s", offer.id.value, e)
        for app_id, n in wanted.items():
            if n <= 0:
                self.waiting.pop(app_id, None)

    def _place(self, app: AppDef, offer: Offer, have: Resources, now: float) -> tuple[Any, Resources, str | None]:
        placed = [i.place for i in self.app_instances(app.id) if not i.killing]
        why = rejection(app.constraints, place_of(offer), placed, app.instances)
        if why is not None:
            return None, have, why
        got = take(have, offer_role(offer), app.amounts(), list(app.ports))
        if isinstance(got, str):
            return None, have, f"{offer.hostname}: {got}"
        res, ports = got
        tid = app_task_id(app.id, uuid.uuid4().hex)
        task = app_task(app, offer, res, ports, tid)
        inst = Instance(task_id=tid, app_id=app.id, version=app.version or "", agent_id=offer.agent_id.value,
                        hostname=offer.hostname, host_ip=host_ip(offer), attributes=place_of(offer).attributes,
                        ports=ports, launched_at=now)
        self.instances[tid] = inst
        self.state.instances.save(inst)  # write-ahead: known before the LAUNCH is sent
        log.info("launching app=%s task=%s agent=%s ports=%s", app.id, tid, offer.agent_id.value, ports)
        return task, have - res, None

    async def update(self, driver: Any, status: TaskStatus) -> None:
        tid = status.task_id.value
        inst = self.instances.get(tid)
        if inst is not None:
            self._instance_update(inst, status)
            return
        if self.jobs.update(status):
            return
        if not is_terminal(status.state):
            log.warning("unknown task, killing task=%s state=%s", tid, status.state)
            with contextlib.suppress(MesosError, ConnectionError):
                await driver.kill(tid, status.agent_id.value if status.agent_id else None)

    def _instance_update(self, inst: Instance, status: TaskStatus) -> None:
        now = self.clock()
        if is_terminal(status.state):
            self.instances.pop(inst.task_id, None)
            self.state.instances.delete(inst.task_id)
            app = self.apps.get(inst.app_id)
            failed = status.state in ("TASK_FAILED", "TASK_FINISHED", "TASK_ERROR", "TASK_LOST", "TASK_GONE",
                                      "TASK_DROPPED")
            log.info("task ended app=%s task=%s state=%s killed=%s message=%s", inst.app_id, inst.task_id,
                     status.state, inst.killing, status.message)
            if app is not None and failed and not inst.killing and inst.version == app.version:
                b = after_failure(app, self.backoffs.get(app.id, Backoff()), now)
                self.backoffs[app.id] = b
                self.state.backoffs.save(b, key=app.id)
            self._want_revive = True
            return
        changes: dict[str, Any] = {"state": status.state, "message": status.message}
        if status.healthy is not None:
            changes["healthy"] = status.healthy
        if status.agent_id is not None and not inst.agent_id:
            changes["agent_id"] = status.agent_id.value
        new = msgspec.structs.replace(inst, **changes)
        if new != inst:
            self.instances[inst.task_id] = new
            self.state.instances.save(new)

    def error(self, driver: Any, message: str) -> None:
        log.error("framework error: %s", message)

    # ------------------------------------------------------------------ the tick
    async def _ticker(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tick failed")
            await asyncio.sleep(TICK)

    async def tick(self) -> None:
        driver = self.driver
        if driver is None or not driver.connected:
            return
        now = self.clock()
        self.ticks += 1
        work = False
        for inst in list(self.instances.values()):
            app = self.apps.get(inst.app_id)
            if app is None and not inst.killing:
                await self._kill(inst, now)
            elif inst.killing and now - inst.kill_sent_at > KILL_RETRY:
                await self._kill(inst, now)
        for app in list(self.apps.values()):
            p = plan(app, self.app_instances(app.id), self.backoffs.get(app.id, Backoff()), now)
            for tid in p.kill:
                inst = self.instances.get(tid)
                if inst is not None:
                    await self._kill(inst, now)
            work = work or p.launch > 0
        work = await self.jobs.tick(driver, now) or work
        if work and (self.suppressed or self._want_revive):
            self.suppressed, self._want_revive = False, False
            with contextlib.suppress(MesosError, ConnectionError):
                await driver.revive()
        elif not work and not self.suppressed:
            self.suppressed = True
            with contextlib.suppress(MesosError, ConnectionError):
                await driver.suppress()

    async def _kill(self, inst: Instance, now: float) -> None:
        new = msgspec.structs.replace(inst, killing=True, kill_sent_at=now)
        self.instances[inst.task_id] = new
        self.state.instances.save(new)
        log.info("killing app=%s task=%s", inst.app_id, inst.task_id)
        assert self.driver is not None
        with contextlib.suppress(MesosError, ConnectionError):
            await self.driver.kill(inst.task_id, inst.agent_id or None)

    # ------------------------------------------------------------------ sandboxes
    async def sandbox_of(self, agent_id: str, task_id: str) -> tuple[str, str] | None:
        if self._session is None or not self.framework_id:
            return None
        try:
            return await sandbox.locate(self._session, self.driver.master if self.driver else self.master,
                                        agent_id, self.framework_id, task_id)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None

    async def fetch_output_notebook(self, agent_id: str, task_id: str, dest: str) -> dict[str, Any] | None:
        where = await self.sandbox_of(agent_id, task_id)
        if where is None or self._session is None:
            return None
        agent, directory = where
        try:
            data = await sandbox.download(self._session, agent, f"{directory}/{notebooks.OUTPUT}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None
        if data is None:
            return None
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
        try:
            return json.loads(data)
        except ValueError:
            return None

    # ------------------------------------------------------------------ views (for the API)
    def app_view(self, app: AppDef) -> dict[str, Any]:
        insts = self.app_instances(app.id)
        now = self.clock()
        p = plan(app, insts, self.backoffs.get(app.id, Backoff()), now)
        out = msgspec.to_builtins(app)
        out["tasksRunning"] = sum(1 for i in insts if i.running and not i.killing)
        out["tasksStaged"] = sum(1 for i in insts if not i.running and not i.killing)
        out["tasksHealthy"] = sum(1 for i in insts if i.running and i.healthy is True)
        out["tasksUnhealthy"] = sum(1 for i in insts if i.running and i.healthy is False)
        out["tasks"] = [msgspec.to_builtins(i) for i in insts]
        waiting = app.instances - sum(1 for i in insts if not i.killing and i.version == app.version)
        reasons = sorted(set(self.waiting.get(app.id, {}).values()))
        if p.waiting:
            reasons.append(p.waiting)
        out["waiting"] = {"instances": max(0, waiting), "reasons": reasons} if waiting > 0 else None
        out["deploying"] = any(i.version != app.version for i in insts if not i.killing)
        return out


__all__ = ["AppsFramework", "new_version"]
