"""``%mesos roles`` and ``%mesos quota``, and the role part of "why it waits": read through
:mod:`mesos_nb.client.roles` (``/master/roles``, GET_QUOTA, the DRF shares), so the notebook
and ``mesos-nb roles|quota`` print the same rows."""

from __future__ import annotations

from typing import Any

from mesos_nb.client import MasterClient, MesosClientError
from mesos_nb.client.roles import (
    QUOTA_HEADERS,
    ROLE_HEADERS,
    quota_rows,
    read_roles,
    role_rows,
    role_wait_reason,
    roles_and_free,
)

from .display import Table
from .errors import MesosNotebookError


def _client(magics: Any) -> MasterClient:
    try:
        return MasterClient(magics._master_url())
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None


def roles(magics: Any, rest: str = "") -> Table:
    try:
        rows = role_rows(read_roles(_client(magics)))
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None
    return Table("Roles", ROLE_HEADERS, rows)


def quota(magics: Any, rest: str = "") -> Table:
    try:
        rows = quota_rows(read_roles(_client(magics)))
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None
    note = None if rows else "no role has quota (set it with the operator API's UPDATE_QUOTA)"
    return Table("Quota", QUOTA_HEADERS, rows, note=note)


def wait_reason(master_url: str, role: str, requested: dict[str, float]) -> str | None:
    """The role's part of why a task waits (quota limit, reservations, others' guarantees), or
    None; a master that cannot be asked is no reason (the caller says what it knows)."""
    try:
        found, free = roles_and_free(MasterClient(master_url))
    except (MesosClientError, ValueError, KeyError):
        return None
    return role_wait_reason(role, requested, found, free)


__all__ = ["quota", "roles", "wait_reason"]
