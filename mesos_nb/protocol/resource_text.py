"""The Mesos text syntax for resources -- the agent's ``--resources`` flag:
``cpus:4;mem:8192;ports:[31000-32000];disks:{a,b}``, ``cpus(ads):2`` for a static reservation
-- and the validation of names, roles and values that every way of building
:class:`~mesos_nb.protocol.resources.Resources` shares.

Pure functions from text to the ``(name, role)``-keyed components a ``Resources`` is made of;
one readable :class:`ResourceParseError` sentence for anything wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

Key = tuple[str, str]  # (name, role)

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_MAX_MILLIS = 2**62


class ResourceParseError(ValueError):
    """A resource string or protobuf was invalid; ``str()`` is one readable sentence."""


def valid_role(role: str) -> str | None:
    """Why ``role`` is not a valid role name (Mesos ``roles::validate``), or None: ``*``, or
    ``/``-separated components that are not empty, ``.``, ``..`` or ``*``, do not start with
    ``-`` and hold no whitespace, backspace or DEL. Every role mesos-nb reads is checked here."""
    if not role:
        return "role must not be empty"
    if role == "*":
        return None
    if role.startswith("/") or role.endswith("/") or "//" in role:
        return f"role '{role}' is not a valid role name: it must not start or end with '/' or contain '//'"
    for part in role.split("/"):
        if part in (".", "..", "*"):
            return f"role '{role}' is not a valid role name: it has the disallowed component '{part}'"
        if part.startswith("-"):
            return f"role '{role}' is not a valid role name: it has a component starting with '-'"
    if any(c in "\t\n\v\f\r \x7f\b" or c.isspace() for c in role):
        return f"role '{role}' is not a valid role name: it contains whitespace or a control character"
    return None


def merge_ranges(items: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and coalesce overlapping or adjacent ranges."""
    out: list[list[int]] = []
    for b, e in sorted(items):
        if out and b <= out[-1][1] + 1:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([b, e])
    return tuple((b, e) for b, e in out)


def to_millis(v: float, what: str, shown: str, proto: bool = False) -> int:
    if proto:
        prefix = f"Resource '{what}'"
    else:
        prefix = f"Bad resource '{what}':"
    if math.isnan(v) or math.isinf(v):
        sep = " " if not proto else " has value "
        raise ResourceParseError(f"{prefix}{sep}'{shown}' is not a finite number")
    if v < 0:
        raise ResourceParseError(
            f"{prefix} has a negative value {shown}" if proto else f"{prefix} value must not be negative"
        )
    m = round(v * 1000)
    if m > _MAX_MILLIS:
        raise ResourceParseError(
            f"{prefix} has a value that is too large" if proto else f"{prefix} value {shown} is too large"
        )
    return m


def parse_token(token: str, default_role: str) -> tuple[str, str, str, Any]:
    def bad(why: str) -> ResourceParseError:
        return ResourceParseError(f"Bad resource '{token}': {why}")

    if ":" not in token:
        raise bad("expected name:value")
    head, value = token.split(":", 1)
    head = head.strip()
    value = value.strip()
    role = default_role
    if "(" in head or ")" in head:
        if not head.endswith(")") or head.count("(") != 1 or head.count(")") != 1:
            raise bad("unbalanced parentheses around the role")
        head, role = head[:-1].split("(", 1)
        head = head.strip()
        role = role.strip()
        why = valid_role(role)
        if why:
            raise bad(why)
    if not head:
        raise bad("missing resource name")
    if not NAME_RE.match(head):
        raise bad(f"'{head}' is not a valid resource name")
    if not value:
        raise bad("missing value")
    if value[0] == "[" or value[-1] == "]":
        if value[0] != "[" or value[-1] != "]" or value.count("[") != 1 or value.count("]") != 1:
            raise bad("unbalanced brackets in ranges value")
        body = value[1:-1].strip()
        rr: list[tuple[int, int]] = []
        if body:
            for part in body.split(","):
                part = part.strip()
                bits = part.split("-")
                if len(bits) != 2:
                    raise bad(f"range '{part}' is not of the form begin-end")
                try:
                    b, e = int(bits[0].strip()), int(bits[1].strip())
                except ValueError:
                    raise bad(f"range '{part}' is not of the form begin-end") from None
                if b > e:
                    raise bad(f"range {b}-{e} has begin greater than end")
                rr.append((b, e))
        return head, role, "RANGES", merge_ranges(rr)
    if value[0] == "{" or value[-1] == "}":
        if value[0] != "{" or value[-1] != "}" or value.count("{") != 1 or value.count("}") != 1:
            raise bad("unbalanced braces in set value")
        body = value[1:-1].strip()
        items = [x.strip() for x in body.split(",")] if body else []
        if any(not x for x in items):
            raise bad("set has an empty item")
        if len(set(items)) != len(items):
            raise bad("set has duplicate items")
        return head, role, "SET", frozenset(items)
    try:
        v = float(value)
    except ValueError:
        raise bad(f"'{value}' is not a number") from None
    return head, role, "SCALAR", to_millis(v, token, value)


def parse_text(
    text: str, default_role: str = "*"
) -> tuple[dict[Key, int], dict[Key, tuple[tuple[int, int], ...]], dict[Key, frozenset[str]]]:
    """``name(role):value;...`` -> (scalars in thousandths, ranges, sets), keyed by (name, role)."""
    why = valid_role(default_role)
    if why:
        raise ResourceParseError(f"Bad default role: {why}")
    s: dict[Key, int] = {}
    r: dict[Key, tuple[tuple[int, int], ...]] = {}
    t: dict[Key, frozenset[str]] = {}
    kinds: dict[str, str] = {}
    for token in text.split(";"):
        token = token.strip()
        if not token:
            continue
        name, role, kind, value = parse_token(token, default_role)
        prev = kinds.setdefault(name, kind)
        if prev != kind:
            raise ResourceParseError(
                f"Bad resource '{token}': '{name}' was already given as a {prev} resource"
            )
        key = (name, role)
        if kind == "SCALAR":
            if value:
                s[key] = s.get(key, 0) + value
        elif kind == "RANGES":
            if value:
                r[key] = merge_ranges(r.get(key, ()) + value)
        else:
            if value:
                t[key] = t.get(key, frozenset()) | value
    return s, r, t


__all__ = ["ResourceParseError", "NAME_RE", "parse_text", "parse_token", "valid_role", "to_millis", "merge_ranges", "Key"]
