"""``%%mesos task``: run a cell's Python code as a task on the cluster.

Warm path (the default, :func:`run_warm_cell`): the cell is a task LAUNCHed into the warm
executor of its resource shape (``mesos_nb.frameworks.pyexec``; ``warm.py`` keeps one per
shape); the executor forks a child from its warm interpreter, streams the output back as
framework messages and puts the result in the terminal status update. No file is read.
``Cluster.submit(fn, *args)`` is the same path for a pickled call, returning a future.

Fresh path (``--fresh``, :func:`run_cell`): the cell's source travels base64-encoded in the task's environment
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
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from mesos_nb.client import MesosClientError, drain

from .display import LiveLine, amounts_text
from .errors import MesosNotebookError, RemoteTaskError
from .framework import NotebookFramework
from .task import Task
from .warm import WarmTask

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


def _follow(framework: NotebookFramework, task: Task, *, timeout: float | None, poll: float,
            step: Callable[[float], None], has_news: Callable[[], bool] = lambda: False) -> None:
    """Wait for ``task`` to end, the same way for both paths: ask the framework why it waits
    (once a second while no offer fits), call ``step(age)`` each round (progress line,
    output; ``age``: seconds since the task was submitted), wake early when ``has_news``, and
    kill the task past ``timeout`` or on an interrupt."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_why = time.monotonic()
    try:
        while True:
            if task.phase == "requested" and time.monotonic() - last_why >= 1.0:
                last_why = time.monotonic()
                framework.refresh_waiting()
            step(time.time() - task.created)  # TaskHandle.created is wall-clock time
            if task.done:
                return
            if deadline is not None and time.monotonic() > deadline:
                task.kill(wait=10)
                raise MesosNotebookError(f"the cell's task {task.id} did not finish within {timeout:g} s "
                                         f"and was killed ({task.state})")
            with task.cond:
                if not task.done and not has_news():
                    task.cond.wait(poll)
    except KeyboardInterrupt:
        task.kill(wait=5)
        raise


class _WaitNotice:
    """Say why a task waits for an offer after 3 s, and again every 30 s (outside a kernel
    the live line is not redrawn)."""

    def __init__(self) -> None:
        self.next_at = 3.0

    def due(self, task: Task, age: float) -> bool:
        if task.phase == "requested" and age > self.next_at:
            self.next_at += 30
            return True
        return False


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
    followers: list[Any] = []
    notice = _WaitNotice()

    def step(age: float) -> None:
        nonlocal followers
        line.show(_progress_text(task), important=notice.due(task, age))
        if not followers and task.agent_id and (task.phase == "running" or task.done):
            with contextlib.suppress(MesosNotebookError):
                box = task.sandbox(timeout=5)
                followers = [box.follower("stdout", sys.stdout), box.follower("stderr", sys.stderr)]
        for f in followers:
            with contextlib.suppress(MesosClientError, ValueError):
                f.poll()

    _follow(framework, task, timeout=timeout, poll=poll, step=step)
    drain(followers)
    line.show(_progress_text(task))
    return _result(task)


def _result(task: Task) -> Any:
    """The value of a fresh-process cell, from the result file of its sandbox."""
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
    return _value(task, res, where)


def _value(task: Task, res: dict[str, Any], where: str) -> Any:
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


# ============================================================================ the warm path
def _warm_progress(task: WarmTask) -> str:
    ex = task.executor
    if task.phase == "requested":
        return _progress_text(task)
    where = f" on {task.hostname}" if task.hostname else ""
    if not task.done and task.fresh_executor:
        pre = f", preloading {', '.join(ex.preload)}" if ex and ex.preload else ""
        return f"task {task.id}: starting a warm Python executor{where} (the first cell pays its start{pre})"
    if not task.done:
        return f"task {task.id}: running{where} in warm executor {task.executor_id}"
    took = task.history[-1][0] - task.history[0][0]
    first = " (this cell started the warm executor)" if task.fresh_executor else ""
    return f"task {task.id}: {task.state.replace('TASK_', '').lower()}{where} in {took:.2f} s{first}"


def _write_output(task: WarmTask) -> None:
    for stream, text in task.take_output():
        (sys.stdout if stream == "stdout" else sys.stderr).write(text)


def warm_result(task: WarmTask) -> dict[str, Any]:
    """The result dict of a finished warm task, or a one-sentence error saying how it ended."""
    from mesos_nb.frameworks.pyexec import decode_result

    ex = task.executor
    if task.reason == "REASON_CONTAINER_LIMITATION_MEMORY":
        raise MesosNotebookError(f"the cell's task {task.id} was killed for using more memory than its "
                                 f"--mem: {task.message} (the warm executor keeps running)")
    res = decode_result(task.data)
    if res is not None and res.get("file"):
        try:
            res = json.loads(task.sandbox(timeout=5).read(res["file"]))
        except (MesosNotebookError, MesosClientError, ValueError):
            res = None
    if res is not None and "ok" in res:
        return res
    if ex is not None and ex.state == "dead":
        raise MesosNotebookError(
            f"the warm executor {ex.executor_id} on {ex.hostname} died while running the cell's task "
            f"{task.id} ({task.message or task.reason or task.state}); the next cell starts a fresh executor")
    why = f": {task.message}" if task.message else ""
    raise MesosNotebookError(f"the cell's task {task.id} ended {task.state} without a result{why}")


def run_warm_cell(framework: NotebookFramework, source: str, *, cpus: float, mem: float, gpus: float = 0.0,
                  name: str | None = None, constraints: dict[str, str] | None = None,
                  preload: list[str] | None = None, idle_timeout: float = 600.0,
                  executor_cpus: float = 0.5, executor_mem: float = 128.0,
                  timeout: float | None = None, poll: float = 0.25, progress: bool = True) -> Any:
    """Run ``source`` in the warm executor of its shape; stream its output; return its value."""
    from mesos_nb.frameworks.pyexec import cell_payload

    payload = cell_payload(source)
    task = framework.submit_warm(payload, cpus=cpus, mem=mem, gpus=gpus, name=name or "cell",
                                 constraints=constraints, preload=preload or [], idle_timeout=idle_timeout,
                                 executor_cpus=executor_cpus, executor_mem=executor_mem)
    framework.last_cell_task = task  # type: ignore[attr-defined]
    line = LiveLine(progress)
    notice = _WaitNotice()

    def step(age: float) -> None:
        if notice.due(task, age):
            line.show(_warm_progress(task), important=True)
        elif age > 0.2 or (task.fresh_executor and not task.done):  # a quick warm cell draws nothing
            line.show(_warm_progress(task), important=task.fresh_executor and not task.done)
        _write_output(task)

    _follow(framework, task, timeout=timeout, poll=poll, step=step, has_news=lambda: bool(task._out))
    # the output messages and the terminal update travel separately: wait for the rest
    want = task.expected_output()
    end = time.monotonic() + 2.0
    with task.cond:
        while any(task.received[s] < want[s] for s in want) and time.monotonic() < end:
            task.cond.wait(0.05)
    _write_output(task)
    if time.time() - task.created > 0.2 or task.fresh_executor:
        line.show(_warm_progress(task))
    res = warm_result(task)
    for w in res.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    where = f"{task.hostname} ({task.agent_id})" if task.agent_id else "an agent"
    return _value(task, res, where)


def resolve_future(task: WarmTask) -> None:
    """Settle ``task.future`` from the task's end (called on the framework's loop thread)."""
    fut = task.future
    if fut is None or fut.done():
        return
    try:
        res = warm_result(task)
        where = f"{task.hostname} ({task.agent_id})" if task.agent_id else "an agent"
        try:
            fut.set_result(_value(task, res, where))
        except RemoteTaskError as err:
            fut.set_exception(_local_exception(res, err))
    except MesosNotebookError as e:
        fut.set_exception(e)


def submit_call(framework: NotebookFramework, fn: Any, args: tuple, kwargs: dict[str, Any], *,
                cpus: float, mem: float, preload: list[str], idle_timeout: float = 600.0,
                executor_cpus: float = 0.5, executor_mem: float = 128.0) -> Future:
    """``fn(*args, **kwargs)`` as a warm task; the returned future has the task as ``.task``."""
    from mesos_nb.frameworks.pyexec import call_payload

    try:
        import cloudpickle  # functions defined in the notebook travel by value

        pickled = cloudpickle.dumps((fn, args, kwargs, _sources(fn)))
    except ImportError:
        pickled = pickle.dumps((fn, args, kwargs, _sources(fn)))
    except Exception as e:
        raise MesosNotebookError(f"the call cannot be sent to the cluster: {type(e).__name__}: {e}") from None
    fut: Future = Future()
    name = getattr(fn, "__name__", "call")
    task = framework.submit_warm(call_payload(pickled), cpus=cpus, mem=mem, name=name if name.isidentifier() else "call",
                                 preload=preload, idle_timeout=idle_timeout, executor_cpus=executor_cpus,
                                 executor_mem=executor_mem, future=fut, on_done=resolve_future)
    fut.task = task  # type: ignore[attr-defined]
    fut.set_running_or_notify_cancel()
    return fut


def _sources(fn: Any) -> dict[str, str]:
    """The kernel's source of ``fn``'s file when only the kernel has it (a notebook cell), so
    that the remote traceback shows the lines."""
    import linecache

    code = getattr(fn, "__code__", None)
    name = getattr(code, "co_filename", "")
    if not name:
        return {}
    lines = [] if os.path.exists(name) else linecache.getlines(name)
    return {name: "".join(lines)}


def _local_exception(res: dict[str, Any], err: RemoteTaskError) -> BaseException:
    """The function's own exception when it unpickles here (``except ZeroDivisionError`` works),
    with the remote traceback as its cause; else the RemoteTaskError itself."""
    if res.get("exception"):
        try:
            exc = pickle.loads(base64.b64decode(res["exception"]))  # noqa: S301 - our own task's output
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            exc.__cause__ = err
            exc.remote_traceback = err.remote_traceback  # type: ignore[attr-defined]
            return exc
    return err


__all__ = ["BOOTSTRAP", "RESULT_FILE", "RemoteValue", "cell_command", "resolve_future", "run_cell",
           "run_warm_cell", "submit_call", "warm_result"]
