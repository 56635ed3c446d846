"""App and job definitions, run records, and their validation.

Definitions are msgspec structs with Marathon/Metronome-style camelCase JSON names, so a
definition posted to the REST API, stored in the state store and read back is the same
object. :func:`parse_app` / :func:`parse_job` turn untrusted JSON into a definition or raise
:class:`InvalidDefinition` naming the offending field, so the API can answer 422 with it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import msgspec
from msgspec import Struct

APP_ID_SEGMENT = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
JOB_ID = re.compile(r"^[a-z0-9]+(-+[a-z0-9]+)*(\.[a-z0-9]+(-+[a-z0-9]+)*)*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")


class InvalidDefinition(ValueError):
    """A definition that cannot be accepted; ``field`` is its JSON path (``healthChecks[0].protocol``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class _Def(Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    pass


class HealthCheck(_Def):
    """Marathon health check; every protocol runs on the agent (Mesos ``TaskInfo.health_check``)."""

    protocol: Literal["HTTP", "TCP", "COMMAND"] = "HTTP"
    path: str = "/"
    port_index: int = 0
    port: int | None = None
    command: str | None = None
    grace_period_seconds: float = 300.0
    interval_seconds: float = 60.0
    timeout_seconds: float = 20.0
    max_consecutive_failures: int = 3
    delay_seconds: float = 0.0


class UpgradeStrategy(_Def):
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0


class _TaskDef(_Def):
    """What apps and jobs both say of their tasks: command, resources, placement, environment
    (validated by :func:`_check_task`)."""

    id: str
    cmd: str | None = None
    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    gpus: float = 0.0
    role: str = "*"
    constraints: list[list[str]] = []
    env: dict[str, str] = {}

    def amounts(self) -> dict[str, float]:
        """The scalar resources one task takes from an offer."""
        return {"cpus": self.cpus, "mem": self.mem, "disk": self.disk, "gpus": self.gpus}


class AppDef(_TaskDef):
    image: str | None = None
    instances: int = 1
    ports: list[int] = []  # 0 = any port from the offer; PORT0.. in the task environment
    labels: dict[str, str] = {}
    health_checks: list[HealthCheck] = []
    task_kill_grace_period_seconds: float | None = None
    upgrade_strategy: UpgradeStrategy = msgspec.field(default_factory=UpgradeStrategy)
    backoff_seconds: float = 1.0
    backoff_factor: float = 1.15
    max_launch_delay_seconds: float = 300.0
    version: str | None = None  # set by the framework at each change of the definition


class NotebookPayload(_Def):
    """A notebook to execute with papermill: its JSON (``notebook``) and parameter values."""

    notebook: dict[str, Any]
    parameters: dict[str, Any] = {}
    kernel: str | None = None
    timeout_seconds: float | None = None


class JobDef(_TaskDef):
    cpus: float = 0.1  # a job's task is small unless it says otherwise
    notebook: NotebookPayload | None = None
    schedule: str | None = None  # cron ("*/5 * * * *") or ISO 8601 "R[n]/start/period"
    timezone: str = "UTC"
    retries: int = 0
    retry_backoff_seconds: float = 1.0
    retry_backoff_factor: float = 2.0
    concurrency_policy: Literal["ALLOW", "FORBID", "REPLACE"] = "ALLOW"
    parents: list[str] = []
    history_limit: int = 20
    starting_deadline_seconds: float = 900.0
    max_run_seconds: float | None = None
    enabled: bool = True


RunStatus = Literal["INITIAL", "STARTING", "ACTIVE", "SUCCESS", "FAILED", "SKIPPED"]
FINISHED = frozenset({"SUCCESS", "FAILED", "SKIPPED"})


class Attempt(Struct, kw_only=True, rename="camel"):
    """One task of a run (a run retries by launching another attempt)."""

    task_id: str
    state: str = "TASK_STAGING"
    agent_id: str | None = None
    hostname: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    message: str | None = None
    sandbox: str | None = None  # agent /files/browse URL of the sandbox


class RunRecord(Struct, kw_only=True, rename="camel"):
    """A job run: its trigger, status, attempts and (notebooks) the executed copy."""

    id: str
    job_id: str
    trigger: Literal["schedule", "manual", "parent", "retry"] = "schedule"
    status: RunStatus = "INITIAL"
    scheduled_at: float = 0.0  # when the schedule said it should start
    created_at: float = 0.0
    not_before: float = 0.0  # retries wait their backoff
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    message: str | None = None
    attempts: list[Attempt] = []
    output_notebook: str | None = None
    failing_cell: dict[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def active(self) -> bool:
        return self.status not in FINISHED


def run_key(run: RunRecord) -> str:
    """A run's key among all jobs' runs (in memory and in the store)."""
    return f"{run.job_id}/{run.id}"


def run_json(run: RunRecord) -> dict[str, Any]:
    out = msgspec.to_builtins(run)
    out["duration"] = run.duration
    return out


# ------------------------------------------------------------------ validation
def _convert(obj: Any, typ: type) -> Any:
    try:
        return msgspec.convert(obj, typ)
    except msgspec.ValidationError as e:
        text = str(e)
        m = re.search(r"at `\$\.?([^`]*)`", text)
        field = m.group(1) if m else ""
        m2 = re.search(r"unknown field `([^`]*)`", text)
        if m2:
            field = (field + "." if field else "") + m2.group(1)
            return _raise(field, "unknown field")
        m3 = re.search(r"missing required field `([^`]*)`", text)
        if m3:
            field = (field + "." if field else "") + m3.group(1)
            return _raise(field, "is required")
        raise InvalidDefinition(field, text.split(" - at ")[0]) from None


def _raise(field: str, message: str) -> Any:
    raise InvalidDefinition(field, message)


def _positive(field: str, value: float, minimum: float = 0.0, strict: bool = False) -> None:
    if not math.isfinite(value) or value < minimum or (strict and value <= minimum):
        _raise(field, f"must be {'>' if strict else '>='} {minimum:g} (got {value:g})")


def _check_task(d: _TaskDef) -> None:
    _positive("cpus", d.cpus, 0.001)
    _positive("mem", d.mem, 0.0, strict=True)
    _positive("disk", d.disk)
    _positive("gpus", d.gpus)
    check_constraints(d.constraints)
    _check_env(d.env)


def _check_env(env: dict[str, str], field: str = "env") -> None:
    for k in env:
        if not ENV_NAME.match(k):
            _raise(f"{field}.{k}", "is not a valid environment variable name")


def check_constraints(constraints: list[list[str]], field: str = "constraints") -> None:
    for i, c in enumerate(constraints):
        f = f"{field}[{i}]"
        if len(c) < 2 or len(c) > 3:
            _raise(f, "must be [field, OPERATOR] or [field, OPERATOR, value]")
        op = c[1].upper()
        if op not in OPERATORS:
            _raise(f, f"unknown operator {c[1]!r} (one of {', '.join(OPERATORS)})")
        value = c[2] if len(c) == 3 else None
        if op in ("LIKE", "UNLIKE", "MAX_PER", "IS") and not value:
            _raise(f, f"{op} needs a value")
        if op in ("LIKE", "UNLIKE"):
            try:
                re.compile(value or "")
            except re.error as e:
                _raise(f, f"bad regular expression: {e}")
        if op == "MAX_PER" or (op == "GROUP_BY" and value and value != "inf"):
            if not (value or "").isdigit() or int(value or "0") < 1:
                _raise(f, f"{op} needs a positive integer (got {value!r})")


def parse_app(obj: Any) -> AppDef:
    """A validated :class:`AppDef` from JSON-like ``obj`` (raises :class:`InvalidDefinition`)."""
    if not isinstance(obj, dict):
        _raise("", "an app definition must be a JSON object")
    app: AppDef = _convert(obj, AppDef)
    segments = app.id.strip("/").split("/")
    if not app.id.strip("/") or not all(APP_ID_SEGMENT.match(s) for s in segments):
        _raise("id", "must be a path of lower-case segments [a-z0-9-] (e.g. /team/web)")
    app = msgspec.structs.replace(app, id="/" + "/".join(segments))
    if bool(app.cmd) == bool(app.image) and not app.image:
        _raise("cmd", "an app needs a cmd (or an image)")
    if app.instances < 0:
        _raise("instances", f"must be >= 0 (got {app.instances})")
    _check_task(app)
    if app.gpus != int(app.gpus):
        _raise("gpus", "must be a whole number")
    for i, p in enumerate(app.ports):
        if not 0 <= p <= 65535:
            _raise(f"ports[{i}]", f"must be 0 (any) or a port number (got {p})")
    fixed = [p for p in app.ports if p]
    if len(set(fixed)) != len(fixed):
        _raise("ports", "the same fixed port is listed twice")
    for i, hc in enumerate(app.health_checks):
        f = f"healthChecks[{i}]"
        if hc.protocol == "COMMAND" and not hc.command:
            _raise(f"{f}.command", "a COMMAND health check needs a command")
        if hc.protocol in ("HTTP", "TCP") and hc.port is None and hc.port_index >= len(app.ports):
            _raise(f"{f}.portIndex", f"the app has {len(app.ports)} port(s); give ports or a port")
        for name in ("grace_period_seconds", "interval_seconds", "timeout_seconds", "delay_seconds"):
            _positive(f"{f}.{_camel(name)}", getattr(hc, name))
        _positive(f"{f}.intervalSeconds", hc.interval_seconds, 0.0, strict=True)
        if hc.max_consecutive_failures < 0:
            _raise(f"{f}.maxConsecutiveFailures", "must be >= 0")
    us = app.upgrade_strategy
    for name in ("minimum_health_capacity", "maximum_over_capacity"):
        v = getattr(us, name)
        if not 0.0 <= v <= 1.0:
            _raise(f"upgradeStrategy.{_camel(name)}", f"must be in [0, 1] (got {v:g})")
    _positive("backoffSeconds", app.backoff_seconds)
    _positive("backoffFactor", app.backoff_factor, 1.0)
    _positive("maxLaunchDelaySeconds", app.max_launch_delay_seconds)
    if app.task_kill_grace_period_seconds is not None:
        _positive("taskKillGracePeriodSeconds", app.task_kill_grace_period_seconds)
    return app


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def to_json(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


__all__ = [
    "AppDef", "Attempt", "FINISHED", "HealthCheck", "InvalidDefinition", "JobDef", "NotebookPayload",
    "OPERATORS", "RunRecord", "UpgradeStrategy", "check_constraints", "parse_app",
    "run_json", "to_json",
]
