"""Maintenance records: the schedule of machine windows, machine modes, inverse-offer
answers, agent deactivation and drain state, and their validation (Mesos 1.11 semantics).

Pure data and checks, no transitions: :mod:`.downtime` changes the cluster (offers,
agents, tasks) from what this module decides. :class:`MaintenanceState` lives on the
master's state as ``st.maintenance``; everything an operator set (schedule, DOWN machines,
deactivated and draining agents) round-trips through :meth:`MaintenanceState.document`
into the registry (``SaveMaintenance``) and back with :meth:`MaintenanceState.restore`.
Inverse-offer answers are advisory and, as in Mesos, are not stored.

Machines are ``(hostname, ip)`` keys, hostname lower-cased. An agent registers one address
(``hostname``), so an agent's IP is that address when it is an IP literal, else empty; a
MachineID field the operator leaves out matches any agent value (Mesos requires both to be
equal, which a one-address agent cannot satisfy for a hostname-only machine).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

MachineKey = tuple[str, str]
DRAINING, DOWN = "DRAINING", "DOWN"


class InvalidMaintenance(ValueError):
    """A maintenance request Mesos refuses with 400; ``str()`` names the rule broken."""


@dataclass(slots=True)
class InverseOffer:
    id: str
    framework_id: str
    agent_id: str
    machine: MachineKey


@dataclass
class MaintenanceState:
    windows: list[dict[str, Any]] = field(default_factory=list)  # normalised window JSON, in order
    modes: dict[MachineKey, str] = field(default_factory=dict)  # DRAINING / DOWN; UP is absent
    unavailability: dict[MachineKey, dict[str, Any]] = field(default_factory=dict)
    # machine -> framework id -> (UNKNOWN / ACCEPT / DECLINE, when)
    statuses: dict[MachineKey, dict[str, tuple[str, float]]] = field(default_factory=dict)
    inverse: dict[str, InverseOffer] = field(default_factory=dict)  # outstanding, by id
    outstanding: dict[tuple[str, str], str] = field(default_factory=dict)  # (framework, agent) -> id
    refused: dict[tuple[str, str], float] = field(default_factory=dict)  # (framework, agent) -> until
    deactivated: set[str] = field(default_factory=set)  # agent ids (DEACTIVATE_AGENT or a drain)
    drains: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent id -> DrainInfo JSON
    # agent id -> when DRAIN_AGENT asked it to drain (estimated_drain_start_time); as Mesos,
    # set only for an agent known at the call, cleared by REACTIVATE_AGENT, not stored
    drain_started: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ queries (hot paths)
    def machine_of(self, hostname: str) -> MachineKey | None:
        """The scheduled machine an agent with this address belongs to (None: UP)."""
        if not self.modes:
            return None
        for key in self.modes:
            if matches(key, hostname):
                return key
        return None

    def unavailability_of(self, hostname: str) -> dict[str, Any] | None:
        """The window an offer from this agent carries (Mesos ``Offer.unavailability``)."""
        key = self.machine_of(hostname)
        return self.unavailability.get(key) if key is not None and self.modes[key] == DRAINING else None

    def refusal(self, hostname: str) -> str | None:
        """Why an agent at this address may not register now (its machine is DOWN)."""
        key = self.machine_of(hostname)
        if key is not None and self.modes[key] == DOWN:
            return f"Machine {machine_text(key)} is `DOWN`: agents on it may not register until STOP_MAINTENANCE"
        return None

    # ------------------------------------------------------------------ views
    def schedule_json(self) -> dict[str, Any]:
        return {"windows": self.windows} if self.windows else {}

    def status_json(self) -> dict[str, Any]:
        """ClusterStatus: ``draining_machines`` (with each framework's inverse-offer answer)
        and ``down_machines``."""
        draining, down = [], []
        for key, mode in self.modes.items():
            if mode == DOWN:
                down.append(machine_json(key))
                continue
            statuses = [{"status": s, "framework_id": {"value": fid}, "timestamp": {"nanoseconds": int(ts * 1e9)}}
                        for fid, (s, ts) in sorted(self.statuses.get(key, {}).items())]
            entry: dict[str, Any] = {"id": machine_json(key)}
            if statuses:
                entry["statuses"] = statuses
            draining.append(entry)
        out: dict[str, Any] = {}
        if draining:
            out["draining_machines"] = draining
        if down:
            out["down_machines"] = down
        return out

    # ------------------------------------------------------------------ persistence
    def document(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "down": [machine_json(k) for k, mode in self.modes.items() if mode == DOWN],
            "deactivated": sorted(self.deactivated),
            "drains": self.drains,
        }

    def restore(self, doc: dict[str, Any] | None) -> None:
        if not isinstance(doc, dict):
            return
        try:  # a document this master cannot read is dropped whole, never half-applied
            windows = validate_schedule({"windows": doc.get("windows") or []}, MaintenanceState())
            down = [parse_machine(mid) for mid in doc.get("down") or []]
        except InvalidMaintenance:
            return
        self.set_windows(windows)
        for key in down:
            if key in self.modes:
                self.modes[key] = DOWN
        self.deactivated = set(doc.get("deactivated") or [])
        self.drains = dict(doc.get("drains") or {})

    def set_windows(self, windows: list[dict[str, Any]]) -> set[MachineKey]:
        """Install validated windows; machines already DOWN stay DOWN, new ones DRAIN. Returns
        the machines that left the schedule (back to UP)."""
        before = set(self.modes)
        modes: dict[MachineKey, str] = {}
        unavailability: dict[MachineKey, dict[str, Any]] = {}
        for w in windows:
            for mid in w["machine_ids"]:
                key = parse_machine(mid)
                modes[key] = self.modes.get(key, DRAINING)
                unavailability[key] = w["unavailability"]
        self.windows = windows
        self.modes = modes
        self.unavailability = unavailability
        gone = before - set(modes)
        for key in gone:
            self.statuses.pop(key, None)
        return gone


# ---------------------------------------------------------------------- machines
def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def matches(key: MachineKey, hostname: str) -> bool:
    want_host, want_ip = key
    if want_host and want_host != hostname.lower():
        return False
    return not want_ip or (want_ip == hostname and is_ip(hostname))


def machine_json(key: MachineKey) -> dict[str, str]:
    out = {}
    if key[0]:
        out["hostname"] = key[0]
    if key[1]:
        out["ip"] = key[1]
    return out


def machine_text(key: MachineKey) -> str:
    return "'" + "/".join(p for p in key if p) + "'"


def parse_machine(mid: Any) -> MachineKey:
    """A MachineID JSON object as a key; InvalidMaintenance naming what is wrong."""
    if not isinstance(mid, dict):
        raise InvalidMaintenance(f"Invalid MachineID {mid!r}: expected an object with 'hostname' and/or 'ip'")
    host, ip = mid.get("hostname") or "", mid.get("ip") or ""
    if not isinstance(host, str) or not isinstance(ip, str):
        raise InvalidMaintenance("Invalid MachineID: 'hostname' and 'ip' must be strings")
    if not host and not ip:
        raise InvalidMaintenance("Invalid MachineID: both 'hostname' and 'ip' are empty")
    if ip and not is_ip(ip):
        raise InvalidMaintenance(f"Invalid MachineID: '{ip}' is not a valid IP address")
    return host.lower(), ip


def parse_machines(machines: Any, call: str) -> list[MachineKey]:
    if not isinstance(machines, list) or not machines:
        raise InvalidMaintenance(f"{call}: the list of machines is empty")
    keys = [parse_machine(mid) for mid in machines]
    if len(set(keys)) != len(keys):
        raise InvalidMaintenance(f"{call}: a machine appears more than once in the list")
    return keys


# ---------------------------------------------------------------------- schedule validation
def _nanoseconds(obj: Any, what: str) -> int:
    ns = obj.get("nanoseconds") if isinstance(obj, dict) else None
    if not isinstance(ns, int) or isinstance(ns, bool):
        raise InvalidMaintenance(f"Invalid maintenance window: '{what}' needs an integer 'nanoseconds'")
    return ns


def validate_schedule(schedule: Any, state: MaintenanceState) -> list[dict[str, Any]]:
    """A maintenance Schedule as normalised windows, or InvalidMaintenance with Mesos's rule:
    each window has machines and an unavailability (duration ≥ 0), each machine has a
    hostname or a valid IP and appears once, and no DOWN machine leaves the schedule."""
    if not isinstance(schedule, dict):
        raise InvalidMaintenance("Expecting 'schedule' to be an object with a 'windows' list")
    windows = schedule.get("windows", [])
    if not isinstance(windows, list):
        raise InvalidMaintenance("Invalid maintenance schedule: 'windows' must be a list")
    seen: set[MachineKey] = set()
    out: list[dict[str, Any]] = []
    for i, w in enumerate(windows):
        if not isinstance(w, dict):
            raise InvalidMaintenance(f"Invalid maintenance window {i}: expected an object")
        mids = w.get("machine_ids")
        if not isinstance(mids, list) or not mids:
            raise InvalidMaintenance(f"Invalid maintenance window {i}: List of machines in the window is empty")
        un = w.get("unavailability")
        if not isinstance(un, dict):
            raise InvalidMaintenance(f"Invalid maintenance window {i}: 'unavailability' is required")
        norm_un: dict[str, Any] = {"start": {"nanoseconds": _nanoseconds(un.get("start"), "unavailability.start")}}
        if "duration" in un:
            d = _nanoseconds(un["duration"], "unavailability.duration")
            if d < 0:
                raise InvalidMaintenance(f"Invalid maintenance window {i}: Unavailability duration is negative")
            norm_un["duration"] = {"nanoseconds": d}
        keys = []
        for mid in mids:
            key = parse_machine(mid)
            if key in seen:
                raise InvalidMaintenance(f"Invalid maintenance schedule: Machine {machine_text(key)} "
                                     "appears more than once in the schedule")
            seen.add(key)
            keys.append(key)
        out.append({"machine_ids": [machine_json(k) for k in keys], "unavailability": norm_un})
    for key, mode in state.modes.items():
        if mode == DOWN and key not in seen:
            raise InvalidMaintenance(f"Invalid maintenance schedule: Machine {machine_text(key)} is DOWN and "
                                 "cannot be removed from the schedule (STOP_MAINTENANCE first)")
    return out


def parse_duration(obj: Any) -> int | None:
    """DrainAgent's ``google.protobuf.Duration`` (``{"seconds", "nanos"}``) in nanoseconds."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidMaintenance("Invalid 'max_grace_period': expected {\"seconds\": N, \"nanos\": N}")
    secs, nanos = obj.get("seconds", 0), obj.get("nanos", 0)
    if isinstance(secs, str) and secs.lstrip("-").isdigit():
        secs = int(secs)  # proto3 JSON writes int64 as a string
    if not isinstance(secs, int) or not isinstance(nanos, int) or isinstance(secs, bool) or isinstance(nanos, bool):
        raise InvalidMaintenance("Invalid 'max_grace_period': 'seconds' and 'nanos' must be integers")
    total = secs * 1_000_000_000 + nanos
    if total < 0:
        raise InvalidMaintenance("Invalid 'max_grace_period': it cannot be negative")
    return total
