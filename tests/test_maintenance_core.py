"""Maintenance and draining in the master's core (harness, fake clock): schedules, inverse
offers, machines going DOWN, drains with capped grace periods, and all of it after a restart."""

from __future__ import annotations

import pytest

from mesos_nb.master.harness import Harness
from mesos_nb.master.state import CallError
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

START = {"nanoseconds": 1_600_000_000_000_000_000}
HOUR = {"nanoseconds": 3_600_000_000_000}


def window(*machines: dict, duration: dict | None = HOUR) -> dict:
    un = {"start": START} | ({"duration": duration} if duration is not None else {})
    return {"machine_ids": list(machines), "unavailability": un}


def cluster(partition_aware: bool = False) -> tuple[Harness, m.Offer]:
    """Two agents (10.0.0.1 and 10.0.0.2), one framework with a task on the first."""
    h = Harness()
    h.add_agent(hostname="10.0.0.1")
    h.add_agent(hostname="10.0.0.2")
    h.subscribe("fw", capabilities=("PARTITION_AWARE",) if partition_aware else ())
    h.drain()
    offers = h.allocate()[h.frameworks[0].id]
    on_first = next(o for o in offers if o.agent_id.value == h.agents[0].id)
    h.launch(h.frameworks[0], on_first, "t1")
    h.update("t1", "TASK_RUNNING")
    h.acknowledge("t1")
    return h, on_first


def schedule(h: Harness, sched: object, now: float) -> None:
    h.core.maintenance_call("UPDATE_MAINTENANCE_SCHEDULE", {"schedule": sched}, now)


def machines(h: Harness, call: str, ids: list, now: float) -> None:
    h.core.maintenance_call(call, {"machines": ids}, now)


def inverse(out: list) -> list[dict]:
    return [io for e in Harness.events(out, "INVERSE_OFFERS") for io in e.inverse_offers["inverse_offers"]]


@pytest.mark.parametrize("sched, needle", [
    ({"windows": [{"machine_ids": [], "unavailability": {"start": START}}]}, "empty"),
    ({"windows": [window({"hostname": "a"}, duration={"nanoseconds": -1})]}, "negative"),
    ({"windows": [window({"hostname": "a"}), window({"hostname": "A"})]}, "more than once"),
    ({"windows": [window({"ip": "not-an-ip"})]}, "not a valid IP"),
    ({"windows": [window({})]}, "both 'hostname' and 'ip' are empty"),
    ({"windows": [{"machine_ids": [{"hostname": "a"}]}]}, "unavailability"),
    ("nope", "schedule"),
])
def test_bad_schedules_are_400_naming_the_rule(sched, needle):
    h = Harness()
    with pytest.raises(CallError) as e:
        schedule(h, sched, h.now)
    assert e.value.status == 400 and needle in e.value.message


def test_draining_machine_offers_carry_unavailability_and_users_get_inverse_offers():
    h, _ = cluster()
    fw = h.frameworks[0]
    schedule(h, {"windows": [window({"hostname": "10.0.0.1", "ip": "10.0.0.1"})]}, h.now)
    h.drain()
    h.core.allocate(h.now)
    out = h.drain()
    ios = inverse(out)
    assert len(ios) == 1 and ios[0]["agent_id"]["value"] == h.agents[0].id
    assert ios[0]["unavailability"] == {"start": START, "duration": HOUR}
    offers = [o for e in Harness.events(out, "OFFERS") for o in e.offers.offers]
    by_agent = {o.agent_id.value: o for o in offers}
    assert by_agent[h.agents[0].id].unavailability == {"start": START, "duration": HOUR}
    assert h.agents[1].id not in by_agent  # unaffected: its earlier offer (no unavailability) stands
    status = h.core.maintenance_status()
    assert status["draining_machines"][0]["statuses"][0]["status"] == "UNKNOWN"
    # one outstanding inverse offer per framework and agent
    h.core.allocate(h.now)
    assert inverse(h.drain()) == []
    # DECLINE is recorded, and filters the agent for refuse_seconds
    h.core.answer_inverse_offers(fw.id, {"inverse_offer_ids": [ios[0]["id"]], "filters": {"refuse_seconds": 30}},
                                 False, h.now)
    entry = h.core.maintenance_status()["draining_machines"][0]
    assert entry["id"] == {"hostname": "10.0.0.1", "ip": "10.0.0.1"}
    assert entry["statuses"][0]["status"] == "DECLINE"
    assert entry["statuses"][0]["framework_id"] == {"value": fw.id}
    h.core.allocate(h.now + 10)
    assert inverse(h.drain()) == []
    h.core.allocate(h.now + 31)
    again = inverse(h.drain())
    assert len(again) == 1 and again[0]["id"] != ios[0]["id"]
    h.core.answer_inverse_offers(fw.id, {"inverse_offer_ids": [again[0]["id"]]}, True, h.now + 31)
    assert h.core.maintenance_status()["draining_machines"][0]["statuses"][0]["status"] == "ACCEPT"


def test_removing_a_machine_from_the_schedule_rescinds_its_inverse_offers():
    h, _ = cluster()
    schedule(h, {"windows": [window({"hostname": "10.0.0.1"})]}, h.now)
    h.core.allocate(h.now)
    io = inverse(h.drain())[0]
    schedule(h, {"windows": []}, h.now)
    out = h.drain()
    rescinded = Harness.events(out, "RESCIND_INVERSE_OFFER")
    assert rescinded[0].rescind_inverse_offer == {"inverse_offer_id": io["id"]}
    assert h.core.maintenance_status() == {} and h.core.maintenance_schedule() == {}


@pytest.mark.parametrize("partition_aware", [False, True])
def test_start_maintenance_ends_tasks_lost_agent_removed_and_refuses_the_agent(partition_aware):
    h, _ = cluster(partition_aware)
    machine = {"hostname": "10.0.0.1", "ip": "10.0.0.1"}
    with pytest.raises(CallError, match="not part of a maintenance schedule"):
        machines(h, "START_MAINTENANCE", [machine], h.now)
    schedule(h, {"windows": [window(machine)]}, h.now)
    with pytest.raises(CallError, match="not in DOWN mode"):
        machines(h, "STOP_MAINTENANCE", [machine], h.now)
    machines(h, "START_MAINTENANCE", [machine], h.now)
    out = h.drain()
    upd = Harness.events(out, "UPDATE")[0].update.status
    assert (upd.state, upd.reason) == ("TASK_LOST", "REASON_AGENT_REMOVED")
    assert upd.message == "Agent 10.0.0.1 removed: Operator initiated 'Machine DOWN'"
    assert any(type(e).__name__ == "ToChannel" and isinstance(e.msg, ch.ShutdownAgent) for e in out)
    assert Harness.events(out, "FAILURE")[0].failure.agent_id.value == h.agents[0].id
    assert h.agents[0].id not in h.core.agents
    assert h.core.maintenance_status() == {"down_machines": [machine]}
    with pytest.raises(CallError, match="is DOWN and cannot be removed"):
        schedule(h, {"windows": []}, h.now)
    with pytest.raises(CallError, match="not in DRAINING mode"):
        machines(h, "START_MAINTENANCE", [machine], h.now)
    with pytest.raises(ValueError, match="DOWN"):
        h.add_agent(hostname="10.0.0.1")
    # a restarted master still knows the machine is DOWN
    h2 = h.restart()
    assert h2.core.maintenance_status() == {"down_machines": [machine]}
    with pytest.raises(ValueError, match="DOWN"):
        h2.add_agent(hostname="10.0.0.1")
    machines(h2, "STOP_MAINTENANCE", [machine], h2.now)
    h2.drain()
    assert h2.core.maintenance_schedule() == {} and h2.core.maintenance_status() == {}
    assert h2.add_agent(hostname="10.0.0.1").active


def test_schedule_survives_a_restart_in_draining_mode():
    h, _ = cluster()
    sched = {"windows": [window({"hostname": "10.0.0.1"}), window({"hostname": "other"}, duration=None)]}
    schedule(h, sched, h.now)
    h2 = h.restart()
    assert h2.core.maintenance_schedule() == {"windows": [
        {"machine_ids": [{"hostname": "10.0.0.1"}], "unavailability": {"start": START, "duration": HOUR}},
        {"machine_ids": [{"hostname": "other"}], "unavailability": {"start": START}}]}
    assert [d["id"] for d in h2.core.maintenance_status()["draining_machines"]] == [
        {"hostname": "10.0.0.1"}, {"hostname": "other"}]


def _launch_with_grace(h: Harness, task_id: str, grace_s: float | None) -> None:
    fw = h.frameworks[0]
    offer = next(o for o in h.allocate().get(fw.id, []) if o.agent_id.value == h.agents[0].id)
    ti = m.TaskInfo(name=task_id, task_id=m.ID(value=task_id), agent_id=offer.agent_id,
                    resources=Resources.parse("cpus:0.5;mem:64").to_proto(), command=m.CommandInfo(value="x"),
                    kill_policy=m.KillPolicy(grace_period=m.DurationInfo(nanoseconds=int(grace_s * 1e9)))
                    if grace_s is not None else None)
    h.core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[
        m.Operation(type="LAUNCH", launch=m.Launch(task_infos=[ti]))], filters=m.Filters(refuse_seconds=0)), h.now)
    h.drain()
    h.update(task_id, "TASK_RUNNING")
    h.acknowledge(task_id)


@pytest.mark.parametrize("partition_aware", [False, True])
def test_drain_caps_grace_periods_then_agent_is_drained_and_optionally_gone(partition_aware):
    h = Harness()
    h.add_agent(hostname="10.0.0.1", resources="cpus:4;mem:1024")
    h.subscribe("fw", capabilities=("PARTITION_AWARE",) if partition_aware else ())
    h.drain()
    _launch_with_grace(h, "short", 2)
    _launch_with_grace(h, "long", 60)
    _launch_with_grace(h, "none", None)
    aid = h.agents[0].id
    with pytest.raises(CallError, match="No agent found"):
        h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": "nope"}}, h.now)
    with pytest.raises(CallError, match="max_grace_period"):
        h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": aid}, "max_grace_period": "10mins"}, h.now)
    h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": aid}, "max_grace_period": {"seconds": 10},
                                            "mark_gone": True}, h.now)
    kills = {k.task_id: k.kill_policy.grace_period.nanoseconds for k in Harness.agent_msgs(h.drain(), ch.KillTask)}
    assert kills == {"short": 2_000_000_000, "long": 10_000_000_000, "none": 10_000_000_000}
    assert not h.agents[0].active and h.allocate() == {}
    with pytest.raises(CallError, match="still DRAINING"):
        h.core.maintenance_call("REACTIVATE_AGENT", {"agent_id": {"value": aid}}, h.now)
    for tid in kills:
        out = h.update(tid, "TASK_KILLED")
        st = Harness.events(out, "UPDATE")[0].update.status
        assert st.reason == "REASON_AGENT_DRAINING"
        assert st.state == ("TASK_GONE_BY_OPERATOR" if partition_aware else "TASK_KILLED")
    h.advance(1)
    assert h.core.maintenance.drains[aid]["state"] == "DRAINING"  # not acknowledged yet
    for tid in kills:
        h.acknowledge(tid)
    h.advance(1)
    assert aid in h.core.gone and aid not in h.core.agents  # mark_gone


def test_drain_without_mark_gone_ends_drained_and_reactivate_resumes_offers():
    h = Harness()
    h.add_agent(hostname="10.0.0.1")
    h.subscribe("fw")
    h.drain()
    _launch_with_grace(h, "t", 5)
    aid = h.agents[0].id
    h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": aid}}, h.now)
    kill = Harness.agent_msgs(h.drain(), ch.KillTask)[0]
    assert kill.kill_policy.grace_period.nanoseconds == 5_000_000_000  # the task's own, uncapped
    h.update("t", "TASK_KILLED")
    h.acknowledge("t")
    h.advance(1)
    info = h.core.maintenance.drains[aid]
    assert info == {"state": "DRAINED", "config": {"mark_gone": False}}
    # drained and deactivated survive a restart; the agent re-registers still deactivated
    h2 = h.restart()
    reg = ch.RegisterAgent(key="k", hostname="10.0.0.1", port=5051, agent_id=aid,
                           resources=Resources.parse("cpus:2;mem:1024").to_proto())
    agent = h2.core.register_agent(reg, object(), h2.now)
    assert agent is not None and not agent.active
    h2.subscribe("fw2")
    assert h2.allocate() == {}
    h2.core.maintenance_call("REACTIVATE_AGENT", {"agent_id": {"value": aid}}, h2.now)
    assert aid not in h2.core.maintenance.drains and agent.active
    assert h2.allocate()
    with pytest.raises(CallError, match="not deactivated"):
        h2.core.maintenance_call("REACTIVATE_AGENT", {"agent_id": {"value": aid}}, h2.now)


def test_deactivate_stops_offers_and_rescinds_outstanding_ones():
    h = Harness.build(agents=1, frameworks=1)
    offers = h.allocate()
    assert offers
    aid = h.agents[0].id
    h.core.maintenance_call("DEACTIVATE_AGENT", {"agent_id": {"value": aid}}, h.now)
    out = h.drain()
    assert len(Harness.events(out, "RESCIND")) == 1
    assert h.allocate() == {}
    with pytest.raises(CallError, match="No agent found"):
        h.core.maintenance_call("DEACTIVATE_AGENT", {"agent_id": {"value": "ghost"}}, h.now)


def test_an_agent_in_the_schedule_cannot_be_drained():
    h, _ = cluster()
    schedule(h, {"windows": [window({"hostname": "10.0.0.1"})]}, h.now)
    with pytest.raises(CallError, match="maintenance schedule"):
        h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": h.agents[0].id}}, h.now)


def test_sqlite_registry_keeps_the_maintenance_document(tmp_path):
    from mesos_nb.master.effects import SaveMaintenance
    from mesos_nb.master.registry_sqlite import SqliteRegistry

    h, _ = cluster()
    schedule(h, {"windows": [window({"hostname": "10.0.0.1"})]}, h.now)
    h.core.maintenance_call("DEACTIVATE_AGENT", {"agent_id": {"value": h.agents[1].id}}, h.now)
    doc = h.core.maintenance.document()
    path = str(tmp_path / "registry.sqlite")
    reg = SqliteRegistry(path)
    reg.apply([SaveMaintenance({"windows": []}), SaveMaintenance(doc)])
    reg.close()
    back = SqliteRegistry(path)
    try:
        assert back.recover().maintenance == doc
    finally:
        back.close()


def test_a_framework_that_reconnects_gets_a_fresh_inverse_offer():
    h, _ = cluster()
    fw = h.frameworks[0]
    schedule(h, {"windows": [window({"hostname": "10.0.0.1"})]}, h.now)
    h.core.allocate(h.now)
    first = inverse(h.drain())
    h.disconnect(fw)
    h.core.allocate(h.now)
    h.drain()
    h.subscribe("fw", framework_id=fw.id)
    h.drain()
    h.core.allocate(h.now)
    again = inverse(h.drain())
    assert len(again) == 1 and again[0]["id"] != first[0]["id"]


def test_an_unreachable_agent_drains_when_it_comes_back():
    h = Harness()
    h.add_agent(hostname="10.0.0.1")
    h.subscribe("fw", capabilities=("PARTITION_AWARE",))
    h.drain()
    _launch_with_grace(h, "t", 4)
    aid = h.agents[0].id
    h.core.mark_unreachable(aid, h.now)
    h.drain()
    h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": aid}}, h.now)
    assert Harness.agent_msgs(h.drain(), ch.KillTask) == []  # nothing to tell it yet
    task = h.core.frameworks[h.frameworks[0].id].unreachable_tasks["t"]
    report = ch.TaskReport(framework_id=h.frameworks[0].id, task=task.info, state="TASK_RUNNING")
    reg = ch.RegisterAgent(key="k", hostname="10.0.0.1", port=5051, agent_id=aid, tasks=[report],
                           resources=Resources.parse("cpus:2;mem:1024").to_proto())
    agent = h.core.register_agent(reg, h.channel, h.now)
    kills = Harness.agent_msgs(h.drain(), ch.KillTask)
    assert agent is not None and not agent.active
    assert [(k.task_id, k.kill_policy.grace_period.nanoseconds) for k in kills] == [("t", 4_000_000_000)]
