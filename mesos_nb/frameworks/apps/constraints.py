"""Marathon placement constraints: does an offer fit, given where the app's instances already run.

Pure: an offer is reduced to its hostname and attribute values (:class:`Place`), the running
instances to their places. :func:`rejection` returns ``None`` when the offer is acceptable or
one sentence saying which constraint refuses it (shown to the user as why an instance waits).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class Place:
    """Where an offer comes from / an instance runs: hostname and attribute values as text."""

    hostname: str
    attributes: Mapping[str, str] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        if name in ("hostname", "@hostname"):
            return self.hostname
        v = self.attributes.get(name)
        return None if v is None else normalise(v)


def normalise(value: str) -> str:
    """A scalar-looking value as Marathon prints it (``0.###``, half-even); text unchanged."""
    try:
        d = Decimal(value.strip())
    except (InvalidOperation, ValueError):
        return value
    if not d.is_finite():
        return value
    q = d.quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def rejection(constraints: Sequence[Sequence[str]], offer: Place, placed: Sequence[Place],
              instances: int) -> str | None:
    """Why ``offer`` cannot host one more instance (``None``: it can)."""
    for c in constraints:
        why = _one(c, offer, placed, instances)
        if why is not None:
            return why
    return None


def _text(c: Sequence[str]) -> str:
    return "[" + ", ".join(repr(x) for x in c) + "]"


def _one(c: Sequence[str], offer: Place, placed: Sequence[Place], instances: int) -> str | None:
    name, op = c[0], c[1].upper()
    arg = c[2] if len(c) > 2 else None
    value = offer.value(name)
    where = f"{offer.hostname}" + (f" ({name}={value})" if name not in ("hostname", "@hostname") else "")
    if value is None:
        if op == "UNLIKE":
            return None
        return f"{where}: no attribute {name!r}, required by constraint {_text(c)}"
    values = [p.value(name) for p in placed]
    if op == "UNIQUE":
        if value in values:
            return f"{where}: constraint {_text(c)}: an instance already runs where {name}={value}"
        return None
    if op == "CLUSTER":
        want = normalise(arg) if arg else next((v for v in values if v is not None), None)
        if want is not None and value != want:
            return f"{where}: constraint {_text(c)}: instances must run where {name}={want}"
        return None
    if op in ("LIKE", "UNLIKE"):
        matched = bool(arg) and re.fullmatch(arg or "", value) is not None
        if matched != (op == "LIKE"):
            verb = "does not match" if op == "LIKE" else "matches"
            return f"{where}: constraint {_text(c)}: {name}={value} {verb} {arg!r}"
        return None
    if op == "IS":
        if value != normalise(arg or ""):
            return f"{where}: constraint {_text(c)}: {name}={value} is not {arg}"
        return None
    if op == "MAX_PER":
        n = int(arg or "0")
        if Counter(values)[value] >= n:
            return f"{where}: constraint {_text(c)}: already {n} instance(s) where {name}={value}"
        return None
    if op == "GROUP_BY":
        return _group_by(c, value, values, instances, where)
    return f"unknown constraint operator {c[1]!r}"


def _group_by(c: Sequence[str], value: str, values: Sequence[str | None], instances: int,
              where: str) -> str | None:
    arg = c[2] if len(c) > 2 else None
    counts = Counter(v for v in values if v is not None)
    if not arg:
        # without a group count Marathon's outcome depends on offer order; spread evenly
        # over the groups seen so far: accept a new group, or one holding the fewest
        if value not in counts or counts[value] <= min(counts.values()):
            return None
        return f"{where}: constraint {_text(c)}: group {value} holds more instances than another"
    n = MAX_INT if arg == "inf" else int(arg)
    per, rem = divmod(instances, n) if n < MAX_INT else (0, instances)
    if value in counts:
        have = counts[value]
        used = sum(max(0, k - per) for k in counts.values())
        if have < per or (have == per and rem - used > 0):
            return None
        return f"{where}: constraint {_text(c)}: group {value} already holds its share ({have})"
    if len(counts) < n:
        return None
    return f"{where}: constraint {_text(c)}: already {len(counts)} groups in use"


__all__ = ["Place", "normalise", "rejection"]
