"""The roles as the operator sees them: ``/master/roles`` (Mesos's v0 shape) and the web UI's
roles table, from one pure function of the core.

Why one place: the weight, quota and consumption of a role live in the allocator, its
frameworks and tasks in the core; ``/master/roles``, the web UI and (through the client
library) the CLI and the notebook must agree on them. Nested roles are listed with their
ancestors (``eng`` for ``eng/ml``), as Mesos lists implicit roles; a parent's ``allocated``
and ``consumed`` include its children's (its quota bounds them).
"""

from __future__ import annotations

from typing import Any

from ..protocol import messages as m
from ..protocol.resources import Resources

__all__ = ["mesos_roles", "quota_snapshot", "role_rows"]


def _units(millis: dict[str, int]) -> dict[str, float]:
    return {n: v / 1000 for n, v in sorted(millis.items())}


def _with_ancestors(names: set[str]) -> set[str]:
    out = set()
    for r in names:
        parts = r.split("/")
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def _summary(millis: dict[str, int]) -> dict[str, float]:
    return {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0, **_units(millis)}


def role_rows(core: Any) -> list[dict[str, Any]]:
    """One row per role: weight, frameworks (subscribed to it directly), allocated (its subtree:
    tasks and outstanding offers, as the allocator counts them), guarantee, limit, consumed,
    headroom (limit − consumed, per limited name) and the unweighted DRF share of its subtree."""
    alloc = core.allocator
    weights = alloc.weights()
    quotas = alloc.quotas()
    consumed = alloc.consumed()
    members: dict[str, list[str]] = {}
    for fw in core.frameworks.values():
        for role in fw.roles:
            members.setdefault(role, []).append(fw.id)
    reserved = {r for agent in core.agents.values() for r in agent.total.reserved().roles()}
    names = _with_ancestors(set(alloc.role_nodes()) | set(weights) | set(quotas) | set(members) | reserved)
    rows = []
    for name in sorted(names):
        q = quotas.get(name)
        used = consumed.get(name) or alloc.subtree_allocation(name)
        limit = _units(q.limits) if q else {}
        rows.append({
            "role": name,
            "weight": weights.get(name, 1.0),
            "frameworks": sorted(members.get(name, [])),
            "allocated": _units(alloc.subtree_allocation(name)),
            "guarantee": _units(q.guarantees) if q else {},
            "limit": limit,
            "consumed": _units(used),
            "headroom": {n: max(0.0, v - used.get(n, 0) / 1000) for n, v in limit.items()},
            "share": alloc.role_share(name),
        })
    return rows


def quota_snapshot(core: Any) -> dict[str, dict[str, dict[str, float]]]:
    """``{role: {guarantee, limit, consumed}}`` of every role with quota (the utilization feed's
    ``quota``, plotted as headroom by the notebook dashboard)."""
    alloc = core.allocator
    consumed = alloc.consumed()
    return {role: {"guarantee": _units(q.guarantees), "limit": _units(q.limits),
                   "consumed": _units(consumed.get(role, {}))}
            for role, q in sorted(alloc.quotas().items())}


def mesos_roles(core: Any) -> dict[str, Any]:
    """``/master/roles``: ``{"roles": [{name, weight, quota{role, guarantee, limit, consumed},
    resources, allocated, offered, reserved, frameworks}]}`` with ``{name: number}`` values."""
    own: dict[str, Resources] = {}
    for fw in core.frameworks.values():
        for t in fw.tasks.values():
            if t.state not in m.TERMINAL_STATES:
                own[t.role] = own.get(t.role, Resources()) + t.resources
    offered: dict[str, Resources] = {}
    for o in core.offers.values():
        offered[o.role] = offered.get(o.role, Resources()) + o.resources
    reserved: dict[str, dict[str, int]] = {}
    for agent in core.agents.values():
        total = agent.total
        for role in total.reserved().roles():
            r = reserved.setdefault(role, {})
            for n, v in total.reserved(role).scalar_millis().items():
                r[n] = r.get(n, 0) + v
    out = []
    for row in role_rows(core):
        name = row["role"]
        used = _summary((own.get(name) or Resources()).scalar_millis())
        out.append({
            "name": name, "weight": row["weight"], "frameworks": row["frameworks"],
            "resources": used, "allocated": used,
            "offered": _summary((offered.get(name) or Resources()).scalar_millis()),
            "reserved": _summary(reserved.get(name, {})),
            "quota": {"role": name, "guarantee": row["guarantee"], "limit": row["limit"],
                      "consumed": row["consumed"]},
        })
    return {"roles": out}
