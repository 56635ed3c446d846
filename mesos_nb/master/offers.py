"""Offers: turning allocations into OFFERS events, and ACCEPT / DECLINE / rescind / REVIVE /
SUPPRESS, including launching the tasks an ACCEPT carries.

Functions over :class:`~mesos_nb.master.state.MasterState`. Offered resources stay allocated
in the allocator until the offer is accepted, declined (with the framework's refusal filter)
or rescinded.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any

from ..protocol import channel as ch
from ..protocol import messages as m
from ..protocol.resources import Resources
from . import reservations, tasks, volumes
from .effects import ToAgent
from .model import Agent, Framework, Offer, Task
from .slices import RESCIND_SLICE, run_all, slices
from .state import MasterState
from .validation import executor_charge, refuse_seconds, validate_task

log = logging.getLogger("mesos_nb.master")


def allocate(st: MasterState, now: float, full: bool = True, agent_ids: list[str] | None = None) -> None:
    """An allocation cycle into OFFERS; ``full=False`` looks only at the agents whose free
    resources changed since the last cycle (the shell's cycle soon after an event);
    ``agent_ids``: these agents only (the shell's full cycle of a big cluster, in slices)."""
    st.wants_allocation = False
    st.metrics["allocator/mesos/allocation_runs"] += 1
    if agent_ids is not None:
        allocations = st.allocator.allocate(now, agent_ids)
    else:
        allocations = st.allocator.allocate(now) if full else st.allocator.allocate_changed(now)
    make_offers(st, allocations)


def make_offers(st: MasterState, allocations: list) -> None:
    """OFFERS events (one per framework) for what a cycle, or a step of one, allocated."""
    if not allocations:
        return
    st.version += 1
    batches: dict[str, list[m.Offer]] = {}
    for a in allocations:
        fw = st.frameworks.get(a.framework_id)
        agent = st.agents.get(a.agent_id)
        if fw is None or agent is None or not fw.connected:
            st.allocator.recover(a.framework_id, a.agent_id, a.resources, role=a.role)
            continue
        oid = st.ids.offer()
        offer = Offer(oid, fw.id, agent.id, a.role, a.resources)
        st.offers[oid] = offer
        st.agent_offers.setdefault(agent.id, {})[oid] = None
        fw.offers.add(oid)
        executor_ids = [m.ID(value=e) for e in fw.executors.get(agent.id, ())]
        batches.setdefault(fw.id, []).append(
            m.Offer(
                id=m.ID(value=oid),
                framework_id=m.ID(value=fw.id),
                agent_id=m.ID(value=agent.id),
                hostname=agent.hostname,
                resources=offer_proto(a.resources, a.role),
                attributes=agent.attributes,
                executor_ids=executor_ids,
                allocation_info=m.AllocationInfo(role=a.role),
                url=agent_url(agent),
                unavailability=st.maintenance.unavailability_of(agent.hostname),
            )
        )
    for fid, offers in batches.items():
        st.metrics["master/offers_sent"] += len(offers)
        st.emit(st.frameworks[fid], m.Event(type="OFFERS", offers=m.Offers(offers=offers)))


_PROTO_CACHE: dict[tuple, list[m.Resource]] = {}
_PROTO_CACHE_MAX = 4096


def offer_proto(res: Resources, role: str) -> list[m.Resource]:
    """``res.to_proto(role)``, shared between offers of equal resources: most offers of a
    big cluster are one of a few shapes, and building the protos was a fifth of the master.
    The lists are only encoded into OFFERS events, never changed."""
    key = (tuple(res._s.items()), tuple(res._r.items()), tuple(res._t.items()), role)
    proto = _PROTO_CACHE.get(key)
    if proto is None:
        if len(_PROTO_CACHE) >= _PROTO_CACHE_MAX:
            _PROTO_CACHE.clear()
        proto = _PROTO_CACHE[key] = res.to_proto(role)
    return proto


def remove_offer(st: MasterState, offer: Offer) -> None:
    st.offers.pop(offer.id, None)
    by_agent = st.agent_offers.get(offer.agent_id)
    if by_agent is not None:
        by_agent.pop(offer.id, None)
        if not by_agent:
            del st.agent_offers[offer.agent_id]
    fw = st.frameworks.get(offer.framework_id)
    if fw is not None:
        fw.offers.discard(offer.id)


def rescind(st: MasterState, offer: Offer, now: float, notify: bool = True) -> None:
    remove_offer(st, offer)
    st.allocator.recover(offer.framework_id, offer.agent_id, offer.resources, role=offer.role)
    st.metrics["master/offers_rescinded"] += 1
    fw = st.frameworks.get(offer.framework_id)
    if notify and fw is not None:
        st.emit(fw, m.Event(type="RESCIND", rescind=m.Rescind(offer_id=m.ID(value=offer.id))))
    st.wants_allocation = True


def rescind_all(st: MasterState, fw: Framework, now: float, notify: bool) -> None:
    for _ in rescind_steps(st, list(fw.offers), now, notify):
        pass


def rescind_steps(st: MasterState, offer_ids: list[str], now: float, notify: bool = True) -> Iterator[None]:
    """These offers rescinded, ``RESCIND_SLICE`` per step (a framework holding an offer of each
    of 50,000 agents: 0.85 s in one step); one gone meanwhile is skipped. The caller has
    deactivated or removed their framework first, or takes the offers made meanwhile as they come."""
    for part in slices(offer_ids, RESCIND_SLICE):
        for oid in part:
            offer = st.offers.get(oid)
            if offer is not None:
                rescind(st, offer, now, notify=notify)
        yield


def rescind_agent(st: MasterState, agent_id: str, now: float) -> None:
    for oid in list(st.agent_offers.get(agent_id, ())):
        offer = st.offers.get(oid)
        if offer is not None:
            rescind(st, offer, now)


def decline(st: MasterState, fw: Framework, decline: m.Decline, now: float) -> None:
    refuse = refuse_seconds(decline.filters)
    for oid in decline.offer_ids:
        offer = st.offers.get(oid.value)
        if offer is None or offer.framework_id != fw.id:
            continue  # Mesos ignores unknown offers in DECLINE
        remove_offer(st, offer)
        st.metrics["master/offers_declined"] += 1
        st.allocator.recover(fw.id, offer.agent_id, offer.resources, refuse_seconds=refuse, now=now, role=offer.role)
    st.version += 1
    st.wants_allocation = True


ACCEPT_SLICE = 100  # tasks validated and launched per step of a resumable ACCEPT


def accept_steps(
    st: MasterState, fw: Framework, accept: m.Accept, now: float, slice_size: int = ACCEPT_SLICE
) -> Iterator[None]:
    """ACCEPT as resumable steps: it yields after every ``slice_size`` tasks launched, so that
    the shell can hand the effects so far out and let its event loop breathe (a 10,000-task
    ACCEPT would otherwise hold the master for a quarter of a second). The offers are taken at
    the first step; between steps other calls may change the state, and a later step checks
    that the framework and the agent are still there before it goes on."""
    st.version += 1
    st.wants_allocation = True
    refuse = refuse_seconds(accept.filters)
    offers: list[Offer] = []
    error: str | None = None
    seen: set[str] = set()
    for oid in accept.offer_ids:
        offer = st.offers.get(oid.value)
        if oid.value in seen:
            error = f"Offer {oid.value} appears more than once"
        elif offer is None:
            error = f"Offer {oid.value} is no longer valid"
        elif offer.framework_id != fw.id:
            error = f"Offer {oid.value} belongs to another framework"
        elif offers and offer.agent_id != offers[0].agent_id:
            error = "Offers in one ACCEPT must all be from the same agent"
        elif offers and offer.role != offers[0].role:
            error = "Offers in one ACCEPT must all be for the same role"
        seen.add(oid.value)
        if offer is not None and offer.framework_id == fw.id:
            offers.append(offer)
    if not accept.offer_ids:
        error = "No offers specified"
    for offer in offers:
        remove_offer(st, offer)
    if error is not None:
        # Return what we took back to the allocator; fail every task in the call.
        for offer in offers:
            st.allocator.recover(fw.id, offer.agent_id, offer.resources, role=offer.role)
        for op in accept.operations:
            tasks.drop_tasks(st, fw, operation_tasks(op), "REASON_INVALID_OFFERS", error, now)
        log.info("accept refused framework=%s: %s", fw.id, error)
        return
    agent = st.agents.get(offers[0].agent_id)
    role = offers[0].role
    remaining = offers[0].resources
    for offer in offers[1:]:
        remaining = remaining + offer.resources
    for op in accept.operations:
        if op.type in ("LAUNCH", "LAUNCH_GROUP"):
            steps = launch_steps(st, fw, agent, role, op, remaining, now, slice_size)
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    remaining = done.value
                    break
                yield
                if st.frameworks.get(fw.id) is not fw:
                    return  # removed meanwhile: the allocator took back all it held
                agent = st.agents.get(agent.id) if agent is not None else None
        elif op.type in ("RESERVE", "UNRESERVE"):
            remaining = reservations.framework_operation(st, fw, agent, role, op, remaining)
        elif op.type in volumes.OPERATIONS:
            remaining = volumes.framework_operation(st, fw, agent, role, op, remaining)
        else:
            # CREATE_DISK / DESTROY_DISK / ...: refused with feedback, never accepted and ignored.
            why = f"Operation {op.type} is not supported by mesos-nb"
            log.info("operation refused framework=%s: %s", fw.id, why)
            reservations.record(st, fw, agent.id if agent else "", m.to_builtins(op), "OPERATION_ERROR", why, None)
    if remaining and agent is not None:
        st.allocator.recover(fw.id, agent.id, remaining, refuse_seconds=refuse, now=now, role=role)


def launch(
    st: MasterState, fw: Framework, agent: Agent | None, role: str, op: m.Operation, available: Resources, now: float
) -> Resources:
    """Validate and start the tasks of one LAUNCH / LAUNCH_GROUP; return what is left unused."""
    return run_all(launch_steps(st, fw, agent, role, op, available, now, 0))


def launch_steps(
    st: MasterState, fw: Framework, agent: Agent | None, role: str, op: m.Operation, available: Resources,
    now: float, slice_size: int,
) -> Generator[None, None, Resources]:
    """:func:`launch` in slices of ``slice_size`` tasks (0: all at once), yielding between
    them; the caller re-checks the framework. A task group is never split (it is atomic)."""
    if op.type == "LAUNCH":
        infos = op.launch.task_infos if op.launch else []
        if slice_size and len(infos) > slice_size:
            for i in range(0, len(infos), slice_size):
                if i:
                    yield
                    if agent is not None:
                        agent = st.agents.get(agent.id)
                part = m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos[i:i + slice_size]))
                available = launch(st, fw, agent, role, part, available, now)
                st.version += 1
            return available
    if op.type == "LAUNCH":
        infos = op.launch.task_infos if op.launch else []
        executor = None
    else:
        if op.launch_group is None:
            return available
        infos = op.launch_group.task_group.tasks
        executor = op.launch_group.executor
    if agent is None or not agent.connected:
        reason = "REASON_AGENT_DISCONNECTED" if agent else "REASON_AGENT_REMOVED"
        tasks.drop_tasks(st, fw, infos, reason, "Agent is not connected", now)
        return available
    accepted: list[tuple[m.TaskInfo, Resources]] = []  # each task with its own resources
    batch: set[str] = set()
    starting: dict[str, Resources] = {}  # executors these tasks start -> their own resources
    group_error: str | None = None
    for task in infos:
        if executor is not None and task.executor is None:
            task.executor = executor
        res, err = validate_task(fw, agent, task, available, batch, starting)
        if err is None and st.authorize_task is not None:
            denied = st.authorize_task(fw, task)  # run_tasks ACL, injected by the shell
            if denied is not None:
                tasks.task_error(st, fw, agent.id, task, "REASON_TASK_UNAUTHORIZED", denied, now)
                continue
        if err is not None:
            if executor is not None:
                group_error = err
                break
            log.info("task invalid framework=%s task=%s: %s", fw.id, task.task_id.value, err)
            tasks.task_error(st, fw, agent.id, task, "REASON_TASK_INVALID", err, now)
            continue
        assert res is not None
        available = available - res
        batch.add(task.task_id.value)
        own = executor_charge(fw, agent.id, task, starting)
        if own and task.executor is not None:
            starting[task.executor.executor_id.value] = own
        accepted.append((task, res - own))
    if group_error is not None:
        # A task group is delivered atomically: one bad task fails them all.
        for task in infos:
            tasks.task_error(st, fw, agent.id, task, "REASON_TASK_GROUP_INVALID", group_error, now)
        return available + sum((r for _, r in accepted), Resources()) + sum(starting.values(), Resources())
    for task, _ in accepted:
        if task.executor is not None:
            tasks.track_executor(fw, agent.id, task.executor, starting, role)
    for task, res in accepted:
        tid = task.task_id.value
        t = Task(
            id=tid,
            framework_id=fw.id,
            agent_id=agent.id,
            name=task.name,
            role=role,
            resources=res,
            info=task,
            executor_id=task.executor.executor_id.value if task.executor else None,
        )
        t.statuses.append(("TASK_STAGING", now))
        fw.tasks[tid] = t
        agent.tasks.add((fw.id, tid))
        st.metrics["master/messages_launch_tasks"] += 1
        log.debug("task launching framework=%s agent=%s task=%s", fw.id, agent.id, tid)
    if executor is None:
        for task, _ in accepted:
            st.out.append(ToAgent(agent.id, ch.RunTask(agent_id=agent.id, framework=fw.info, task=task)))
    elif accepted:
        st.out.append(
            ToAgent(
                agent.id,
                ch.RunTask(agent_id=agent.id, framework=fw.info, executor=executor, task_group=[t for t, _ in accepted]),
            )
        )
    return available


def revive(st: MasterState, fw: Framework, roles: list[str] | None) -> None:
    roles = roles or None
    if roles is None:
        fw.suppressed_roles.clear()
    else:
        fw.suppressed_roles.difference_update(roles)
    st.allocator.revive(fw.id, roles)
    st.wants_allocation = True
    st.version += 1


def suppress(st: MasterState, fw: Framework, roles: list[str] | None) -> None:
    roles = roles or None
    fw.suppressed_roles.update(roles or fw.roles)
    st.allocator.suppress(fw.id, roles)
    st.version += 1


def operation_tasks(op: m.Operation) -> list[m.TaskInfo]:
    if op.type == "LAUNCH" and op.launch is not None:
        return op.launch.task_infos
    if op.type == "LAUNCH_GROUP" and op.launch_group is not None:
        return op.launch_group.task_group.tasks
    return []


def agent_url(agent: Agent) -> dict[str, Any]:
    return {"scheme": "http", "address": {"hostname": agent.hostname, "ip": agent.hostname, "port": agent.port}, "path": "/slave(1)"}

