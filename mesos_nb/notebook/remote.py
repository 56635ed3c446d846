"""``%%mesos task``: run a cell's Python code as a task on the cluster.

Data flow: the cell's source travels base64-encoded in the task's environment
(``MESOS_NB_CELL``); the command is the kernel's own ``sys.executable -u -c BOOTSTRAP``. The
bootstrap runs the cell like IPython does (the last expression is evaluated separately) and
writes ``mesos_nb_result.json`` into the sandbox: the value pickled (and its repr), or the
exception with the traceback of the cell's own frames. Meanwhile the kernel tails the
sandbox's stdout/stderr through the agent's ``/files/read`` and writes them to its own
streams; at the end it reads the result file the same way and returns the value or raises
:class:`RemoteTaskError`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import sys
import time
from typing import Any

from mesos_nb.client import MesosClientError, drain

from .display import LiveLine, amounts_text
from .errors import MesosNotebookError, RemoteTaskError
from .framework import NotebookFramework
from .task import Task

RESULT_FILE = "mesos_nb_result.json"
MAX_CELL = 96 * 1024  # environment strings are limited to 128 KiB each

BOOTSTRAP = r'''
import ast, base64, json, linecache, os, pickle, sys, traceback
_src = base64.b64decode(os.environ["MESOS_NB_CELL"]).decode("utf-8")
_out = os.path.join(os.environ.get("MESOS_SANDBOX") or os.getcwd(), "mesos_nb_result.json")
_fn = "<mesos cell>"
linecache.cache[_fn] = (len(_src), None, _src.splitlines(True), _fn)
def _save(d):
    with open(_out + ".tmp", "w") as f:
        json.dump(d, f)
    os.replace(_out + ".tmp", _out)
_ns = {"__name__": "__main__", "__builtins__": __builtins__}
_code = 0
try:
    _tree = ast.parse(_src, _fn)
    _last = None
    if _tree.body and isinstance(_tree.body[-1], ast.Expr):
        _last = ast.Expression(_tree.body.pop().value)
    exec(compile(_tree, _fn, "exec"), _ns)
    _val = eval(compile(_last, _fn, "eval"), _ns) if _last is not None else None
    try:
        _pk = base64.b64encode(pickle.dumps(_val)).decode("ascii")
    except Exception:
        _pk = None
    _save({"ok": True, "pickle": _pk, "repr": repr(_val), "pid": os.getpid()})
except BaseException as _e:
    _frames = [f for f in traceback.extract_tb(_e.__traceback__) if f.filename != "<string>"]
    _tb = "".join(["Traceback (most recent call last):\n"] + traceback.format_list(_frames)
                  + traceback.format_exception_only(type(_e), _e))
    _save({"ok": False, "ename": type(_e).__name__, "evalue": str(_e), "traceback": _tb,
           "pid": os.getpid()})
    _code = 1
sys.stdout.flush()
sys.stderr.flush()
sys.exit(_code)
'''


class RemoteValue:
    """A value that could not be unpickled in the kernel; ``repr()`` is the remote repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def cell_command(source: str) -> tuple[list[str], dict[str, str]]:
    encoded = base64.b64encode(source.encode("utf-8")).decode("ascii")
    if len(encoded) > MAX_CELL:
        raise MesosNotebookError(f"the cell is too large to ship as a task ({len(source)} bytes; "
                                 f"the limit is about {MAX_CELL * 3 // 4} bytes): put the code in a module")
    pythonpath = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)
    env = {"MESOS_NB_CELL": encoded, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
    return [sys.executable, "-u", "-c", BOOTSTRAP], env


def _progress_text(task: Task) -> str:
    if task.phase == "requested":
        return f"task {task.id}: {task.waiting or 'waiting for an offer'}"
    where = f" on {task.hostname}" if task.hostname else ""
    if task.phase == "launching":
        return f"task {task.id}: launching{where} ({amounts_text(task.requested)})"
    if task.phase == "running":
        return f"task {task.id}: running{where}"
    took = task.history[-1][0] - task.history[0][0]
    return f"task {task.id}: {task.state.replace('TASK_', '').lower()}{where} in {took:.1f} s"


def run_cell(framework: NotebookFramework, source: str, *, cpus: float, mem: float, gpus: float = 0.0,
             name: str | None = None, constraints: dict[str, str] | None = None,
             timeout: float | None = None, poll: float = 0.25, progress: bool = True) -> Any:
    """Run ``source`` on the cluster; stream its output; return its last expression's value."""
    cmd, env = cell_command(source)
    task = framework.submit(cmd, cpus=cpus, mem=mem, gpus=gpus, name=name or "cell",
                            constraints=constraints, env=env)
    task.command = "%%mesos task (cell)"
    framework.last_cell_task = task  # type: ignore[attr-defined]
    line = LiveLine(progress)
    deadline = None if timeout is None else time.monotonic() + timeout
    followers: list[Any] = []
    shown_wait = 0.0
    last_why = time.monotonic()
    try:
        while True:
            if task.phase == "requested" and time.monotonic() - last_why >= 1.0:
                last_why = time.monotonic()
                framework.refresh_waiting()
            line.show(_progress_text(task), important=False)
            if task.phase == "requested" and time.monotonic() - task.created > 3 + shown_wait:
                line.show(_progress_text(task), important=True)
                shown_wait += 30  # outside a kernel, repeat the reason every 30 s
            if not followers and task.agent_id and (task.phase == "running" or task.done):
                with contextlib.suppress(MesosNotebookError):
                    box = task.sandbox(timeout=5)
                    followers = [box.follower("stdout", sys.stdout), box.follower("stderr", sys.stderr)]
            for f in followers:
                with contextlib.suppress(MesosClientError, ValueError):
                    f.poll()
            if task.done:
                break
            if deadline is not None and time.monotonic() > deadline:
                task.kill(wait=10)
                raise MesosNotebookError(f"the cell's task {task.id} did not finish within {timeout:g} s "
                                         f"and was killed ({task.state})")
            with task.cond:
                if not task.done:
                    task.cond.wait(poll)
        drain(followers)
    except KeyboardInterrupt:
        task.kill(wait=5)
        raise
    line.show(_progress_text(task))
    return _result(task)


def _result(task: Task) -> Any:
    where = f"{task.hostname} ({task.agent_id})" if task.agent_id else "an agent"
    raw = ""
    if task.agent_id:
        with contextlib.suppress(MesosNotebookError, MesosClientError):
            raw = task.sandbox(timeout=5).read(RESULT_FILE)
    if not raw:
        why = f": {task.message}" if task.message else ""
        raise MesosNotebookError(f"the cell's task {task.id} ended {task.state} without a result{why}")
    try:
        res = json.loads(raw)
    except ValueError:
        raise MesosNotebookError(f"the cell's task {task.id} wrote an unreadable result") from None
    task.remote_pid = res.get("pid")  # type: ignore[attr-defined]
    if not res.get("ok"):
        raise RemoteTaskError(res.get("ename", "Exception"), res.get("evalue", ""),
                              res.get("traceback", ""), task.id, where)
    if res.get("pickle"):
        try:
            return pickle.loads(base64.b64decode(res["pickle"]))  # noqa: S301 - our own task's output
        except Exception:
            pass
    text = res.get("repr")
    return None if text in (None, "None") else RemoteValue(text)


__all__ = ["BOOTSTRAP", "RESULT_FILE", "RemoteValue", "cell_command", "run_cell"]
