"""One cell's process: forked from the warm executor, so it starts with every preloaded
module imported and nothing of any other cell.

:func:`fork_cell` forks; the child becomes its own process group (a kill reaches whatever
the cell started), writes stdout/stderr into two pipes and its result into a third, and
leaves with ``os._exit`` (it never returns into the executor's event loop).
:class:`MemoryWatch` is the per-cell memory limit: the cell's own memory is the growth of the
child's resident set beyond what it shared with the executor at the fork, plus the whole
resident set of anything the cell started.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import sys
from collections.abc import Iterable
from typing import Any

from .cellrun import run_payload
from .wire import encode_result

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int) -> int:
    """Resident bytes of one process (0 when it is gone), from /proc/<pid>/statm."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def descendants(pid: int) -> list[int]:
    """Processes started by the cell (psutil; an empty list when the child is gone)."""
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


def _child(task_id: str, payload: dict[str, Any], directory: str, out_w: int, err_w: int, res_w: int) -> int:
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    _close_sockets({res_w})
    sys.stdout = _text_stream(1)
    sys.stderr = _text_stream(2)
    os.environ["MESOS_TASK_ID"] = task_id
    os.chdir(directory)
    res = run_payload(payload)
    sys.stdout.flush()
    sys.stderr.flush()
    data = encode_result(res)
    view = memoryview(data)
    while view:
        view = view[os.write(res_w, view):]
    return 0 if res["ok"] else 1


def fork_cell(task_id: str, payload: dict[str, Any], directory: str) -> tuple[int, dict[str, int], int]:
    """Fork the cell's process: ``(pid, {"stdout": fd, "stderr": fd}, result_fd)`` (read ends,
    non-blocking)."""
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except (OSError, ValueError):
            pass
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the cell
        code = 70
        try:
            os.close(out_r)
            os.close(err_r)
            os.close(res_r)
            code = _child(task_id, payload, directory, out_w, err_w, res_w)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    for fd in (out_r, err_r, res_r):
        os.set_blocking(fd, False)
    return pid, {"stdout": out_r, "stderr": err_r}, res_r


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


__all__ = ["MemoryWatch", "descendants", "fork_cell", "kill_cell", "rss"]
