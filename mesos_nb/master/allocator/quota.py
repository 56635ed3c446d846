"""Quota (Mesos 1.9+ guarantees and limits) inside the allocation cycle.

Why a separate module: quota changes *which* resources a role may be offered, not how roles
and frameworks are ordered, so the DRF cycle in :mod:`.allocator` only asks a
:class:`QuotaCycle` (when some role has quota) to cut each offer and to count what was offered.

Semantics (``hierarchical.cpp``, with quota on nested roles as its ``QuotaTree`` lays out):

* **consumed** (per quota role, its whole subtree included: a parent's quota bounds its
  children) = its allocations (offers count) + its reservations not allocated yet;
* **held** (per role with guarantees) = ``max(own shortfall, Σ held of its guarantee
  children)``, where the shortfall is ``max(0, guarantee − consumed)`` and a role's guarantee
  children are the nearest roles with guarantees below it. Guarantees are met bottom-up: a
  child's unmet guarantee stays held inside its parent's even once the parent's own
  consumption (its other children's) has reached the parent's guarantee;
* **required headroom** = Σ held over the top-most roles with guarantees (a child's
  guarantee lies inside its parent's, so it is not counted twice);
* **available headroom** = unreserved, unallocated resources of the cluster
  (total − allocated − unallocated reservations);
* what a role may take of the held headroom (its *own*): at every guarantee role above it,
  that role's held minus what its other guarantee children hold;
* stage 1 walks the roles that own some held headroom first (in DRF order), stage 2 every
  role;
* an offer's *unreserved* scalars are cut to ``limit − consumed`` of the role and of every
  ancestor with quota (allocation to ``eng/ml`` counts against ``eng``'s limit; an ancestor's
  limit also keeps back what the guarantees below it that the role does not own still hold),
  and to what the role may take without eating the others' held guarantees (``own +
  available − required``); reservations are consumed already and always pass.
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

__all__ = ["QuotaBook", "QuotaCycle", "RoleQuota", "consumption", "guarantee_parent"]

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


def guarantee_parent(role: str, quotas: dict[str, RoleQuota]) -> str | None:
    """The nearest strict ancestor of ``role`` with guarantees: the one whose guarantee
    ``role``'s lies inside (``None`` for a top-most guaranteed role)."""
    if "/" not in role:
        return None
    for a in reversed(ancestors(role)[:-1]):
        q = quotas.get(a)
        if q is not None and q.guarantees:
            return a
    return None


def _depth(role: str) -> int:
    return role.count("/")


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

    __slots__ = ("book", "quotas", "consumed", "headroom", "unmet", "required", "_chains", "_gchains",
                 "_short", "_kids", "_gparent", "_under", "_roots", "_safe")

    def __init__(self, book: QuotaBook, tree: RoleTree, agents: list[_Agent]) -> None:
        self.book = book
        self.quotas = quotas = book.quotas
        self.consumed, allocated, unalloc = consumption(book, tree, agents)
        head = dict(book.total)
        _add(head, allocated, -1)
        _add(head, unalloc, -1)
        self.headroom = head
        # per role with guarantees: ``unmet`` its held headroom (nonzero only), ``_short`` its
        # own shortfall, ``_kids`` the sum of its guarantee children's held
        self.unmet: dict[str, dict[str, int]] = {}
        self.required: dict[str, int] = {}
        self._short: dict[str, dict[str, int]] = {}
        self._kids: dict[str, dict[str, int]] = {}
        self._gparent: dict[str, str | None] = {}
        self._chains: dict[str, list[str]] = {}
        self._gchains: dict[str, list[str]] = {}
        self._safe = 0  # offers that cannot be cut, whoever gets them (see _safe_offers)
        guaranteed = [q for q, quota in quotas.items() if quota.guarantees]
        guaranteed.sort(key=_depth, reverse=True)  # children before parents
        # a role with limits -> the guaranteed roles in its subtree, whose holds its slack caps
        self._under: dict[str, list[str]] = {}
        for q in guaranteed:
            cons = self.consumed[q]
            self._short[q] = {n: g - cons.get(n, 0) for n, g in quotas[q].guarantees.items() if g > cons.get(n, 0)}
            self._gparent[q] = guarantee_parent(q, quotas)
            for a in self.chain(q)[:-1]:
                if quotas[a].limits:
                    self._under.setdefault(a, []).append(q)
            self._settle(q)
        # a role with limits and guaranteed roles below it -> the top-most guaranteed roles in
        # its subtree: its limit holds their unmet guarantees back from the rest of the subtree
        self._roots: dict[str, list[str]] = {}
        for a in self._under:
            if a in self._gparent:
                self._roots[a] = [a]
            else:
                inside = a + "/"
                self._roots[a] = [g for g in self._under[a]
                                  if not (self._gparent[g] or "").startswith(inside)]

    def _settle(self, q: str) -> None:
        """Recompute ``q``'s held headroom from its shortfall and its children's; pass the
        change up to its guarantee parent (or to the required headroom for a top-most one)."""
        held = dict(self._short[q])
        for n, v in self._kids.get(q, _NONE).items():
            if v > held.get(n, 0):
                held[n] = v
        # never more than may still be offered under its ancestors' limits (its own bounds its
        # guarantee already: the master refuses a guarantee over a limit)
        for a in self.chain(q)[:-1]:
            lims = self.quotas[a].limits
            if not lims:
                continue
            cons = self.consumed[a]
            for n in [n for n in held if n in lims]:
                slack = lims[n] - cons.get(n, 0)
                if slack < held[n]:
                    if slack > 0:
                        held[n] = slack
                    else:
                        del held[n]
        old = self.unmet.get(q, _NONE)
        if held == old:
            return
        if held:
            self.unmet[q] = held
        else:
            self.unmet.pop(q, None)
        p = self._gparent[q]
        into = self.required if p is None else self._kids.setdefault(p, {})
        for n in set(held) | set(old):
            v = into.get(n, 0) + held.get(n, 0) - old.get(n, 0)
            if v:
                into[n] = v
            else:
                into.pop(n, None)

    def chain(self, role: str) -> list[str]:
        c = self._chains.get(role)
        if c is None:
            c = self._chains[role] = self.book.chain(role)
        return c

    def _gchain(self, role: str) -> list[str]:
        """The roles with guarantees among ``role`` and its ancestors, top-most first."""
        c = self._gchains.get(role)
        if c is None:
            c = self._gchains[role] = [q for q in self.chain(role) if q in self._gparent]
        return c

    def own(self, role: str, within: str | None = None) -> dict[str, int]:
        """What ``role`` may take of the held headroom: at every guarantee role above it, what
        that role holds beyond its other guarantee children's holds (with ``within``: of the
        holds inside that role's subtree only)."""
        chain = self._gchain(role)
        if within is not None:
            inside = within + "/"
            chain = [g for g in chain if g == within or g.startswith(inside)]
        if not chain:
            return _NONE
        unmet, kids = self.unmet, self._kids
        if len(chain) == 1 and chain[0] not in kids:  # (flat quota: the role's own held)
            return unmet.get(chain[0], _NONE)
        out: dict[str, int] | None = None
        for i, q in enumerate(chain):
            mine = unmet.get(chain[i + 1], _NONE) if i + 1 < len(chain) else _NONE
            k = kids.get(q, _NONE)
            level = {}
            for n, v in unmet.get(q, _NONE).items():
                left = v - k.get(n, 0) + mine.get(n, 0)
                if left > 0:
                    level[n] = left
            out = level if out is None else {n: min(v, level[n]) for n, v in out.items() if n in level}
            if not out:
                return _NONE
        return out or _NONE

    def _held_in(self, a: str) -> dict[str, int]:
        """The headroom held for guarantees inside ``a``'s subtree (``a`` in :attr:`_roots`)."""
        out: dict[str, int] = {}
        for g in self._roots[a]:
            _add(out, self.unmet.get(g, _NONE))
        return out

    def _held_for_others(self, role: str, a: str) -> dict[str, int]:
        """What ``a``'s limit must keep for guarantees below it that ``role`` does not own."""
        mine = self.own(role, a)
        return {n: v - mine.get(n, 0) for n, v in self._held_in(a).items() if v > mine.get(n, 0)}

    def in_stage1(self, role: str) -> bool:
        """Whether ``role`` owns some held headroom (it lies under an unmet guarantee that its
        siblings' guarantees do not hold all of)."""
        return bool(self.own(role))

    def _safe_offers(self) -> int:
        """How many offers in a row no bound can cut. No offer is bigger than ``biggest``, and
        one offer lowers each slack (a limit minus its consumption; the headroom beyond the
        required headroom) by at most its own size; so while every slack is ``k`` biggest offers
        or more, the next ``k`` offers pass whole. Most of a cycle on a large cluster is far
        from every bound: the per-name arithmetic of :meth:`cap` runs only near one."""
        big = self.book.biggest
        steps = 1 << 62
        head = self.headroom
        for n, req in self.required.items():
            b = big.get(n)
            if b:
                steps = min(steps, (head.get(n, 0) - req) // b)
        roots = self._roots
        for q, quota in self.quotas.items():
            cons = self.consumed[q]
            held = self._held_in(q) if q in roots else _NONE
            for n, lim in quota.limits.items():
                b = big.get(n)
                if b:
                    steps = min(steps, (lim - cons.get(n, 0) - held.get(n, 0)) // b)
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
        own = self.own(role) if required else _NONE
        head = self.headroom
        roots = self._roots
        # a limit above the role keeps back what it must for the guarantees below it that the
        # role does not own (eng's limit for eng/ml's unmet guarantee, against eng/web)
        kept = {q: self._held_for_others(role, q) for q in chain if q in roots} if roots else _NONE
        cut: dict = {}
        for n, have in unres.items():
            allowed = _INF
            for q in chain:  # the role's own limit and every ancestor's bound the offer
                lim = self.quotas[q].limits.get(n)
                if lim is not None:
                    left = lim - self.consumed[q].get(n, 0) - kept.get(q, _NONE).get(n, 0)
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
        """Account an offer made: headroom shrinks, the consumption of the role and of its
        ancestors with quota grows, their shortfalls and held headroom move (bottom-up)."""
        self._safe -= 1
        unres = offer.unreserved().scalar_millis() if reserved_agent else m
        if self.required:  # headroom is read only against required headroom, which never grows in a cycle
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
        unmet = self.unmet
        if not unmet:
            return
        gchain = self._gchain(role)
        if not gchain:
            return
        if not self._kids and not self._under:  # no guarantee inside another or under a limit
            self._charge_flat(gchain[0], unres)
            return
        short = self._short
        for q in gchain:
            need = short[q]
            for n in [n for n in need if unres.get(n)]:
                left = need[n] - unres[n]
                if left > 0:
                    need[n] = left
                else:
                    del need[n]
        todo = gchain
        under = self._under
        if under and (len(chain) > 1 or "/" in role):  # (nested: a limit's slack caps its subtree's holds)
            more = {q for a in chain for q in under.get(a, ())}
            if more:
                todo = sorted(more.union(gchain), key=_depth)
        for q in reversed(todo):  # (the deepest first: a parent settles on its children)
            self._settle(q)

    def _charge_flat(self, q: str, unres: dict[str, int]) -> None:
        """:meth:`charge` when no guarantee lies inside another or under a limit (the usual
        case): the hold of ``q`` is its shortfall, and the required headroom moves with it."""
        need = self.unmet.get(q)
        if not need:
            return
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
