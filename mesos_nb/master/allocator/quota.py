"""Quota (Mesos 1.9+ guarantees and limits) inside the allocation cycle.

Why a separate module: quota changes *which* resources a role may be offered, not how roles
and frameworks are ordered, so the DRF cycle in :mod:`.allocator` stays untouched and only
hands its candidates here when some role has quota.

Semantics (``hierarchical.cpp``):

* **consumed** (per top-level role, children included) = its allocations (offers count) +
  its reservations not allocated yet;
* **required headroom** = Σ over quota roles of ``max(0, guarantee − consumed)``;
* **available headroom** = unreserved, unallocated resources of the cluster
  (total − allocated − unallocated reservations);
* stage 1 walks roles with an unmet guarantee first (in DRF order), stage 2 every role;
* an offer's *unreserved* scalars are cut to ``limit − consumed`` of its role and to what
  the role may take without eating the others' unmet guarantees
  (``own unmet + available − required``); reservations are consumed already and always pass.

Quota on a nested role is refused by the master; a child role's usage counts against its
top-level role's quota.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mesos_nb.protocol.resources import Resources

if TYPE_CHECKING:
    from .allocator import Allocation, HierarchicalDRFAllocator, _Agent

__all__ = ["QuotaBook", "RoleQuota", "allocate_with_quota", "top_role"]

_INF = float("inf")
_NONE: dict[str, int] = {}


def top_role(role: str) -> str:
    return role.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class RoleQuota:
    """Guarantees and limits in thousandths (name -> millis); a missing limit is unbounded."""

    guarantees: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)


class QuotaBook:
    """Quotas by role, plus the cluster's total scalars (every name, GPUs included)."""

    __slots__ = ("quotas", "total")

    def __init__(self) -> None:
        self.quotas: dict[str, RoleQuota] = {}
        self.total: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.quotas)

    def set(self, role: str, quota: RoleQuota | None) -> None:
        if quota is None or not (quota.guarantees or quota.limits):
            self.quotas.pop(role, None)
        else:
            self.quotas[role] = quota

    def add_total(self, m: dict[str, int], sign: int = 1) -> None:
        t = self.total
        for n, v in m.items():
            left = t.get(n, 0) + sign * v
            if left > 0:
                t[n] = left
            else:
                t.pop(n, None)


def _add(into: dict[str, int], m: dict[str, int], sign: int = 1) -> None:
    for n, v in m.items():
        into[n] = into.get(n, 0) + sign * v


def consumption(alloc: HierarchicalDRFAllocator) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int]]:
    """(consumed per quota role, allocated everywhere, unallocated reservations everywhere)."""
    quotas = alloc._quota.quotas
    consumed: dict[str, dict[str, int]] = {q: {} for q in quotas}
    allocated: dict[str, int] = {}
    sorter = alloc._roles
    for role in sorter.clients():
        m = sorter.allocation(role)
        _add(allocated, m)
        c = consumed.get(top_role(role))
        if c is not None:
            _add(c, m)
    unalloc: dict[str, int] = {}
    for agent in alloc._agents.values():
        if not agent.reserved:
            continue
        res = agent.available.reserved()
        if not res:
            continue
        for role in res.roles():
            m = res.reserved(role).scalar_millis()
            _add(unalloc, m)
            c = consumed.get(top_role(role))
            if c is not None:
                _add(c, m)
    return consumed, allocated, unalloc


class _Cycle:
    """The quota bookkeeping of one allocation cycle, updated after every offer made."""

    __slots__ = ("quotas", "consumed", "headroom", "unmet", "required")

    def __init__(self, alloc: HierarchicalDRFAllocator) -> None:
        self.quotas = alloc._quota.quotas
        self.consumed, allocated, unalloc = consumption(alloc)
        head = dict(alloc._quota.total)
        _add(head, allocated, -1)
        _add(head, unalloc, -1)
        self.headroom = head
        self.unmet: dict[str, dict[str, int]] = {}
        self.required: dict[str, int] = {}
        for q, quota in self.quotas.items():
            self._set_unmet(q, quota)

    def _set_unmet(self, q: str, quota: RoleQuota) -> None:
        old = self.unmet.pop(q, None)
        if old:
            _add(self.required, old, -1)
            for n in old:
                if not self.required.get(n):
                    self.required.pop(n, None)
        cons = self.consumed[q]
        need = {n: g - cons.get(n, 0) for n, g in quota.guarantees.items() if g > cons.get(n, 0)}
        if need:
            self.unmet[q] = need
            _add(self.required, need)

    def cap(self, role: str, offer: Resources, m: dict[str, int], reserved_agent: bool) -> Resources:
        """``offer`` with its unreserved scalars cut to what ``role`` may take (``m``: its scalars)."""
        q = role if "/" not in role else top_role(role)
        quota = self.quotas.get(q)
        required = self.required
        if quota is None and not required:
            return offer
        unres = offer.unreserved().scalar_millis() if reserved_agent else m
        own = self.unmet.get(q, _NONE)
        cons = self.consumed.get(q, _NONE)
        head = self.headroom
        cut: dict = {}
        for n, have in unres.items():
            allowed = _INF
            if quota is not None:
                lim = quota.limits.get(n)
                if lim is not None:
                    allowed = lim - cons.get(n, 0)
            req = required.get(n, 0)
            if req:
                free = head.get(n, 0) - req
                allowed = min(allowed, own.get(n, 0) + (free if free > 0 else 0))
            if have > allowed:
                cut[(n, "*")] = have - (int(allowed) if allowed > 0 else 0)
        if not cut:
            return offer
        return offer - Resources._make(cut, {}, {})

    def charge(self, role: str, offer: Resources, m: dict[str, int], reserved_agent: bool) -> None:
        """Account an offer made: headroom shrinks, the role's consumption and unmet guarantee move."""
        unres = offer.unreserved().scalar_millis() if reserved_agent else m
        head = self.headroom
        for n, v in unres.items():
            head[n] = head.get(n, 0) - v
        q = role if "/" not in role else top_role(role)
        if q not in self.quotas:
            return
        cons = self.consumed[q]
        for n, v in unres.items():
            cons[n] = cons.get(n, 0) + v
        need = self.unmet.get(q)
        if need:
            required = self.required
            for n in list(need):
                got = unres.get(n, 0)
                if not got:
                    continue
                left = need[n]
                used = got if got < left else left
                if required[n] == used:
                    del required[n]
                else:
                    required[n] -= used
                if used == left:
                    del need[n]
                else:
                    need[n] = left - used
            if not need:
                del self.unmet[q]


def allocate_with_quota(alloc: HierarchicalDRFAllocator, cands: list[_Agent], now: float) -> list[Allocation]:
    """The cycle of :meth:`HierarchicalDRFAllocator.allocate` with quota applied (see module doc)."""
    from .allocator import _EMPTY, Allocation

    cyc = _Cycle(alloc)
    out: list[Allocation] = []
    role_sorter = alloc._roles
    fsorters = alloc._fsorters
    fws = alloc._fws
    filter_gpu = alloc._filter_gpu
    enough = alloc._enough
    account = alloc._account
    unmet = cyc.unmet

    for agent in cands:
        avail = agent.available
        aid = agent.id
        reserved = agent.reserved
        no_gpu_ok = agent.gpu and filter_gpu
        done: set[str] = set()
        again = True
        while again and avail:
            again = False
            for stage in (1, 2) if unmet else (2,):
                for _, role in role_sorter.order():
                    if role in done or (stage == 1 and (role if "/" not in role else top_role(role)) not in unmet):
                        continue
                    offer = avail.allocatable_to(role) if reserved else avail
                    if not offer:
                        continue
                    m = offer.scalar_millis()
                    capped = cyc.cap(role, offer, m, reserved)
                    if capped is not offer:
                        if not capped:
                            continue
                        offer = capped
                        m = offer.scalar_millis()
                    if not enough(m):
                        continue
                    chosen = None
                    for _, fid in fsorters[role].order():
                        fw = fws[fid]
                        if no_gpu_ok and not fw.gpu_aware:
                            continue
                        if fw.filters and fw.filters.is_filtered(role, aid, offer, now):
                            continue
                        chosen = fw
                        break
                    if chosen is None:
                        continue
                    account(chosen, role, agent, offer, m)
                    cyc.charge(role, offer, m, reserved)
                    avail = _EMPTY if offer is avail else avail - offer
                    agent.available = avail
                    out.append(Allocation(chosen.id, role, aid, offer))
                    done.add(role)
                    again = True
                    break
                if again:
                    break
    return out
