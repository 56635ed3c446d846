"""The v1 operator API's read answers are the typed structs of ``protocol/operator_state.py``:
every key GET_STATE, GET_TASKS, GET_AGENTS, GET_FRAMEWORKS, GET_EXECUTORS and GET_ROLES emit
is declared there with the type it is written with, both as the incremental renderer
(``state_render_v1``, what the HTTP calls answer) writes them and as the one-step views
(``operator_views.StateView``: SUBSCRIBE's snapshot, GET_ROLES) do, on the cluster of
``test_state_docs`` (running, finished and labelled tasks, an executor, offers, reservations, a
persistent volume, a maintenance schedule, a draining and a deactivated agent, a disconnected
and a torn-down framework)."""

from __future__ import annotations

import json

import msgspec
import pytest
from test_state_docs import _cluster, _strict

from mesos_nb.master import operator_views as v
from mesos_nb.master.state_render_v1 import CALLS, OperatorStateRenderer
from mesos_nb.protocol import operator_state as ops


def _checked(resp: ops.ResponseDoc, call: str) -> None:
    """The answer has every kind of record the cluster holds (no optional field unchecked)."""
    a = resp.answer()
    assert resp.type == call and a is not None
    state = a if call == "GET_STATE" else None
    if call in ("GET_STATE", "GET_TASKS"):
        tasks = (state.get_tasks if state else a)
        running = {t.task_id.value: t for t in tasks.tasks}
        assert running["pg"].labels == {"labels": [{"key": "tier", "value": "data"}]}
        assert running["pg"].executor_id.value == "pg-ex" and running["pg"].status_update_state == "TASK_RUNNING"
        assert any(r.disk for r in running["pg"].resources)  # the persistent volume
        assert [t.statuses[-1]["message"] for t in tasks.completed_tasks if t.state == "TASK_FINISHED"] == ["done"]
    if call in ("GET_STATE", "GET_EXECUTORS"):
        exs = (state.get_executors if state else a).executors
        assert [(e.executor_info.executor_id.value, e.executor_info.framework_id.value) for e in exs] == [
            ("pg-ex", exs[0].executor_info.framework_id.value)]
    if call in ("GET_STATE", "GET_FRAMEWORKS"):
        fws = state.get_frameworks if state else a
        by_name = {f.framework_info.name: f for f in (*fws.frameworks, *fws.completed_frameworks)}
        assert by_name["web"].reregistered_time.nanoseconds == 101 * 10**9
        assert by_name["gone"].unregistered_time.nanoseconds == 100 * 10**9
        assert by_name["db"].framework_info.principal == "alice" and by_name["db"].allocated_resources
        assert any(f.offered_resources for f in fws.frameworks)
    if call in ("GET_STATE", "GET_AGENTS"):
        agents = (state.get_agents if state else a).agents
        assert any(r.reservations for r in agents[0].total_resources)
        assert agents[0].agent_info.attributes and agents[-1].reregistered_time.nanoseconds == 101 * 10**9
        draining = [(x.drain_info["state"], x.estimated_drain_start_time.nanoseconds) for x in agents if x.drain_info]
        assert draining == [("DRAINING", 100 * 10**9)]
        assert sum(x.deactivated and not x.active for x in agents) == 2
        assert any(x.offered_resources for x in agents) and any(x.allocated_resources for x in agents)


@pytest.mark.parametrize("call", CALLS)
async def test_every_key_of_the_incremental_answers_is_declared_in_the_typed_doc(call):
    srv = _cluster()
    r = OperatorStateRenderer(srv)
    resp = _strict(await r.body(call), ops.ResponseDoc)
    _checked(resp, call)
    # rendered again with the kept fragments (nothing changed): the same document
    srv.core.version += 1
    assert _strict(await r.body(call), ops.ResponseDoc) == resp


@pytest.mark.parametrize("call", [*CALLS, "GET_ROLES"])
def test_every_key_of_the_one_step_answers_is_declared_in_the_typed_doc(call):
    view = v.StateView(_cluster().core)
    answer = view.get_roles({"db": 2.0, "spare": 0.5}) if call == "GET_ROLES" else getattr(view, call.lower())()
    assert isinstance(answer, ops.CALLS[call][1])  # the renderer builds the doc itself
    resp = _strict(msgspec.json.encode({"type": call, call.lower(): answer}), ops.ResponseDoc)
    if call == "GET_ROLES":
        roles = {r.name: r for r in resp.get_roles.roles}
        assert roles["db"].weight == 2.0 and roles["db"].frameworks and roles["db"].resources
        assert roles["spare"].frameworks is msgspec.UNSET and roles["spare"].resources == []
    else:
        _checked(resp, call)


async def test_the_incremental_and_the_one_step_renders_write_the_same_typed_document():
    srv = _cluster()
    incremental = msgspec.json.decode(await OperatorStateRenderer(srv).body("GET_STATE"), type=ops.ResponseDoc)
    one_step = msgspec.json.encode(v.StateView(srv.core).get_state())
    assert incremental.get_state == msgspec.json.decode(one_step, type=ops.GetStateDoc)


def test_a_task_added_event_is_a_task_doc_as_launched():
    core = _cluster().core
    added = _strict(msgspec.json.encode(v.task_added(core.find_task("pg"))), ops.TaskDoc)
    assert (added.state, added.statuses, added.task_id.value) == ("TASK_STAGING", [], "pg")


async def test_a_key_the_docs_do_not_declare_is_refused_but_readers_take_it():
    body = json.loads(await OperatorStateRenderer(_cluster()).body("GET_STATE"))
    body["get_state"]["get_agents"]["agents"][0]["surprise"] = 1
    raw = json.dumps(body).encode()
    with pytest.raises(msgspec.ValidationError, match="surprise"):
        msgspec.json.decode(raw, type=ops.ResponseDoc)
    state = ops.decode_response(raw, "GET_STATE")  # a newer master may add fields
    assert isinstance(state, ops.GetStateView) and state.get_agents.agents[0].agent_info.id.value
    with pytest.raises(ValueError, match="expected a GET_TASKS response, got GET_STATE"):
        ops.decode_response(raw, "GET_TASKS")


@pytest.mark.parametrize("doc", [ops.TaskDoc, ops.AgentDoc, ops.AgentInfoDoc, ops.FrameworkDoc, ops.ExecutorDoc,
                                 ops.RoleDoc, ops.GetTasksDoc, ops.GetAgentsDoc, ops.GetStateDoc, ops.ResponseDoc])
def test_a_doc_writes_its_views_fields_in_the_views_order(doc):
    view = doc.__mro__[1]
    assert doc.__struct_fields__[:len(view.__struct_fields__)] == view.__struct_fields__
