"""Helpers for the common framework job: does an offer fit, and build a command task from it."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from mesos_nb.protocol.messages import (
    ID,
    Attribute,
    CommandInfo,
    Environment,
    EnvironmentVariable,
    Offer,
    TaskInfo,
)
from mesos_nb.protocol.resources import Resources, tag_extra


def attribute_value(attr: Attribute) -> str:
    """The attribute's value as agent ``--attributes`` text (``rack:a`` -> ``"a"``)."""
    if attr.text is not None:
        return attr.text.value
    if attr.scalar is not None:
        v = attr.scalar.value
        return str(int(v)) if float(v).is_integer() else str(v)
    if attr.ranges is not None:
        return "[" + ",".join(f"{r.begin}-{r.end}" for r in attr.ranges.range) + "]"
    if attr.set is not None:
        return "{" + ",".join(attr.set.item) + "}"
    return ""


def offer_attributes(offer: Offer) -> dict[str, str]:
    return {a.name: attribute_value(a) for a in offer.attributes}


def attributes_match(have: Mapping[str, Any], constraints: Mapping[str, str]) -> bool:
    """Every ``k=v`` constraint equals attribute ``k`` of ``have`` (numbers compared as
    numbers). ``have`` is an offer's attributes or an agent's ``attributes`` in /master/state."""
    for k, want in constraints.items():
        got = have.get(k)
        if got is None:
            return False
        if str(got) == want:
            continue
        try:
            if float(got) == float(want):
                continue
        except (TypeError, ValueError):
            pass
        return False
    return True


def matches_attributes(offer: Offer, constraints: Mapping[str, str]) -> bool:
    return attributes_match(offer_attributes(offer), constraints)


def offer_role(offer: Offer) -> str:
    if offer.allocation_info is not None and offer.allocation_info.role:
        return offer.allocation_info.role
    for r in offer.resources:
        if r.allocation_info is not None and r.allocation_info.role:
            return r.allocation_info.role
    return "*"


def request(cpus: float = 0, mem: float = 0, gpus: float = 0, disk: float = 0, **other: float) -> dict[str, float]:
    amounts = {"cpus": cpus, "mem": mem, "gpus": gpus, "disk": disk, **other}
    return {k: float(v) for k, v in amounts.items() if v}


def take_from(have: Resources, role: str, amounts: Mapping[str, float], ports: int = 0) -> Resources | None:
    """What to launch with out of ``have``: each resource from the unreserved part first, then
    from ``role``'s reservation (or an ancestor's), so reserved cpus and unreserved mem make one
    task as Mesos allows; plus ``ports`` ports. Persistent volumes are never taken for a plain
    disk request. None when ``have`` does not hold it all."""
    usable = have.allocatable_to(role).filter_tags(lambda tag: "d" not in tag_extra(tag))
    by_tag = {tag: usable.filter_tags(lambda t, tag=tag: t == tag).scalar_millis() for tag in usable.tags()}
    order = sorted(by_tag, key=lambda t: (t != "*", t))
    want = Resources()
    for name, amount in amounts.items():
        need = round(float(amount) * 1000)
        for tag in order:
            got = min(need, by_tag[tag].get(name, 0))
            if got > 0:
                want = want + Resources.scalars_of(role=tag, **{name: got / 1000})
                need -= got
        if need > 0:
            return None
    if ports:
        try:
            want = want + usable.pick_ports(ports)
        except ValueError:
            return None
    return want


def take(offer: Offer, amounts: Mapping[str, float], ports: int = 0) -> Resources | None:
    """The resources to launch with from ``offer`` (see :func:`take_from`)."""
    return take_from(Resources.from_proto(offer.resources), offer_role(offer), amounts, ports)


def parse_constraints(items: Sequence[str] | str | None, what: str = "--attr") -> dict[str, str]:
    """``KEY=VALUE`` items (a list, or one comma-separated string) -> ``{KEY: VALUE}``;
    ValueError naming the bad item otherwise. The one parser for ``run --attr``,
    ``%mesos run --attr`` and the launchers' constraints."""
    if items is None:
        return {}
    if isinstance(items, str):
        items = [x for x in items.split(",") if x.strip()]
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"bad {what} {it!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def fits(offer: Offer, amounts: Mapping[str, float], constraints: Mapping[str, str] | None = None) -> bool:
    if constraints and not matches_attributes(offer, constraints):
        return False
    return take(offer, amounts) is not None


def command_info(cmd: str | Sequence[str], env: Mapping[str, str] | None = None) -> CommandInfo:
    """A shell command: a string runs as ``/bin/sh -c``; a list is shell-quoted first."""
    value = cmd if isinstance(cmd, str) else (cmd[0] if len(cmd) == 1 else shlex.join(cmd))
    environment = None
    if env:
        environment = Environment(variables=[EnvironmentVariable(name=k, value=v) for k, v in env.items()])
    return CommandInfo(value=value, shell=True, environment=environment)


def new_task_id(name: str = "task") -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "task"
    return f"{safe[:60]}-{uuid.uuid4().hex[:8]}"


def command_task(
    offer: Offer,
    cmd: str | Sequence[str],
    *,
    cpus: float = 1.0,
    mem: float = 256.0,
    gpus: float = 0.0,
    disk: float = 0.0,
    name: str | None = None,
    task_id: str | None = None,
    env: Mapping[str, str] | None = None,
) -> TaskInfo:
    """A command TaskInfo for ``offer``; raises ValueError when the offer is too small."""
    amounts = request(cpus=cpus, mem=mem, gpus=gpus, disk=disk)
    res = take(offer, amounts)
    if res is None:
        raise ValueError(f"offer {offer.id.value} does not hold {amounts}")
    name = name or (cmd if isinstance(cmd, str) else " ".join(cmd))[:80]
    return TaskInfo(
        name=name,
        task_id=ID(value=task_id or new_task_id(name.split()[0] if name.split() else "task")),
        agent_id=offer.agent_id,
        resources=res.to_proto(offer_role(offer)),
        command=command_info(cmd, env),
    )


__all__ = [
    "attribute_value",
    "attributes_match",
    "command_info",
    "command_task",
    "fits",
    "matches_attributes",
    "new_task_id",
    "offer_attributes",
    "offer_role",
    "parse_constraints",
    "request",
    "take",
    "take_from",
]
