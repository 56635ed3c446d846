"""Quota (Mesos 1.9+ guarantees and limits) inside the allocation cycle.

Why a separate module: quota changes *which* resources a role may be offered, not how roles
and frameworks are ordered, so the DRF cycle in :mod:`.allocator` only asks a
:class:`QuotaCycle` (when some role has quota) to cut each offer and to count what was offered.

Semantics (``hierarchical.cpp``):

* **consumed** (per quota role, its whole subtree included: a parent's quota bounds its
  children) = its allocations (offers count) + its reservations not allocated yet;
* **required headroom** = Σ over the top-most quota roles of ``max(0, guarantee − consumed)``;
* **available headroom** = unreserved, unallocated resources of the cluster
  (total − allocated − unallocated reservations);
* stage 1 walks roles under an unmet guarantee first (in DRF order), stage 2 every role;
* an offer's *unreserved* scalars are cut to ``limit − consumed`` of the role and of every
  ancestor with quota, and to what the role may take without eating the others' unmet
  guarantees (``own unmet + available − required``); reservations are consumed already and
  always pass.

The master refuses quota on a nested role today (as the reference says); the allocator
already bounds a subtree by any ancestor's limits, so only the master check would change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mesos_nb.protocol.resources import Resources

from .roletree import RoleTree, ancestors
from .sorter import add_millis

# The allocator's agent records: typed ``Any`` here because this stage must not import the
# allocator module (which imports this one).
_Agent = Any

__all__ = ["QuotaBook", "QuotaCycle", "RoleQuota", "consumption"]

_INF = float("inf")
_NONE: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class RoleQuota:
    """Guarantees and limits in thousandths (name -> millis); a missing limit is unbounded."""

    guarantees: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)


class QuotaBook:
    """Quotas by role, plus the cluster's total scalars (every name, GPUs included)."""

    __slots__ = ("quotas", "total", "biggest", "version")

    def __init__(self) -> None:
        self.version = 0  # moves with anything a QuotaCycle reads (a stepped cycle keeps its own)
        self.quotas: dict[str, RoleQuota] = {}
        self.total: dict[str, int] = {}
        # the most of each scalar any agent ever had: no single offer is bigger (never lowered,
        # so it stays a safe bound after an agent leaves)
        self.biggest: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.quotas)

    def set(self, role: str, quota: RoleQuota | None) -> None:
        self.version += 1
        if quota is None or not (quota.guarantees or quota.limits):
            self.quotas.pop(role, None)
        else:
            self.quotas[role] = quota

    def add_total(self, m: dict[str, int], sign: int = 1) -> None:
        self.version += 1
        add_millis(self.total, m, sign)
        if sign > 0:
            big = self.biggest
            for n, v in m.items():
                if v > big.get(n, 0):
                    big[n] = v

    def chain(self, role: str) -> list[str]:
        """The roles with quota among ``role`` and its ancestors, top-most first."""
        quotas = self.quotas
        if "/" not in role:
            return [role] if role in quotas else []
        return [a for a in ancestors(role) if a in quotas]


def _add(into: dict[str, int], m: dict[str, int], sign: int = 1) -> None:
    for n, v in m.items():
        into[n] = into.get(n, 0) + sign * v


def consumption(
    book: QuotaBook, tree: RoleTree, agents: list[_Agent]
) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int]]:
    """(consumed per quota role, allocated everywhere, unallocated reservations everywhere)."""
    consumed: dict[str, dict[str, int]] = {q: tree.subtree_allocation(q) for q in book.quotas}
    allocated: dict[str, int] = {}
    for role in tree.clients():
        _add(allocated, tree.allocation(role))
    unalloc: dict[str, int] = {}
    for agent in agents:
        if not agent.reserved:
            continue
        res = agent.available.reserved()
        if not res:
            continue
        for role in res.roles():
            m = res.reserved(role).scalar_millis()
            _add(unalloc, m)
            for q in book.chain(role):
                _add(consumed[q], m)
    return consumed, allocated, unalloc


class QuotaCycle:
    """The quota bookkeeping of one allocation cycle, updated after every offer made."""

    __slots__ = ("book", "quotas", "consumed", "headroom", "unmet", "required", "_chains", "_safe")

    def __init__(self, book: QuotaBook, tree: RoleTree, agents: list[_Agent]) -> None:
        self.book = book
        self.quotas = book.quotas
        self.consumed, allocated, unalloc = consumption(book, tree, agents)
        head = dict(book.total)
        _add(head, allocated, -1)
        _add(head, unalloc, -1)
        self.headroom = head
        # unmet guarantees of the top-most quota roles (a child's guarantee lies inside its
        # parent's, so only those add up to the required headroom)
        self.unmet: dict[str, dict[str, int]] = {}
        self.required: dict[str, int] = {}
        self._chains: dict[str, list[str]] = {}
        self._safe = 0  # offers that cannot be cut, whoever gets them (see _safe_offers)
        for q, quota in self.quotas.items():
            if "/" in q and any(a in self.quotas for a in ancestors(q)[:-1]):
                continue
            cons = self.consumed[q]
            need = {n: g - cons.get(n, 0) for n, g in quota.guarantees.items() if g > cons.get(n, 0)}
            if need:
                self.unmet[q] = need
                _add(self.required, need)

    def chain(self, role: str) -> list[str]:
        c = self._chains.get(role)
        if c is None:
            c = self._chains[role] = self.book.chain(role)
        return c

    def in_stage1(self, role: str) -> bool:
        """Whether ``role`` lies under a quota role whose guarantee is not met yet."""
        c = self.chain(role)
        return bool(c) and c[0] in self.unmet

    def _safe_offers(self) -> int:
        """How many offers in a row no bound can cut. No offer is bigger than ``biggest``, and
        one offer lowers each slack (a limit minus its consumption; the headroom beyond the
        unmet guarantees) by at most its own size; so while every slack is ``k`` biggest offers
        or more, the next ``k`` offers pass whole. Most of a cycle on a large cluster is far
        from every bound: the per-name arithmetic of :meth:`cap` runs only near one."""
        big = self.book.biggest
        steps = 1 << 62
        head = self.headroom
        for n, req in self.required.items():
            b = big.get(n)
            if b:
                steps = min(steps, (head.get(n, 0) - req) // b)
        for q, quota in self.quotas.items():
            cons = self.consumed[q]
            for n, lim in quota.limits.items():
                b = big.get(n)
                if b:
                    steps = min(steps, (lim - cons.get(n, 0)) // b)
        return steps

    def cap(self, role: str, offer: Resources, m: dict[str, int], reserved_agent: bool) -> Resources:
        """``offer`` with its unreserved scalars cut to what ``role`` may take (``m``: its scalars)."""
        if self._safe > 0:
            return offer
        safe = self._safe_offers()
        if safe > 0:
            self._safe = safe
            return offer
        chain = self.chain(role)
        required = self.required
        if not chain and not required:
            return offer
        unres = offer.unreserved().scalar_millis() if reserved_agent else m
        own = self.unmet.get(chain[0], _NONE) if chain else _NONE
        head = self.headroom
        cut: dict = {}
        for n, have in unres.items():
            allowed = _INF
            for q in chain:  # the role's own limit and every ancestor's bound the offer
                lim = self.quotas[q].limits.get(n)
                if lim is not None:
                    left = lim - self.consumed[q].get(n, 0)
                    if left < allowed:
                        allowed = left
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
        """Account an offer made: headroom shrinks, the roles' consumption and unmet guarantee move."""
        self._safe -= 1
        unres = offer.unreserved().scalar_millis() if reserved_agent else m
        required = self.required
        if required:  # headroom is read only against required headroom, which never grows in a cycle
            head = self.headroom
            for n, v in unres.items():
                head[n] = head.get(n, 0) - v
        chain = self._chains.get(role)
        if chain is None:
            chain = self.chain(role)
        if not chain:
            return
        consumed = self.consumed
        for q in chain:
            cons = consumed[q]
            for n, v in unres.items():
                cons[n] = cons.get(n, 0) + v
        q = chain[0]
        need = self.unmet.get(q)
        if need:
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
