"""Exit statuses and the task's output files: how a wait status is read, recorded and told.

Kept apart from the containerizer so the recovery path and the executors share one reading.
Stdlib only: ``supervisor.py`` and ``switchboard.py`` run as ``python -S`` scripts and import
this module as a sibling (``wait_status``, ``record_status``), as the pid-namespace waiter does.
"""

from __future__ import annotations

import contextlib
import os
import signal

UNKNOWN_STATUS = -1  # a recovered container whose exit status nobody recorded


def _open_out(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _status_from_returncode(rc: int) -> int:
    """Re-encode a ``Popen.returncode`` as a raw wait status."""
    if rc < 0:
        return -rc & 0x7F
    return (rc & 0xFF) << 8


def wait_status(pid: int) -> int:
    """The raw wait status of child ``pid``; a shell's "not found" (127) if it is not our child."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 127 << 8


def record_status(path: str, status: int) -> None:
    """Write ``status`` to ``path`` so it survives a crash: fsync, atomic rename, fsync the directory."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"%d\n" % status)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_status_file(path: str | None) -> int | None:
    if not path:
        return None
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def describe_status(status: int) -> tuple[bool, str]:
    """(succeeded, Mesos message) for a raw wait status."""
    if status == UNKNOWN_STATUS:
        return False, "Executor terminated while the agent was down (exit status unknown)"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return code == 0, f"Command exited with status {code}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.strsignal(sig) or f"signal {sig}"
        return False, f"Command terminated with signal {name}"
    return False, f"Command exited with unknown status {status}"
