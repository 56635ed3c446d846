"""The master's read documents are the typed structs of ``protocol/state.py``: every key that
``/master/state``, ``/master/frameworks``, ``/master/slaves`` and ``/master/tasks`` emit is
declared there (the ``*Doc`` structs refuse unknown fields), with the type it is written
with, on a cluster with every kind of record: running, finished and labelled tasks, an
executor, offers, reservations, a persistent volume, a maintenance schedule, a drain, a
deactivated agent, a disconnected and a torn-down framework."""

from __future__ import annotations

import json

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from test_reservations import _accept

from mesos_nb.master.harness import Harness
from mesos_nb.master.readonly import ReadOnlyViews
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import state as sv

DB = [{"type": "DYNAMIC", "role": "db", "principal": "alice"}]


def _scalar(name: str, value: float, reservations: list | None = None, **extra: object) -> dict:
    r: dict = {"name": name, "type": "SCALAR", "scalar": {"value": value}, **extra}
    if reservations:
        r["reservations"] = reservations
    return r


def _cluster() -> MasterServer:
    h = Harness.build(agents=4, frameworks=0, resources="cpus:4;mem:4096;disk:1000;ports:[31000-31010]",
                      attrs={"rack": "r1", "ssd": 1})
    a0 = {"value": h.agents[0].id}
    h.core.reserve_operation("RESERVE_RESOURCES", {"agent_id": a0, "resources": [
        _scalar("cpus", 2, DB), _scalar("disk", 300, DB)]}, h.now)
    volume = _scalar("disk", 100, DB, disk={"persistence": {"id": "v", "principal": "alice"},
                                            "volume": {"container_path": "data", "mode": "RW"}})
    h.core.volume_operation("CREATE_VOLUMES", {"agent_id": a0, "volumes": [volume]}, h.now)
    h.drain()
    db = h.subscribe("db", roles=["db"])
    db.info.principal = "alice"
    web = h.subscribe("web")
    gone = h.subscribe("gone")
    offers = h.allocate()
    [on_a0] = [o for o in offers[db.id] if o.agent_id.value == h.agents[0].id]
    task = {"name": "pg", "task_id": {"value": "pg"}, "agent_id": a0, "resources": [_scalar("cpus", 1), volume],
            "labels": {"labels": [{"key": "tier", "value": "data"}]},
            "executor": {"executor_id": {"value": "pg-ex"}, "name": "pg executor",
                         "command": {"value": "run-executor", "user": "alice"},
                         "resources": [_scalar("cpus", 0.1), _scalar("mem", 32)]}}
    _accept(h, db, on_a0, [{"type": "LAUNCH", "launch": {"task_infos": [task]}}])
    n = 0
    for fw in (web, gone):
        for offer in offers.get(fw.id, [])[:2]:
            n += 1
            h.launch(fw, offer, f"t{n}", resources="cpus:1;mem:64;ports:[31000-31001]")
    h.update("pg", "TASK_RUNNING")
    h.update("t1", "TASK_RUNNING")
    h.update("t2", "TASK_FINISHED", message="done")
    h.acknowledge("t2")
    h.core.maintenance_call("UPDATE_MAINTENANCE_SCHEDULE", {"schedule": {"windows": [{
        "machine_ids": [{"hostname": h.agents[1].hostname}],
        "unavailability": {"start": {"nanoseconds": int((h.now + 3600) * 1e9)}}}]}}, h.now)
    busy = h.core.find_task("t1").agent_id  # drained with a task left: DRAINING, a start time
    idle = next(a.id for a in h.agents if a.id not in (busy, h.agents[0].id))
    h.core.maintenance_call("DRAIN_AGENT", {"agent_id": {"value": busy}}, h.now)
    h.core.maintenance_call("DEACTIVATE_AGENT", {"agent_id": {"value": idle}}, h.now)
    h.core.teardown(gone.id, h.now)
    h.disconnect(web)
    h.advance(1.0)
    h.subscribe("web", framework_id=web.id)  # re-subscribed: reregistered_time
    new = h.add_agent()  # re-registered: reregistered_time
    h.core.register_agent(ch.RegisterAgent(key="again", hostname=new.hostname, port=new.port, agent_id=new.id,
                                           resources=new.resources), h.channel, h.now)
    h.drain()
    h.allocate()  # what is left is offered again: outstanding offers in the state
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    return srv


def _strict(body: bytes, doc: type[msgspec.Struct]) -> msgspec.Struct:
    """``body`` decoded into ``doc`` (unknown keys refused), and written back to the same JSON:
    every key declared, every value kept."""
    decoded = msgspec.json.decode(body, type=doc)
    assert msgspec.to_builtins(decoded) == json.loads(body)
    return decoded


async def test_every_key_of_master_state_is_declared_in_the_typed_doc():
    views = ReadOnlyViews(_cluster())
    body = await views._state.body()
    state = _strict(body, sv.MasterStateDoc)
    assert isinstance(state, sv.MasterStateDoc)
    # the cluster has every kind of record, so no optional field went unchecked
    fws = {f.name: f for f in (*state.frameworks, *state.completed_frameworks)}
    assert fws["db"].principal == "alice" and [e.executor_id for e in fws["db"].executors] == ["pg-ex"]
    assert [t.labels for t in fws["db"].tasks] == [{"labels": [{"key": "tier", "value": "data"}]}]
    assert fws["web"].reregistered_time == 101.0 and fws["gone"].unregistered_time == 100.0
    assert [t.message for f in fws.values() for t in f.completed_tasks] == ["done"]
    assert [f.name for f in state.completed_frameworks] == ["gone"]
    assert any(f.offers for f in state.frameworks)
    agents = state.slaves
    assert agents[0].reserved_resources["db"]["disk"] == 300 and agents[-1].reregistered_time == 101.0
    draining = [a for a in agents if a.drain_info]
    assert [(a.drain_info["state"], a.estimated_drain_start_time_seconds) for a in draining] == [("DRAINING", 100.0)]
    assert sum(a.deactivated and not a.active for a in agents) == 2
    # the sliced render and the one-step render write the same document
    assert msgspec.json.decode(msgspec.json.encode(views.render_state())) == json.loads(body)


@pytest.mark.parametrize("path, doc", [("frameworks", sv.FrameworksDoc), ("slaves", sv.AgentsDoc),
                                       ("tasks", sv.TasksDoc), ("state_summary", sv.StateSummaryDoc)])
async def test_every_key_of_the_other_read_endpoints_is_declared_in_the_typed_doc(path, doc):
    views = ReadOnlyViews(_cluster())
    resp = await getattr(views, path)(make_mocked_request("GET", f"/master/{path}"))
    decoded = _strict(resp.body, doc)
    assert all(getattr(decoded, f) for f in ("frameworks", "slaves", "tasks") if hasattr(decoded, f))


async def test_state_summary_counts_tasks_by_state_without_listing_them():
    srv = _cluster()
    summary = msgspec.json.decode((await ReadOnlyViews(srv).state_summary(
        make_mocked_request("GET", "/master/state-summary"))).body, type=sv.StateSummaryDoc)
    fws = {f.name: f for f in summary.frameworks}
    assert fws["db"].TASK_RUNNING == 1 and fws["db"].tasks is msgspec.UNSET
    for f in srv.core.frameworks.values():
        counted = sum(getattr(fws[f.info.name], s) for s in sv.COUNTED_STATES)
        assert counted == len(f.tasks) + len(f.completed_tasks) > 0
    on_agent = {a.id: (a.TASK_RUNNING, a.framework_ids) for a in summary.slaves if a.TASK_RUNNING}
    assert on_agent[summary.slaves[0].id] == (1, [fws["db"].id]) and fws["db"].slave_ids == [summary.slaves[0].id]


async def test_a_key_the_docs_do_not_declare_is_refused():
    body = await ReadOnlyViews(_cluster())._state.body()
    doc = json.loads(body)
    doc["slaves"][0]["surprise"] = 1
    with pytest.raises(msgspec.ValidationError, match="surprise"):
        msgspec.json.decode(json.dumps(doc), type=sv.MasterStateDoc)
    # … while the readers' views take it (a newer server may add fields)
    assert sv.decode(json.dumps(doc).encode(), sv.MasterState).slaves[0].id == doc["slaves"][0]["id"]


@pytest.mark.parametrize("doc", [sv.MasterStateDoc, sv.FrameworksDoc, sv.AgentsDoc, sv.TasksDoc, sv.FrameworkDoc,
                                 sv.AgentDoc, sv.TaskDoc, sv.LeaderInfoDoc])
def test_a_doc_writes_its_views_fields_in_the_views_order(doc):
    """The view declares Mesos's key order; a field its doc redeclares must not move to the end."""
    view = doc.__mro__[1]
    assert doc.__struct_fields__[:len(view.__struct_fields__)] == view.__struct_fields__


def _agent_with_records():
    """An agent's records as the agent keeps them: a framework with a running and a finished
    task under a custom executor (one labelled), a MULTI_ROLE one, a completed one."""
    from types import SimpleNamespace

    from mesos_nb.agent.config import AgentConfig
    from mesos_nb.agent.records import ExecutorEntry, FrameworkEntry, TaskEntry
    from mesos_nb.master.harness import attributes
    from mesos_nb.protocol import messages as m
    from mesos_nb.protocol.resources import Resources

    def framework(fid: str, **info: object) -> FrameworkEntry:
        return FrameworkEntry(m.FrameworkInfo(user="u", name=fid, id=m.ID(value=fid), **info))

    ex_info = m.ExecutorInfo(executor_id=m.ID(value="ex"), name="ex", source="src",
                             resources=Resources.parse("cpus:0.1;mem:32").to_proto())
    fw = framework("fw-1", principal="alice", checkpoint=True)
    ex = ExecutorEntry(ex_info, "fw-1", "c-1", "/w/run", command_executor=False)
    for tid, state, labels in (("run", "TASK_RUNNING", {"labels": [{"key": "k", "value": "v"}]}),
                               ("done", "TASK_FINISHED", None)):
        info = m.TaskInfo(name=tid, task_id=m.ID(value=tid), agent_id=m.ID(value="AG"), executor=ex_info,
                          labels=labels)
        t = TaskEntry(info, "fw-1", "ex", Resources.parse("cpus:1;mem:64;ports:[31000-31001]"))
        t.state, t.statuses = state, [("TASK_RUNNING", 1.5)]
        if state == "TASK_RUNNING":
            ex.tasks[tid] = t
        else:
            t.statuses.append((state, 2.5))
            ex.completed_tasks.append(t)
    fw.executors["ex"] = ex
    multi = framework("fw-2", roles=["a", "b"])
    multi.completed_executors.append(ExecutorEntry(ex_info, "fw-2", "c-2", "/w/run2", command_executor=True))
    return SimpleNamespace(
        config=AgentConfig(resources="cpus:4;mem:1024", attributes="rack:a"), port=5051, start_time=10.0,
        agent_id="AG", pid="slave(1)@h:5051", hostname="h", total=Resources.parse("cpus:4;mem:1024"),
        attributes=attributes({"rack": "a", "zone": 1}), frameworks={"fw-1": fw, "fw-2": multi},
        completed_frameworks={"fw-3": framework("fw-3", role="r")})


async def test_every_key_of_the_agents_state_is_declared_in_the_typed_doc():
    from mesos_nb.agent import http as agent_http
    from mesos_nb.agent.app_key import AGENT_KEY

    app = web.Application()
    app[AGENT_KEY] = _agent_with_records()
    resp = await agent_http.state(make_mocked_request("GET", "/state", app=app))
    state = _strict(resp.body, sv.AgentStateDoc)
    fw1, fw2 = state.frameworks
    [ex] = fw1.executors
    assert (fw1.principal, fw2.roles, state.completed_frameworks[0].role) == ("alice", ["a", "b"], "r")
    assert [t.labels for t in ex.tasks] == [{"labels": [{"key": "k", "value": "v"}]}]
    assert [t.statuses[-1]["state"] for t in ex.completed_tasks] == ["TASK_FINISHED"]
    assert fw2.completed_executors[0].type == "DEFAULT" and ex.type == "CUSTOM"
    assert state.flags["attributes"] == "rack:a" and state.attributes == {"rack": "a", "zone": 1}
    # what the readers (the sandbox client) decode is the same document
    assert sv.decode(resp.body, sv.AgentState).frameworks[0].executors[0].task_ids() == {"run", "done"}
