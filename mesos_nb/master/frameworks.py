"""Framework lifecycle: SUBSCRIBE (new or failover), stream loss, failover timeout, TEARDOWN,
and frameworks coming back from the registry.

Functions over :class:`~mesos_nb.master.state.MasterState`. Every admitted framework is saved
(:class:`SaveFramework`) before it is told SUBSCRIBED, with its failover deadline while it is
disconnected, so a restarted master still expires a framework that never returns.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator

from ..protocol import channel as ch
from ..protocol import messages as m
from . import offers
from .effects import (
    EndStream,
    ForgetRemovedFrameworks,
    FrameworkRecord,
    RemoveFramework,
    SaveFramework,
    ToAgent,
)
from .model import Framework
from .partitions import drop_oldest
from .slices import HOLDING_SLICE, TASK_SLICE, taking_slices
from .state import HEARTBEAT_INTERVAL, CallError, MasterState
from .validation import check_framework_id, check_framework_info

log = logging.getLogger("mesos_nb.master")


def subscribe(st: MasterState, sub: m.Subscribe, stream_id: str, now: float, principal: str | None = None) -> Framework:
    """SUBSCRIBE in one go (tests, the harness): every step of :func:`subscribe_steps`."""
    fw, rest = subscribe_steps(st, sub, stream_id, now, principal)
    for _ in rest:
        pass
    return fw


def subscribe_steps(st: MasterState, sub: m.Subscribe, stream_id: str, now: float,
                    principal: str | None = None) -> tuple[Framework, Generator[None, None, None]]:
    """SUBSCRIBE: the framework admitted (or failed over) and told SUBSCRIBED now; what a
    failover leaves to do is returned as steps: the offers the old instance still held,
    rescinded a slice per step (a framework holding an offer of each of 50,000 agents), and
    every update it has not acknowledged, sent again a slice per step (100,000 tasks).
    Raises :class:`CallError` before changing anything when the call is refused."""
    info = sub.framework_info
    check_framework_info(info)
    if principal and not info.principal:
        info.principal = principal
    st.version += 1
    fid = info.id.value if info.id else None
    if fid is not None:
        check_framework_id(fid)
    if fid is not None and fid in st.removed_framework_ids:
        # Mesos answers on the stream, then closes it.
        raise CallError(403, "Framework has been removed")
    if fid is not None and fid in st.frameworks:
        fw = st.frameworks[fid]
        if fw.connected and fw.stream_id:
            st.out.append(EndStream(fw.id, fw.stream_id, "Framework failed over"))
        old_roles = set(fw.roles)
        # user and checkpoint cannot change on re-subscription (silently kept).
        info.user = fw.info.user
        info.checkpoint = fw.info.checkpoint
        fw.info = info
        fw.connected = True
        fw.active = True
        fw.stream_id = stream_id
        fw.reregistered_time = now
        fw.failover_deadline = None
        fw.suppressed_roles = set(sub.suppressed_roles)
        st.out.append(SaveFramework(fw.id, info, fw.registered_time, None))
        if old_roles != set(fw.roles):  # offers of a role it left go before the allocator forgets it
            offers.rescind_all(st, fw, now, notify=False)
        stale = list(fw.offers)  # the old instance's (never sent on the new stream)
        st.allocator.update_framework(
            fw.id, fw.roles, suppressed_roles=sorted(fw.suppressed_roles),
            gpu_aware=info.has_capability("GPU_RESOURCES"),
        )
        st.allocator.activate_framework(fw.id)
        if old_roles != set(fw.roles):
            log.info("framework roles changed framework=%s roles=%s", fw.id, fw.roles)
        log.info("framework re-subscribed framework=%s name=%s", fw.id, info.name)
        _subscribed(st, fw)
        st.wants_allocation = True
        return fw, _failover_steps(st, fw, stream_id, stale, now)
    else:
        if fid is None:
            fid = st.ids.framework()
            info.id = m.ID(value=fid)
        fw = Framework(id=fid, info=info, registered_time=now, connected=True, stream_id=stream_id)
        fw.suppressed_roles = set(sub.suppressed_roles)
        st.out.append(SaveFramework(fid, info, now, None))
        st.frameworks[fid] = fw
        st.allocator.add_framework(
            fid, fw.roles, suppressed_roles=sorted(fw.suppressed_roles),
            gpu_aware=info.has_capability("GPU_RESOURCES"),
        )
        # Tasks of this framework may already be known from re-registered agents.
        log.info("framework subscribed framework=%s name=%s roles=%s", fid, info.name, fw.roles)
        _subscribed(st, fw)
    st.wants_allocation = True
    return fw, _no_steps()


def _no_steps() -> Generator[None, None, None]:
    yield from ()


def _failover_steps(st: MasterState, fw: Framework, stream_id: str, stale: list[str],
                    now: float) -> Generator[None, None, None]:
    """After a failover's SUBSCRIBED: the old instance's offers rescinded (silently: the new
    stream never saw them), then every reliable update not yet acknowledged delivered again;
    a slice per step. Stops if the framework fails over again or goes meanwhile."""
    yield from offers.rescind_steps(st, stale, now, notify=False)
    unacked = [task for task in fw.tasks.values() if task.unacked is not None]
    for part in taking_slices(unacked, TASK_SLICE):
        if fw.stream_id != stream_id or st.frameworks.get(fw.id) is not fw:
            return
        for task in part:
            if task.unacked is not None:
                st.send_update(fw, task.unacked)
        yield


def _subscribed(st: MasterState, fw: Framework) -> None:
    st.emit(
        fw,
        m.Event(
            type="SUBSCRIBED",
            subscribed=m.Subscribed(
                framework_id=m.ID(value=fw.id),
                heartbeat_interval_seconds=HEARTBEAT_INTERVAL,
                master_info=st.master_info,
            ),
        ),
    )


def disconnect(st: MasterState, framework_id: str, stream_id: str, now: float) -> None:
    for _ in disconnect_steps(st, framework_id, stream_id, now):
        pass


def disconnect_steps(st: MasterState, framework_id: str, stream_id: str, now: float) -> Iterator[None]:
    """The subscription stream broke: keep tasks until ``failover_timeout`` passes (0: the
    framework is removed now, in steps). Its offers are rescinded in steps."""
    fw = st.frameworks.get(framework_id)
    if fw is None or fw.stream_id != stream_id or not fw.connected:
        return
    st.version += 1
    fw.connected = False
    fw.active = False
    fw.unregistered_time = now
    st.allocator.deactivate_framework(fw.id)
    fw.failover_deadline = now + fw.info.failover_timeout
    st.out.append(SaveFramework(fw.id, fw.info, fw.registered_time, fw.failover_deadline))
    log.info("framework disconnected framework=%s failover_timeout=%.1fs", fw.id, fw.info.failover_timeout)
    yield from offers.rescind_steps(st, list(fw.offers), now, notify=False)
    if fw.info.failover_timeout <= 0 and not fw.connected and st.frameworks.get(fw.id) is fw:
        yield from remove_framework_steps(st, fw.id, now, reason="failover timeout 0")


def teardown(st: MasterState, fw: Framework, now: float) -> None:
    for _ in teardown_steps(st, fw, now):
        pass


def teardown_steps(st: MasterState, fw: Framework, now: float) -> Iterator[None]:
    if fw.connected and fw.stream_id:
        st.out.append(EndStream(fw.id, fw.stream_id, None))
    return remove_framework_steps(st, fw.id, now, reason="teardown")


def remove_framework(st: MasterState, framework_id: str, now: float, reason: str) -> None:
    for _ in remove_framework_steps(st, framework_id, now, reason):
        pass


def remove_framework_steps(st: MasterState, framework_id: str, now: float, reason: str) -> Iterator[None]:
    """Remove a framework: gone at once for every call, the registry and the allocator's
    cycles (it is deactivated there first); then its offers rescinded, its tasks killed and
    its agents told, and what it held handed back to the allocator, in steps (100,000 tasks
    in one step: 0.2-1 s). A task's update meanwhile finds no framework, as after the end."""
    fw = st.frameworks.pop(framework_id, None)
    if fw is None:
        return
    st.version += 1
    log.info("framework removed framework=%s reason=%s tasks=%d", fw.id, reason, len(fw.tasks))
    fw.connected = False
    fw.active = False
    fw.unregistered_time = fw.unregistered_time or now
    st.allocator.deactivate_framework(fw.id)
    st.removed_framework_ids[fw.id] = None
    st.out.append(RemoveFramework(fw.id))
    forget_oldest_removed(st)
    st.completed_frameworks.append(fw)
    yield from offers.rescind_steps(st, list(fw.offers), now, notify=False)
    fw.offers.clear()  # (gone from st.offers; not from here, the framework being gone too)
    told: set[str] = set()
    for part in taking_slices(list(fw.tasks.values()), TASK_SLICE):
        for task in part:
            _shutdown(st, fw, task.agent_id, told)
            if task.state not in m.TERMINAL_STATES:
                task.state = "TASK_KILLED"
                task.statuses.append(("TASK_KILLED", now))
                st.metrics["master/tasks_killed"] += 1
            # no allocator.recover per task: its steps below hand back all it held at once
            # (10,000 recovers were a 0.4 s step for one TEARDOWN)
            task.resources_released = True
            fw.tasks.pop(task.id, None)
            fw.completed_tasks.append(task)
        st.version += 1
        yield
    for agent_id in fw.executors:
        _shutdown(st, fw, agent_id, told)
    yield from st.allocator.remove_framework_steps(fw.id, HOLDING_SLICE)
    st.wants_allocation = True


def _shutdown(st: MasterState, fw: Framework, agent_id: str, told: set[str]) -> None:
    """Tell the agent, once, to shut the removed framework's executors down."""
    if agent_id not in told:
        told.add(agent_id)
        if agent_id in st.agents:
            st.out.append(ToAgent(agent_id, ch.ShutdownFramework(agent_id=agent_id, framework_id=fw.id)))


def due(st: MasterState, now: float) -> list[Framework]:
    """Disconnected frameworks whose failover deadline has passed."""
    return [fw for fw in st.frameworks.values()
            if not fw.connected and fw.failover_deadline is not None and now >= fw.failover_deadline]


def expire_steps(st: MasterState, now: float) -> Iterator[None]:
    """Remove (in steps) the disconnected frameworks whose failover deadline has passed."""
    for fw in due(st, now):
        if st.frameworks.get(fw.id) is fw and not fw.connected:  # (not back meanwhile)
            yield from remove_framework_steps(st, fw.id, now, reason="failover timeout expired")


def forget_oldest_removed(st: MasterState) -> None:
    """Past ``max_removed_frameworks``, forget the oldest removed frameworks, here and in the
    registry (:class:`ForgetRemovedFrameworks`): one that re-subscribes later is then treated
    as an unknown id is (admitted under it, as after a failover), as Mesos treats a framework
    that fell out of its bounded completed list."""
    forgotten = drop_oldest(st.removed_framework_ids, st.max_removed_frameworks)
    if forgotten:
        st.out.append(ForgetRemovedFrameworks(forgotten))
        log.info("removed frameworks forgotten count=%d oldest=%s kept=%d", len(forgotten), forgotten[0],
                 len(st.removed_framework_ids))


def recover(st: MasterState, records: list[FrameworkRecord], removed: list[str], now: float) -> None:
    """Frameworks from the registry come back disconnected with their failover deadline (the
    full ``failover_timeout`` from now if they were connected when the master died). The
    removed ones come oldest first; a registry that kept more than the bound is trimmed."""
    for fid in removed:
        st.removed_framework_ids[fid] = None
    forget_oldest_removed(st)
    for rec in records:
        info = rec.info
        fw = Framework(id=rec.id, info=info, registered_time=rec.registered_time, connected=False, active=False)
        fw.failover_deadline = rec.failover_deadline if rec.failover_deadline is not None else now + info.failover_timeout
        st.frameworks[rec.id] = fw
        st.allocator.add_framework(rec.id, fw.roles, gpu_aware=info.has_capability("GPU_RESOURCES"), active=False)


def adopt(st: MasterState, framework_id: str, info: m.FrameworkInfo, now: float) -> Framework:
    """A re-registering agent reports a framework this master forgot (it failed over without a
    registry): re-create it, disconnected, until it re-subscribes."""
    fw = Framework(id=framework_id, info=info, registered_time=now, connected=False, active=False)
    fw.failover_deadline = now + max(info.failover_timeout, 0.0)
    st.frameworks[fw.id] = fw
    st.allocator.add_framework(fw.id, fw.roles, gpu_aware=info.has_capability("GPU_RESOURCES"), active=False)
    return fw
