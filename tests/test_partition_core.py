"""Partition rules wired into the master core (Mesos 1.11): unreachable, re-admitted, gone.

In-process through the harness (fake clock, the registry's reference semantics); the
real-process forms with a cut network link are in ``test_partition_netns.py``.
"""

from __future__ import annotations

import pytest

from mesos_nb.master.core import CallError
from mesos_nb.master.effects import MarkAgentGone, MarkAgentUnreachable
from mesos_nb.master.harness import Harness
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources


def _cluster(aware: bool):
    h = Harness.build(agents=1, frameworks=0, agent_reregister_timeout=30.0)
    caps = ("PARTITION_AWARE",) if aware else ()
    fw = h.subscribe("fw", failover_timeout=3600.0, capabilities=caps)
    h.drain()
    offer = h.allocate()[fw.id][0]
    h.launch(fw, offer, "t1", cmd="sleep 1000")
    h.update("t1", "TASK_RUNNING")
    h.acknowledge("t1")
    return h, fw, h.agents[0]


def _reregister(h: Harness, agent, state: str = "TASK_RUNNING", tasks: bool = True):
    pending = [t for fw in h.frameworks for t in fw.unreachable_tasks.values()]
    task = pending[0] if tasks and pending else None
    reports = []
    if task is not None:
        reports = [ch.TaskReport(framework_id=task.framework_id, task=task.info, state=state,
                                 framework=h.core.frameworks[task.framework_id].info)]
    reg = ch.RegisterAgent(key="k9", agent_id=agent.id, hostname=agent.hostname, port=agent.port,
                           resources=Resources.parse("cpus:2;mem:1024").to_proto(), tasks=reports)
    chan = object()
    back = h.core.register_agent(reg, chan, h.now)
    return back, h.drain()


def _updates(h: Harness, out):
    return [(e.update.status.task_id.value, e.update.status.state, e.update.status.reason)
            for e in h.events(out, "UPDATE")]


@pytest.mark.parametrize("aware,told", [(True, "TASK_UNREACHABLE"), (False, "TASK_LOST")])
def test_silent_agent_becomes_unreachable_and_its_tasks_come_back_running(aware, told):
    h, fw, agent = _cluster(aware)
    h.lose_channel()
    h.advance(10.0)
    assert agent.id in h.core.agents  # still within the window
    out = h.advance(25.0)
    assert _updates(h, out) == [("t1", told, "REASON_AGENT_REMOVED")]
    st = h.events(out, "UPDATE")[0].update.status
    assert st.uuid is None and st.unreachable_time is not None
    assert h.events(out, "FAILURE")[0].failure.agent_id.value == agent.id
    assert agent.id not in h.core.agents and agent.id in h.core.unreachable
    assert agent.id in h.registry.unreachable and agent.id not in h.registry.agents
    assert "t1" in fw.unreachable_tasks and "t1" not in fw.tasks
    # implicit reconciliation skips unreachable tasks; explicit answers UNREACHABLE (LOST)
    h.core.reconcile(fw.id, m.Reconcile(tasks=[]), h.now)
    assert h.events(h.drain(), "UPDATE") == []
    h.core.reconcile(fw.id, m.Reconcile(tasks=[m.ReconcileTask(task_id=m.ID(value="t1"))]), h.now)
    assert [s[1] for s in _updates(h, h.drain())] == [told]

    h.advance(5.0)
    back, out = _reregister(h, agent)
    assert back is not None and back.id == agent.id
    # the task is adopted again, reported with its current state, and NOT killed
    assert _updates(h, out) == [("t1", "TASK_RUNNING", "REASON_AGENT_REREGISTERED")]
    assert h.agent_msgs(out, ch.KillTask) == [] and h.agent_msgs(out, ch.ShutdownFramework) == []
    assert fw.tasks["t1"].state == "TASK_RUNNING" and not fw.unreachable_tasks
    assert agent.id not in h.core.unreachable and agent.id in h.registry.agents
    assert agent.id not in h.registry.unreachable
    assert h.core.allocator.available(agent.id).scalar("cpus") == 1  # its resources are in use again
    h.core.reconcile(fw.id, m.Reconcile(tasks=[]), h.now)
    assert _updates(h, h.drain()) == [("t1", "TASK_RUNNING", "REASON_RECONCILIATION")]


def test_unreported_unreachable_task_is_gone_when_the_agent_returns():
    h, fw, agent = _cluster(True)
    h.lose_channel()
    h.advance(31.0)
    _, out = _reregister(h, agent, tasks=False)
    assert _updates(h, out) == [("t1", "TASK_GONE", "REASON_AGENT_RESTARTED")]
    assert not fw.unreachable_tasks and "t1" not in fw.tasks


def test_mark_gone_of_an_unreachable_agent_ends_tasks_and_refuses_it():
    h, fw, agent = _cluster(True)
    h.lose_channel()
    h.advance(31.0)
    h.core.mark_agent_gone(agent.id, h.now)
    out = h.drain()
    assert _updates(h, out) == [("t1", "TASK_GONE_BY_OPERATOR", "REASON_AGENT_REMOVED_BY_OPERATOR")]
    assert agent.id in h.registry.gone and agent.id not in h.registry.unreachable
    back, out = _reregister(h, agent, tasks=False)
    assert back is None
    refused = [e.msg for e in out if isinstance(getattr(e, "msg", None), ch.Refused)]
    assert refused and "gone" in refused[0].message
    h.core.reconcile(fw.id, m.Reconcile(tasks=[m.ReconcileTask(task_id=m.ID(value="zz"),
                                                              agent_id=m.ID(value=agent.id))]), h.now)
    assert [s[1] for s in _updates(h, h.drain())] == ["TASK_GONE_BY_OPERATOR"]


def test_mark_gone_of_a_registered_agent_shuts_its_frameworks_down():
    h, fw, agent = _cluster(False)
    h.core.mark_agent_gone(agent.id, h.now)
    out = h.drain()
    assert _updates(h, out) == [("t1", "TASK_LOST", "REASON_AGENT_REMOVED_BY_OPERATOR")]
    assert [x.framework_id for x in h.agent_msgs(out, ch.ShutdownFramework)] == [fw.id]
    assert agent.id not in h.core.agents
    h.core.mark_agent_gone(agent.id, h.now)  # again: nothing more
    assert h.drain() == []
    with pytest.raises(CallError) as e:
        h.core.mark_agent_gone("no-such-agent", h.now)
    assert e.value.status == 404


def test_unreachable_and_gone_lists_survive_a_master_restart_and_are_bounded():
    h, fw, agent = _cluster(True)
    h.lose_channel()
    h.advance(31.0)
    h2 = h.restart()
    assert agent.id in h2.core.unreachable
    back, out = _reregister(h2, agent, tasks=False)
    assert back is not None and agent.id not in h2.core.unreachable
    h2.core.partition = type(h2.core.partition)(registry_max_agent_age=100.0)
    h2.lose_channel(h2.core.agents[agent.id].channel)
    h2.advance(31.0)
    assert agent.id in h2.core.unreachable
    h2.advance(101.0)  # older than registry_max_agent_age: dropped from the list and the registry
    assert agent.id not in h2.core.unreachable and agent.id not in h2.registry.unreachable


def test_registry_effects_are_emitted_before_the_frameworks_are_told():
    h, fw, agent = _cluster(True)
    h.lose_channel()
    h.now += 31.0
    h.core.tick(h.now)
    kinds = [type(e).__name__ for e in h.core.out]
    assert kinds.index("MarkAgentUnreachable") < kinds.index("ToFramework")
    h.drain()
    h.core.mark_agent_gone(agent.id, h.now)
    assert isinstance(h.core.out[0], MarkAgentGone)
    assert not any(isinstance(e, MarkAgentUnreachable) for e in h.core.out)
