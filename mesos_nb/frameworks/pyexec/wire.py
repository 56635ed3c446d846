"""What the kernel and the warm executor say to each other, as pure functions.

* kernel -> executor: ``TaskInfo.data`` of each task is a JSON *payload*: a cell's source
  (``{"kind": "cell", "source": ...}``) or a pickled call (``{"kind": "call", "pickle": ...}``).
* executor -> kernel, while a task runs: framework messages (executor ``MESSAGE`` call, the
  scheduler's ``MESSAGE`` event) carrying output chunks ``{"task", "stream", "offset", "text"}``.
* executor -> kernel, at the end: the terminal ``TaskStatus.data`` is the JSON *result*
  (value pickled + repr, or the exception with the traceback of the user's own frames, plus
  how many characters of stdout/stderr were sent); a result too large for a status update is
  left in the sandbox (``{"file": "cells/<task>.result.json"}``) and read through ``/files``.

The executor imports this module, so it imports nothing heavy (its start is CPU-bound inside
the container's CPU quota); ``launch.py`` builds the ``ExecutorInfo`` on the kernel's side.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

INLINE_RESULT_MAX = 512 * 1024  # bigger results stay in the sandbox (the agent takes 4 MiB bodies)
MESSAGE_CHUNK = 64 * 1024
CELL_FILENAME = "<mesos cell>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------- payloads
def cell_payload(source: str) -> bytes:
    return json.dumps({"kind": "cell", "source": source}).encode()


def call_payload(pickled: bytes) -> bytes:
    """``pickled`` is ``(fn, args, kwargs, {filename: source})`` pickled (cloudpickle, so notebook
    functions travel; the sources are the kernel's own cells, for the remote traceback)."""
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
            f"{used_bytes / (1024 * 1024):.1f}MB (the cell's own memory, beyond the warm interpreter)")


def task_mem_mb(task: Mapping[str, Any]) -> float:
    """The ``mem`` a task (TaskInfo as JSON) asked for: its per-cell limit, 0 when none."""
    total = 0.0
    for r in task.get("resources") or []:
        if r.get("name") == "mem":
            total += float((r.get("scalar") or {}).get("value") or 0)
    return total


__all__ = ["CELL_FILENAME", "INLINE_RESULT_MAX", "MESSAGE_CHUNK", "call_payload",
           "cell_payload", "decode_result", "encode_result", "limitation_message",
           "output_message", "parse_output", "parse_payload", "task_mem_mb"]
