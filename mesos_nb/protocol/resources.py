"""Resource arithmetic: the value type the master, agents and the allocator share.

A :class:`Resources` is an immutable bag of named resources, each either unreserved
(role ``"*"``) or statically reserved for one role. Three kinds, as in Mesos:

* scalars (``cpus``, ``mem``, ``disk``, ``gpus``, custom), kept as integer *thousandths*
  because Mesos gives scalars three decimal digits of precision; so ``0.1 + 0.2`` is
  exactly ``0.3`` here and repeated add/sub never drifts;
* ranges (``ports``), kept as a sorted tuple of disjoint, non-adjacent ``(begin, end)``;
* sets, kept as a ``frozenset`` of strings.

Every component is keyed by ``(name, role)`` in a flat dict, which keeps the allocator's
many ``+``, ``-`` and ``contains`` per cycle cheap. Empty components are never stored, so
two equal bags always have equal dicts.

Text syntax is the agent's ``--resources`` flag (``cpus:4;mem:8192;ports:[31000-32000]``,
``cpus(ads):2`` for a static reservation), parsed in ``resource_text.py``; a JSON array of
Resource objects is accepted too.
Dynamic and refined reservations and persistent-volume disk info are kept in the role part
of the key as a *tag*: ``role + "\x1f" + canonical JSON of {"r": reservations stack,
"d": disk}``. The role before the separator is the current (most refined) role, so role
filters stay cheap, and two components are the same only when their whole reservation
stack, principal, labels and disk info agree (Mesos' rule for merging resources). The
separator can never occur in a valid role. Revocable and shared markers are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import messages
from .resource_text import (
    NAME_RE,
    Key,
    ResourceParseError,
    merge_ranges,
    parse_text,
    to_millis,
    valid_role,
)

__all__ = ["Resources", "ResourceParseError"]


_V = TypeVar("_V")


def _fmt_millis(m: int) -> str:
    if m % 1000 == 0:
        return str(m // 1000)
    return f"{m / 1000:.3f}".rstrip("0").rstrip(".")


def _minus(mine: dict[Key, _V], theirs: dict[Key, _V], sub: Callable[[_V, _V], _V]) -> dict[Key, _V]:
    """Ranges or sets less ``theirs``, key by key (``sub`` takes one value from another); a key
    left empty is dropped."""
    out = mine.copy()
    for k, v in theirs.items():
        cur = out.get(k)
        if cur:
            left = sub(cur, v)
            if left:
                out[k] = left
            else:
                del out[k]
    return out


def _sub_ranges(
    a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, int], ...]:
    """a minus b; both sorted and coalesced."""
    out: list[tuple[int, int]] = []
    j = 0
    nb = len(b)
    for lo, hi in a:
        cur = lo
        while j < nb and b[j][1] < cur:
            j += 1
        k = j
        while k < nb and b[k][0] <= hi:
            bb, be = b[k]
            if bb > cur:
                out.append((cur, bb - 1))
            cur = max(cur, be + 1)
            if cur > hi:
                break
            k += 1
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def _ranges_contain(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    """Every range of b lies inside one range of a (a coalesced, so this is exact)."""
    i = 0
    na = len(a)
    for lo, hi in b:
        while i < na and a[i][1] < lo:
            i += 1
        if i == na or a[i][0] > lo or a[i][1] < hi:
            return False
    return True


def _fmt_ranges(r: tuple[tuple[int, int], ...], sep: str) -> str:
    return "[" + sep.join(f"{b}-{e}" for b, e in r) + "]"


def _fmt_set(s: frozenset[str], sep: str) -> str:
    return "{" + sep.join(sorted(s)) + "}"


SEP = "\x1f"


def role_of(tag: str) -> str:
    """The current role of a key's role tag (see the module docstring)."""
    return tag if SEP not in tag else tag.split(SEP, 1)[0]


def tag_extra(tag: str) -> dict[str, Any]:
    """The reservation stack (``r``) and disk info (``d``) of a tag; ``{}`` for plain roles."""
    if SEP not in tag:
        return {}
    return json.loads(tag.split(SEP, 1)[1])


def make_tag(role: str, stack: list[dict[str, Any]] | None, disk: Any) -> str:
    """Plain ``role`` for unreserved / static-only resources without disk info, else a tag."""
    dynamic = bool(stack) and (len(stack) > 1 or stack[0].get("type") != "STATIC")
    if not dynamic and not disk:
        return role
    extra: dict[str, Any] = {}
    if stack:
        extra["r"] = stack
    if disk:
        extra["d"] = disk
    return role + SEP + json.dumps(extra, sort_keys=True, separators=(",", ":"))


def _ancestors(role: str) -> list[str]:
    """``eng/backend/x`` -> [``eng/backend/x``, ``eng/backend``, ``eng``]."""
    out = [role]
    while "/" in role:
        role = role.rsplit("/", 1)[0]
        out.append(role)
    return out


class Resources:
    """Immutable bag of resources. See the module docstring for the representation."""

    __slots__ = ("_s", "_r", "_t", "_m")

    _s: dict[Key, int]
    _r: dict[Key, tuple[tuple[int, int], ...]]
    _t: dict[Key, frozenset[str]]

    def __init__(self) -> None:
        self._s = {}
        self._r = {}
        self._t = {}
        self._m: dict[str, int] | None = None

    @classmethod
    def _make(
        cls,
        s: dict[Key, int],
        r: dict[Key, tuple[tuple[int, int], ...]],
        t: dict[Key, frozenset[str]],
    ) -> Resources:
        obj = object.__new__(cls)
        obj._s = s
        obj._r = r
        obj._t = t
        obj._m = None
        return obj

    # ------------------------------------------------------------------ constructors
    @classmethod
    def scalars_of(cls, role: str = "*", **values: float) -> Resources:
        """Convenience: ``Resources.scalars_of(cpus=1, mem=128)``."""
        s: dict[Key, int] = {}
        for name, v in values.items():
            m = to_millis(float(v), f"{name}:{v}", str(v))
            if m:
                s[(name, role)] = m
        return cls._make(s, {}, {})

    @classmethod
    def parse(cls, text: str, default_role: str = "*") -> Resources:
        """Parse the agent ``--resources`` syntax (``resource_text.py``) or a JSON array of
        Resource objects."""
        if not isinstance(text, str):
            raise ResourceParseError(f"Bad resources {text!r}: expected a string")
        stripped = text.strip()
        if stripped.startswith("[") or stripped.startswith("{"):
            return cls._parse_json(stripped)
        return cls._make(*parse_text(stripped, default_role))

    @classmethod
    def _parse_json(cls, text: str) -> Resources:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ResourceParseError(f"Bad resources JSON: {e}") from None
        if not isinstance(data, list):
            raise ResourceParseError("Bad resources JSON: expected an array of Resource objects")
        try:
            items = messages.convert(data, list[messages.Resource])
        except messages.ProtocolError as e:
            raise ResourceParseError(f"Bad resources JSON: {e}") from None
        return cls.from_proto(items)

    @classmethod
    def from_proto(cls, items: Iterable[messages.Resource]) -> Resources:
        """Build from v1 Resource messages, validating each one."""
        s: dict[Key, int] = {}
        r: dict[Key, tuple[tuple[int, int], ...]] = {}
        t: dict[Key, frozenset[str]] = {}
        kinds: dict[str, str] = {}
        for res in items:
            name = res.name
            if not name or not NAME_RE.match(name):
                raise ResourceParseError(f"Resource name {name!r} is not valid")
            role = _proto_role(res)
            why = valid_role(role)
            if why:
                raise ResourceParseError(f"Resource '{name}' has a bad role: {why}")
            stack = _proto_stack(res, role)
            for entry in stack:
                why = valid_role(entry.get("role", ""))
                if why or entry.get("role") == "*":
                    raise ResourceParseError(f"Resource '{name}' has a bad reservation role: {why or '*'}")
            role = make_tag(role, stack, _proto_disk(res))
            prev = kinds.setdefault(name, res.type)
            if prev != res.type:
                raise ResourceParseError(
                    f"Resource '{name}' is given as both {prev} and {res.type}"
                )
            key = (name, role)
            if res.type == "SCALAR":
                if res.scalar is None or res.ranges is not None or res.set is not None:
                    raise ResourceParseError(
                        f"Resource '{name}' of type SCALAR must have only a scalar value"
                    )
                v = res.scalar.value
                m = to_millis(v, name, repr(v), proto=True)
                if m:
                    s[key] = s.get(key, 0) + m
            elif res.type == "RANGES":
                if res.ranges is None or res.scalar is not None or res.set is not None:
                    raise ResourceParseError(
                        f"Resource '{name}' of type RANGES must have only a ranges value"
                    )
                rr = []
                for rg in res.ranges.range:
                    if rg.begin < 0 or rg.end < 0:
                        raise ResourceParseError(
                            f"Resource '{name}' has a negative range {rg.begin}-{rg.end}"
                        )
                    if rg.begin > rg.end:
                        raise ResourceParseError(
                            f"Resource '{name}' has range {rg.begin}-{rg.end} whose begin is greater than its end"
                        )
                    rr.append((rg.begin, rg.end))
                if rr:
                    r[key] = merge_ranges(list(r.get(key, ())) + rr)
            elif res.type == "SET":
                if res.set is None or res.scalar is not None or res.ranges is not None:
                    raise ResourceParseError(
                        f"Resource '{name}' of type SET must have only a set value"
                    )
                items_ = res.set.item
                if len(set(items_)) != len(items_):
                    raise ResourceParseError(f"Resource '{name}' has duplicate set items")
                if items_:
                    t[key] = t.get(key, frozenset()) | frozenset(items_)
            else:  # pragma: no cover - msgspec Literal already rejects others
                raise ResourceParseError(f"Resource '{name}' has unknown type {res.type!r}")
        return cls._make(s, r, t)

    def to_proto(self, allocation_role: str | None = None) -> list[messages.Resource]:
        out: list[messages.Resource] = []
        alloc = messages.AllocationInfo(role=allocation_role) if allocation_role is not None else None

        def _common(name: str, role: str) -> dict[str, Any]:
            if SEP in role:
                role, extra = role.split(SEP, 1)
                data = json.loads(extra)
                kw = {"name": name, "role": role, "allocation_info": alloc}
                kw["reservations"] = data.get("r") or [{"type": "STATIC", "role": role}]
                if data.get("d"):
                    kw["disk"] = data["d"]
                return kw
            kw = {"name": name, "role": role, "allocation_info": alloc}
            if role != "*":
                kw["reservations"] = [{"type": "STATIC", "role": role}]
            return kw

        for (name, role), m in self._s.items():
            out.append(
                messages.Resource(
                    type="SCALAR", scalar=messages.Scalar(value=m / 1000), **_common(name, role)
                )
            )
        for (name, role), rr in self._r.items():
            out.append(
                messages.Resource(
                    type="RANGES",
                    ranges=messages.Ranges(range=[messages.Range(begin=b, end=e) for b, e in rr]),
                    **_common(name, role),
                )
            )
        for (name, role), items in self._t.items():
            out.append(
                messages.Resource(
                    type="SET", set=messages.ValueSet(item=sorted(items)), **_common(name, role)
                )
            )
        return out

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        if not (other._s or other._r or other._t):
            return self
        if not (self._s or self._r or self._t):
            return other
        s = self._s.copy()
        for k, v in other._s.items():
            s[k] = s.get(k, 0) + v
        r = self._r
        if other._r:
            r = r.copy()
            for k, v in other._r.items():
                cur = r.get(k)
                r[k] = merge_ranges(cur + v) if cur else v
        t = self._t
        if other._t:
            t = t.copy()
            for k, v in other._t.items():
                cur = t.get(k)
                t[k] = cur | v if cur else v
        return Resources._make(s, r, t)

    def __sub__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        if not (other._s or other._r or other._t):
            return self
        s = self._s.copy()
        for k, v in other._s.items():
            cur = s.get(k)
            if cur is not None:
                if cur > v:
                    s[k] = cur - v
                else:
                    del s[k]
        r = _minus(self._r, other._r, _sub_ranges) if other._r else self._r
        t = _minus(self._t, other._t, frozenset.difference) if other._t else self._t
        return Resources._make(s, r, t)

    def intersection(self, other: Resources) -> Resources:
        """Component-wise minimum / intersection (``a - (a - b)``)."""
        return self - (self - other)

    __and__ = intersection

    def contains(self, other: Resources) -> bool:
        """True when ``self >= other`` for every (name, role) component."""
        s = self._s
        for k, v in other._s.items():
            if s.get(k, 0) < v:
                return False
        if other._r:
            r = self._r
            for k, v in other._r.items():
                cur = r.get(k)
                if not cur or not _ranges_contain(cur, v):
                    return False
        if other._t:
            t = self._t
            for k, v in other._t.items():
                cur = t.get(k)
                if not cur or not v <= cur:
                    return False
        return True

    def __bool__(self) -> bool:
        return bool(self._s or self._r or self._t)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return self._s == other._s and self._r == other._r and self._t == other._t

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Resources({str(self)!r})"

    def __str__(self) -> str:
        parts: list[str] = []

        def _label(name: str, role: str) -> str:
            if SEP in role:
                data = json.loads(role.split(SEP, 1)[1])
                top = (data.get("r") or [{}])[-1]
                role = role_of(role) + (f", {top.get('principal')}" if top.get("principal") else "")
                if (data.get("d") or {}).get("persistence"):
                    return f"{name}({role})[{data['d']['persistence'].get('id')}:{(data['d'].get('volume') or {}).get('container_path')}]"
            return name if role == "*" else f"{name}({role})"

        for (name, role), m in self._s.items():
            parts.append(f"{_label(name, role)}:{_fmt_millis(m)}")
        for (name, role), rr in self._r.items():
            parts.append(f"{_label(name, role)}:{_fmt_ranges(rr, ',')}")
        for (name, role), items in self._t.items():
            parts.append(f"{_label(name, role)}:{_fmt_set(items, ',')}")
        return ";".join(parts)

    # ------------------------------------------------------------------ queries
    def scalar(self, name: str) -> float:
        return sum(v for (n, _), v in self._s.items() if n == name) / 1000

    def scalar_millis(self) -> dict[str, int]:
        """name -> total thousandths over all roles (the allocator's fast path)."""
        out: dict[str, int] = {}
        for (n, _), v in self._s.items():
            out[n] = out.get(n, 0) + v
        return out

    def millis(self) -> dict[str, int]:
        """:meth:`scalar_millis`, computed once per bag and shared: the allocator asks the same
        (immutable) bag for it on every offer, recovery and cycle. Read-only: never mutate it."""
        m = self._m
        if m is None:
            m = self._m = self.scalar_millis()
        return m

    def scalars(self) -> dict[str, float]:
        return {n: v / 1000 for n, v in self.scalar_millis().items()}

    def names(self) -> set[str]:
        return {k[0] for k in self._s} | {k[0] for k in self._r} | {k[0] for k in self._t}

    def ranges(self, name: str) -> list[tuple[int, int]]:
        """All ranges of ``name`` over all roles, coalesced."""
        return list(merge_ranges(x for (n, _), rr in self._r.items() if n == name for x in rr))

    def set_items(self, name: str) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for (n, _), items in self._t.items():
            if n == name:
                out |= items
        return out

    def _filter(self, pred) -> Resources:
        return Resources._make(
            {k: v for k, v in self._s.items() if pred(role_of(k[1]))},
            {k: v for k, v in self._r.items() if pred(role_of(k[1]))},
            {k: v for k, v in self._t.items() if pred(role_of(k[1]))},
        )

    def unreserved(self) -> Resources:
        return self._filter(lambda role: role == "*")

    def reserved(self, role: str | None = None) -> Resources:
        if role is None:
            return self._filter(lambda r: r != "*")
        return self._filter(lambda r: r == role)

    def roles(self) -> set[str]:
        """Roles with reservations in this bag (``"*"`` is not a role)."""
        return {role_of(k[1]) for d in (self._s, self._r, self._t) for k in d if k[1] != "*"}

    def is_unreserved(self) -> bool:
        return all(k[1] == "*" for d in (self._s, self._r, self._t) for k in d)

    def allocatable_to(self, role: str) -> Resources:
        """Unreserved plus what is reserved for ``role`` or one of its ancestors."""
        ok = set(_ancestors(role))
        ok.add("*")
        return self._filter(lambda r: r in ok)

    def summary(self) -> dict[str, Any]:
        """The ``/master/state`` resource summary object."""
        out: dict[str, Any] = {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}
        for n, v in self.scalar_millis().items():
            out[n] = v / 1000
        for n in dict.fromkeys(k[0] for k in self._r):
            out[n] = _fmt_ranges(tuple(self.ranges(n)), ", ")
        for n in dict.fromkeys(k[0] for k in self._t):
            out[n] = _fmt_set(self.set_items(n), ", ")
        return out

    def pick_ports(self, count: int, name: str = "ports") -> Resources:
        """The first ``count`` values of the ``name`` ranges (roles kept)."""
        if count < 0:
            raise ValueError("count must not be negative")
        need = count
        r: dict[Key, tuple[tuple[int, int], ...]] = {}
        for key, rr in self._r.items():
            if key[0] != name or need == 0:
                continue
            got: list[tuple[int, int]] = []
            for b, e in rr:
                if need == 0:
                    break
                take = min(need, e - b + 1)
                got.append((b, b + take - 1))
                need -= take
            if got:
                r[key] = tuple(got)
        if need:
            raise ValueError(f"only {count - need} of the {count} requested {name} are available")
        return Resources._make({}, r, {})


    def filter_tags(self, pred) -> Resources:
        """The components whose whole role tag satisfies ``pred`` (reservations, volumes)."""
        return Resources._make(
            {k: v for k, v in self._s.items() if pred(k[1])},
            {k: v for k, v in self._r.items() if pred(k[1])},
            {k: v for k, v in self._t.items() if pred(k[1])},
        )

    def map_tags(self, fn) -> Resources:
        """The same quantities with every role tag replaced by ``fn(tag)`` (merging equal ones)."""
        out = Resources()
        for (n, tag), v in self._s.items():
            out = out + Resources._make({(n, fn(tag)): v}, {}, {})
        for (n, tag), v in self._r.items():
            out = out + Resources._make({}, {(n, fn(tag)): v}, {})
        for (n, tag), v in self._t.items():
            out = out + Resources._make({}, {}, {(n, fn(tag)): v})
        return out

    def tags(self) -> set[str]:
        return {k[1] for d in (self._s, self._r, self._t) for k in d}


def _clean(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items() if v is not None and v != [] and v != {}}
    if isinstance(d, list):
        return [_clean(x) for x in d]
    return d


def _proto_stack(res: messages.Resource, role: str) -> list[dict[str, Any]]:
    """The reservation stack, converting the pre-refinement ``role`` + ``reservation`` form."""
    if res.reservations:
        out = []
        for e in res.reservations:
            if not isinstance(e, dict):
                raise ResourceParseError(f"Resource '{res.name}' has a bad reservation {e!r}")
            entry = _clean({k: e.get(k) for k in ("type", "role", "principal", "labels")})
            entry.setdefault("type", "STATIC")
            if entry["type"] not in ("STATIC", "DYNAMIC"):
                raise ResourceParseError(f"Resource '{res.name}' has reservation type {entry['type']!r}")
            out.append(entry)
        return out
    if role == "*":
        return []
    if isinstance(res.reservation, dict):
        entry = _clean({"type": "DYNAMIC", "role": role, "principal": res.reservation.get("principal"),
                        "labels": res.reservation.get("labels")})
        return [entry]
    return [{"type": "STATIC", "role": role}]


def _proto_disk(res: messages.Resource) -> dict[str, Any] | None:
    disk = res.disk
    if not isinstance(disk, dict):
        return None
    d = _clean({k: disk.get(k) for k in ("persistence", "volume")})
    return d or None


def _proto_role(res: messages.Resource) -> str:
    if res.reservations:
        last = res.reservations[-1]
        role = last.get("role") if isinstance(last, dict) else None
        if role:
            return role
    if isinstance(res.reservation, dict) and res.reservation.get("role"):
        return res.reservation["role"]
    return res.role or "*"


