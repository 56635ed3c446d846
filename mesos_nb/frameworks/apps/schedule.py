"""Job schedules and the job scheduler: given the time, which runs start, retry or are skipped.

Schedules are cron expressions (5 fields, evaluated in the job's time zone by ``croniter``)
or ISO 8601 repeating intervals ``R[n]/<start>/<period>`` (Chronos). :func:`decide` is pure:
it takes the jobs, their run records and the time, and returns :class:`Decision` objects the
shell carries out (create a run, kill a run for ``REPLACE``, record a skipped trigger for
``FORBID``, retry a failed attempt after its backoff).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.relativedelta import relativedelta

from .model import (
    JOB_ID,
    JobDef,
    RunRecord,
    _check_task,
    _convert,
    _positive,
    _raise,
)

_DURATION = re.compile(
    r"^P(?:(?P<years>\d+(?:\.\d+)?)Y)?(?:(?P<months>\d+(?:\.\d+)?)M)?(?:(?P<weeks>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def parse_duration(text: str) -> relativedelta:
    """An ISO 8601 duration (``PT10S``, ``P1DT2H``, ``P1M`` = one month)."""
    m = _DURATION.match(text)
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. PT10S, PT1H, P1D)")
    g = {k: float(v) for k, v in m.groupdict().items() if v is not None}
    if not g:
        raise ValueError(f"{text!r} is not an ISO 8601 duration")
    d = relativedelta(years=int(g.get("years", 0)), months=int(g.get("months", 0)),
                      weeks=g.get("weeks", 0), days=g.get("days", 0), hours=g.get("hours", 0),
                      minutes=g.get("minutes", 0), seconds=g.get("seconds", 0))
    probe = datetime(2000, 1, 1, tzinfo=timezone.utc)
    if probe + d <= probe:
        raise ValueError(f"{text!r} is a zero duration")
    return d


class Schedule:
    """When a job fires. :meth:`next_after` gives the first fire time strictly after ``t``."""

    def next_after(self, t: float) -> float | None:  # pragma: no cover - interface
        raise NotImplementedError


class CronSchedule(Schedule):
    def __init__(self, expr: str, tz: ZoneInfo) -> None:
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError(f"cron {expr!r} needs 5 fields (minute hour day-of-month month day-of-week)")
        if not croniter.is_valid(expr):
            raise ValueError(f"{expr!r} is not a valid cron expression")
        self.expr, self.tz = expr, tz

    def next_after(self, t: float) -> float | None:
        start = datetime.fromtimestamp(t, self.tz)
        return float(croniter(self.expr, start).get_next(float))


class RepeatingSchedule(Schedule):
    """``R[n]/<start>/<period>``: ``n`` fires (forever without ``n``) from ``start``."""

    def __init__(self, count: int | None, start: datetime, period: relativedelta) -> None:
        self.count, self.start, self.period = count, start, period
        # fixed-length periods are stepped arithmetically (seconds); calendar ones iteratively
        self.fixed = not (period.years or period.months)
        probe = datetime(2000, 1, 1, tzinfo=timezone.utc)
        self.step = ((probe + period) - probe).total_seconds()

    def nth(self, k: int) -> float:
        if self.fixed:
            return self.start.timestamp() + k * self.step
        return (self.start + self.period * k).timestamp()

    def next_after(self, t: float) -> float | None:
        s0 = self.start.timestamp()
        if t < s0:
            k = 0
        elif self.fixed:
            k = int((t - s0) // self.step) + 1
            while k > 0 and self.nth(k - 1) > t:
                k -= 1
        else:
            k = 0
            while self.nth(k) <= t:
                k += 1
        if self.count is not None and k >= self.count:
            return None
        return self.nth(k)


def parse_schedule(text: str, tz_name: str = "UTC", now: float | None = None) -> Schedule:
    """A cron or ISO 8601 repeating schedule (``ValueError`` with one sentence otherwise)."""
    tz = zone(tz_name or "UTC")
    text = text.strip()
    if not text.startswith("R"):
        return CronSchedule(text, tz)
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(f"{text!r}: an ISO 8601 repeating interval is R[n]/<start>/<period>")
    rep, start_s, period_s = parts
    if rep == "R":
        count = None
    elif rep[1:].isdigit():
        count = int(rep[1:])
    else:
        raise ValueError(f"{text!r}: the repetition is R or Rn (n a number)")
    if start_s:
        try:
            start = datetime.fromisoformat(start_s.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{start_s!r} is not an ISO 8601 date-time") from None
        if start.tzinfo is None or tz_name not in ("", "UTC"):
            start = start.replace(tzinfo=tz)
    else:
        start = datetime.fromtimestamp(now if now is not None else datetime.now().timestamp(), tz)
    return RepeatingSchedule(count, start, parse_duration(period_s))


# ------------------------------------------------------------------ the job scheduler
@dataclass(frozen=True)
class Decision:
    """``start`` a new run; ``kill`` an active run (REPLACE); ``skip`` a trigger (FORBID).
    Retries are not decisions: a failed attempt puts its run back to INITIAL with a
    ``not_before`` time (:func:`after_attempt`) and the shell launches it when that passes."""

    kind: str
    job_id: str
    trigger: str = "schedule"
    scheduled_at: float = 0.0
    run_id: str | None = None
    reason: str | None = None


def retry_delay(job: JobDef, failed_attempts: int) -> float:
    """Backoff before attempt ``failed_attempts + 1``: ``retryBackoffSeconds × factor^(k-1)``."""
    return job.retry_backoff_seconds * job.retry_backoff_factor ** max(0, failed_attempts - 1)


def _parents_ready(job: JobDef, runs: Mapping[str, Sequence[RunRecord]]) -> bool:
    """Metronome's rule: each parent's latest run succeeded, after this job's last start."""
    mine = runs.get(job.id, [])
    last_start = max((r.created_at for r in mine), default=float("-inf"))
    for parent in job.parents:
        theirs = runs.get(parent, [])
        if not theirs:
            return False
        latest = max(theirs, key=lambda r: r.created_at)
        if latest.status != "SUCCESS" or (latest.finished_at or 0) <= last_start:
            return False
    return True


def decide(jobs: Sequence[JobDef], runs: Mapping[str, Sequence[RunRecord]],
           next_fire: dict[str, float | None], now: float,
           schedules: Mapping[str, Schedule] | None = None) -> list[Decision]:
    """What to do at ``now``. ``next_fire`` (job id -> next fire time) is advanced in place;
    missing entries are filled from the schedule (first fire after ``now``)."""
    out: list[Decision] = []
    for job in jobs:
        active = [r for r in runs.get(job.id, []) if r.active]
        if not job.enabled:
            continue
        trigger: tuple[str, float] | None = None
        if job.schedule:
            sched = (schedules or {}).get(job.id) or parse_schedule(job.schedule, job.timezone, now)
            if job.id not in next_fire:
                next_fire[job.id] = sched.next_after(now - 1e-6)
            due = next_fire[job.id]
            if due is not None and due <= now:
                # skip fire times missed by more than the starting deadline, fire the latest
                nxt = sched.next_after(due)
                while nxt is not None and nxt <= now:
                    due, nxt = nxt, sched.next_after(nxt)
                next_fire[job.id] = nxt
                if now - due <= job.starting_deadline_seconds:
                    trigger = ("schedule", due)
        elif job.parents and _parents_ready(job, runs):
            trigger = ("parent", now)
        if trigger is None:
            continue
        kind, at = trigger
        if active and job.concurrency_policy == "FORBID":
            out.append(Decision("skip", job.id, kind, at, reason=f"run {active[0].id} is still active (FORBID)"))
            continue
        if active and job.concurrency_policy == "REPLACE":
            out.extend(Decision("kill", job.id, kind, at, run_id=r.id, reason="replaced (REPLACE)") for r in active)
        out.append(Decision("start", job.id, kind, at))
    return out


def after_attempt(job: JobDef, run: RunRecord, succeeded: bool, now: float) -> tuple[str, float]:
    """The run's next status after an attempt ended: ``SUCCESS``, ``FAILED`` or ``INITIAL``
    again (a retry, not before the returned time)."""
    if succeeded:
        return "SUCCESS", now
    failed = sum(1 for a in run.attempts if a.state != "TASK_FINISHED")
    if failed <= job.retries:
        return "INITIAL", now + retry_delay(job, failed)
    return "FAILED", now


def check_parents(jobs: Mapping[str, JobDef], job: JobDef) -> None:
    """Unknown parents and cycles are refused (``ValueError`` naming them)."""
    for p in job.parents:
        if p not in jobs and p != job.id:
            raise ValueError(f"unknown parent job {p!r}")
    graph = {**{j.id: list(j.parents) for j in jobs.values()}, job.id: list(job.parents)}
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(job.id, [job.id])]
    while stack:
        node, path = stack.pop()
        for p in graph.get(node, []):
            if p == job.id:
                raise ValueError("parents form a cycle: " + " -> ".join([*path, p]))
            if p not in seen:
                seen.add(p)
                stack.append((p, [*path, p]))


def ts(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")



def parse_job(obj: Any) -> JobDef:
    """A validated :class:`JobDef` (the schedule is parsed too)."""
    if not isinstance(obj, dict):
        _raise("", "a job definition must be a JSON object")
    job: JobDef = _convert(obj, JobDef)
    if not JOB_ID.match(job.id):
        _raise("id", "must be lower-case words [a-z0-9-] joined by dots (e.g. team.nightly)")
    if bool(job.cmd) == bool(job.notebook):
        _raise("cmd", "a job needs exactly one of cmd or notebook")
    if job.notebook is not None and not isinstance(job.notebook.notebook.get("cells"), list):
        _raise("notebook.notebook", "is not a notebook (no cells)")
    if job.schedule and job.parents:
        _raise("parents", "a job has a schedule or parents, not both")
    if job.schedule:
        try:
            parse_schedule(job.schedule, job.timezone)
        except ValueError as e:
            _raise("schedule", str(e))
    else:
        try:
            parse_schedule("* * * * *", job.timezone)
        except ValueError as e:
            _raise("timezone", str(e))
    if job.id in job.parents:
        _raise("parents", "a job cannot be its own parent")
    _check_task(job)
    if job.retries < 0:
        _raise("retries", f"must be >= 0 (got {job.retries})")
    _positive("retryBackoffSeconds", job.retry_backoff_seconds)
    _positive("retryBackoffFactor", job.retry_backoff_factor, 1.0)
    if job.history_limit < 1:
        _raise("historyLimit", "must be >= 1")
    _positive("startingDeadlineSeconds", job.starting_deadline_seconds, 0.0, strict=True)
    return job


__all__ = ["CronSchedule", "parse_job", "Decision", "RepeatingSchedule", "Schedule", "after_attempt", "check_parents",
           "decide", "parse_duration", "parse_schedule", "retry_delay", "ts", "zone"]
