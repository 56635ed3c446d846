"""Dynamic reservations: RESERVE / UNRESERVE in ACCEPT and the operator calls, offered only
to their role, operation feedback, and the converted total kept by the agent's checkpoint."""

from __future__ import annotations

from mesos_nb.agent import resources_checkpoint
from mesos_nb.master.harness import Harness
from mesos_nb.master.state import CallError
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

DYN = [{"type": "DYNAMIC", "role": "eng", "principal": "alice"}]


def _cpus(value: float, reservations: list | None = None) -> dict:
    r = {"name": "cpus", "type": "SCALAR", "scalar": {"value": value}}
    if reservations:
        r["reservations"] = reservations
    return r


def _accept(h: Harness, fw, offer: m.Offer, ops: list[dict]) -> list:
    accept = m.convert({"offer_ids": [{"value": offer.id.value}], "operations": ops,
                        "filters": {"refuse_seconds": 0}}, m.Accept)
    h.core.accept(fw.id, accept, h.now)
    return h.drain()


def _reserved_cpus(offer: m.Offer) -> list[dict]:
    return [m.to_builtins(r) for r in offer.resources if r.name == "cpus" and r.reservations]


def test_reserve_is_offered_to_its_role_only_with_feedback_and_unreserve_returns_it():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024")
    eng = h.subscribe("eng", roles=["eng"])
    offer = h.allocate()[eng.id][0]
    out = _accept(h, eng, offer, [{"type": "RESERVE", "id": {"value": "op1"},
                                   "reserve": {"resources": [_cpus(2, DYN)]}}])
    [ev] = h.events(out, "UPDATE_OPERATION_STATUS")
    status = ev.update_operation_status["status"]
    assert status["state"] == "OPERATION_FINISHED" and status["operation_id"] == {"value": "op1"}
    [cp] = h.agent_msgs(out, ch.CheckpointResources)
    assert Resources.from_proto(cp.resources) == h.agents[0].total
    # The next offer to eng carries the reservation stack.
    offer = h.allocate()[eng.id][0]
    [res] = _reserved_cpus(offer)
    assert res["reservations"] == DYN and res["scalar"]["value"] == 2
    # Another role's framework never sees the reserved cpus.
    h.decline(eng, [offer], refuse_seconds=1000)
    ops = h.subscribe("ops", roles=["ops"])
    offers = h.allocate()
    assert eng.id not in offers
    assert Resources.from_proto(offers[ops.id][0].resources).scalar("cpus") == 2
    assert not _reserved_cpus(offers[ops.id][0])
    h.decline(ops, offers[ops.id], refuse_seconds=1000)
    # GET_OPERATIONS lists it.
    assert [o["latest_status"]["state"] for o in h.core.get_operations()] == ["OPERATION_FINISHED"]
    # Unreserve (eng revives): the cpus go back to '*'.
    h.core.revive(eng.id, None)
    offer = h.allocate()[eng.id][0]
    out = _accept(h, eng, offer, [{"type": "UNRESERVE", "id": {"value": "op2"},
                                   "unreserve": {"resources": [_cpus(2, DYN)]}}])
    [ev] = h.events(out, "UPDATE_OPERATION_STATUS")
    assert ev.update_operation_status["status"]["state"] == "OPERATION_FINISHED"
    assert h.agents[0].total == Resources.parse("cpus:4;mem:1024")


def test_invalid_reserve_gets_operation_error_and_changes_nothing():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024")
    eng = h.subscribe("eng", roles=["eng"])
    offer = h.allocate()[eng.id][0]
    other_role = [{"type": "DYNAMIC", "role": "ops", "principal": "alice"}]
    out = _accept(h, eng, offer, [
        {"type": "RESERVE", "id": {"value": "bad-role"}, "reserve": {"resources": [_cpus(1, other_role)]}},
        {"type": "RESERVE", "id": {"value": "too-much"}, "reserve": {"resources": [_cpus(9, DYN)]}},
        {"type": "CREATE", "id": {"value": "vol"}, "create": {"volumes": []}},
    ])
    states = {e.update_operation_status["status"]["operation_id"]["value"]: e.update_operation_status["status"]
              for e in h.events(out, "UPDATE_OPERATION_STATUS")}
    assert {k: s["state"] for k, s in states.items()} == {
        "bad-role": "OPERATION_ERROR", "too-much": "OPERATION_ERROR", "vol": "OPERATION_ERROR"}
    assert "'ops'" in states["bad-role"]["message"] and "non-empty list" in states["vol"]["message"]
    assert h.agents[0].total == Resources.parse("cpus:4;mem:1024")
    assert not h.agent_msgs(out, ch.CheckpointResources)


def test_refined_reservation_goes_to_the_child_role_only():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024")
    refined = DYN + [{"type": "DYNAMIC", "role": "eng/ml", "principal": "alice"}]
    h.core.reserve_operation("RESERVE_RESOURCES", {"agent_id": {"value": h.agents[0].id},
                                                   "resources": [_cpus(2, DYN)]}, h.now)
    h.core.reserve_operation("RESERVE_RESOURCES", {"agent_id": {"value": h.agents[0].id},
                                                   "resources": [_cpus(1, refined)]}, h.now)
    h.drain()
    eng = h.subscribe("eng", roles=["eng"])
    offer = h.allocate()[eng.id][0]
    assert [r["reservations"] for r in _reserved_cpus(offer)] == [DYN]
    ml = h.subscribe("ml", roles=["eng/ml"])
    offer = h.allocate()[ml.id][0]
    assert refined in [r["reservations"] for r in _reserved_cpus(offer)]


def test_operator_reserve_errors():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024")
    aid = {"value": h.agents[0].id}
    cases = [
        ({"agent_id": {"value": "nope"}, "resources": [_cpus(1, DYN)]}, 404),
        ({"agent_id": aid, "resources": [_cpus(1)]}, 400),  # not dynamic
        ({"agent_id": aid, "resources": [dict(_cpus(1, DYN), allocation_info={"role": "eng"})]}, 400),
        ({"agent_id": aid, "resources": [_cpus(8, DYN)]}, 409),
    ]
    for payload, status in cases:
        try:
            h.core.reserve_operation("RESERVE_RESOURCES", payload, h.now)
        except CallError as e:
            assert e.status == status, (payload, e.message)
        else:
            raise AssertionError(f"accepted {payload}")
    try:
        h.core.reserve_operation("UNRESERVE_RESOURCES", {"agent_id": aid, "resources": [_cpus(1, DYN)]}, h.now)
    except CallError as e:
        assert e.status == 409
    else:
        raise AssertionError("unreserved what was never reserved")


def test_reservation_survives_master_restart_from_the_registry_and_agent_report():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024")
    h.core.reserve_operation("RESERVE_RESOURCES", {"agent_id": {"value": h.agents[0].id},
                                                   "resources": [_cpus(2, DYN)]}, h.now)
    [cp] = h.agent_msgs(h.drain(), ch.CheckpointResources)
    [rec] = h.registry.recover().agents
    assert Resources.from_proto(rec.resources) == Resources.from_proto(cp.resources)
    h2 = h.restart()
    # The agent re-registers reporting its checkpointed total.
    reg = ch.RegisterAgent(key="k0", hostname="h0", port=5051, resources=cp.resources, agent_id=h.agents[0].id)
    h2.core.register_agent(reg, h2.channel, h2.now)
    h2.drain()
    eng = h2.subscribe("eng", roles=["eng"])
    offer = h2.allocate()[eng.id][0]
    assert [r["reservations"] for r in _reserved_cpus(offer)] == [DYN]


def test_agent_checkpoint_keeps_the_total_for_the_same_flags_only(tmp_path):
    base = Resources.parse("cpus:4;mem:1024")
    total = Resources.parse("cpus:2;mem:1024") + Resources.from_proto(m.convert([_cpus(2, DYN)], list[m.Resource]))
    resources_checkpoint.save(str(tmp_path), base, total.to_proto())
    assert resources_checkpoint.load(str(tmp_path), base) == total
    assert resources_checkpoint.load(str(tmp_path), Resources.parse("cpus:8;mem:1024")) == Resources.parse(
        "cpus:8;mem:1024")
