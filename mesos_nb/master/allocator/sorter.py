"""Weighted DRF sorter: keeps clients ordered by (dominant share / weight, name).

A client is a role (in the role sorter) or a framework (in a role's framework sorter).
Each client carries its allocation as ``name -> thousandths`` (scalars only, as Mesos's
DRF does). Its dominant share is ``max(allocated[n] / total[n])`` over the resource names
in the shared :class:`Totals` (which already leaves out fairness-excluded names, e.g.
``gpus``).

Only *active* clients are in the order (Mesos deactivates suppressed or inactive
frameworks, and roles with no active framework, in its sorters); inactive clients keep
their allocation, so their share is right the moment they are activated again.

The order is a plain sorted list of ``(key, name)`` kept valid incrementally: an
allocation change removes one entry and bisects it back in (O(log n) search plus a
memmove), so an allocation cycle never re-sorts everything. When the cluster totals
change (an agent added or removed) every key is stale; the sorter notices the totals'
version moved and re-sorts once, lazily, on the next :meth:`order` call.
"""

from __future__ import annotations

from bisect import bisect_left, insort

__all__ = ["DRFSorter", "Members", "Totals", "add_millis", "dominant_share"]


def add_millis(into: dict[str, int], delta: dict[str, int], sign: int = 1) -> None:
    """``into += sign * delta``, dropping names that reach zero (or below): an allocation,
    a cluster total and a quota book all keep only what is there."""
    for n, m in delta.items():
        left = into.get(n, 0) + sign * m
        if left > 0:
            into[n] = left
        else:
            into.pop(n, None)


class Totals:
    """Cluster totals in thousandths, shared by all sorters, with a change counter."""

    __slots__ = ("values", "version")

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.version = 0

    def add(self, delta: dict[str, int], sign: int = 1) -> None:
        add_millis(self.values, delta, sign)
        self.version += 1


def dominant_share(alloc: dict[str, int], totals: dict[str, int]) -> float:
    best = 0.0
    for n, m in alloc.items():
        t = totals.get(n)
        if t:
            s = m / t
            if s > best:
                best = s
    return best


class _Client:
    __slots__ = ("alloc", "weight", "key", "share", "active")

    def __init__(self, weight: float, active: bool) -> None:
        self.alloc: dict[str, int] = {}
        self.weight = weight
        self.key = 0.0
        self.share = 0.0  # unweighted dominant share, current whenever the key is (key = share / weight)
        self.active = active


class Members:
    """``in``, ``len`` and ``clients()`` over ``_members`` (a sorter's clients, a tree's roles)."""

    __slots__ = ()
    _members: dict

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def __len__(self) -> int:
        return len(self._members)

    def clients(self) -> list[str]:
        return list(self._members)


class DRFSorter(Members):
    __slots__ = ("_totals", "_members", "_order", "_version", "_nactive", "epoch")

    def __init__(self, totals: Totals) -> None:
        self._totals = totals
        self._members: dict[str, _Client] = {}
        self._order: list[tuple[float, str]] = []
        self._version = totals.version
        self._nactive = 0
        # moves when a client becomes active or is reopened (:meth:`reopen`): what was decided
        # about "no client may have this" before is stale then (the cycle's refusal memo)
        self.epoch = 0

    # -------------------------------------------------------------- membership

    def active_count(self) -> int:
        return self._nactive

    def is_active(self, name: str) -> bool:
        c = self._members.get(name)
        return c is not None and c.active

    def add(self, name: str, weight: float = 1.0, active: bool = True) -> None:
        if name in self._members:
            return
        self._members[name] = _Client(weight, False)
        if active:
            self.activate(name)

    def remove(self, name: str) -> None:
        c = self._members.get(name)
        if c is None:
            return
        self.deactivate(name)
        del self._members[name]

    def activate(self, name: str) -> None:
        c = self._members[name]
        if c.active:
            return
        c.active = True
        self._nactive += 1
        self.epoch += 1
        if self._version == self._totals.version:
            c.key = self._key(c)
            insort(self._order, (c.key, name))

    def reopen(self) -> None:
        """A client may now take what it could not (a refusal withdrawn, a capability gained)."""
        self.epoch += 1

    def deactivate(self, name: str) -> None:
        c = self._members.get(name)
        if c is None or not c.active:
            return
        c.active = False
        self._nactive -= 1
        if self._version == self._totals.version:
            self._drop(c.key, name)

    def set_weight(self, name: str, weight: float) -> None:
        c = self._members.get(name)
        if c is None or c.weight == weight:
            return
        c.weight = weight
        self._rekey(name, c)

    # -------------------------------------------------------------- allocation
    def add_allocation(self, name: str, delta: dict[str, int]) -> None:
        c = self._members[name]
        a = c.alloc  # add_millis inlined: this runs twice per offer
        if not c.active or self._version != self._totals.version:
            add_millis(a, delta)
            return  # keyed on activation / re-sorted on the next order()
        # an addition only raises shares: the new dominant share is the old one or that of a
        # name that grew, found in the same loop (the very floats dominant_share would compare)
        totals = self._totals.values
        best = c.share
        grew = True
        for n, m in delta.items():
            left = a.get(n, 0) + m
            if left > 0:
                a[n] = left
                t = totals.get(n)
                if t:
                    s = left / t
                    if s > best:
                        best = s
            else:
                a.pop(n, None)
                grew = False
        self._place(name, c, best if grew else dominant_share(a, totals))

    def remove_allocation(self, name: str, delta: dict[str, int]) -> None:
        c = self._members.get(name)
        if c is None:
            return
        a = c.alloc
        for n, m in delta.items():
            left = a.get(n, 0) - m
            if left > 0:
                a[n] = left
            else:
                a.pop(n, None)
        self._rekey(name, c)

    def allocation(self, name: str) -> dict[str, int]:
        return dict(self._members[name].alloc)

    def share(self, name: str) -> float:
        """Unweighted dominant share of ``name``."""
        return dominant_share(self._members[name].alloc, self._totals.values)

    # -------------------------------------------------------------- order
    def order(self) -> list[tuple[float, str]]:
        """Active clients as ``(key, name)``, ascending. The list is live: do not keep iterating it after
        changing an allocation in this sorter."""
        if self._version != self._totals.version:
            self._resort()
        return self._order

    def sorted(self) -> list[str]:
        return [n for _, n in self.order()]

    # -------------------------------------------------------------- internals
    def _key(self, c: _Client) -> float:
        c.share = share = dominant_share(c.alloc, self._totals.values)
        return share / c.weight

    def _rekey(self, name: str, c: _Client) -> None:
        if not c.active or self._version != self._totals.version:
            return  # keyed on activation / re-sorted on the next order()
        self._place(name, c, dominant_share(c.alloc, self._totals.values))

    def _place(self, name: str, c: _Client, share: float) -> None:
        """Key an active client by its new dominant share and move its entry in the order."""
        c.share = share
        new = share / c.weight
        old = c.key
        if new == old:
            return
        c.key = new
        order = self._order
        entry = (new, name)
        i = bisect_left(order, (old, name))
        if i < len(order) and order[i][1] == name:
            # the entry stays where it is (a lone role, a small change): overwrite, no memmove twice
            if (i == 0 or order[i - 1] < entry) and (i + 1 == len(order) or entry < order[i + 1]):
                order[i] = entry
                return
            del order[i]
        else:  # pragma: no cover - defensive; keys are stored exactly
            order[:] = [e for e in order if e[1] != name]
        insort(order, entry)

    def _drop(self, key: float, name: str) -> None:
        order = self._order
        i = bisect_left(order, (key, name))
        if i < len(order) and order[i][1] == name:
            del order[i]
        else:  # pragma: no cover - defensive; keys are stored exactly
            order[:] = [e for e in order if e[1] != name]

    def _resort(self) -> None:
        for c in self._members.values():
            c.key = self._key(c)
        self._order = sorted((c.key, n) for n, c in self._members.items() if c.active)
        self._version = self._totals.version
