"""Exit statuses and the task's output files: how a wait status is read, recorded and told.

Kept apart from the containerizer so the recovery path and the executors share one reading.
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
