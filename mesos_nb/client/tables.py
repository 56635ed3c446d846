"""Rows of the operator tables that ``mesos-nb`` and ``%mesos`` both print, from a typed
``/master/state``: the same columns and number format in a terminal and a notebook."""

from __future__ import annotations

from typing import Any

from mesos_nb.protocol.state import MasterState

from .maintenance import Maintenance, drain_text
from .master import all_tasks

SCALARS = ("cpus", "mem", "disk", "gpus")
AGENT_HEADERS = ["ID", "HOST", "ACTIVE", "CPUS", "MEM", "DISK", "GPUS", "TASKS", "MAINTENANCE", "DRAIN", "ATTRIBUTES"]


def num(x: Any) -> str:
    """``2.0`` -> ``"2"``, ``0.12345`` -> ``"0.123"``; anything else as text."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return str(int(v)) if v.is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


def used_total(res: dict[str, Any], used: dict[str, Any], name: str) -> str:
    return f"{num(used.get(name, 0))}/{num(res.get(name, 0))}"


def agent_rows(state: MasterState, maintenance: Maintenance | None = None) -> list[tuple[Any, ...]]:
    """One row per agent (``AGENT_HEADERS``): used/total per resource, live tasks, the
    machine's maintenance mode (``?`` without ``maintenance``: this user may not read it),
    the drain state, attributes."""
    live: dict[str, int] = {}
    for t, _fw in all_tasks(state, completed=False):
        live[t.slave_id] = live.get(t.slave_id, 0) + 1
    return [(s.id, f"{s.hostname}:{s.port if s.port is not None else ''}", "yes" if s.active else "no",
             *(used_total(s.resources, s.used_resources, k) for k in SCALARS),
             live.get(s.id, 0), maintenance.mode(s.hostname) if maintenance is not None else "?", drain_text(s),
             ";".join(f"{k}:{v}" for k, v in s.attributes.items()))
            for s in state.slaves]


__all__ = ["AGENT_HEADERS", "SCALARS", "agent_rows", "num", "used_total"]
