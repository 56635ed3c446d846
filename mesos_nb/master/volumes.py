"""Persistent volumes: CREATE / DESTROY / GROW_VOLUME / SHRINK_VOLUME from a framework's
ACCEPT and the operator's CREATE_VOLUMES / DESTROY_VOLUMES / GROW_VOLUME / SHRINK_VOLUME.

A volume is reserved disk with ``disk.persistence`` (id, principal) and ``disk.volume``
(container_path, mode RW): in :class:`~mesos_nb.protocol.resources.Resources` the disk info
is part of the component's tag, so a volume never merges with plain reserved disk and is
offered only where its reservation goes (its role). CREATE converts reserved disk into a
volume, DESTROY converts it back, GROW takes more reserved disk into it, SHRINK gives some
back. Each is a conversion of the agent's total through :mod:`.reservations` (registry,
``CHECKPOINT_RESOURCES`` to the agent, which makes or deletes the directory, operation
feedback), so volumes survive agent and master restarts the way reservations do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ..protocol import messages as m
from ..protocol.resources import Resources, role_of
from ..protocol.volumes import container_path_problem, strip_volume, volume_info
from . import reservations as rsv
from .model import Agent, Framework
from .reservations import OperationConflict, OperationError
from .state import CallError, MasterState
from .validation import validate_id

OPERATIONS = ("CREATE", "DESTROY", "GROW_VOLUME", "SHRINK_VOLUME")
OPERATOR_CALLS = {"CREATE_VOLUMES": "CREATE", "DESTROY_VOLUMES": "DESTROY",
                  "GROW_VOLUME": "GROW_VOLUME", "SHRINK_VOLUME": "SHRINK_VOLUME"}


def _ids(res: Resources) -> set[tuple[str, str]]:
    """(role, persistence id) of every volume in ``res``."""
    out = set()
    for tag in res.tags():
        info = volume_info(tag)
        if info is not None:
            out.add(info[:2])
    return out


def _volume(item: Any, what: str, principal: str | None, creating: bool) -> Resources:
    """One volume resource, checked as Mesos' ``validateCreate`` / ``validateDestroy`` do."""
    if isinstance(item, m.Resource):
        item = m.to_builtins(item)
    if not isinstance(item, dict):
        raise OperationError(f"Expecting each of '{what}' to be a Resource object")
    if item.get("name") != "disk" or item.get("type") != "SCALAR":
        raise OperationError(f"Only SCALAR 'disk' resources can be persistent volumes, not '{item.get('name')}'")
    if item.get("revocable") is not None:
        raise OperationError("Persistent volumes cannot be made of revocable resources")
    disk = item.get("disk") if isinstance(item.get("disk"), dict) else {}
    persistence, volume = disk.get("persistence"), disk.get("volume")
    pid = persistence.get("id") if isinstance(persistence, dict) else None
    if not isinstance(pid, str):
        if volume is not None:
            raise OperationError("Non-persistent volume not supported: 'disk.persistence.id' is missing")
        raise OperationError(f"'{what}' must be persistent volumes: 'disk.persistence.id' is missing")
    problem = validate_id(pid, "Persistence ID")
    if problem:
        raise OperationError(problem)
    if creating:
        if not isinstance(volume, dict):
            raise OperationError(f"Persistent volume '{pid}': expecting 'disk.volume' to be present")
        if volume.get("mode") == "RO":
            raise OperationError("Read-only persistent volume not supported")
        if volume.get("mode") != "RW":
            raise OperationError(f"Persistent volume '{pid}': expecting 'disk.volume.mode' to be RW")
        if volume.get("host_path"):
            raise OperationError(f"Persistent volume '{pid}': expecting 'disk.volume.host_path' to be unset")
        problem = container_path_problem(volume.get("container_path"))
        if problem:
            raise OperationError(f"Persistent volume '{pid}': {problem}")
        if principal is not None and persistence.get("principal") != principal:
            raise OperationError(f"Persistent volume '{pid}': 'disk.persistence.principal' "
                                 f"'{persistence.get('principal')}' does not match the caller's '{principal}'")
    res = rsv.parse([item], what)
    if any(role_of(tag) == "*" for tag in res.tags()):
        raise OperationError(f"Persistent volume '{pid}' must be made of reserved disk, not unreserved disk")
    return res


def _volumes(items: Any, what: str, principal: str | None, creating: bool) -> Resources:
    if not isinstance(items, list) or not items:
        raise OperationError(f"Expecting '{what}' to be a non-empty list of persistent volumes")
    total, seen = Resources(), set()
    for item in items:
        res = _volume(item, what, principal, creating)
        for key in _ids(res):
            if key in seen:
                raise OperationError(f"Persistent volume ID '{key[1]}' appears more than once for role '{key[0]}'")
            seen.add(key)
        total = total + res
    return total


def _check_new(agent: Agent, volumes: Resources) -> None:
    """A persistence id is unique per role on each agent (Mesos)."""
    for role, pid in sorted(_ids(volumes) & _ids(agent.total)):
        raise OperationError(f"Persistent volume ID '{pid}' for role '{role}' already exists on agent {agent.id}")


def _check_unused(st: MasterState, agent: Agent, volumes: Resources) -> None:
    """DESTROY / GROW / SHRINK need the volume free: no live task or executor uses it."""
    wanted = _ids(volumes)
    for fid, tid in sorted(agent.tasks):
        fw = st.frameworks.get(fid)
        task = fw.tasks.get(tid) if fw is not None else None
        if task is None or m.is_terminal(task.state):
            continue
        for _role, pid in sorted(_ids(task.resources) & wanted):
            raise OperationConflict(f"Persistent volume '{pid}' is in use by task '{tid}' of framework '{fid}'")
    for fw in st.frameworks.values():
        for eid, info in fw.executors.get(agent.id, {}).items():
            used = _ids(Resources.from_proto(info.resources)) & wanted if info.resources else set()
            for _role, pid in sorted(used):
                raise OperationConflict(
                    f"Persistent volume '{pid}' is in use by executor '{eid}' of framework '{fw.id}'")


def _single(payload: Any, key: str, what: str, principal: str | None) -> Resources:
    vol = _volumes([payload.get(key)] if isinstance(payload, dict) else None, what, principal, False)
    if len(_ids(vol)) != 1:
        raise OperationError(f"Expecting '{what}' to be one persistent volume")
    return vol


def conversion(st: MasterState, agent: Agent, op_type: str, body: Any, field: str,
               principal: str | None) -> tuple[Resources, Resources]:
    """(consumed, converted) of one volume operation; OperationError when invalid,
    OperationConflict when the volume is in use."""
    if not isinstance(body, dict):
        raise OperationError(f"Expecting '{field}' to be present")
    if op_type == "CREATE":
        converted = _volumes(body.get("volumes"), f"{field}.volumes", principal, True)
        _check_new(agent, converted)
        return converted.map_tags(strip_volume), converted
    if op_type == "DESTROY":
        consumed = _volumes(body.get("volumes"), f"{field}.volumes", None, False)
        _check_unused(st, agent, consumed)
        return consumed, consumed.map_tags(strip_volume)
    volume = _single(body, "volume", f"{field}.volume", None)
    [vtag] = volume.tags()
    _check_unused(st, agent, volume)
    if op_type == "GROW_VOLUME":
        addition = rsv.parse([body.get("addition")] if body.get("addition") is not None else None,
                             f"{field}.addition")
        if addition.tags() != {strip_volume(vtag)} or addition.names() != {"disk"}:
            raise OperationError("GROW_VOLUME: 'addition' must be disk with the volume's reservation and no disk info")
        return volume + addition, volume + addition.map_tags(lambda _t: vtag)
    subtract = (body.get("subtract") or {}).get("value") if isinstance(body.get("subtract"), dict) else None
    if not isinstance(subtract, int | float) or isinstance(subtract, bool) or subtract <= 0:
        raise OperationError("SHRINK_VOLUME: expecting 'subtract.value' to be a positive number")
    size = volume.scalar("disk")
    if subtract >= size:
        raise OperationError(f"SHRINK_VOLUME: cannot subtract {subtract} from a volume of {size} (it must stay > 0)")
    item = copy.deepcopy(m.to_builtins(body["volume"]))
    item["scalar"] = {"value": subtract}
    part = rsv.parse([item], f"{field}.volume")
    return volume, volume - part + part.map_tags(strip_volume)


def framework_operation(st: MasterState, fw: Framework, agent: Agent | None, role: str, op: m.Operation,
                        remaining: Resources) -> Resources:
    """A volume operation inside ACCEPT; returns what is left of the offered resources."""
    field = (op.type or "").lower()
    body = getattr(op, field, None)

    def convert(agent: Agent) -> tuple[Resources, Resources]:
        return conversion(st, agent, op.type or "", body, field, fw.info.principal)

    return rsv.run_framework_operation(st, fw, agent, role, op, remaining, convert)


def operator_operation(st: MasterState, kind: str, payload: Any, now: float,
                       rescind: Callable[[MasterState, Any, float], None]) -> None:
    """CREATE_VOLUMES / DESTROY_VOLUMES / GROW_VOLUME / SHRINK_VOLUME: CallError 400 (invalid),
    404 (agent), 409 (the disk or volume is in use)."""
    agent = rsv.operator_agent(st, kind, payload)
    op_type = OPERATOR_CALLS[kind]
    field = kind.lower()
    if isinstance(payload, dict) and any(isinstance(r, dict) and r.get("allocation_info")
                                         for r in (payload.get("volumes") or [payload.get("volume")])):
        raise CallError(400, "Resources must not have 'allocation_info' set")
    body = dict(payload) if isinstance(payload, dict) else payload
    if isinstance(body, dict):
        body.pop("agent_id", None)
    op = {"type": op_type, op_type.lower(): body}
    rsv.run_operator_operation(st, agent, kind, op, now, rescind,
                               lambda: conversion(st, agent, op_type, body, field, None))


__all__ = ["OPERATIONS", "OPERATOR_CALLS", "conversion", "framework_operation", "operator_operation"]
