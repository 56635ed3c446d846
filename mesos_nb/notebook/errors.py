"""Errors the notebook shows as one readable sentence (never the library's traceback)."""

from __future__ import annotations


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


__all__ = ["MesosNotebookError", "RemoteTaskError"]
