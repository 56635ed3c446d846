"""The jobs half of the framework shell: run records, attempts, retries, notebook results.

:class:`JobRunner` belongs to the apps framework (seen through :class:`FrameworkShell`). Each tick it asks the pure
:func:`~.schedule.decide` which runs start (and which active runs a ``REPLACE`` kills, which
triggers ``FORBID`` skips), creates their :class:`RunRecord` (status ``INITIAL``) and launches
them from offers. An attempt that fails goes back to ``INITIAL`` with a ``notBefore`` time
(:func:`~.schedule.after_attempt`) until its retries are spent. History is trimmed to
``historyLimit`` finished runs per job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import string
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import msgspec

from mesos_nb.protocol.messages import Offer, TaskStatus, is_terminal
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import MesosError
from mesos_nb.scheduler.tasks import offer_role

from . import notebooks
from .constraints import rejection
from .model import Attempt, JobDef, RunRecord, run_key
from .schedule import Schedule, after_attempt, check_parents, decide, parse_schedule
from .tasks import exit_code, job_task, place_of, take


class FrameworkShell(Protocol):
    """What the runner needs of the framework that owns it (the framework imports the runner,
    so the runner names only this seam, never the framework class)."""

    driver: Any
    results_dir: str
    api_url: str
    python: str

    def clock(self) -> float: ...
    def spawn(self, coro: Any) -> None: ...
    def wake(self) -> None: ...
    async def sandbox_of(self, agent_id: str, task_id: str) -> tuple[str, str] | None: ...
    async def fetch_output_notebook(self, agent_id: str, task_id: str, dest: str) -> dict[str, Any] | None: ...

log = logging.getLogger("mesos_nb.apps")


def new_run_id(now: float) -> str:
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d%H%M%S")
    return stamp + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


class JobRunner:
    def __init__(self, fw: FrameworkShell) -> None:
        self.fw = fw
        self.state = fw.state
        self.defs: dict[str, JobDef] = self.state.jobs.all()
        self.runs: dict[str, RunRecord] = self.state.runs.all()
        self.next_fire: dict[str, float | None] = {}
        self.schedules: dict[str, Schedule] = {}
        self.by_task: dict[str, str] = {a.task_id: k for k, r in self.runs.items() for a in r.attempts}

    # ------------------------------------------------------------------ definitions
    def put(self, job: JobDef) -> JobDef:
        check_parents({k: v for k, v in self.defs.items() if k != job.id}, job)
        self.defs[job.id] = job
        self.next_fire.pop(job.id, None)
        self.schedules.pop(job.id, None)
        if job.schedule:
            self.schedules[job.id] = parse_schedule(job.schedule, job.timezone, self.fw.clock())
        self.state.jobs.save(job)
        log.info("job saved job=%s schedule=%s", job.id, job.schedule)
        self.fw.wake()
        return job

    def children(self, job_id: str) -> list[str]:
        return sorted(j.id for j in self.defs.values() if job_id in j.parents)

    def delete(self, job_id: str) -> None:
        """Forget the job; its active runs are killed (their records stay until trimmed)."""
        if self.fw.driver is not None:
            for run in self.runs_of(job_id):
                if run.active:
                    self.fw.spawn(self._kill_run(self.fw.driver, run, "the job was deleted"))
        self.defs.pop(job_id, None)
        self.next_fire.pop(job_id, None)
        self.schedules.pop(job_id, None)
        self.state.jobs.delete(job_id)

    def start_now(self, job_id: str) -> RunRecord:
        """A manual run (``POST /v2/jobs/{id}/runs``): no deadline, concurrency policy ignored."""
        run = self._new_run(job_id, "manual", self.fw.clock())
        self.fw.wake()
        return run

    def runs_of(self, job_id: str) -> list[RunRecord]:
        return sorted((r for r in self.runs.values() if r.job_id == job_id), key=lambda r: r.created_at)

    def _by_job(self) -> Mapping[str, list[RunRecord]]:
        out: dict[str, list[RunRecord]] = {}
        for r in self.runs.values():
            out.setdefault(r.job_id, []).append(r)
        return out

    def _save(self, run: RunRecord) -> None:
        self.runs[run_key(run)] = run
        self.state.runs.save(run)

    def _new_run(self, job_id: str, trigger: str, scheduled_at: float, status: str = "INITIAL",
                 message: str | None = None) -> RunRecord:
        now = self.fw.clock()
        run = RunRecord(id=new_run_id(now), job_id=job_id, trigger=trigger, status=status,  # type: ignore[arg-type]
                        scheduled_at=scheduled_at, created_at=now, message=message,
                        finished_at=now if status == "SKIPPED" else None)
        self._save(run)
        log.info("run %s job=%s run=%s trigger=%s%s", status.lower(), job_id, run.id, trigger,
                 f" ({message})" if message else "")
        return run

    # ------------------------------------------------------------------ tick
    def known_tasks(self) -> list[tuple[str, str]]:
        return [(a.task_id, a.agent_id) for r in self.runs.values() if r.active
                for a in r.attempts if a.agent_id and not is_terminal(a.state)]

    def pending(self, now: float) -> bool:
        return any(r.status == "INITIAL" and r.not_before <= now for r in self.runs.values())

    async def tick(self, driver: Any, now: float) -> bool:
        for d in decide(list(self.defs.values()), self._by_job(), self.next_fire, now, self.schedules):
            if d.kind == "start":
                self._new_run(d.job_id, d.trigger, d.scheduled_at)
            elif d.kind == "skip":
                self._new_run(d.job_id, d.trigger, d.scheduled_at, "SKIPPED", d.reason)
            elif d.kind == "kill" and d.run_id:
                run = self.runs.get(f"{d.job_id}/{d.run_id}")
                if run is not None:
                    await self._kill_run(driver, run, "replaced by a newer run (REPLACE)")
        for run in list(self.runs.values()):
            job = self.defs.get(run.job_id)
            if (run.status == "INITIAL" and not run.attempts and run.trigger == "schedule" and job
                    and now - run.scheduled_at > job.starting_deadline_seconds):
                why = f"not started within startingDeadlineSeconds {job.starting_deadline_seconds:g} (no offer fit)"
                self._save(msgspec.structs.replace(run, status="FAILED", finished_at=now, message=why))
                log.info("run failed job=%s run=%s: %s", run.job_id, run.id, why)
                continue
            if run.status == "ACTIVE" and job and job.max_run_seconds and run.attempts:
                a = run.attempts[-1]
                if a.started_at and now - a.started_at > job.max_run_seconds:
                    await self._kill_run(driver, run, f"ran longer than maxRunSeconds {job.max_run_seconds:g}")
        self._trim()
        return self.pending(now)

    async def _kill_run(self, driver: Any, run: RunRecord, why: str) -> None:
        log.info("killing run job=%s run=%s: %s", run.job_id, run.id, why)
        if run.status == "INITIAL":
            self._save(msgspec.structs.replace(run, status="FAILED", finished_at=self.fw.clock(), message=why))
            return
        self._save(msgspec.structs.replace(run, message=why))
        for a in run.attempts:
            if not is_terminal(a.state):
                with contextlib.suppress(MesosError, ConnectionError):
                    await driver.kill(a.task_id, a.agent_id)

    def _trim(self) -> None:
        for job_id, runs in self._by_job().items():
            job = self.defs.get(job_id)
            limit = job.history_limit if job else 0
            done = sorted((r for r in runs if not r.active), key=lambda r: r.created_at)
            for r in done[: max(0, len(done) - limit)]:
                self.runs.pop(run_key(r), None)
                self.state.runs.delete(run_key(r))

    # ------------------------------------------------------------------ offers
    def place(self, offer: Offer, have: Resources, now: float) -> tuple[list[Any], Resources]:
        tasks = []
        ready = sorted((r for r in self.runs.values() if r.status == "INITIAL" and r.not_before <= now),
                       key=lambda r: r.created_at)
        for run in ready:
            job = self.defs.get(run.job_id)
            if job is None:
                continue
            if rejection(job.constraints, place_of(offer), [], 1) is not None:
                continue
            got = take(have, offer_role(offer), job.amounts(), [])
            if isinstance(got, str):
                continue
            res, _ = got
            tid = f"{job.id}.{run.id}.{len(run.attempts) + 1}.{uuid.uuid4().hex[:6]}"
            if job.notebook is not None:
                cmd, uris = notebooks.command(job, self.fw.python, self.fw.api_url, self.fw.notebook_token)
            else:
                cmd, uris = job.cmd or "", []
            tasks.append(job_task(job, offer, res, tid, run.id, cmd, uris))
            attempt = Attempt(task_id=tid, agent_id=offer.agent_id.value, hostname=offer.hostname)
            self.by_task[tid] = f"{run.job_id}/{run.id}"
            self._save(msgspec.structs.replace(run, status="STARTING", attempts=[*run.attempts, attempt]))
            log.info("launching job=%s run=%s task=%s agent=%s late=%.3fs", job.id, run.id, tid,
                     offer.agent_id.value, now - run.scheduled_at)
            have = have - res
        return tasks, have

    # ------------------------------------------------------------------ updates
    def update(self, status: TaskStatus) -> bool:
        tid = status.task_id.value
        key = self.by_task.get(tid)
        run = self.runs.get(key) if key else None
        if run is None:
            return False
        now = self.fw.clock()
        attempts = list(run.attempts)
        idx = next((i for i, a in enumerate(attempts) if a.task_id == tid), None)
        if idx is None:
            return False
        a = attempts[idx]
        changes: dict[str, Any] = {"state": status.state, "message": status.message}
        if status.state == "TASK_RUNNING" and a.started_at is None:
            changes["started_at"] = now
        if is_terminal(status.state):
            changes["finished_at"] = now
            changes["exit_code"] = exit_code(status.message) if status.state != "TASK_FINISHED" else 0
        a = msgspec.structs.replace(a, **changes)
        attempts[idx] = a
        run = msgspec.structs.replace(run, attempts=attempts)
        if status.state == "TASK_RUNNING" and run.status in ("INITIAL", "STARTING"):
            run = msgspec.structs.replace(run, status="ACTIVE", started_at=run.started_at or now)
            if a.agent_id:
                self.fw.spawn(self._link_sandbox(key or "", tid, a.agent_id))
        if is_terminal(status.state) and run.active:
            job = self.defs.get(run.job_id)
            ok = status.state == "TASK_FINISHED"
            replaced = bool(run.message and ("REPLACE" in run.message or "deleted" in run.message))
            if job is None or replaced:
                nxt, when = ("SUCCESS" if ok else "FAILED"), now
            else:
                nxt, when = after_attempt(job, run, ok, now)
            if nxt == "INITIAL":
                run = msgspec.structs.replace(run, status="INITIAL", not_before=when,
                                              message=f"attempt {len(attempts)} failed: {status.message}; retrying")
                self.fw.wake()
            else:
                why = run.message if (ok or replaced) else status.message
                run = msgspec.structs.replace(run, status=nxt, finished_at=now, exit_code=a.exit_code, message=why)
            if job is not None and job.notebook is not None and a.agent_id:
                self.fw.spawn(self._collect_notebook(key or "", tid, a.agent_id))
            log.info("attempt ended job=%s run=%s task=%s state=%s run_status=%s", run.job_id, run.id, tid,
                     status.state, run.status)
        self._save(run)
        return True

    async def _link_sandbox(self, key: str, tid: str, agent_id: str) -> None:
        where = await self.fw.sandbox_of(agent_id, tid)
        run = self.runs.get(key)
        if where is None or run is None:
            return
        from .sandbox import browse_link

        attempts = [msgspec.structs.replace(a, sandbox=browse_link(*where)) if a.task_id == tid else a
                    for a in run.attempts]
        self._save(msgspec.structs.replace(run, attempts=attempts))

    async def _collect_notebook(self, key: str, tid: str, agent_id: str) -> None:
        run = self.runs.get(key)
        if run is None or not self.fw.results_dir:
            return
        dest = os.path.join(self.fw.results_dir, run.job_id, f"{run.id}.{len(run.attempts)}.ipynb")
        nb = await self.fw.fetch_output_notebook(agent_id, tid, dest)
        run = self.runs.get(key)
        if run is None:
            return
        if nb is None:
            self._save(msgspec.structs.replace(run, message=(run.message or "") + " (no output notebook)"))
            return
        cell = notebooks.failing_cell(nb)
        self._save(msgspec.structs.replace(run, output_notebook=dest, failing_cell=cell))
        log.info("notebook collected job=%s run=%s path=%s failed_cell=%s", run.job_id, run.id, dest,
                 cell["index"] if cell else None)


__all__ = ["JobRunner", "new_run_id"]
