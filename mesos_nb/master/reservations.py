"""Dynamic reservations: RESERVE / UNRESERVE from a framework's ACCEPT and the operator's
RESERVE_RESOURCES / UNRESERVE_RESOURCES, validated as Mesos does, applied to the agent's
total, and reported as operation feedback.

A reservation is a stack (``Resource.reservations``): RESERVE pushes one DYNAMIC entry whose
role is the current role or a descendant of it (refinement), UNRESERVE pops the top DYNAMIC
entry, giving the resources back to the previous owner. Converting resources changes the
agent's total: the master emits ``SaveAgent`` (the registry keeps the converted total) and
``CheckpointResources`` (the agent persists it and reports it when it re-registers, so the
reservation survives agent and master restarts). Operations with an ``id`` get an
``UPDATE_OPERATION_STATUS`` event (FINISHED, or ERROR with a message when invalid — these
statuses come from the master itself, so they carry no uuid and need no acknowledgement).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocol import channel as ch
from ..protocol import messages as m
from ..protocol.resources import SEP, ResourceParseError, Resources, make_tag, role_of, tag_extra
from .effects import SaveAgent, ToAgent
from .model import Agent, Framework
from .state import CallError, MasterState, agent_record

log = logging.getLogger("mesos_nb.master")


class OperationError(Exception):
    """An invalid reservation operation; the message is what Mesos would say."""


class OperationConflict(OperationError):
    """A valid operation that cannot be applied now (resources in use): 409 for operators."""


def _is_descendant(child: str, parent: str) -> bool:
    return child.startswith(parent + "/")


def pop_tag(tag: str) -> str:
    """The tag after UNRESERVE: the top DYNAMIC entry removed."""
    extra = tag_extra(tag)
    stack = list(extra.get("r") or [])
    if not stack or stack[-1].get("type") != "DYNAMIC":
        raise OperationError(f"Resources with role '{role_of(tag)}' are not dynamically reserved")
    if (extra.get("d") or {}).get("persistence"):
        raise OperationError("Persistent volumes must be destroyed before their disk can be unreserved")
    stack.pop()
    role = stack[-1]["role"] if stack else "*"
    return make_tag(role, stack, extra.get("d"))


def parse(items: Any, what: str) -> Resources:
    if not isinstance(items, list) or not items:
        raise OperationError(f"Expecting '{what}' to be a non-empty list of resources")
    try:
        return Resources.from_proto(m.convert(items, list[m.Resource]) if not isinstance(items[0], m.Resource) else items)
    except (ResourceParseError, m.ProtocolError, ValueError) as e:
        raise OperationError(f"Invalid resources in '{what}': {e}") from None


def check_reserve(res: Resources, role: str | None, principal: str | None) -> Resources:
    """Validate a RESERVE; return what it consumes (the resources one entry down)."""
    for tag in res.tags():
        if SEP not in tag:
            raise OperationError("Resources to reserve must carry a DYNAMIC reservation in 'reservations'")
        stack = tag_extra(tag).get("r") or []
        top = stack[-1] if stack else {}
        if top.get("type") != "DYNAMIC":
            raise OperationError("The last reservation of resources to reserve must be DYNAMIC")
        if (tag_extra(tag).get("d") or {}).get("persistence"):
            raise OperationError("Persistent volumes cannot be reserved; reserve the disk, then CREATE")
        if role is not None and top.get("role") != role:
            raise OperationError(
                f"A reservation for role '{top.get('role')}' cannot be made from resources allocated to '{role}'")
        if len(stack) > 1 and not _is_descendant(top["role"], stack[-2]["role"]):
            raise OperationError(
                f"A refined reservation for '{top['role']}' must be to a descendant of '{stack[-2]['role']}'")
        if principal is not None and top.get("principal") != principal:
            raise OperationError(
                f"A reservation's principal '{top.get('principal')}' does not match the framework's '{principal}'")
    return res.map_tags(pop_tag)


def convert(st: MasterState, agent: Agent, consumed: Resources, converted: Resources) -> None:
    """Apply a conversion to the agent's total and tell the registry and the agent."""
    if not agent.total.contains(consumed):
        raise OperationError(f"Agent {agent.id} does not have {consumed}")
    agent.total = agent.total - consumed + converted
    agent.resources = agent.total.to_proto()
    st.allocator.update_agent(agent.id, agent.total)
    st.version += 1
    st.wants_allocation = True
    st.out.append(SaveAgent(agent_record(agent)))
    st.out.append(ToAgent(agent.id, ch.CheckpointResources(agent_id=agent.id, resources=agent.resources)))


def _operations(st: MasterState) -> deque:
    return st.operations


def record(st: MasterState, fw: Framework | None, agent_id: str, op: dict[str, Any], state: str,
           message: str | None, converted: Resources | None) -> None:
    """Keep the operation for GET_OPERATIONS and send feedback when it has an id."""
    op_id = (op.get("id") or {}).get("value") if isinstance(op.get("id"), dict) else None
    status: dict[str, Any] = {"state": state, "agent_id": {"value": agent_id}}
    if op_id:
        status["operation_id"] = {"value": op_id}
    if message:
        status["message"] = message
    if converted is not None:
        status["converted_resources"] = m.to_builtins(converted.to_proto())
    entry: dict[str, Any] = {"agent_id": {"value": agent_id}, "info": op, "latest_status": status,
                             "statuses": [status]}
    if fw is not None:
        entry["framework_id"] = {"value": fw.id}
    _operations(st).append(entry)
    if fw is not None and op_id:
        st.emit(fw, m.Event(type="UPDATE_OPERATION_STATUS", update_operation_status={"status": status}))


def framework_operation(st: MasterState, fw: Framework, agent: Agent | None, role: str, op: m.Operation,
                        remaining: Resources) -> Resources:
    """RESERVE / UNRESERVE inside ACCEPT; returns what is left of the offered resources."""

    def conversion(agent: Agent) -> tuple[Resources, Resources]:
        if op.type == "RESERVE":
            if op.reserve is None:
                raise OperationError("Expecting 'reserve' to be present")
            if op.reserve.source:
                raise OperationError("RESERVE with 'source' is not supported in ACCEPT")
            if role not in fw.roles:
                raise OperationError(f"The framework is not subscribed to role '{role}'")
            converted = parse(op.reserve.resources, "reserve.resources")
            return check_reserve(converted, role, fw.info.principal), converted
        if op.unreserve is None:
            raise OperationError("Expecting 'unreserve' to be present")
        consumed = parse(op.unreserve.resources, "unreserve.resources")
        return consumed, consumed.map_tags(pop_tag)

    return run_framework_operation(st, fw, agent, role, op, remaining, conversion)


def acl_objects(op_type: str, consumed: Resources, converted: Resources) -> tuple[str, list[str]]:
    """The ACL action and objects of an offer operation (Mesos' ``acls.proto``): roles for
    reserve / create / resize, the principal of the top reservation for unreserve, the
    creator principal for destroy."""
    if op_type == "RESERVE":
        return "reserve_resources", sorted({role_of(t) for t in converted.tags()})
    if op_type == "UNRESERVE":
        tops = [(tag_extra(t).get("r") or [{}])[-1] for t in consumed.tags()]
        return "unreserve_resources", sorted({str(e.get("principal") or "") for e in tops})
    if op_type == "DESTROY":
        principals = {str(((tag_extra(t).get("d") or {}).get("persistence") or {}).get("principal") or "")
                      for t in consumed.tags()}
        return "destroy_volumes", sorted(principals)
    action = "create_volumes" if op_type == "CREATE" else "resize_volumes"
    return action, sorted({role_of(t) for t in converted.tags()})


def run_framework_operation(st: MasterState, fw: Framework, agent: Agent | None, role: str, op: m.Operation,
                            remaining: Resources,
                            conversion: Callable[[Agent], tuple[Resources, Resources]]) -> Resources:
    """One resource-converting operation of an ACCEPT: ``conversion`` validates it and says
    what it consumes and what it gives (raising OperationError); the consumed resources must
    be in the offer, the ACL must allow it. Invalid: OPERATION_ERROR with the message and
    nothing changes. Valid: the agent's total is converted and the converted resources stay
    allocated to the framework, as in Mesos, so a later LAUNCH in the same ACCEPT can use them."""
    raw = m.to_builtins(op)
    try:
        if agent is None or not agent.connected:
            raise OperationError("Agent is not connected")
        consumed, converted = conversion(agent)
        if not remaining.contains(consumed):
            raise OperationError(f"Invalid {op.type} operation: {consumed} is not available in the offered {remaining}")
        if st.authorize_operation is not None:
            action, objects = acl_objects(op.type or "", consumed, converted)
            denied = st.authorize_operation(fw, action, objects)
            if denied is not None:
                raise OperationError(denied)
    except OperationError as e:
        log.info("operation invalid framework=%s type=%s: %s", fw.id, op.type, e)
        record(st, fw, agent.id if agent else "", raw, "OPERATION_ERROR", str(e), None)
        return remaining
    st.allocator.recover(fw.id, agent.id, consumed, role=role)
    convert(st, agent, consumed, converted)
    st.allocator.add_allocation(fw.id, role, agent.id, converted)
    log.info("operation finished framework=%s agent=%s type=%s resources=%s", fw.id, agent.id, op.type, converted)
    record(st, fw, agent.id, raw, "OPERATION_FINISHED", None, converted)
    return remaining - consumed + converted


def operator_agent(st: MasterState, kind: str, payload: Any) -> Agent:
    """The agent an operator call names; CallError 400 (no payload / agent id), 404 (unknown)."""
    if not isinstance(payload, dict):
        raise CallError(400, f"Expecting '{kind.lower()}' to be present")
    aid = (payload.get("agent_id") or {}).get("value") if isinstance(payload.get("agent_id"), dict) else None
    if not aid:
        raise CallError(400, f"Expecting '{kind.lower()}.agent_id' to be present")
    agent = st.agents.get(aid)
    if agent is None:
        raise CallError(404, f"No agent found with specified ID '{aid}'")
    if not agent.connected:
        # The agent's checkpoint is what it reports when it comes back: a conversion it never
        # received would be undone then.
        raise CallError(409, f"Agent {aid} is not connected; try again once it has re-registered")
    return agent


def run_operator_operation(st: MasterState, agent: Agent, kind: str, op: dict[str, Any], now: float,
                           rescind: Callable[[MasterState, Any, float], None],
                           conversion: Callable[[], tuple[Resources, Resources]]) -> None:
    """An operator's converting call: validate (400), take back the agent's offers if the
    resources are offered, 409 if they are still not free (used by tasks), then convert and
    keep the operation for GET_OPERATIONS.

    ``rescind`` (offers.rescind) is handed in: offers use this module for ACCEPT operations, so
    this module must not import them back."""
    aid = agent.id
    try:
        consumed, converted = conversion()
    except OperationConflict as e:
        raise CallError(409, str(e)) from None
    except OperationError as e:
        raise CallError(400, str(e)) from None
    if not st.allocator.available(aid).contains(consumed):
        # Take back outstanding offers on that agent, as Mesos does, then try again.
        for offer in [o for o in st.offers.values() if o.agent_id == aid]:
            rescind(st, offer, now)
    if not st.allocator.available(aid).contains(consumed):
        raise CallError(409, f"Agent {aid} does not have {consumed} available (in use by tasks?)")
    try:
        convert(st, agent, consumed, converted)
    except OperationError as e:
        raise CallError(409, str(e)) from None
    log.info("operator %s agent=%s resources=%s", kind, aid, converted)
    record(st, None, aid, op, "OPERATION_FINISHED", None, converted)


def operator_operation(st: MasterState, kind: str, payload: Any, now: float,
                       rescind: Callable[[MasterState, Any, float], None]) -> None:
    """RESERVE_RESOURCES / UNRESERVE_RESOURCES; CallError 400 (invalid), 404 (agent), 409 (busy)."""
    agent = operator_agent(st, kind, payload)
    items = payload.get("resources")

    def conversion() -> tuple[Resources, Resources]:
        if isinstance(items, list) and any(isinstance(r, dict) and r.get("allocation_info") for r in items):
            raise OperationError("Resources must not have 'allocation_info' set")
        if kind == "RESERVE_RESOURCES":
            if payload.get("source") is not None:
                raise OperationError("RESERVE_RESOURCES with 'source' is not supported by mesos-nb")
            converted = parse(items, "reserve_resources.resources")
            return check_reserve(converted, None, None), converted
        consumed = parse(items, "unreserve_resources.resources")
        return consumed, consumed.map_tags(pop_tag)

    op_type = "RESERVE" if kind == "RESERVE_RESOURCES" else "UNRESERVE"
    run_operator_operation(st, agent, kind, {"type": op_type, op_type.lower(): {"resources": items}}, now,
                           rescind, conversion)


def get_operations(st: MasterState) -> list[dict[str, Any]]:
    return list(_operations(st))
