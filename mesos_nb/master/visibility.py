"""What a principal may see of the read-only endpoints: the ``view_frameworks``,
``view_tasks`` and ``view_executors`` ACLs applied to their JSON.

A pure function over the JSON documents the read side renders (``/master/state``,
``/master/frameworks``, ``/master/tasks``, ``/master/state-summary``), so the cached renders
stay shared by everyone and only callers an ACL restricts pay for a filtered copy. As in Mesos,
a framework is judged by its user, a task by its command's user (else its framework's), an
executor by its command's user (else its framework's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .acls import ACLs

VIEW_PATHS = {"/state", "/state.json", "/frameworks", "/tasks", "/state-summary"}
VIEW_ACTIONS = ("view_frameworks", "view_tasks", "view_executors")

# (framework id, task id) -> the task's command user, or None
TaskUser = Callable[[str, str], str | None]


def restricted(acls: ACLs) -> bool:
    """Could any of the view ACLs hide something? (Otherwise nothing is filtered.)"""
    return any(acls.constrains(a) for a in VIEW_ACTIONS)


def filter_view(doc: Any, acls: ACLs, principal: str | None, task_user: TaskUser,
                framework_users: dict[str, str]) -> Any:
    """A copy of ``doc`` holding only what ``principal`` may view."""
    if not isinstance(doc, dict):
        return doc

    def allowed(action: str, user: str | None) -> bool:
        return acls.allowed(action, principal, [user] if user else None)

    def task_ok(t: dict[str, Any], fw_user: str | None) -> bool:
        user = task_user(str(t.get("framework_id", "")), str(t.get("id", ""))) or fw_user
        return allowed("view_tasks", user)

    def one_framework(fw: dict[str, Any]) -> dict[str, Any] | None:
        user = fw.get("user") or None
        if not allowed("view_frameworks", user):
            return None
        fw = dict(fw)
        for key in ("tasks", "completed_tasks", "unreachable_tasks"):
            if isinstance(fw.get(key), list):
                fw[key] = [t for t in fw[key] if isinstance(t, dict) and task_ok(t, user)]
        if isinstance(fw.get("executors"), list):
            fw["executors"] = [e for e in fw["executors"] if isinstance(e, dict) and allowed(
                "view_executors", ((e.get("command") or {}).get("user") if isinstance(e.get("command"), dict)
                                   else None) or user)]
        return fw

    out = dict(doc)
    for key in ("frameworks", "completed_frameworks", "unregistered_frameworks"):
        if isinstance(out.get(key), list):
            kept = (one_framework(f) if isinstance(f, dict) else None for f in out[key])
            out[key] = [f for f in kept if f is not None]
    if isinstance(out.get("tasks"), list):  # /master/tasks
        out["tasks"] = [t for t in out["tasks"] if isinstance(t, dict) and task_ok(
            t, framework_users.get(str(t.get("framework_id", ""))))]
    if isinstance(out.get("orphan_tasks"), list):
        out["orphan_tasks"] = []
    return out


__all__ = ["VIEW_ACTIONS", "VIEW_PATHS", "filter_view", "restricted"]
