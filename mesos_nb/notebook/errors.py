"""Errors the notebook shows as one readable sentence (never the library's traceback)."""

from __future__ import annotations

import argparse
from typing import Any


class MesosNotebookError(Exception):
    """A user-facing failure: IPython renders it as one line, ``MesosError: <sentence>``."""

    def _render_traceback_(self) -> list[str]:
        return [f"MesosError: {self}"]


class RemoteTaskError(MesosNotebookError):
    """A ``%%mesos task`` cell raised on the cluster; carries the remote traceback text."""

    def __init__(self, ename: str, evalue: str, traceback: str, task_id: str, where: str) -> None:
        self.ename = ename
        self.evalue = evalue
        self.remote_traceback = traceback
        self.task_id = task_id
        self.where = where
        super().__init__(f"{ename}: {evalue}" if evalue else ename)

    def _render_traceback_(self) -> list[str]:
        head = f"Remote traceback (task {self.task_id} on {self.where}):"
        return [head, *self.remote_traceback.rstrip("\n").splitlines()]




class MagicParser(argparse.ArgumentParser):
    """argparse for ``%mesos SUB`` options: a bad option is one sentence, never SystemExit."""

    def error(self, message: str) -> Any:
        raise MesosNotebookError(f"{message} (see %mesos help)")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise MesosNotebookError(message or "see %mesos help")


def constraints(items: list[str] | None) -> dict[str, str]:
    """``--attr K=V`` options -> constraints, a bad one as a notebook error."""
    from mesos_nb.scheduler.tasks import parse_constraints

    try:
        return parse_constraints(items or [])
    except ValueError as e:
        raise MesosNotebookError(str(e)) from None


def role_arg(role: str) -> str:
    """``--role R``: a valid Mesos role name (``eng/ml`` nests), else one sentence."""
    from mesos_nb.master.validation import validate_role

    problem = validate_role(role)
    if problem:
        raise MesosNotebookError(f"bad --role {role!r}: {problem}")
    return role


__all__ = ["MagicParser", "MesosNotebookError", "RemoteTaskError", "constraints", "role_arg"]
