"""Quota on the master: UPDATE_QUOTA validation (Mesos 1.9+ ``QuotaConfig``), the core
transition that stores it through the registry, and the GET_QUOTA / ``/quota`` shapes.

Pure: the shell hands in the parsed JSON and ``now``; errors are :class:`CallError` with
Mesos's ``Invalid QuotaConfig: …`` sentences (400). A config is kept as its wire JSON so the
registry, GET_QUOTA and the allocator's :class:`RoleQuota` all come from one record.

Authorization hook: the shell passes ``authorize(action, role) -> bool`` (``update_quota``
per role) once an ACL module exists; a refusal is 403 and nothing is changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec

from ..protocol.operator_answers import QuotaConfig, QuotaInfo, QuotaResource, QuotaStatus, Scalar
from .allocator import RoleQuota
from .allocator.quota import guarantee_parent
from .allocator.roletree import ancestors
from .offers import rescind
from .state import CallError, MasterState
from .validation import validate_role

__all__ = ["check_hierarchy", "get_quota_status", "parse_configs", "quota_status", "recover_quotas",
           "to_role_quota", "total_guarantees", "update_quota"]

_MB_NAMES = ("mem", "disk")
_MAX_MB = 1024 ** 4  # 1 EB in MB
_MAX_OTHER = 10 ** 12


def _bad(msg: str) -> CallError:
    return CallError(400, f"Invalid QuotaConfig: {msg}")


class QuotaOvercommit(CallError):
    """Guarantees beyond the cluster's capacity without ``force``: 400 from UPDATE_QUOTA, but
    409 Conflict from the deprecated SET_QUOTA (Mesos answers the two differently)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, f"Invalid QuotaConfig: {message}")


def _quantities(role: str, what: str, raw: Any) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad(f"'{what}' of role '{role}' must be a map of resource name to {{\"value\": number}}")
    out: dict[str, float] = {}
    for name, q in raw.items():
        value = q.get("value") if isinstance(q, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise _bad(f"{what} '{name}' of role '{role}' needs a numeric 'value'")
        if value < 0:
            raise _bad(f"negative {what} '{name}' ({value}) for role '{role}'")
        cap = _MAX_MB if name in _MB_NAMES else _MAX_OTHER
        if value > cap:
            raise _bad(f"{what} '{name}' ({value}) for role '{role}' is larger than {cap}")
        out[name] = float(value)
    return out


def parse_configs(raw: Any) -> list[dict[str, Any]]:
    """``update_quota.quota_configs`` -> normalised configs ``{role, guarantees, limits}``."""
    if not isinstance(raw, list):
        raise CallError(400, "Expecting 'update_quota.quota_configs' to be a list of QuotaConfig")
    seen: set[str] = set()
    out = []
    for c in raw:
        role = c.get("role") if isinstance(c, dict) else None
        if not isinstance(role, str):
            raise _bad("each config needs a string 'role'")
        problem = validate_role(role)
        if problem:
            raise _bad(problem)
        if role == "*":
            raise _bad("quota cannot be set for the default role '*'")
        if role in seen:
            raise _bad(f"role '{role}' appears more than once")
        seen.add(role)
        g = _quantities(role, "guarantee", c.get("guarantees"))
        lim = _quantities(role, "limit", c.get("limits"))
        for name, v in g.items():
            if name in lim and v > lim[name]:
                raise _bad(f"guarantee '{name}:{v}' is more than limit '{name}:{lim[name]}' for role '{role}'")
        out.append({"role": role, "guarantees": {n: {"value": v} for n, v in g.items()},
                    "limits": {n: {"value": v} for n, v in lim.items()}})
    return out


def to_role_quota(config: dict[str, Any]) -> RoleQuota:
    def millis(d: dict[str, Any]) -> dict[str, int]:
        return {n: round(q["value"] * 1000) for n, q in (d or {}).items()}
    return RoleQuota(millis(config.get("guarantees") or {}), millis(config.get("limits") or {}))


def update_quota(st: MasterState, configs: list[dict[str, Any]], force: bool,
                 authorize: Callable[[str, str], bool] | None = None) -> None:
    """All or nothing: validate every config against the cluster, then store and apply them."""
    from .effects import SaveQuota

    if authorize is not None:
        for c in configs:
            if not authorize("update_quota", c["role"]):
                raise CallError(403, f"Not authorized to update quota of role '{c['role']}'")
    alloc = st.allocator
    merged = alloc.quotas()
    for c in configs:
        rq = to_role_quota(c)
        if rq.guarantees or rq.limits:
            merged[c["role"]] = rq
        else:
            merged.pop(c["role"], None)
    check_hierarchy(merged)  # (as Mesos: the tree is checked with or without 'force')
    if not force:
        consumed = alloc.consumed()
        for c in configs:
            used = consumed.get(c["role"]) or _role_usage(st, c["role"])
            for name, q in c["limits"].items():
                if used.get(name, 0) > round(q["value"] * 1000):
                    raise _bad(f"role '{c['role']}' already consumes {used[name] / 1000} {name}, more than "
                               f"its limit {q['value']} (use 'force' to set it anyway)")
        capacity = _capacity(st)
        for n, v in total_guarantees(merged).items():
            if v > capacity.get(n, 0):
                raise QuotaOvercommit(f"total guarantees of {v / 1000} {n} are more than the cluster's "
                           f"{capacity.get(n, 0) / 1000} (use 'force' to set them anyway)")
    for c in configs:
        rq = to_role_quota(c)
        empty = not (rq.guarantees or rq.limits)
        alloc.update_quota(c["role"], None if empty else rq)
        if empty:
            st.quota_configs.pop(c["role"], None)
        else:
            st.quota_configs[c["role"]] = c
        st.out.append(SaveQuota(c["role"], None if empty else c))
    # as Mesos (best effort): outstanding offers were made under the old quotas (a new
    # guarantee must be held back from every role), so they go back and are made again
    for offer in list(st.offers.values()):
        rescind(st, offer, 0.0)
    st.version += 1
    st.wants_allocation = True


def _text(m: dict[str, int]) -> str:
    return ";".join(f"{n}:{v / 1000:g}" for n, v in sorted(m.items())) or "nothing"


def check_hierarchy(quotas: dict[str, RoleQuota]) -> None:
    """Quota on nested roles, as Mesos's ``QuotaTree``: a child's guarantee lies inside its
    parent's, so the guarantees of a role's guarantee children (the nearest roles with
    guarantees below it) add up to no more than its own; a child's limit, and its guarantee,
    are no more than the limit of any ancestor (the ancestor's limit bounds the whole subtree,
    so more could never be offered), and so are the guarantees below a role with a limit and
    no guarantee, together."""
    kids: dict[str, list[str]] = {}
    for role, q in sorted(quotas.items()):
        if "/" not in role:
            continue
        for a in ancestors(role)[:-1]:
            pa = quotas.get(a)
            if pa is None:
                continue
            for what, mine in (("limit", q.limits), ("guarantee", q.guarantees)):
                for n, v in mine.items():
                    lim = pa.limits.get(n)
                    if lim is not None and v > lim:
                        raise _bad(f"{what} '{n}:{v / 1000:g}' of role '{role}' is more than the limit "
                                   f"'{n}:{lim / 1000:g}' of its parent role '{a}'")
        if q.guarantees:
            p = guarantee_parent(role, quotas)
            if p is not None:
                kids.setdefault(p, []).append(role)
    for role, q in sorted(quotas.items()):  # a limit-only role: the guarantees below must fit it
        if q.limits and not q.guarantees:
            tops = _top_guaranteed(quotas, role)
            total = _sum_guarantees(quotas, tops)
            if any(n in q.limits and v > q.limits[n] for n, v in total.items()):
                raise _bad(f"the guarantees below role '{role}' ({_text(total)}: {_names(tops)}) are more "
                           f"than its limit ({_text(q.limits)})")
    for parent, children in sorted(kids.items()):
        total = _sum_guarantees(quotas, children)
        own = quotas[parent].guarantees
        if any(v > own.get(n, 0) for n, v in total.items()):
            raise _bad(f"the guarantees of role '{parent}' ({_text(own)}) do not contain the sum of its "
                       f"children's guarantees ({_text(total)}: {_names(children)})")


def total_guarantees(quotas: dict[str, RoleQuota]) -> dict[str, int]:
    """The guarantees of the top-most guaranteed roles: a child's lies inside its parent's,
    so it is not counted twice against the cluster's capacity."""
    return _sum_guarantees(quotas, _top_guaranteed(quotas, None))


def _top_guaranteed(quotas: dict[str, RoleQuota], under: str | None) -> list[str]:
    """The roles with guarantees strictly below ``under`` (``None``: anywhere) that have no
    guaranteed ancestor there."""
    inside = "" if under is None else under + "/"
    out = []
    for r in sorted(quotas):
        if r.startswith(inside) and quotas[r].guarantees:
            p = guarantee_parent(r, quotas)
            if p is None or (inside and not p.startswith(inside)):
                out.append(r)
    return out


def _sum_guarantees(quotas: dict[str, RoleQuota], roles: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in roles:
        for n, v in quotas[r].guarantees.items():
            out[n] = out.get(n, 0) + v
    return out


def _names(roles: list[str]) -> str:
    return ", ".join(f"'{r}'" for r in roles)


def _role_usage(st: MasterState, role: str) -> dict[str, int]:
    """A role without quota yet: its subtree's allocation (its children count against it)."""
    return st.allocator.subtree_allocation(role)


def _capacity(st: MasterState) -> dict[str, int]:
    """Scalars of every registered agent (the non-revocable capacity Mesos checks against)."""
    return dict(st.allocator._quota.total)


def recover_quotas(st: MasterState, quotas: dict[str, Any]) -> None:
    for role, config in quotas.items():
        st.allocator.update_quota(role, to_role_quota(config))
        st.quota_configs[role] = config


def quota_status(st: MasterState) -> QuotaStatus:
    """QuotaStatus: ``infos`` (legacy, guarantees only) and ``configs``, as GET_QUOTA and ``/quota``."""
    configs = st.quota_configs
    infos = []
    cfgs = []
    for role in sorted(configs):
        c = configs[role]
        infos.append(QuotaInfo(role=role, guarantee=[
            QuotaResource(name=n, type="SCALAR", scalar=Scalar(value=q["value"])) for n, q in c["guarantees"].items()]))
        cfgs.append(QuotaConfig(role=role, guarantees={n: Scalar(value=q["value"]) for n, q in c["guarantees"].items()},
                                limits={n: Scalar(value=q["value"]) for n, q in c["limits"].items()}))
    return QuotaStatus(infos=infos, configs=cfgs)


def get_quota_status(st: MasterState) -> dict[str, Any]:
    """:func:`quota_status` as plain JSON values."""
    return msgspec.to_builtins(quota_status(st))
