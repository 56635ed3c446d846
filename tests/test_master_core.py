"""MasterCore driven directly: no sockets, no clock, effects inspected.

Newer tests use the shipped harness (:mod:`mesos_nb.master.harness`); the older helpers below
drive the core by hand and stay as a check that the harness is not the only way in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mesos_nb.master.core import CallError, EndStream, MasterCore, ToAgent, ToChannel, ToFramework
from mesos_nb.master.effects import (
    RemoveAgent,
    RemoveFramework,
    SaveAgent,
    SaveAgentPrincipal,
    SaveFramework,
)
from mesos_nb.master.harness import Harness
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
    h = Harness.build(agents=1, frameworks=1)
    fw, agent = h.frameworks[0], h.agents[0]
    offer = h.allocate()[fw.id][0]
    out = h.launch(fw, offer, "t1")
    assert [r.task.task_id.value for r in h.agent_msgs(out, ch.RunTask)] == ["t1"]
    assert fw.tasks["t1"].state == "TASK_STAGING"
    out = h.update("t1", "TASK_FINISHED", uuid=b"a" * 16)
    ups = h.events(out, "UPDATE")
    assert ups[0].update.status.agent_id.value == agent.id and ups[0].update.status.uuid == b"a" * 16
    # Until acknowledged, the task stays active (and is re-sent on re-subscription).
    assert "t1" in fw.tasks
    acks = h.agent_msgs(h.acknowledge("t1"), ch.AckUpdate)
    assert acks and acks[0].uuid == b"a" * 16
    assert "t1" not in fw.tasks
    assert fw.completed_tasks[-1].state == "TASK_FINISHED"


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
    h = Harness.build(agents=1, frameworks=1, failover_timeout=10.0)
    fw = h.frameworks[0]
    h.launch(fw, h.allocate()[fw.id][0], "t1")
    h.update("t1", "TASK_RUNNING", uuid=b"r" * 16)
    h.disconnect(fw)
    h.advance(5.0)
    assert fw.id in h.core.frameworks
    h.subscribe("fw", framework_id=fw.id, failover_timeout=10.0)
    # The unacknowledged RUNNING update is delivered again on the new stream.
    assert [e.update.status.state for e in h.events(h.drain(), "UPDATE")] == ["TASK_RUNNING"]
    h.disconnect(fw)
    h.advance(11.0)
    assert fw.id not in h.core.frameworks
    assert h.agent_msgs(h.log, ch.ShutdownFramework)
    # Re-subscribing with a removed id is refused.
    with pytest.raises(CallError, match="removed"):
        h.subscribe("fw", framework_id=fw.id)


def test_new_subscription_ends_old_stream():
    core, chan, agent, fw = setup()
    sub = m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="fw", id=m.ID(value=fw.id), failover_timeout=10.0))
    core.subscribe(sub, "stream-2", 101.0)
    ends = [e for e in drain(core) if isinstance(e, EndStream)]
    assert ends and ends[0].stream_id == "stream-1" and ends[0].message == "Framework failed over"


def test_lost_agent_tasks_reported_lost_and_failure_sent():
    h = Harness.build(agents=1, frameworks=1, agent_reregister_timeout=30.0)
    fw, agent = h.frameworks[0], h.agents[0]
    h.launch(fw, h.allocate()[fw.id][0], "t1")
    h.update("t1", "TASK_RUNNING")
    h.lose_channel()
    h.advance(10.0)
    assert agent.id in h.core.agents  # still within the re-registration window
    out = h.advance(21.0)
    st = h.events(out, "UPDATE")[0].update.status
    assert st.state == "TASK_LOST" and st.uuid is None and st.reason == "REASON_AGENT_REMOVED"
    assert h.events(out, "FAILURE")[0].failure.agent_id.value == agent.id
    assert agent.id not in h.core.agents


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


# --------------------------------------------------------------------------- persistence as effects
def test_persistence_is_emitted_as_effects_in_order_with_the_events():
    core = MasterCore("M")
    reg = ch.RegisterAgent(key="k", hostname="h", port=1, resources=Resources.parse("cpus:1;mem:64").to_proto())
    agent = core.register_agent(reg, object(), 1.0)
    out = drain(core)
    assert [type(e) for e in out] == [SaveAgent, SaveAgentPrincipal, ToChannel]  # owner kept across failovers
    assert out[0].record.id == agent.id and out[0].record.hostname == "h"
    fw = core.subscribe(m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="f", failover_timeout=5)), "s1", 2.0)
    out = drain(core)
    # On disk before it is told SUBSCRIBED.
    assert [type(e) for e in out] == [SaveFramework, ToFramework]
    assert out[0].id == fw.id and out[0].failover_deadline is None
    core.disconnect(fw.id, "s1", 3.0)
    saves = [e for e in drain(core) if isinstance(e, SaveFramework)]
    assert saves and saves[0].failover_deadline == 8.0
    core.tick(9.0)
    assert [e.id for e in drain(core) if isinstance(e, RemoveFramework)] == [fw.id]
    core.remove_agent(agent.id, 10.0, "REASON_AGENT_REMOVED", "gone")
    assert [e.id for e in drain(core) if isinstance(e, RemoveAgent)] == [agent.id]


def test_restarted_core_recovers_from_the_records_it_emitted():
    h = Harness.build(agents=2, frameworks=1, failover_timeout=30.0, agent_reregister_timeout=20.0)
    fw = h.frameworks[0]
    h.disconnect(fw)
    h.advance(10.0)
    h2 = h.restart()
    # Recovered from the registry records alone: disconnected, the failover deadline kept.
    assert set(h2.core.frameworks) == {fw.id}
    back = h2.core.frameworks[fw.id]
    assert not back.connected and back.failover_deadline == fw.failover_deadline
    assert set(h2.core.agents) == {a.id for a in h.agents}
    assert not any(a.connected for a in h2.core.agents.values())
    h2.advance(21.0)  # agents did not come back in time; the framework did not either
    assert h2.core.agents == {} and h2.core.frameworks == {}
    assert fw.id in h2.registry.removed_framework_ids and h2.registry.agents == {}
    with pytest.raises(CallError, match="removed"):
        h2.restart().subscribe("fw", framework_id=fw.id)


def test_ids_come_from_the_injected_source():
    from mesos_nb.master.state import IdSource

    class Ids(IdSource):
        def framework(self) -> str:
            return "fw-x"

    core = MasterCore("M", ids=Ids("M"))
    fw = core.subscribe(m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="f")), "s", 1.0)
    assert fw.id == "fw-x"


CORE_MODULES = ["core", "state", "effects", "model", "validation", "frameworks", "offers", "tasks", "agents",
                "registry", "harness", "allocator/allocator", "allocator/filters", "allocator/sorter"]
IO_MODULES = {"sqlite3", "socket", "time", "uuid", "aiohttp", "asyncio", "os", "subprocess", "pathlib",
              "kazoo", "psutil", "datetime", "shutil", "tempfile", "io", "select", "threading"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            names.add("open()")
    return names


def test_core_modules_import_no_io():
    root = Path(__file__).resolve().parents[1] / "mesos_nb"
    for name in CORE_MODULES:
        bad = _imports(root / "master" / f"{name}.py") & (IO_MODULES | {"open()"})
        assert not bad, f"mesos_nb/master/{name}.py uses {sorted(bad)}"
    for name in ("messages", "channel", "resources"):
        bad = _imports(root / "protocol" / f"{name}.py") & (IO_MODULES | {"open()"})
        assert not bad, f"mesos_nb/protocol/{name}.py uses {sorted(bad)}"
    # And nothing pulls them in indirectly (msgspec itself loads socket/uuid for its types).
    code = ("import sys, mesos_nb.master.core, mesos_nb.master.harness; "
            "print(sorted(m for m in ('sqlite3', 'aiohttp', 'asyncio', 'kazoo', 'psutil') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == "[]", res.stdout


def test_harness_builds_a_cluster_with_attributes_and_roles():
    h = Harness.build(agents=3, frameworks=2, resources="cpus:4;mem:4096", attrs={"rack": "r1", "ssd": 1},
                      roles=["a"])
    assert len(h.core.agents) == 3 and len(h.core.frameworks) == 2
    assert h.core.agents[h.agents[0].id].attribute_map() == {"rack": "r1", "ssd": 1.0}
    offers = h.allocate()
    assert sum(len(v) for v in offers.values()) == 3
    assert all(o.allocation_info.role == "a" for v in offers.values() for o in v)
    fw = h.frameworks[0]
    if fw.id in offers:
        out = h.decline(fw, offers[fw.id], refuse_seconds=100.0)
        assert out == []
