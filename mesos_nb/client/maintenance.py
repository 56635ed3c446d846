"""Maintenance as typed operator calls: the schedule of machine windows, machine modes
(START/STOP_MAINTENANCE), agent draining and deactivation, and the per-agent answer to "is
this agent in maintenance?" that ``mesos-nb agents`` and ``%mesos agents`` print.

Every call is one ``POST /api/v1`` through :meth:`MasterClient.call`; the master's refusal is
a :class:`MesosClientError` sentence. Times are seconds since the epoch here and nanoseconds
on the wire. Which machine an agent belongs to is decided by the master's own rule
(:func:`mesos_nb.master.maintenance.matches`), so the tables agree with the master.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mesos_nb.master.maintenance import MachineKey, matches
from mesos_nb.protocol.state import AgentView

from .http import MesosClientError
from .master import MasterClient

NS = 1_000_000_000


@dataclass(frozen=True)
class Machine:
    """A MachineID: a hostname, an IP, or both (Mesos matches an agent on both)."""

    hostname: str = ""
    ip: str = ""

    @classmethod
    def parse(cls, text: str) -> Machine:
        """``HOST``, ``IP`` or ``HOST,IP``; ValueError (one sentence) otherwise."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"bad machine {text!r}: expected HOST, IP or HOST,IP")
        if len(parts) == 2:
            _ip(parts[1], text)
            return cls(parts[0], parts[1])
        try:
            ipaddress.ip_address(parts[0])
        except ValueError:
            return cls(hostname=parts[0])
        return cls(ip=parts[0])

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Machine:
        return cls(d.get("hostname") or "", d.get("ip") or "")

    def json(self) -> dict[str, str]:
        return {k: v for k, v in (("hostname", self.hostname), ("ip", self.ip)) if v}

    @property
    def key(self) -> MachineKey:
        return self.hostname.lower(), self.ip

    def __str__(self) -> str:
        return ",".join(p for p in (self.hostname, self.ip) if p)


def _ip(text: str, whole: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"bad machine {whole!r}: {text!r} is not an IP address") from None


@dataclass(frozen=True)
class Window:
    """Machines unavailable from ``start`` (epoch seconds) for ``duration`` seconds (None: open)."""

    machines: tuple[Machine, ...]
    start: float
    duration: float | None = None

    @classmethod
    def from_json(cls, w: dict[str, Any]) -> Window:
        un = w.get("unavailability") or {}
        dur = (un.get("duration") or {}).get("nanoseconds")
        return cls(tuple(Machine.from_json(m) for m in w.get("machine_ids") or []),
                   ((un.get("start") or {}).get("nanoseconds") or 0) / NS, None if dur is None else dur / NS)

    def json(self) -> dict[str, Any]:
        un: dict[str, Any] = {"start": {"nanoseconds": round(self.start * NS)}}
        if self.duration is not None:
            un["duration"] = {"nanoseconds": round(self.duration * NS)}
        return {"machine_ids": [m.json() for m in self.machines], "unavailability": un}

    def text(self) -> str:
        """``2026-11-30 01:00 UTC for 1h`` (the window an operator reads)."""
        when = datetime.fromtimestamp(self.start, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return when if self.duration is None else f"{when} for {duration_text(self.duration)}"


@dataclass(frozen=True)
class DrainingMachine:
    machine: Machine
    answers: dict[str, str] = field(default_factory=dict)  # framework id -> UNKNOWN / ACCEPT / DECLINE


@dataclass(frozen=True)
class Maintenance:
    """The schedule and the machine modes at one moment (GET_MAINTENANCE_SCHEDULE + _STATUS)."""

    windows: tuple[Window, ...] = ()
    draining: tuple[DrainingMachine, ...] = ()
    down: tuple[Machine, ...] = ()

    def mode(self, hostname: str) -> str:
        """``UP``, ``DRAINING <window>`` or ``DOWN`` for an agent registered at ``hostname``."""
        if any(matches(m.key, hostname) for m in self.down):
            return "DOWN"
        for w in self.windows:
            if any(matches(m.key, hostname) for m in w.machines):
                return f"DRAINING {w.text()}"
        return "UP"


def drain_text(agent: AgentView) -> str:
    """``DRAINING`` / ``DRAINED`` (DRAIN_AGENT), ``deactivated`` (DEACTIVATE_AGENT), else ``-``."""
    state = (agent.drain_info or {}).get("state")
    if state:
        return str(state)
    return "deactivated" if agent.deactivated else "-"


def duration_text(seconds: float) -> str:
    """``90`` -> ``1m30s``, ``3600`` -> ``1h``."""
    s = round(seconds)
    out = "".join(f"{v}{u}" for v, u in ((s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"),
                                         (s % 60, "s")) if v)
    return out or "0s"


class MaintenanceClient:
    """The maintenance and agent-state operator calls of one master."""

    def __init__(self, client: MasterClient) -> None:
        self.client = client

    def read(self) -> Maintenance:
        sched = self.client.call({"type": "GET_MAINTENANCE_SCHEDULE"}, "read the maintenance schedule")
        status = self.client.call({"type": "GET_MAINTENANCE_STATUS"}, "read the maintenance status")
        windows = ((sched or {}).get("get_maintenance_schedule") or {}).get("schedule", {}).get("windows") or []
        st = ((status or {}).get("get_maintenance_status") or {}).get("status") or {}
        draining = tuple(DrainingMachine(Machine.from_json(d.get("id") or {}),
                                         {s["framework_id"]["value"]: s.get("status", "UNKNOWN")
                                          for s in d.get("statuses") or []})
                         for d in st.get("draining_machines") or [])
        return Maintenance(tuple(Window.from_json(w) for w in windows), draining,
                           tuple(Machine.from_json(m) for m in st.get("down_machines") or []))

    def set_schedule(self, windows: list[Window]) -> None:
        body = {"type": "UPDATE_MAINTENANCE_SCHEDULE",
                "update_maintenance_schedule": {"schedule": {"windows": [w.json() for w in windows]}}}
        self.client.call(body, "update the maintenance schedule")

    def add_window(self, window: Window) -> list[Window]:
        """Append one window to the current schedule (the master replaces the whole schedule);
        returns the schedule posted."""
        windows = [*self.read().windows, window]
        self.set_schedule(windows)
        return windows

    def down(self, machines: list[Machine]) -> None:
        self.client.call({"type": "START_MAINTENANCE",
                          "start_maintenance": {"machines": [m.json() for m in machines]}}, "start maintenance")

    def up(self, machines: list[Machine]) -> None:
        self.client.call({"type": "STOP_MAINTENANCE",
                          "stop_maintenance": {"machines": [m.json() for m in machines]}}, "stop maintenance")

    def drain(self, agent_id: str, grace: float | None = None, mark_gone: bool = False) -> None:
        """DRAIN_AGENT: kill every task (grace capped at ``grace`` seconds), DRAINED when done."""
        body: dict[str, Any] = {"agent_id": {"value": agent_id}, "mark_gone": mark_gone}
        if grace is not None:
            whole = int(grace)
            body["max_grace_period"] = {"seconds": whole, "nanos": round((grace - whole) * NS)}
        self.client.call({"type": "DRAIN_AGENT", "drain_agent": body}, f"drain agent {agent_id}")

    def deactivate(self, agent_id: str) -> None:
        self.client.call({"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": agent_id}}},
                         f"deactivate agent {agent_id}")

    def reactivate(self, agent_id: str) -> None:
        self.client.call({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent_id}}},
                         f"reactivate agent {agent_id}")


def maintenance_or_none(client: MasterClient) -> Maintenance | None:
    """The maintenance state for a table column, or None when this user may not read it
    (the column then says ``?``; the table itself must not fail over it)."""
    try:
        return MaintenanceClient(client).read()
    except MesosClientError:
        return None


__all__ = ["DrainingMachine", "Machine", "Maintenance", "MaintenanceClient", "Window", "drain_text",
           "duration_text", "maintenance_or_none"]
