"""Hierarchical DRF over roles: ``eng/ml/alice`` is sorted as a tree, as Mesos's role sorter does.

Why a tree: with flat roles a team could beat its siblings by spreading work over many
sub-roles (``eng/a``, ``eng/b``, … each starting at share 0). In the tree every internal
node carries the *sum* of its subtree's allocations, siblings are compared by their
weighted dominant share at each level, and the roles are walked depth-first in that order.
So ``eng`` competes with ``sales`` as one client however many children it has; only the
winner's children are then compared among themselves.

Shape: one :class:`DRFSorter` per internal node (the root is ``""``). In the sorter of node
``p`` the clients are ``p``'s children, named by their full path, and — when ``p`` is itself
a role that frameworks use — ``p`` again, standing for ``p``'s *own* allocations (Mesos's
virtual ``.`` leaf). A role's weight applies to its node (subtree) and to its own leaf.
Shares are against the cluster totals at every level (as Mesos).

A role with only top-level roles (the common case) is just the root sorter: :meth:`order`
then hands out the root sorter's live list and costs nothing extra.
"""

from __future__ import annotations

from .sorter import DRFSorter, Members, Totals, dominant_share

__all__ = ["RoleTree", "ancestors"]


def ancestors(role: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b", "a/b/c"]`` (the role last)."""
    parts = role.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _parent(path: str) -> str:
    i = path.rfind("/")
    return "" if i < 0 else path[:i]


class RoleTree(Members):
    """The role sorter: explicit roles (those frameworks use) are leaves of a path tree."""

    __slots__ = ("_totals", "_sorters", "_members", "_nodes", "_weights", "_chains", "_flat", "_version")

    def __init__(self, totals: Totals) -> None:
        self._totals = totals
        self._sorters: dict[str, DRFSorter] = {"": DRFSorter(totals)}
        self._members: dict[str, bool] = {}  # explicit role -> active (has an eligible framework)
        # every node (explicit roles and their ancestors); a node's client in its parent's sorter
        # carries its subtree's allocation, a role's own leaf its own: nothing is counted twice
        self._nodes: dict[str, None] = {}
        self._weights: dict[str, float] = {}
        # role -> [(sorter, client)] that its allocations move: its node in each ancestor's
        # sorter, and its own leaf when the role is an internal node too
        self._chains: dict[str, list[tuple[DRFSorter, str]]] = {}
        self._flat: list[tuple[float, str]] | None = None  # the walk, cached until an order moves
        self._version = -1

    # -------------------------------------------------------------- membership
    def nodes(self) -> list[str]:
        """Every node of the tree: explicit roles and their ancestors."""
        return list(self._nodes)

    def add(self, role: str, weight: float = 1.0, active: bool = True) -> None:
        if role in self._members:
            return
        self._weights.setdefault(role, weight)
        self._members[role] = False
        for path in ancestors(role):
            if path in self._nodes:
                continue
            self._nodes[path] = None
            parent = _parent(path)
            if parent not in self._sorters:
                self._make_internal(parent)
            self._sorters[parent].add(path, self._weights.get(path, 1.0), active=False)
        if role in self._sorters:  # an existing internal node becomes a role too: its own leaf
            self._sorters[role].add(role, self._weights[role], active=False)
        self._rechain()
        if active:
            self.activate(role)

    def _make_internal(self, node: str) -> None:
        """``node`` gets its first child: a sorter of its own; its own allocations (if it is a
        role) move into a leaf client there."""
        s = self._sorters[node] = DRFSorter(self._totals)
        if node in self._members:
            s.add(node, self._weights.get(node, 1.0), active=self._members[node])
            own = self._sorters[_parent(node)].allocation(node)  # a leaf until now: subtree = own
            if own:
                s.add_allocation(node, own)

    def remove(self, role: str) -> None:
        if role not in self._members:
            return
        self.deactivate(role)
        own = self.allocation(role)
        if own:
            self._move(role, own, -1)
        del self._members[role]
        if role in self._sorters:
            self._sorters[role].remove(role)
        # prune nodes that no explicit role needs any more, bottom-up
        for path in reversed(ancestors(role)):
            s = self._sorters.get(path)
            if path in self._members or (s is not None and len(s)):
                break
            if s is not None:
                del self._sorters[path]
            parent = _parent(path)
            self._sorters[parent].remove(path)
            del self._nodes[path]
        # an internal role left with only its own leaf becomes a plain leaf again
        for path in ancestors(role)[:-1]:
            s = self._sorters.get(path)
            if s is not None and path in self._members and len(s) == 1:
                del self._sorters[path]
        self._rechain()
        self._refresh_up(role)

    def _rechain(self) -> None:
        chains = {}
        sorters = self._sorters
        for role in self._members:
            chain = [(sorters[_parent(p)], p) for p in ancestors(role)]
            if role in sorters:
                chain.append((sorters[role], role))
            chains[role] = chain
        self._chains = chains
        self._flat = None

    # -------------------------------------------------------------- activity
    def is_active(self, role: str) -> bool:
        return self._members.get(role, False)

    def activate(self, role: str) -> None:
        if self._members.get(role) is False:
            self._members[role] = True
            self._refresh_up(role)

    def deactivate(self, role: str) -> None:
        if self._members.get(role):
            self._members[role] = False
            self._refresh_up(role)

    def _refresh_up(self, role: str) -> None:
        """A leaf is active with its role; an internal node while any client below it is."""
        sorters = self._sorters
        own_active = self._members.get(role, False)
        if role in sorters and role in self._members:
            (sorters[role].activate if own_active else sorters[role].deactivate)(role)
        for path in reversed(ancestors(role)):
            if path not in self._nodes:
                continue
            s = sorters.get(path)
            on = s.active_count() > 0 if s is not None else self._members.get(path, False)
            parent = sorters[_parent(path)]
            (parent.activate if on else parent.deactivate)(path)
        self._flat = None

    # -------------------------------------------------------------- weights
    def set_weight(self, role: str, weight: float) -> None:
        """Weights apply per node: a parent's weight scales its whole subtree against its siblings."""
        self._weights[role] = weight
        if role in self._nodes:
            self._sorters[_parent(role)].set_weight(role, weight)
        s = self._sorters.get(role)
        if s is not None and role in s:
            s.set_weight(role, weight)
        self._flat = None

    # -------------------------------------------------------------- allocation
    def add_allocation(self, role: str, delta: dict[str, int]) -> None:
        for s, client in self._chains[role]:  # (not via _move: once per offer, kept short)
            s.add_allocation(client, delta)
        self._flat = None

    def remove_allocation(self, role: str, delta: dict[str, int]) -> None:
        chain = self._chains.get(role)
        if chain is not None:
            for s, client in chain:
                s.remove_allocation(client, delta)
            self._flat = None

    def _move(self, role: str, delta: dict[str, int], sign: int) -> None:
        for s, client in self._chains[role]:
            if sign > 0:
                s.add_allocation(client, delta)
            else:
                s.remove_allocation(client, delta)
        self._flat = None

    def allocation(self, role: str) -> dict[str, int]:
        """The role's own allocation (not its children's): its own leaf."""
        s = self._sorters.get(role)
        return (s if s is not None else self._sorters[_parent(role)]).allocation(role)

    def subtree_allocation(self, node: str) -> dict[str, int]:
        """The allocation of ``node`` and every role below it (what a parent's quota bounds)."""
        return self._sorters[_parent(node)].allocation(node) if node in self._nodes else {}

    def share(self, role: str) -> float:
        """Unweighted dominant share of the role's subtree (its own share when it is a leaf)."""
        return dominant_share(self.subtree_allocation(role), self._totals.values)

    # -------------------------------------------------------------- order
    def order(self) -> list[tuple[float, str]]:
        """Active explicit roles as ``(key, role)`` in hierarchical DRF order: the tree walked
        depth-first, the children of each node in ascending ``share / weight``. Do not keep
        iterating it after changing an allocation."""
        sorters = self._sorters
        if len(sorters) == 1:
            return sorters[""].order()
        if self._flat is None or self._version != self._totals.version:
            out: list[tuple[float, str]] = []
            self._walk("", out)
            self._flat = out
            self._version = self._totals.version
        return self._flat

    def _walk(self, node: str, out: list[tuple[float, str]]) -> None:
        sorters = self._sorters
        for key, client in sorters[node].order():
            if client != node and client in sorters:
                self._walk(client, out)
            else:
                out.append((key, client))

    def sorted(self) -> list[str]:
        return [r for _, r in self.order()]
