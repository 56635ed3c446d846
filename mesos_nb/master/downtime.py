"""Maintenance and draining as the core's transitions: schedules, inverse offers,
START/STOP_MAINTENANCE, DRAIN_AGENT, DEACTIVATE/REACTIVATE_AGENT.

Functions over :class:`~mesos_nb.master.state.MasterState`; the records and rules are in
:mod:`.maintenance` (``st.maintenance``). Every operator change ends with one
``SaveMaintenance`` effect, so the schedule, DOWN machines and drains survive a master
restart or failover. Mesos behaviour kept:

- a posted schedule puts new machines in DRAINING and rescinds the offers of agents whose
  unavailability changed (they come back carrying ``unavailability``);
- each allocation, frameworks with live tasks on a DRAINING machine's agents get one
  INVERSE_OFFERS per agent; an answer (ACCEPT / DECLINE_INVERSE_OFFERS) is recorded for
  GET_MAINTENANCE_STATUS and filters that agent for ``refuse_seconds`` (default 5 s);
- START_MAINTENANCE: the machine's agents are told to shut down and removed; their tasks end
  TASK_LOST / REASON_AGENT_REMOVED even for partition-aware frameworks; the machine's agents
  are refused until STOP_MAINTENANCE;
- DRAIN_AGENT: the agent is deactivated (no offers) and each live task killed with its kill
  policy's grace period capped at ``max_grace_period`` (a task without one gets the cap);
  KILLING/KILLED updates carry REASON_AGENT_DRAINING (TASK_GONE_BY_OPERATOR for
  partition-aware frameworks with ``mark_gone``); once every task is terminal and
  acknowledged the agent is DRAINED (and, with ``mark_gone``, marked gone).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from ..protocol import channel as ch
from ..protocol import messages as m
from . import agents, offers, reachability
from .effects import SaveMaintenance, ToAgent, ToChannel
from .maintenance import (
    DOWN,
    DRAINING,
    InvalidMaintenance,
    InverseOffer,
    MachineKey,
    machine_text,
    matches,
)
from .maintenance import parse_duration as _parse_duration
from .maintenance import parse_machines as _parse_machines
from .maintenance import validate_schedule as _validate_schedule
from .model import Agent, Framework
from .state import CallError, MasterState
from .validation import refuse_seconds

log = logging.getLogger("mesos_nb.master.maintenance")
DOWN_MESSAGE = "Machine is `DOWN`"


def _checked(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except InvalidMaintenance as e:
        raise CallError(400, str(e)) from None


def persist(st: MasterState) -> None:
    st.out.append(SaveMaintenance(st.maintenance.document()))
    st.version += 1


def recover(st: MasterState, doc: dict[str, Any] | None) -> None:
    st.maintenance.restore(doc)


# ---------------------------------------------------------------------- schedule
def update_schedule(st: MasterState, payload: Any, now: float) -> None:
    """UPDATE_MAINTENANCE_SCHEDULE (replaces the schedule); CallError 400 on a broken rule."""
    mt = st.maintenance
    if not isinstance(payload, dict) or "schedule" not in payload:
        raise CallError(400, "Expecting 'update_maintenance_schedule.schedule' to be present")
    windows = _checked(_validate_schedule, payload["schedule"], mt)
    before = {a.id: mt.unavailability_of(a.hostname) for a in st.agents.values()} if mt.modes else {}
    left = mt.set_windows(windows)
    for agent in st.agents.values():
        if mt.unavailability_of(agent.hostname) != before.get(agent.id):
            offers.rescind_agent(st, agent.id, now)  # re-offered with (or without) unavailability
    for io in list(mt.inverse.values()):
        if io.machine in left:
            rescind_inverse(st, io)
    persist(st)
    st.wants_allocation = True
    log.info("maintenance schedule updated windows=%d machines=%d left=%d", len(windows), len(mt.modes), len(left))


def start_maintenance(st: MasterState, payload: Any, now: float) -> None:
    """START_MAINTENANCE: DRAINING machines go DOWN; their agents shut down and are removed."""
    mt = st.maintenance
    keys = _checked(_parse_machines, payload.get("machines"), "START_MAINTENANCE")
    for key in keys:
        if key not in mt.modes:
            raise CallError(400, f"Machine {machine_text(key)} is not part of a maintenance schedule")
        if mt.modes[key] != DRAINING:
            raise CallError(400, f"Machine {machine_text(key)} is not in DRAINING mode and cannot be brought down")
    for key in keys:
        mt.modes[key] = DOWN
        mt.statuses.pop(key, None)
        for io in [io for io in mt.inverse.values() if io.machine == key]:
            rescind_inverse(st, io)
        for agent in [a for a in st.agents.values() if matches(key, a.hostname)]:
            if agent.channel is not None:
                st.out.append(ToChannel(agent.channel, ch.ShutdownAgent(agent_id=agent.id, message=DOWN_MESSAGE)))
            mt.deactivated.discard(agent.id)
            mt.drains.pop(agent.id, None)
            mt.drain_started.pop(agent.id, None)
            log.info("machine down: removing agent=%s machine=%s tasks=%d", agent.id, machine_text(key),
                     len(agent.tasks))
            agents.remove_agent(st, agent.id, now, "REASON_AGENT_REMOVED",
                                f"Agent {agent.hostname} removed: Operator initiated 'Machine DOWN'", state="TASK_LOST")
    persist(st)


def stop_maintenance(st: MasterState, payload: Any, now: float) -> None:
    """STOP_MAINTENANCE: DOWN machines are UP again and leave the schedule."""
    mt = st.maintenance
    keys = _checked(_parse_machines, payload.get("machines"), "STOP_MAINTENANCE")
    for key in keys:
        if mt.modes.get(key) != DOWN:
            raise CallError(400, f"Machine {machine_text(key)} is not in DOWN mode and cannot be brought up")
    up = set(keys)
    windows = []
    for w in mt.windows:
        ids = [mid for mid in w["machine_ids"]
               if ((mid.get("hostname") or "").lower(), mid.get("ip") or "") not in up]
        if ids:
            windows.append({**w, "machine_ids": ids})
    mt.set_windows(windows)
    persist(st)
    log.info("machines up: %s", ", ".join(machine_text(k) for k in keys))


# ---------------------------------------------------------------------- inverse offers
def send_inverse_offers(st: MasterState, now: float) -> None:
    """After an allocation: inverse offers to the frameworks using DRAINING machines."""
    mt = st.maintenance
    for io in list(mt.inverse.values()):
        fw = st.frameworks.get(io.framework_id)
        if io.agent_id not in st.agents or fw is None or not fw.connected or mt.modes.get(io.machine) != DRAINING:
            rescind_inverse(st, io)  # a framework that lost its stream gets a fresh one when it is back
    if DRAINING not in mt.modes.values():
        return
    batches: dict[str, list[dict[str, Any]]] = {}
    for agent in st.agents.values():
        key = mt.machine_of(agent.hostname)
        if key is None or mt.modes[key] != DRAINING or not agent.connected:
            continue
        for fid in sorted({fid for fid, tid in agent.tasks if _live(st, fid, tid)}):
            fw = st.frameworks.get(fid)
            pair = (fid, agent.id)
            if fw is None or not fw.connected or pair in mt.outstanding or mt.refused.get(pair, 0.0) > now:
                continue
            io = InverseOffer(st.ids.offer(), fid, agent.id, key)
            mt.inverse[io.id] = io
            mt.outstanding[pair] = io.id
            mt.statuses.setdefault(key, {}).setdefault(fid, ("UNKNOWN", now))
            batches.setdefault(fid, []).append(_inverse_json(io, agent, mt.unavailability[key]))
    for fid, batch in batches.items():
        st.version += 1
        st.emit(st.frameworks[fid], m.Event(type="INVERSE_OFFERS", inverse_offers={"inverse_offers": batch}))
        log.info("inverse offers sent framework=%s agents=%s", fid, ",".join(o["agent_id"]["value"] for o in batch))


def _live(st: MasterState, fid: str, tid: str) -> bool:
    fw = st.frameworks.get(fid)
    task = fw.tasks.get(tid) if fw is not None else None
    return task is not None and task.state not in m.TERMINAL_STATES


def _inverse_json(io: InverseOffer, agent: Agent, unavailability: dict[str, Any]) -> dict[str, Any]:
    return {"id": {"value": io.id}, "url": offers.agent_url(agent), "framework_id": {"value": io.framework_id},
            "agent_id": {"value": io.agent_id}, "unavailability": unavailability}


def rescind_inverse(st: MasterState, io: InverseOffer) -> None:
    mt = st.maintenance
    mt.inverse.pop(io.id, None)
    mt.outstanding.pop((io.framework_id, io.agent_id), None)
    fw = st.frameworks.get(io.framework_id)
    if fw is not None:
        st.emit(fw, m.Event(type="RESCIND_INVERSE_OFFER",
                            rescind_inverse_offer={"inverse_offer_id": {"value": io.id}}))


def answer_inverse_offers(st: MasterState, fw: Framework, payload: Any, accept: bool, now: float) -> None:
    """ACCEPT_ / DECLINE_INVERSE_OFFERS: advisory answers, shown by GET_MAINTENANCE_STATUS."""
    field = "accept_inverse_offers" if accept else "decline_inverse_offers"
    ids = payload.get("inverse_offer_ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list):
        raise CallError(400, f"Expecting '{field}.inverse_offer_ids' to be a list")
    try:
        filters = msgspec.convert(payload.get("filters"), m.Filters | None)
    except msgspec.ValidationError as e:
        raise CallError(400, f"Invalid '{field}.filters': {e}") from None
    mt = st.maintenance
    for oid in ids:
        io = mt.inverse.get(oid.get("value")) if isinstance(oid, dict) else None
        if io is None or io.framework_id != fw.id:
            log.info("inverse offer answer ignored framework=%s id=%s: unknown or not its own", fw.id, oid)
            continue
        mt.inverse.pop(io.id)
        mt.outstanding.pop((fw.id, io.agent_id), None)
        mt.refused[(fw.id, io.agent_id)] = now + refuse_seconds(filters)
        if io.machine in mt.modes:
            mt.statuses.setdefault(io.machine, {})[fw.id] = ("ACCEPT" if accept else "DECLINE", now)
        log.info("inverse offer %s framework=%s agent=%s", "accepted" if accept else "declined", fw.id, io.agent_id)
    st.version += 1


# ---------------------------------------------------------------------- deactivation and draining
def _agent(st: MasterState, payload: Any, call: str) -> str:
    ident = payload.get("agent_id") if isinstance(payload, dict) else None
    aid = ident.get("value") if isinstance(ident, dict) else None
    if not isinstance(aid, str):
        raise CallError(400, f"Failed to validate master::Call: Expecting '{call.lower()}.agent_id' to be present")
    return aid


def _deactivate(st: MasterState, agent: Agent, now: float) -> None:
    st.maintenance.deactivated.add(agent.id)
    agent.active = False
    st.allocator.deactivate_agent(agent.id)
    offers.rescind_agent(st, agent.id, now)


def deactivate_agent(st: MasterState, payload: Any, now: float) -> None:
    aid = _agent(st, payload, "DEACTIVATE_AGENT")
    agent = st.agents.get(aid)
    if agent is None:
        raise CallError(400, f"No agent found with specified ID '{aid}'")
    _deactivate(st, agent, now)
    persist(st)
    log.info("agent deactivated agent=%s", aid)


def reactivate_agent(st: MasterState, payload: Any, now: float) -> None:
    aid = _agent(st, payload, "REACTIVATE_AGENT")
    mt = st.maintenance
    agent = st.agents.get(aid)
    if agent is None:
        raise CallError(400, f"No agent found with specified ID '{aid}'")
    if aid not in mt.deactivated:
        raise CallError(400, f"Agent '{aid}' is not deactivated")
    if mt.drains.get(aid, {}).get("state") == DRAINING:
        raise CallError(400, f"Agent '{aid}' is still DRAINING and cannot be reactivated until it is DRAINED")
    mt.deactivated.discard(aid)
    mt.drains.pop(aid, None)
    mt.drain_started.pop(aid, None)
    agent.active = True
    if agent.connected:
        st.allocator.activate_agent(aid)
    persist(st)
    st.wants_allocation = True
    log.info("agent reactivated agent=%s", aid)


def drain_agent(st: MasterState, payload: Any, now: float) -> None:
    """DRAIN_AGENT: deactivate, kill every task (grace capped), DRAINED when all are done."""
    aid = _agent(st, payload, "DRAIN_AGENT")
    mt = st.maintenance
    max_grace = _checked(_parse_duration, payload.get("max_grace_period"))
    mark_gone = payload.get("mark_gone", False)
    if not isinstance(mark_gone, bool):
        raise CallError(400, "Invalid 'drain_agent.mark_gone': expected true or false")
    agent = st.agents.get(aid)
    if agent is None and aid not in st.unreachable:
        raise CallError(400, f"No agent found with specified ID '{aid}'")
    if aid in st.gone:
        raise CallError(409, f"Agent '{aid}' is marked gone")
    if agent is not None and mt.machine_of(agent.hostname) is not None:
        raise CallError(400, f"Agent '{aid}' is on a machine in the maintenance schedule and cannot be drained")
    config: dict[str, Any] = {"mark_gone": mark_gone}
    if max_grace is not None:
        config["max_grace_period"] = {"nanoseconds": max_grace}
    mt.drains[aid] = {"state": DRAINING, "config": config}
    mt.deactivated.add(aid)
    if agent is not None:
        mt.drain_started[aid] = now
        _deactivate(st, agent, now)
        _kill_for_drain(st, agent)
    persist(st)
    log.info("agent draining agent=%s max_grace_ns=%s mark_gone=%s", aid, max_grace, mark_gone)
    check_drains(st, now)


def _kill_for_drain(st: MasterState, agent: Agent) -> None:
    if not agent.connected:
        return  # killed when it re-registers (on_registered)
    config = st.maintenance.drains[agent.id]["config"]
    cap = config.get("max_grace_period", {}).get("nanoseconds")
    for fid, tid in sorted(agent.tasks):
        if not _live(st, fid, tid):
            continue
        task = st.frameworks[fid].tasks[tid]
        policy = task.info.kill_policy
        grace = policy.grace_period.nanoseconds if policy is not None and policy.grace_period is not None else None
        if cap is not None and (grace is None or grace > cap):
            grace = cap
        kill = m.KillPolicy(grace_period=m.DurationInfo(nanoseconds=grace)) if grace is not None else None
        st.out.append(ToAgent(agent.id, ch.KillTask(agent_id=agent.id, framework_id=fid, task_id=tid,
                                                    kill_policy=kill)))


def rewrite_drain_update(st: MasterState, agent_id: str, fw: Framework, status: m.TaskStatus) -> None:
    """A draining agent's KILLING / KILLED updates carry REASON_AGENT_DRAINING."""
    drain = st.maintenance.drains.get(agent_id)
    if drain is None or drain["state"] != DRAINING or status.state not in ("TASK_KILLING", "TASK_KILLED"):
        return
    status.reason = "REASON_AGENT_DRAINING"
    if status.state == "TASK_KILLED" and drain["config"].get("mark_gone") and fw.partition_aware:
        status.state = "TASK_GONE_BY_OPERATOR"


def check_drains(st: MasterState, now: float) -> None:
    """DRAINING → DRAINED once every task on the agent is terminal and acknowledged."""
    mt = st.maintenance
    for aid, drain in list(mt.drains.items()):
        agent = st.agents.get(aid)
        if drain["state"] != DRAINING or agent is None or not agent.connected:
            continue
        for fid, tid in agent.tasks:
            fw = st.frameworks.get(fid)
            task = fw.tasks.get(tid) if fw is not None else None
            if task is not None and (task.state not in m.TERMINAL_STATES or task.unacked is not None):
                break
        else:
            drain["state"] = "DRAINED"
            log.info("agent drained agent=%s mark_gone=%s", aid, drain["config"].get("mark_gone"))
            if drain["config"].get("mark_gone"):
                mt.drains.pop(aid)
                mt.drain_started.pop(aid, None)
                mt.deactivated.discard(aid)
                reachability.mark_gone(st, aid, now)
            persist(st)


def on_registered(st: MasterState, agent: Agent) -> None:
    """An agent (re-)registered: it stays deactivated, and a drain goes on where it was."""
    mt = st.maintenance
    if agent.id not in mt.deactivated:
        return
    agent.active = False
    st.allocator.deactivate_agent(agent.id)
    if mt.drains.get(agent.id, {}).get("state") == DRAINING:
        _kill_for_drain(st, agent)


CALLS = {  # operator call -> transition(st, the call's payload object, now); each answers 200
    "UPDATE_MAINTENANCE_SCHEDULE": update_schedule, "START_MAINTENANCE": start_maintenance,
    "STOP_MAINTENANCE": stop_maintenance, "DRAIN_AGENT": drain_agent, "DEACTIVATE_AGENT": deactivate_agent,
    "REACTIVATE_AGENT": reactivate_agent,
}


def operator_call(st: MasterState, call: str, payload: Any, now: float) -> None:
    if not isinstance(payload, dict):
        raise CallError(400, f"Failed to validate master::Call: Expecting '{call.lower()}' to be present")
    CALLS[call](st, payload, now)


__all__ = [
    "CALLS", "DOWN_MESSAGE", "MachineKey", "answer_inverse_offers", "check_drains", "deactivate_agent", "drain_agent",
    "operator_call", "on_registered", "reactivate_agent", "recover", "rewrite_drain_update", "send_inverse_offers",
    "start_maintenance", "stop_maintenance", "update_schedule",
]
