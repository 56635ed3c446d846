"""One cell's process: forked from the warm executor, so it starts with every preloaded
module imported and nothing of any other cell.

:func:`fork_spare` forks ahead of time (the child waits for its task on a pipe); the child becomes its own process group (a kill reaches whatever
the cell started), writes stdout/stderr into two pipes and its result into a third, and
leaves with ``os._exit`` (it never returns into the executor's event loop).
:class:`MemoryWatch` is the per-cell memory limit: the cell's own memory is the growth of the
child's resident set beyond what it shared with the executor at the fork, plus the whole
resident set of anything the cell started.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import stat
import sys
from collections.abc import Iterable
from typing import Any

from .cellrun import run_payload
from .wire import encode_result


def rss(pid: int) -> int:
    """Resident bytes of one process (0 when it is gone), as psutil reads /proc/<pid>/statm."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from ``/proc/<pid>/task/<tid>/children`` (None where the
    kernel has no such files): a few small reads, where psutil scans every process."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Processes started by the cell (an empty list when the child is gone)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        if kids is None:
            return _descendants_psutil(pid)
        out.extend(kids)
        todo.extend(kids)
    return out


def _descendants_psutil(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


class MemoryWatch:
    """Decides when a cell is over its ``--mem``: pure arithmetic over measured numbers."""

    def __init__(self, limit_mb: float, base_rss: int) -> None:
        self.limit_mb = limit_mb
        self.limit = int(limit_mb * 1024 * 1024)
        self.base = base_rss
        self.peak = 0

    def used(self, child_rss: int, others_rss: Iterable[int] = ()) -> int:
        u = max(0, child_rss - self.base) + sum(others_rss)
        self.peak = max(self.peak, u)
        return u

    def over(self, child_rss: int, others_rss: Iterable[int] = ()) -> bool:
        return self.limit > 0 and self.used(child_rss, others_rss) > self.limit


def _close_sockets(keep: set[int]) -> None:
    """The executor's connections to the agent must not live on in a cell."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd <= 2 or fd in keep:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            pass


def _text_stream(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True, write_through=True)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _libc_prctl() -> Any:
    try:
        import ctypes  # imported once in the executor, not in every cell

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):
        return None


_PRCTL = _libc_prctl()


def _die_with_parent() -> None:
    """A cell must not outlive its executor (posix isolation kills only the executor's group)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(directory: str, job_r: int, out_w: int, err_w: int, res_w: int) -> int:
    os.setpgid(0, 0)
    _die_with_parent()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    _close_sockets({res_w, job_r})
    sys.stdout = _text_stream(1)
    sys.stderr = _text_stream(2)
    os.chdir(directory)
    job = _read_all(job_r)  # waits here, forked ahead of time, until a task comes
    os.close(job_r)
    if not job:
        return 0  # the executor is ending: this spare was never used
    task_id, payload = json.loads(job)
    if payload.get("kind") == "call":
        payload["pickle"] = base64.b64decode(payload["pickle"])
    os.environ["MESOS_TASK_ID"] = task_id
    os.environ.pop("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", None)  # the executor's, not the cell's
    res = run_payload(payload)
    sys.stdout.flush()
    sys.stderr.flush()
    data = encode_result(res)
    view = memoryview(data)
    while view:
        view = view[os.write(res_w, view):]
    # closing the pipes ends the cell for the executor; the process' own exit (unmapping a
    # big interpreter) then happens off the round trip
    for fd in (res_w, 1, 2):
        os.close(fd)
    return 0 if res["ok"] else 1


class Spare:
    """A child forked ahead of time from the warm state, blocked until it is given a task, so
    that a LAUNCH costs one pipe write instead of a fork. ``base`` is the executor's resident
    set at the fork (what the child shares with it)."""

    def __init__(self, pid: int, fds: dict[str, int], res_fd: int, job_w: int, base: int) -> None:
        self.pid = pid
        self.fds = fds
        self.res_fd = res_fd
        self.job_w = job_w
        self.base = base

    def start(self, task_id: str, payload: dict[str, Any]) -> None:
        p = dict(payload)
        if p.get("kind") == "call":
            p["pickle"] = base64.b64encode(p["pickle"]).decode("ascii")
        view = memoryview(json.dumps([task_id, p]).encode())
        try:
            while view:
                view = view[os.write(self.job_w, view):]
        finally:
            os.close(self.job_w)

    def discard(self) -> None:
        """Let an unused spare go (it exits on the empty job) and close our ends."""
        for fd in (self.job_w, self.res_fd, *self.fds.values()):
            with contextlib.suppress(OSError):
                os.close(fd)


def fork_spare(directory: str) -> Spare:
    """Fork a child that waits for its task: stdout/stderr/result read ends are non-blocking."""
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            s.flush()
    base = rss(os.getpid())
    job_r, job_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the cell
        code = 70
        try:
            for fd in (job_w, out_r, err_r, res_r):
                os.close(fd)
            code = _child(directory, job_r, out_w, err_w, res_w)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    for fd in (job_r, out_w, err_w, res_w):
        os.close(fd)
    for fd in (out_r, err_r, res_r):
        os.set_blocking(fd, False)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    return Spare(pid, {"stdout": out_r, "stderr": err_r}, res_r, job_w, base)


def kill_cell(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the cell's whole process group (the cell leads it)."""
    for target in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            target()
            return
        except ProcessLookupError:
            continue
        except PermissionError:
            return


__all__ = ["MemoryWatch", "Spare", "descendants", "fork_spare", "kill_cell", "rss"]
