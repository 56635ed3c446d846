"""Roles, weights and quota as typed values (``/master/roles``, GET_QUOTA, the DRF shares of
``/metrics/snapshot``), the rows of ``mesos-nb roles|quota`` and ``%mesos roles|quota``, and
the sentence that says a task waits because of its role (quota limit, reservations, other
roles' guarantees).

Why here: the CLI, the notebook magics and the notebook's "why it waits" must say the same
thing from the same reads; the pure part (:func:`role_wait_reason`, the rows) takes the
values, so it is tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .master import MasterClient, cluster_totals
from .tables import num

__all__ = ["QUOTA_HEADERS", "ROLE_HEADERS", "RoleInfo", "quota_rows", "read_roles", "role_rows",
           "role_wait_reason", "roles_and_free"]

ROLE_HEADERS = ["ROLE", "WEIGHT", "FRAMEWORKS", "ALLOCATED", "DRF SHARE"]
QUOTA_HEADERS = ["ROLE", "GUARANTEE", "LIMIT", "ALLOCATED", "HEADROOM"]
_SHARE = "allocator/mesos/roles/{}/shares/dominant"


@dataclass
class RoleInfo:
    """One role. ``consumed`` is what its quota counts (its subtree's allocations, offers and
    reservations); ``allocated`` its own tasks; ``share`` its subtree's DRF share."""

    role: str
    weight: float = 1.0
    frameworks: list[str] = field(default_factory=list)
    allocated: dict[str, float] = field(default_factory=dict)
    reserved: dict[str, float] = field(default_factory=dict)
    guarantee: dict[str, float] = field(default_factory=dict)
    limit: dict[str, float] = field(default_factory=dict)
    consumed: dict[str, float] = field(default_factory=dict)
    share: float | None = None

    @property
    def headroom(self) -> dict[str, float]:
        """What the role may still take under each of its limits."""
        return {n: max(0.0, v - self.consumed.get(n, 0.0)) for n, v in self.limit.items()}


def _scalars(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {n: float(v) for n, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _quota_configs(client: MasterClient) -> dict[str, dict[str, Any]]:
    """GET_QUOTA's ``configs`` by role (an old master without it: none)."""
    status, raw = client.http.request(client.url + "/api/v1", method="POST",
                                      body={"type": "GET_QUOTA"})
    if status // 100 != 2:
        return {}
    import json

    doc = json.loads(raw or b"{}")
    configs = ((doc.get("get_quota") or {}).get("status") or {}).get("configs") or []
    return {c["role"]: c for c in configs if isinstance(c, dict) and isinstance(c.get("role"), str)}


def read_roles(client: MasterClient) -> list[RoleInfo]:
    """Every role the master knows, with its weight, quota, consumption and DRF share."""
    doc = client.http.get_json(client.url + "/master/roles")
    configs = _quota_configs(client)
    try:
        metrics = client.http.get_json(client.url + "/metrics/snapshot")
    except Exception:  # noqa: BLE001 - the share column is optional (a rate-limited snapshot)
        metrics = {}
    out = []
    for r in doc.get("roles", []) if isinstance(doc, dict) else []:
        name = r.get("name")
        if not isinstance(name, str):
            continue
        q = r.get("quota") or {}
        cfg = configs.get(name) or {}

        def values(key: str, cfg: dict[str, Any] = cfg) -> dict[str, float]:
            return {n: float(v.get("value", 0)) for n, v in (cfg.get(key) or {}).items() if isinstance(v, dict)}

        share = metrics.get(_SHARE.format(name)) if isinstance(metrics, dict) else None
        out.append(RoleInfo(
            role=name, weight=float(r.get("weight", 1.0)), frameworks=list(r.get("frameworks") or []),
            allocated={n: v for n, v in _scalars(r.get("allocated")).items() if v},
            reserved={n: v for n, v in _scalars(r.get("reserved")).items() if v},
            guarantee=values("guarantees") or _scalars(q.get("guarantee")),
            limit=values("limits") or _scalars(q.get("limit")),
            consumed=_scalars(q.get("consumed")),
            share=float(share) if isinstance(share, int | float) else None,
        ))
    return out


def _quantities(d: dict[str, float]) -> str:
    return ", ".join(f"{n} {num(v)}" for n, v in sorted(d.items()) if v) or "-"


def role_rows(roles: list[RoleInfo]) -> list[tuple[Any, ...]]:
    """``ROLE_HEADERS`` rows."""
    return [(r.role, num(r.weight), len(r.frameworks), _quantities(r.consumed or r.allocated),
             "-" if r.share is None else f"{r.share:.3f}") for r in roles]


def quota_rows(roles: list[RoleInfo]) -> list[tuple[Any, ...]]:
    """``QUOTA_HEADERS`` rows, for the roles that have quota."""
    return [(r.role, _quantities(r.guarantee), _quantities(r.limit), _quantities(r.consumed),
             _quantities(r.headroom) if r.limit else "unlimited")
            for r in roles if r.guarantee or r.limit]


def _lineage(role: str) -> list[str]:
    parts = role.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def role_wait_reason(role: str, requested: dict[str, float], roles: list[RoleInfo],
                     free: dict[str, float]) -> str | None:
    """Why a task of ``role`` asking for ``requested`` gets no offer, when its role is the
    reason: a quota limit used up (its own or an ancestor's, which bounds it), or free
    resources that are reserved for other roles or held back for their unmet guarantees.
    ``free`` is the cluster's total minus what tasks use. None when the role is no reason."""
    by = {r.role: r for r in roles}
    lineage = _lineage(role)
    for q in lineage:
        info = by.get(q)
        if info is None:
            continue
        for n, want in requested.items():
            limit = info.limit.get(n)
            if limit is None or not want:
                continue
            left = limit - info.consumed.get(n, 0.0)
            if left <= 0:
                return f"role '{q}' is at its quota limit of {n} {num(limit)}"
            if left < want:
                return (f"role '{q}' has only {n} {num(left)} left under its quota limit of "
                        f"{n} {num(limit)} (asked for {num(want)})")
    others = [r for r in roles if r.role not in lineage and "/" not in r.role]  # top-level: no double count
    for n, want in requested.items():
        have = free.get(n, 0.0)
        if not want or have < want:
            continue
        held = {r.role: max(0.0, r.reserved.get(n, 0.0) - r.allocated.get(n, 0.0)) for r in others}
        held = {k: v for k, v in held.items() if v > 0}
        if held and have - sum(held.values()) < want:
            names = ", ".join(f"'{k}'" for k in sorted(held))
            return (f"the free {n} ({num(have)}) are reserved for other roles ({names})")
        unmet = {r.role: max(0.0, r.guarantee.get(n, 0.0) - r.consumed.get(n, 0.0)) for r in others}
        unmet = {k: v for k, v in unmet.items() if v > 0}
        if unmet and have - sum(held.values()) - sum(unmet.values()) < want:
            names = ", ".join(f"'{k}'" for k in sorted(unmet))
            return (f"the free {n} ({num(have)}) are held back for the unmet quota guarantees "
                    f"of other roles ({names})")
    return None


def roles_and_free(client: MasterClient) -> tuple[list[RoleInfo], dict[str, float]]:
    """The roles and the cluster's free scalars (total − used by tasks): what
    :func:`role_wait_reason` needs, in two reads."""
    tot, used, _ = cluster_totals(client.state())
    return read_roles(client), {n: tot.get(n, 0.0) - used.get(n, 0.0) for n in tot}
