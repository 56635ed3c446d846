"""Sandbox directories in the Mesos on-disk layout.

``<work_dir>/slaves/<agent_id>/frameworks/<fw>/executors/<ex>/runs/<container_id>`` with a
``runs/latest`` symlink to the newest run. Command tasks use the task id as executor id,
like Mesos' command executor. The virtual path ``/frameworks/<fw>/executors/<ex>/runs/latest``
is what ``/files`` attaches besides the real directory.
"""

from __future__ import annotations

import os
import re


def executor_dir(work_dir: str, agent_id: str, framework_id: str, executor_id: str) -> str:
    return os.path.join(
        work_dir, "slaves", agent_id, "frameworks", framework_id, "executors", executor_id
    )


def run_dir(work_dir: str, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> str:
    return os.path.join(executor_dir(work_dir, agent_id, framework_id, executor_id), "runs", container_id)


def latest_link(work_dir: str, agent_id: str, framework_id: str, executor_id: str) -> str:
    return os.path.join(executor_dir(work_dir, agent_id, framework_id, executor_id), "runs", "latest")


def virtual_path(framework_id: str, executor_id: str) -> str:
    return f"/frameworks/{framework_id}/executors/{executor_id}/runs/latest"


def create_sandbox(work_dir: str, agent_id: str, framework_id: str, executor_id: str, container_id: str,
                   *, known: set[str] | None = None) -> str:
    """Create the run directory and point ``runs/latest`` at it; returns the run directory.

    ``known``: the ``.../frameworks/<fw>/executors`` directories already created (the caller
    keeps the set; it is updated here). With a known parent a new executor costs three
    ``mkdir`` and one ``symlink``, no walk up the tree and no rename."""
    executors = os.path.join(work_dir, "slaves", agent_id, "frameworks", framework_id, "executors")
    runs = f"{executors}/{executor_id}/runs"  # ids are valid_id()s: no "/" to normalise
    path = f"{runs}/{container_id}"
    link = f"{runs}/latest"
    if known is not None and executors in known:
        try:
            os.mkdir(os.path.dirname(runs))
        except FileExistsError:
            pass  # an executor id used before: the general path below
        except FileNotFoundError:
            known.discard(executors)  # removed behind our back
        else:
            os.mkdir(runs)
            os.mkdir(path)
            os.symlink(container_id, link)
            return path
    os.makedirs(path, exist_ok=True)
    if known is not None:
        known.add(executors)
    tmp = f"{link}.{container_id}.tmp"
    try:
        os.symlink(container_id, tmp)
        os.replace(tmp, link)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


_BAD_ID_CHAR = re.compile(r"[/\\\x00-\x1f\x7f]")


def valid_id(value: str) -> bool:
    """Mesos ``validateID``: non-empty, <= 255 chars, not . or .., no / \\ or control chars."""
    if not value or len(value) > 255 or value in (".", ".."):
        return False
    return _BAD_ID_CHAR.search(value) is None  # one C scan (a per-character loop cost 5 % of a launch)


__all__ = [
    "create_sandbox", "executor_dir", "run_dir", "latest_link", "virtual_path", "valid_id",
]
