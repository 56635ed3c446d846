"""Typed answers of the v1 operator calls the master answers on the spot (``master.proto``'s
``Response.GetHealth``, ``GetVersion``, ``GetFlags``, ``GetMetrics``, ``GetLoggingLevel``,
``GetOperations``, ``GetWeights``, ``GetMaster``, ``GetMaintenanceStatus``,
``GetMaintenanceSchedule``, ``GetQuota``), and the ``Response`` around each.

Why structs rather than dicts: a misspelt field or a wrong kind of value is then an error
where the answer is built (and in a type checker), not a key a client silently misses. They
are documents in the sense of :mod:`.operator_state`: every field written unless it is
``UNSET`` (protobuf-JSON omits it), unknown fields refused when decoded, and the fields in
the order the master always wrote them, so the JSON is byte for byte what it was as dicts.
:mod:`.operator_state` types the answers the state renderers stream (``GET_STATE`` and the
``GET_*`` lists); these are the rest.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from .messages import ID, DurationInfo, MasterInfo

__all__ = [
    "ANSWERS", "ClusterStatus", "DrainingMachine", "Flag", "GetFlags", "GetHealth", "GetLoggingLevel",
    "GetMaintenanceSchedule", "GetMaintenanceStatus", "GetMaster", "GetMetrics", "GetOperations", "GetQuota",
    "GetVersion", "GetWeights", "InverseOfferStatus", "MachineID", "MaintenanceWindow", "Metric", "QuotaConfig",
    "QuotaInfo", "QuotaResource", "QuotaStatus", "Scalar", "Schedule", "Unavailability", "VersionInfo",
    "WeightInfo", "response",
]


class _Doc(msgspec.Struct, kw_only=True, omit_defaults=False, forbid_unknown_fields=True):
    """An answer as the master writes it."""


# ------------------------------------------------------------------------- health, version
class GetHealth(_Doc):
    healthy: bool


class VersionInfo(_Doc):
    version: str
    build_user: str
    build_time: float  # seconds since the epoch (the master's start: there is no build)
    build_date: str


class GetVersion(_Doc):
    version_info: VersionInfo


# -------------------------------------------------------------------------- flags, metrics
class Flag(_Doc):
    name: str
    value: str


class GetFlags(_Doc):
    flags: list[Flag]


class Metric(_Doc):
    name: str
    value: float


class GetMetrics(_Doc):
    metrics: list[Metric]


class GetLoggingLevel(_Doc):
    level: int


# --------------------------------------------------------------------- operations, weights
class GetOperations(_Doc):
    operations: list[dict[str, Any]]  # ``Operation`` records as kept (reservations.py)


class WeightInfo(_Doc):
    role: str
    weight: float


class GetWeights(_Doc):
    weight_infos: list[WeightInfo]


class GetMaster(_Doc):
    master_info: MasterInfo
    start_time: float
    elected_time: float


# ------------------------------------------------------------------------------ maintenance
class MachineID(_Doc):
    hostname: str | UnsetType = UNSET
    ip: str | UnsetType = UNSET


class InverseOfferStatus(_Doc):
    status: str
    framework_id: ID
    timestamp: DurationInfo  # a TimeInfo: ``{"nanoseconds": N}`` since the epoch


class DrainingMachine(_Doc):
    id: MachineID
    statuses: list[InverseOfferStatus] | UnsetType = UNSET


class ClusterStatus(_Doc):
    """``maintenance.ClusterStatus``: machines draining (with each framework's answer to its
    inverse offer) and machines down; each list only when not empty."""

    draining_machines: list[DrainingMachine] | UnsetType = UNSET
    down_machines: list[MachineID] | UnsetType = UNSET


class GetMaintenanceStatus(_Doc):
    status: ClusterStatus


class Unavailability(_Doc):
    start: DurationInfo  # a TimeInfo
    duration: DurationInfo | UnsetType = UNSET


class MaintenanceWindow(_Doc):
    machine_ids: list[MachineID]
    unavailability: Unavailability


class Schedule(_Doc):
    windows: list[MaintenanceWindow] | UnsetType = UNSET  # (an empty schedule is ``{}``)


class GetMaintenanceSchedule(_Doc):
    schedule: Schedule


# ------------------------------------------------------------------------------------ quota
class Scalar(_Doc):
    value: float


class QuotaResource(_Doc):
    """A guarantee in the legacy ``QuotaInfo``: a scalar ``Resource``."""

    name: str
    type: str
    scalar: Scalar


class QuotaInfo(_Doc):
    role: str
    guarantee: list[QuotaResource]


class QuotaConfig(_Doc):
    role: str
    guarantees: dict[str, Scalar]
    limits: dict[str, Scalar]


class QuotaStatus(_Doc):
    """``QuotaStatus``: ``infos`` (legacy, guarantees only) and ``configs`` (1.9+)."""

    infos: list[QuotaInfo]
    configs: list[QuotaConfig]


class GetQuota(_Doc):
    status: QuotaStatus


# -------------------------------------------------------------------------------- responses
ANSWERS: dict[str, type[_Doc]] = {
    "GET_HEALTH": GetHealth, "GET_VERSION": GetVersion, "GET_FLAGS": GetFlags, "GET_METRICS": GetMetrics,
    "GET_LOGGING_LEVEL": GetLoggingLevel, "GET_OPERATIONS": GetOperations, "GET_WEIGHTS": GetWeights,
    "GET_MASTER": GetMaster, "GET_MAINTENANCE_STATUS": GetMaintenanceStatus,
    "GET_MAINTENANCE_SCHEDULE": GetMaintenanceSchedule, "GET_QUOTA": GetQuota,
}

# ``Response``: ``{"type": call, "<call in lower case>": answer}``, the type written first
RESPONSES: dict[str, type[Any]] = {
    call: msgspec.defstruct(f"{answer.__name__}Response", [(call.lower(), answer)], bases=(_Doc,),
                            tag_field="type", tag=call, module=__name__)
    for call, answer in ANSWERS.items()
}


def response(answer: _Doc) -> Any:
    """The ``Response`` carrying ``answer`` (its call is the answer's type)."""
    call = _CALL_OF[type(answer)]
    return RESPONSES[call](**{call.lower(): answer})


_CALL_OF = {answer: call for call, answer in ANSWERS.items()}
