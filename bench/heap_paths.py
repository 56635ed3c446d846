"""Where a process's live objects are held: container sizes by attribute path, and who refers
to the objects of one type. Diagnostics for a soak whose RSS grows with live objects (not
garbage): the type counts say *what* grew, these say *which record* holds it."""

from __future__ import annotations

import gc
from collections import defaultdict, deque
from typing import Any

_ATOMS = (str, bytes, int, float, bool, type(None), complex)
_CONTAINERS = (dict, list, set, frozenset, tuple, deque)


def _attrs(o: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    d = getattr(o, "__dict__", None)
    if isinstance(d, dict):
        out += d.items()
    for cls in type(o).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name != "__dict__" and hasattr(o, name):
                out.append((name, getattr(o, name)))
    return out


def container_sizes(root: Any, name: str = "root", max_depth: int = 8,
                    modules: tuple[str, ...] = ("mesos_nb", "bench")) -> dict[str, int]:
    """Summed lengths of the containers reachable from ``root`` through the attributes of
    objects defined in ``modules`` (other objects are not entered), keyed by path; the items of
    a container share one path (``x.tasks[*]``), so a per-framework list growing in every
    framework shows as one growing path. Each object is counted once, at its first path."""
    seen: set[int] = set()
    out: dict[str, int] = defaultdict(int)
    stack: list[tuple[Any, str, int]] = [(root, name, 0)]
    while stack:
        o, path, depth = stack.pop()
        if isinstance(o, _ATOMS) or id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, _CONTAINERS):
            out[path] += len(o)
            if depth < max_depth:
                items = o.values() if isinstance(o, dict) else o
                stack.extend((v, path + "[*]", depth + 1) for v in list(items))
            continue
        if depth >= max_depth or not type(o).__module__.startswith(modules):
            continue
        stack.extend((v, f"{path}.{k}", depth + 1) for k, v in _attrs(o))
    return dict(out)


def referrers_of(type_name: str, up: int = 2, objs: list[Any] | None = None) -> list[dict[str, int]]:
    """Who refers to the live objects of type ``type_name`` (by the referrers' type), then who
    refers to those referrers, ``up`` levels: one pass over the heap (``objs``: the caller's
    ``gc.get_objects()``, frozen generation unfrozen) per level."""
    if objs is None:
        objs = gc.get_objects()
    targets = {id(o) for o in objs if type(o).__qualname__ == type_name}
    levels: list[dict[str, int]] = []
    for _ in range(up):
        counts: dict[str, int] = defaultdict(int)
        holders: set[int] = set()
        for o in objs:
            if id(o) in targets:
                continue
            hit = sum(1 for r in gc.get_referents(o) if id(r) in targets)
            if hit:
                counts[type(o).__qualname__] += hit
                holders.add(id(o))
        levels.append(dict(sorted(counts.items(), key=lambda kv: -kv[1])[:12]))
        targets = holders
    return levels


def grown(before: dict[str, int], after: dict[str, int], top: int = 15) -> dict[str, int]:
    """The paths (or types) whose count grew most from ``before`` to ``after``."""
    d = {k: v - before.get(k, 0) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in d.items() if v > 0), key=lambda kv: -kv[1])[:top])
