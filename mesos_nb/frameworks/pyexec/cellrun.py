"""Run one cell or one call inside the forked child and describe the outcome as a result dict.

Pure apart from executing the user's code: the executor's shell forks, points fd 1/2 at its
pipes and calls :func:`run_payload`; the dict it returns is the ``TaskStatus.data`` of the
task's end (see ``wire.py``). A cell runs the way IPython runs one: the last expression is
evaluated separately and is the cell's value. Each cell starts from a fresh ``__main__``
namespace in a fresh child, so cells never see each other's globals.
"""

from __future__ import annotations

import ast
import base64
import linecache
import os
import pickle
import traceback
from typing import Any

from .wire import CELL_FILENAME

_HERE = os.path.abspath(__file__)


def _pickled(value: Any) -> str | None:
    """Plain pickle first (no import: the child runs inside the container's CPU quota); values
    of classes defined in the cell need cloudpickle, which carries them by value."""
    try:
        data = pickle.dumps(value)
    except Exception:
        try:
            import cloudpickle

            data = cloudpickle.dumps(value)
        except Exception:
            return None
    return base64.b64encode(data).decode("ascii")


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as e:  # a broken __repr__ must not lose the result
        return f"<unrepresentable {type(value).__name__}: {e}>"


def ok_result(value: Any) -> dict[str, Any]:
    return {"ok": True, "pickle": _pickled(value), "repr": _safe_repr(value), "pid": os.getpid()}


def error_result(exc: BaseException) -> dict[str, Any]:
    """The exception and the traceback of the user's frames only (ours are left out)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename) != _HERE]
    tb = "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames),
                  *traceback.format_exception_only(type(exc), exc)])
    res: dict[str, Any] = {"ok": False, "ename": type(exc).__name__, "evalue": str(exc), "traceback": tb,
                           "pid": os.getpid()}
    exc.__traceback__ = None
    res["exception"] = _pickled(exc)
    return res


def run_cell(source: str) -> dict[str, Any]:
    linecache.cache[CELL_FILENAME] = (len(source), None, source.splitlines(True), CELL_FILENAME)
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        tree = ast.parse(source, CELL_FILENAME)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, CELL_FILENAME, "exec"), ns)  # noqa: S102 - running the user's cell is the job
        value = eval(compile(last, CELL_FILENAME, "eval"), ns) if last is not None else None  # noqa: S307
    except BaseException as e:  # SystemExit and KeyboardInterrupt of the cell are its result too
        return error_result(e)
    return ok_result(value)


def run_call(pickled: bytes) -> dict[str, Any]:
    try:
        fn, args, kwargs, sources = pickle.loads(pickled)  # noqa: S301 - sent by this notebook's own kernel
        for name, text in sources.items():  # for the traceback: fn's file and a notebook cell's source
            if text:
                linecache.cache[name] = (len(text), None, text.splitlines(True), name)
            code = getattr(fn, "__code__", None)
            if code is not None and code.co_filename == "<dynamic-code>":  # cloudpickle's placeholder
                fn.__code__ = code.replace(co_filename=name)
    except BaseException as e:
        res = error_result(e)
        res["evalue"] = f"the function could not be unpickled on the agent: {e}"
        return res
    try:
        value = fn(*args, **kwargs)
    except BaseException as e:
        return error_result(e)
    return ok_result(value)


def run_payload(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["kind"] == "cell":
        return run_cell(payload["source"])
    return run_call(payload["pickle"])


__all__ = ["error_result", "ok_result", "run_call", "run_cell", "run_payload"]
