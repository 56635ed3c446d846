"""Framework lifecycle: SUBSCRIBE (new or failover), stream loss, failover timeout, TEARDOWN,
and frameworks coming back from the registry.

Functions over :class:`~mesos_nb.master.state.MasterState`. Every admitted framework is saved
(:class:`SaveFramework`) before it is told SUBSCRIBED, with its failover deadline while it is
disconnected, so a restarted master still expires a framework that never returns.
"""

from __future__ import annotations

import logging

from ..protocol import channel as ch
from ..protocol import messages as m
from . import offers
from .effects import EndStream, FrameworkRecord, RemoveFramework, SaveFramework, ToAgent
from .model import Framework
from .state import HEARTBEAT_INTERVAL, CallError, MasterState
from .validation import check_framework_id, check_framework_info

log = logging.getLogger("mesos_nb.master")


def subscribe(st: MasterState, sub: m.Subscribe, stream_id: str, now: float, principal: str | None = None) -> Framework:
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
        offers.rescind_all(st, fw, now, notify=False)
        st.allocator.update_framework(
            fw.id, fw.roles, suppressed_roles=sorted(fw.suppressed_roles),
            gpu_aware=info.has_capability("GPU_RESOURCES"),
        )
        st.allocator.activate_framework(fw.id)
        if old_roles != set(fw.roles):
            log.info("framework roles changed framework=%s roles=%s", fw.id, fw.roles)
        log.info("framework re-subscribed framework=%s name=%s", fw.id, info.name)
        _subscribed(st, fw)
        # Deliver every reliable update the framework has not acknowledged yet.
        for task in fw.tasks.values():
            if task.unacked is not None:
                st.send_update(fw, task.unacked)
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
    return fw


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
    """The subscription stream broke: keep tasks until ``failover_timeout`` passes."""
    fw = st.frameworks.get(framework_id)
    if fw is None or fw.stream_id != stream_id or not fw.connected:
        return
    st.version += 1
    fw.connected = False
    fw.active = False
    fw.unregistered_time = now
    offers.rescind_all(st, fw, now, notify=False)
    st.allocator.deactivate_framework(fw.id)
    fw.failover_deadline = now + fw.info.failover_timeout
    st.out.append(SaveFramework(fw.id, fw.info, fw.registered_time, fw.failover_deadline))
    log.info("framework disconnected framework=%s failover_timeout=%.1fs", fw.id, fw.info.failover_timeout)
    if fw.info.failover_timeout <= 0:
        remove_framework(st, fw.id, now, reason="failover timeout 0")


def teardown(st: MasterState, fw: Framework, now: float) -> None:
    if fw.connected and fw.stream_id:
        st.out.append(EndStream(fw.id, fw.stream_id, None))
    remove_framework(st, fw.id, now, reason="teardown")


def remove_framework(st: MasterState, framework_id: str, now: float, reason: str) -> None:
    fw = st.frameworks.pop(framework_id, None)
    if fw is None:
        return
    st.version += 1
    log.info("framework removed framework=%s reason=%s tasks=%d", fw.id, reason, len(fw.tasks))
    offers.rescind_all(st, fw, now, notify=False)
    fw.connected = False
    fw.active = False
    fw.unregistered_time = fw.unregistered_time or now
    agents = {t.agent_id for t in fw.tasks.values()} | set(fw.executors)
    for agent_id in agents:
        if agent_id in st.agents:
            st.out.append(ToAgent(agent_id, ch.ShutdownFramework(agent_id=agent_id, framework_id=fw.id)))
    for task in list(fw.tasks.values()):
        if task.state not in m.TERMINAL_STATES:
            task.state = "TASK_KILLED"
            task.statuses.append(("TASK_KILLED", now))
            st.metrics["master/tasks_killed"] += 1
        # no allocator.recover per task: remove_framework below hands back all it held at
        # once (10,000 recovers were a 0.4 s step for one TEARDOWN)
        task.resources_released = True
        fw.completed_tasks.append(task)
    fw.tasks.clear()
    st.allocator.remove_framework(fw.id)
    st.removed_framework_ids.add(fw.id)
    st.out.append(RemoveFramework(fw.id))
    st.completed_frameworks.append(fw)
    st.wants_allocation = True


def expire(st: MasterState, now: float) -> None:
    """Remove disconnected frameworks whose failover deadline has passed."""
    for fw in list(st.frameworks.values()):
        if not fw.connected and fw.failover_deadline is not None and now >= fw.failover_deadline:
            remove_framework(st, fw.id, now, reason="failover timeout expired")


def recover(st: MasterState, records: list[FrameworkRecord], removed: set[str], now: float) -> None:
    """Frameworks from the registry come back disconnected with their failover deadline (the
    full ``failover_timeout`` from now if they were connected when the master died)."""
    st.removed_framework_ids |= removed
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
