"""The one offer matcher: which pending tasks an offer holds (:func:`match_offer`, pure), why a
task does not fit (:func:`unfit_reason`, :func:`waiting_reason`), and the :class:`Placer`
protocol through which a :class:`~mesos_nb.scheduler.pool.TaskPool` places tasks of other
kinds (e.g. the notebook's warm-executor tasks) on the same offers.

:func:`match_offer` returns the ``TaskInfo``s to launch (several tasks may share one offer;
first come, first served), honouring resources, the offer's role (unreserved first, then the
role's reservation), ``KEY=VALUE`` attribute constraints, ports, and a request pinned to one
offer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from mesos_nb.protocol.messages import ID, Offer, TaskInfo
from mesos_nb.protocol.resources import Resources

from .handle import TaskHandle, TaskSpec
from .tasks import command_info, matches_attributes, offer_role, take_from


def unfit_reason(offer: Offer, spec: TaskSpec) -> str | None:
    """Why ``offer`` cannot hold ``spec`` (None when it can)."""
    if spec.offer_id is not None and spec.offer_id != offer.id.value:
        return f"the task waits for offer {spec.offer_id}"
    if spec.constraints and not matches_attributes(offer, spec.constraints):
        return "no offered agent has " + ", ".join(f"{k}={v}" for k, v in spec.constraints.items())
    have = Resources.from_proto(offer.resources)
    if take_from(have, offer_role(offer), spec.amounts, spec.ports) is None:
        left = have.scalars()
        return (f"each task needs {spec.describe()}; the offer from {offer.hostname} has "
                + " ".join(f"{k}:{left.get(k, 0):g}" for k in spec.amounts))
    return None


def match_offer(offer: Offer, pending: Sequence[TaskHandle]) -> list[tuple[TaskInfo, TaskHandle]]:
    """The tasks of ``pending`` (in order) that ``offer`` holds, as ``TaskInfo``s ready to
    LAUNCH on it. Pure: the handles are not changed."""
    have = Resources.from_proto(offer.resources)
    role = offer_role(offer)
    out: list[tuple[TaskInfo, TaskHandle]] = []
    for task in pending:
        spec = task.spec
        if spec is None or (spec.offer_id is not None and spec.offer_id != offer.id.value):
            continue
        if spec.constraints and not matches_attributes(offer, spec.constraints):
            continue
        res = take_from(have, role, spec.amounts, spec.ports)
        if res is None:
            continue
        have = have - res
        ports = [p for b, e in res.ranges("ports") for p in range(b, e + 1)]
        cmd = spec.cmd(offer.hostname, ports) if callable(spec.cmd) else spec.cmd
        out.append((TaskInfo(name=spec.name, task_id=ID(value=task.id), agent_id=offer.agent_id,
                             resources=res.to_proto(role),
                             command=command_info(cmd, dict(spec.env) or None),
                             container=dict(spec.container) if spec.container else None), task))
    return out


def ports_of(info: TaskInfo) -> list[int]:
    return [p for b, e in Resources.from_proto(info.resources).ranges("ports") for p in range(b, e + 1)]




def amounts_text(amounts: Mapping[str, float]) -> str:
    """``cpus 1, mem 256``: how a reason names amounts (a notebook passes its own number format)."""
    return ", ".join(f"{k} {v:g}" for k, v in amounts.items()) or "nothing"


NO_OFFER_WAIT = 3.0  # seconds without any offer before a reason says that no offer comes


def waiting_reason(spec: TaskSpec, held: Mapping[str, Offer], waited: float, role_why: str | None = None,
                   text: Callable[[Mapping[str, float]], str] = amounts_text) -> str:
    """Why the task of ``spec`` is not placed, given the offers the framework holds now, how
    long something has waited and the role's part of the answer (quota used up, resources
    reserved for other roles; asked of the master by the caller). Pure."""
    want = text(spec.amounts) + (f", ports {spec.ports}" if spec.ports else "")
    if spec.offer_id is not None:
        if spec.offer_id not in held:
            return f"offer {spec.offer_id} is no longer held (declined, used or rescinded)"
        return f"offer {spec.offer_id} does not hold {want}"
    if not held:
        if waited < NO_OFFER_WAIT:
            return f"requested {want}; waiting for an offer"
        return (f"requested {want}; no offer for {waited:.0f} s: " + (role_why or (
            "the cluster's free resources are used by other tasks or frameworks (or the role's "
            "quota/weight holds this framework back)")))
    if role_why:
        return f"no offer fits: requested {want}; {role_why}"
    if spec.constraints and not any(matches_attributes(o, spec.constraints) for o in held.values()):
        return f"no offer fits: none of the {len(held)} offers is from an agent with " + \
            ", ".join(f"{k}={v}" for k, v in spec.constraints.items())
    sizes = {oid: Resources.from_proto(o.resources).scalars() for oid, o in held.items()}
    best = max(held, key=lambda oid: sizes[oid].get("cpus", 0))
    have_text = text({k: sizes[best].get(k, 0) for k in spec.amounts})
    return (f"no offer fits: requested {want}; the largest of {len(held)} offers has {have_text} "
            f"(on {held[best].hostname})")


class Placer(Protocol):
    """Tasks of another kind that a :class:`~mesos_nb.scheduler.pool.TaskPool` places on the
    same offers as its command tasks (after them, on what they left)."""

    pending: list[Any]  # TaskHandles waiting for an offer, first come first served

    def match(self, offer: Offer, have: Resources, framework_id: str | None) -> list[tuple[TaskInfo, Any]]:
        """Take tasks off ``pending`` that ``have`` (the offer's part still free) holds."""

    def launch_failed(self, launches: list[tuple[TaskInfo, Any]]) -> None:
        """The LAUNCH of ``launches`` failed: put them back on ``pending``."""

    def keeps(self, offer: Offer) -> bool:
        """Keep this unused offer (do not decline it): a task of this kind will want it soon."""


__all__ = ["Placer", "amounts_text", "match_offer", "ports_of", "unfit_reason", "waiting_reason"]
