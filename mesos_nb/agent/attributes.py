"""Parse the agent ``--attributes`` text ("rack:a;zone:1") into Mesos ``Attribute`` messages.

Rules as Mesos' ``Attributes::parse``: ``name:value`` pairs separated by ``;``; a value that
is a number is SCALAR, ``[a-b,c-d]`` is RANGES, ``{x,y}`` is SET, anything else TEXT.
"""

from __future__ import annotations

import re

from mesos_nb.protocol.messages import Attribute, Range, Ranges, Scalar, Text, ValueSet

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_attributes(text: str | None) -> list[Attribute]:
    if text is None or not text.strip():
        return []
    out: list[Attribute] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"Bad attribute '{part}': expected 'name:value'.")
        out.append(_parse_one(name, value))
    return out


def _parse_one(name: str, value: str) -> Attribute:
    if _NUMBER.match(value):
        return Attribute(name=name, type="SCALAR", scalar=Scalar(value=float(value)))
    if value.startswith("[") and value.endswith("]"):
        ranges = []
        for item in value[1:-1].split(","):
            m = _RANGE.match(item)
            if not m:
                raise ValueError(f"Bad range '{item.strip()}' in attribute '{name}': expected 'begin-end'.")
            b, e = int(m.group(1)), int(m.group(2))
            if e < b:
                raise ValueError(f"Bad range '{item.strip()}' in attribute '{name}': end is before begin.")
            ranges.append(Range(begin=b, end=e))
        return Attribute(name=name, type="RANGES", ranges=Ranges(range=ranges))
    if value.startswith("{") and value.endswith("}"):
        items = [i.strip() for i in value[1:-1].split(",") if i.strip()]
        return Attribute(name=name, type="SET", set=ValueSet(item=items))
    if value[0] in "[{" or value[-1] in "]}":
        raise ValueError(f"Bad attribute value '{value}' for '{name}': unbalanced brackets.")
    return Attribute(name=name, type="TEXT", text=Text(value=value))


def attribute_value(attr: Attribute) -> float | str:
    """The /state form: a number for scalars, a string for everything else."""
    if attr.type == "SCALAR" and attr.scalar is not None:
        v = attr.scalar.value
        return int(v) if v == int(v) else v
    if attr.type == "RANGES" and attr.ranges is not None:
        return "[" + ", ".join(f"{r.begin}-{r.end}" for r in attr.ranges.range) + "]"
    if attr.type == "SET" and attr.set is not None:
        return "{" + ", ".join(attr.set.item) + "}"
    if attr.text is not None:
        return attr.text.value
    return ""


def attributes_dict(attrs: list[Attribute]) -> dict[str, float | str]:
    return {a.name: attribute_value(a) for a in attrs}


__all__ = ["parse_attributes", "attribute_value", "attributes_dict"]
