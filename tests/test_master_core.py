"""MasterCore driven directly: no sockets, no clock, effects inspected."""

from __future__ import annotations

from mesos_nb.master.core import EndStream, MasterCore, ToAgent, ToChannel, ToFramework
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources


def drain(core: MasterCore) -> list:
    out, core.out = core.out, []
    return out


def events(out, kind=None):
    return [e.event for e in out if isinstance(e, ToFramework) and (kind is None or e.event.type == kind)]


def agent_msgs(out, cls):
    return [e.msg for e in out if isinstance(e, ToAgent) and isinstance(e.msg, cls)]


def setup(now=100.0, failover_timeout=10.0, resources="cpus:2;mem:1024"):
    core = MasterCore("M", agent_reregister_timeout=30.0)
    chan = object()
    reg = ch.RegisterAgent(key="k", hostname="h", port=1, resources=Resources.parse(resources).to_proto())
    agent = core.register_agent(reg, chan, now)
    out = drain(core)
    assert any(isinstance(e, ToChannel) and isinstance(e.msg, ch.AgentRegistered) for e in out)
    sub = m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="fw", failover_timeout=failover_timeout))
    fw = core.subscribe(sub, "stream-1", now)
    assert events(drain(core), "SUBSCRIBED")
    return core, chan, agent, fw


def offer_of(core, now=100.0):
    core.allocate(now)
    offers = events(drain(core), "OFFERS")
    assert offers, "expected an offer"
    return offers[0].offers.offers[0]


def launch(core, fw, offer, task_id, res="cpus:1;mem:128", cmd="true", now=100.0):
    ti = m.TaskInfo(name=task_id, task_id=m.ID(value=task_id), agent_id=offer.agent_id,
                    resources=Resources.parse(res).to_proto(), command=m.CommandInfo(value=cmd))
    core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[m.Operation(type="LAUNCH", launch=m.Launch(task_infos=[ti]))],
                                filters=m.Filters(refuse_seconds=0)), now)
    return drain(core)


def update(core, agent, fw, task_id, state, uuid=b"u" * 16, now=101.0, message=None):
    core.status_update(ch.StatusUpdate(agent_id=agent.id, framework_id=fw.id, status=m.TaskStatus(
        task_id=m.ID(value=task_id), state=state, uuid=uuid, message=message)), now)
    return drain(core)


def test_launch_runs_on_agent_and_update_flows_back_with_ack():
    core, chan, agent, fw = setup()
    offer = offer_of(core)
    out = launch(core, fw, offer, "t1")
    runs = agent_msgs(out, ch.RunTask)
    assert [r.task.task_id.value for r in runs] == ["t1"]
    assert core.frameworks[fw.id].tasks["t1"].state == "TASK_STAGING"
    out = update(core, agent, fw, "t1", "TASK_FINISHED", uuid=b"a" * 16)
    ups = events(out, "UPDATE")
    assert ups[0].update.status.agent_id.value == agent.id and ups[0].update.status.uuid == b"a" * 16
    # Until acknowledged, the task stays active (and is re-sent on re-subscription).
    assert "t1" in core.frameworks[fw.id].tasks
    core.acknowledge(fw.id, m.Acknowledge(agent_id=m.ID(value=agent.id), task_id=m.ID(value="t1"), uuid=b"a" * 16), 102.0)
    acks = agent_msgs(drain(core), ch.AckUpdate)
    assert acks and acks[0].uuid == b"a" * 16
    assert "t1" not in core.frameworks[fw.id].tasks
    assert core.frameworks[fw.id].completed_tasks[-1].state == "TASK_FINISHED"


def test_task_asking_more_than_offered_gets_task_error_and_resources_return():
    core, chan, agent, fw = setup()
    offer = offer_of(core)
    out = launch(core, fw, offer, "big", res="cpus:64;mem:128")
    st = events(out, "UPDATE")[0].update.status
    assert st.state == "TASK_ERROR" and "more resources" in st.message and st.uuid is None
    assert not agent_msgs(out, ch.RunTask)
    # Everything is offered again.
    again = offer_of(core, now=100.5)
    assert Resources.from_proto(again.resources).scalar("cpus") == 2


def test_bad_resource_names_and_unknown_offer():
    core, chan, agent, fw = setup()
    offer = offer_of(core)
    bad = m.TaskInfo(name="b", task_id=m.ID(value="b"), agent_id=offer.agent_id, command=m.CommandInfo(value="true"),
                     resources=[m.Resource(name="cpus bad!", type="SCALAR", scalar=m.Scalar(value=1))])
    core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[m.Operation(type="LAUNCH", launch=m.Launch(task_infos=[bad]))]), 100)
    st = events(drain(core), "UPDATE")[0].update.status
    assert st.state == "TASK_ERROR" and "invalid resources" in st.message.lower()
    out = launch(core, fw, offer, "late")  # offer already used
    st = events(out, "UPDATE")[0].update.status
    assert st.state == "TASK_LOST" and st.reason == "REASON_INVALID_OFFERS" and "no longer valid" in st.message


def test_explicit_and_implicit_reconciliation():
    core, chan, agent, fw = setup()
    launch(core, fw, offer_of(core), "t1")
    update(core, agent, fw, "t1", "TASK_RUNNING")
    core.reconcile(fw.id, m.Reconcile(tasks=[m.ReconcileTask(task_id=m.ID(value="t1")), m.ReconcileTask(task_id=m.ID(value="ghost"))]), 103)
    sts = {e.update.status.task_id.value: e.update.status for e in events(drain(core), "UPDATE")}
    assert sts["t1"].state == "TASK_RUNNING" and sts["t1"].reason == "REASON_RECONCILIATION" and sts["t1"].uuid is None
    assert sts["ghost"].state == "TASK_LOST"
    core.reconcile(fw.id, m.Reconcile(), 104)
    assert [e.update.status.task_id.value for e in events(drain(core), "UPDATE")] == ["t1"]


def test_failover_within_timeout_keeps_tasks_after_it_removes_them():
    core, chan, agent, fw = setup(failover_timeout=10.0)
    launch(core, fw, offer_of(core), "t1")
    update(core, agent, fw, "t1", "TASK_RUNNING", uuid=b"r" * 16)
    core.disconnect(fw.id, "stream-1", 110.0)
    core.tick(115.0)
    assert fw.id in core.frameworks
    sub = m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="fw", id=m.ID(value=fw.id), failover_timeout=10.0))
    core.subscribe(sub, "stream-2", 116.0)
    out = drain(core)
    # The unacknowledged RUNNING update is delivered again on the new stream.
    assert [e.update.status.state for e in events(out, "UPDATE")] == ["TASK_RUNNING"]
    core.disconnect(fw.id, "stream-2", 120.0)
    core.tick(131.0)
    assert fw.id not in core.frameworks
    out = drain(core)
    assert agent_msgs(out, ch.ShutdownFramework)
    # Re-subscribing with a removed id is refused.
    try:
        core.subscribe(sub, "stream-3", 132.0)
    except Exception as e:
        assert "removed" in str(e)
    else:
        raise AssertionError("expected refusal")


def test_new_subscription_ends_old_stream():
    core, chan, agent, fw = setup()
    sub = m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="fw", id=m.ID(value=fw.id), failover_timeout=10.0))
    core.subscribe(sub, "stream-2", 101.0)
    ends = [e for e in drain(core) if isinstance(e, EndStream)]
    assert ends and ends[0].stream_id == "stream-1" and ends[0].message == "Framework failed over"


def test_lost_agent_tasks_reported_lost_and_failure_sent():
    core, chan, agent, fw = setup()
    launch(core, fw, offer_of(core), "t1")
    update(core, agent, fw, "t1", "TASK_RUNNING")
    core.channel_lost(chan, 200.0)
    core.tick(210.0)
    assert agent.id in core.agents  # still within the re-registration window
    core.tick(231.0)
    out = drain(core)
    st = events(out, "UPDATE")[0].update.status
    assert st.state == "TASK_LOST" and st.uuid is None and st.reason == "REASON_AGENT_REMOVED"
    assert events(out, "FAILURE")[0].failure.agent_id.value == agent.id
    assert agent.id not in core.agents


def test_agent_reregistering_with_running_tasks_is_adopted_after_master_restart():
    core = MasterCore("M2")
    fi = m.FrameworkInfo(user="u", name="fw", id=m.ID(value="F1"), failover_timeout=60)
    ti = m.TaskInfo(name="x", task_id=m.ID(value="x"), agent_id=m.ID(value="A1"), command=m.CommandInfo(value="sleep 9"),
                    resources=Resources.parse("cpus:1;mem:32").to_proto())
    reg = ch.RegisterAgent(key="k", agent_id="A1", hostname="h", port=1, resources=Resources.parse("cpus:2;mem:64").to_proto(),
                           tasks=[ch.TaskReport(framework_id="F1", task=ti, state="TASK_RUNNING", framework=fi)])
    core.register_agent(reg, object(), 10.0)
    drain(core)
    assert core.frameworks["F1"].tasks["x"].state == "TASK_RUNNING"
    assert core.allocator.available("A1").scalar("cpus") == 1


def test_resent_terminal_update_after_ack_is_absorbed_not_delivered_twice():
    core, chan, agent, fw = setup()
    launch(core, fw, offer_of(core), "t1")
    update(core, agent, fw, "t1", "TASK_FINISHED", uuid=b"f" * 16)
    core.acknowledge(fw.id, m.Acknowledge(agent_id=m.ID(value=agent.id), task_id=m.ID(value="t1"), uuid=b"f" * 16), 102)
    drain(core)
    # The agent died before the ACK reached it and sends the same update again after restart.
    out = update(core, agent, fw, "t1", "TASK_FINISHED", uuid=b"f" * 16, now=110)
    assert events(out, "UPDATE") == []
    acks = agent_msgs(out, ch.AckUpdate)
    assert acks and acks[0].uuid == b"f" * 16


def test_launch_lost_with_the_old_channel_is_reported_when_agent_reregisters():
    core, chan, agent, fw = setup()
    launch(core, fw, offer_of(core), "t1")  # RUN_TASK went down `chan`...
    core.channel_lost(chan, 100.5)  # ...which broke before the agent got it
    reg = ch.RegisterAgent(key="k2", agent_id=agent.id, hostname="h", port=1,
                           resources=Resources.parse("cpus:2;mem:1024").to_proto())
    core.register_agent(reg, object(), 101.0)  # within 5 s of the launch, over a new channel
    st = [e.update.status for e in events(drain(core), "UPDATE")]
    assert [(s.task_id.value, s.state) for s in st] == [("t1", "TASK_LOST")]
