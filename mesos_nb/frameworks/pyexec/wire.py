"""What the kernel and the warm executor say to each other, as pure functions.

* kernel -> executor: ``TaskInfo.data`` of each task is a JSON *payload*: a cell's source
  (``{"kind": "cell", "source": ...}``) or a pickled call (``{"kind": "call", "pickle": ...}``).
* executor -> kernel, while a task runs: framework messages (executor ``MESSAGE`` call, the
  scheduler's ``MESSAGE`` event) carrying output chunks ``{"task", "stream", "offset", "text"}``.
* executor -> kernel, at the end: the terminal ``TaskStatus.data`` is the JSON *result*
  (value pickled + repr, or the exception with the traceback of the user's own frames, plus
  how many characters of stdout/stderr were sent); a result too large for a status update is
  left in the sandbox (``{"file": "cells/<task>.result.json"}``) and read through ``/files``.

The executor is started with ``python -m mesos_nb.frameworks.pyexec``; :func:`executor_info`
builds its ``ExecutorInfo`` with everything it needs in ``command.environment`` (the agent
gives an executor a clean environment: only ``MESOS_*`` and these variables).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    DurationInfo,
    Environment,
    EnvironmentVariable,
    ExecutorInfo,
    Resource,
    TaskInfo,
)

INLINE_RESULT_MAX = 512 * 1024  # bigger results stay in the sandbox (the agent takes 4 MiB bodies)
MESSAGE_CHUNK = 64 * 1024
CELL_FILENAME = "<mesos cell>"
EXECUTOR_MODULE = "mesos_nb.frameworks.pyexec"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------- payloads
def cell_payload(source: str) -> bytes:
    return json.dumps({"kind": "cell", "source": source}).encode()


def call_payload(pickled: bytes) -> bytes:
    """``pickled`` is ``(fn, args, kwargs)`` pickled (cloudpickle, so notebook functions travel)."""
    return json.dumps({"kind": "call", "pickle": _b64(pickled)}).encode()


def parse_payload(data: bytes | None) -> dict[str, Any] | str:
    """The payload, or a sentence saying why it is not one."""
    if not data:
        return "the task carries no payload (TaskInfo.data is empty)"
    try:
        p = json.loads(data)
    except ValueError:
        return "the task's payload is not JSON"
    if not isinstance(p, dict) or p.get("kind") not in ("cell", "call"):
        return "the task's payload is neither a cell nor a call"
    if p["kind"] == "cell" and not isinstance(p.get("source"), str):
        return "the cell payload has no source"
    if p["kind"] == "call":
        try:
            p["pickle"] = base64.b64decode(p.get("pickle") or "", validate=True)
        except (ValueError, TypeError):
            return "the call payload's pickle is not base64"
    return p


# ---------------------------------------------------------------------- output messages
def output_message(task_id: str, stream: str, offset: int, text: str) -> bytes:
    return json.dumps({"task": task_id, "stream": stream, "offset": offset, "text": text}).encode()


def parse_output(data: bytes) -> tuple[str, str, int, str] | None:
    """``(task_id, stream, offset, text)`` of an output message, None for anything else."""
    try:
        m = json.loads(data)
        if m["stream"] in ("stdout", "stderr"):
            return str(m["task"]), m["stream"], int(m["offset"]), str(m["text"])
    except (ValueError, KeyError, TypeError):
        pass
    return None


# ---------------------------------------------------------------------- results
def encode_result(result: Mapping[str, Any]) -> bytes:
    return json.dumps(result).encode()


def decode_result(data: bytes | None) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        res = json.loads(data)
    except ValueError:
        return None
    return res if isinstance(res, dict) else None


def limitation_message(limit_mb: float, used_bytes: int) -> str:
    """The sentence a cell killed for memory ends with (Mesos' wording, per cell)."""
    return (f"Memory limit exceeded: Requested: {limit_mb:g}MB Maximum Used: "
            f"{used_bytes / (1024 * 1024):.0f}MB (the cell's own memory, beyond the warm interpreter)")


# ---------------------------------------------------------------------- executor info
def executor_info(executor_id: str, framework_id: str | None, *, python: str, pythonpath: Sequence[str],
                  preload: Sequence[str], idle_timeout: float, resources: list[Resource],
                  name: str = "mesos-nb warm python") -> ExecutorInfo:
    """The warm executor: ``python -m mesos_nb.frameworks.pyexec`` with its settings in the
    environment (nothing is inherited from the agent's). ``resources`` are the executor's own
    (the warm interpreter), taken from the offer that starts it."""
    env = {
        "PYTHONPATH": ":".join(p for p in pythonpath if p),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MESOS_NB_PRELOAD": ",".join(preload),
        "MESOS_NB_IDLE_TIMEOUT": f"{idle_timeout:g}",
    }
    cmd = CommandInfo(value=python, shell=False, arguments=[python, "-u", "-m", EXECUTOR_MODULE],
                      environment=Environment(variables=[EnvironmentVariable(name=k, value=v)
                                                         for k, v in env.items()]))
    return ExecutorInfo(executor_id=ID(value=executor_id),
                        framework_id=ID(value=framework_id) if framework_id else None,
                        command=cmd, resources=resources, name=name, source="mesos-nb",
                        shutdown_grace_period=DurationInfo(nanoseconds=2_000_000_000))


def task_mem_mb(task: Mapping[str, Any] | TaskInfo) -> float:
    """The ``mem`` a task asked for (its per-cell limit), 0 when none."""
    res = task.resources if isinstance(task, TaskInfo) else task.get("resources") or []
    total = 0.0
    for r in res:
        d = r if isinstance(r, Mapping) else {"name": r.name, "scalar": {"value": r.scalar.value if r.scalar else 0}}
        if d.get("name") == "mem":
            total += float((d.get("scalar") or {}).get("value") or 0)
    return total


__all__ = ["CELL_FILENAME", "EXECUTOR_MODULE", "INLINE_RESULT_MAX", "MESSAGE_CHUNK", "call_payload",
           "cell_payload", "decode_result", "encode_result", "executor_info", "limitation_message",
           "output_message", "parse_output", "parse_payload", "task_mem_mb"]
