"""Persistent volumes in resource tags: the pure helpers the master and the agent share.

A volume is reserved ``disk`` whose tag (see :mod:`.resources`) carries ``disk.persistence``
and ``disk.volume``; these read it, drop it (the disk a volume was made from) and say whether
its ``container_path`` may be used inside a sandbox.
"""

from __future__ import annotations

from .resources import SEP, make_tag, role_of, tag_extra


def volume_info(tag: str) -> tuple[str, str, str] | None:
    """(role, persistence id, container path) of a persistent volume's tag, else None."""
    if SEP not in tag:
        return None
    disk = tag_extra(tag).get("d") or {}
    pid = (disk.get("persistence") or {}).get("id")
    if not isinstance(pid, str):
        return None
    path = (disk.get("volume") or {}).get("container_path")
    return role_of(tag), pid, path if isinstance(path, str) else ""


def strip_volume(tag: str) -> str:
    """The tag of the reserved disk a volume was created from (its disk info dropped)."""
    if SEP not in tag:
        return tag
    extra = tag_extra(tag)
    return make_tag(role_of(tag), extra.get("r"), None)


def container_path_problem(path: object) -> str | None:
    """Why a persistent volume's ``container_path`` cannot be used, or None: it names a place
    inside the sandbox, so it must be relative and must not climb out with ``..``."""
    if not isinstance(path, str) or not path.strip("/"):
        return "container_path must be a non-empty relative path"
    if path.startswith("/"):
        return f"container_path '{path}' must be relative to the sandbox, not an absolute host path"
    if any(ord(c) < 32 for c in path):
        return f"container_path {path!r} contains a control character"
    if any(part in ("..", ".") for part in path.split("/")):
        return f"container_path '{path}' must not contain '.' or '..' components"
    return None


__all__ = ["container_path_problem", "strip_volume", "volume_info"]
