"""Persistent volumes in the master's core (CREATE / DESTROY / GROW_VOLUME / SHRINK_VOLUME in
ACCEPT and the operator calls) and the agent's volume directories (agent/volumes.py)."""

from __future__ import annotations

import os

import pytest
from conftest import async_wait_for
from test_agent_integration import FW, run_task
from test_containers import make, sandbox_of  # noqa: F401 (make: the real-agent fixture)
from test_executor_api import EX, executor_info
from test_reservations import _accept

from mesos_nb.agent import volumes as agent_volumes
from mesos_nb.agent.isolation import namespaces_unavailable
from mesos_nb.master.acls import ACLs
from mesos_nb.master.harness import Harness
from mesos_nb.master.security import Guard
from mesos_nb.master.state import CallError
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

DYN = [{"type": "DYNAMIC", "role": "db", "principal": "alice"}]


def _disk(value: float, reservations: list | None = DYN, pid: str | None = None, path: str = "data",
          mode: str = "RW", principal: str | None = "alice") -> dict:
    r: dict = {"name": "disk", "type": "SCALAR", "scalar": {"value": value}}
    if reservations:
        r["reservations"] = reservations
    if pid is not None:
        persistence = {"id": pid} | ({"principal": principal} if principal else {})
        r["disk"] = {"persistence": persistence, "volume": {"container_path": path, "mode": mode}}
    return r


def _statuses(h: Harness, out: list) -> dict[str, dict]:
    return {e.update_operation_status["status"]["operation_id"]["value"]: e.update_operation_status["status"]
            for e in h.events(out, "UPDATE_OPERATION_STATUS")}


def _volumes(offer: m.Offer) -> list[dict]:
    return [m.to_builtins(r) for r in offer.resources if r.disk]


def _reserved_cluster() -> tuple[Harness, object]:
    """One agent with 100 MB of disk reserved for 'db' (by the operator) and a 'db' framework."""
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024;disk:1000")
    h.core.reserve_operation("RESERVE_RESOURCES", {"agent_id": {"value": h.agents[0].id},
                                                   "resources": [_disk(100)]}, h.now)
    h.drain()
    return h, h.subscribe("db", roles=["db"])


def test_create_offers_the_volume_back_to_its_role_only_and_destroy_returns_the_disk():
    h, db = _reserved_cluster()
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [{"type": "CREATE", "id": {"value": "c1"},
                                  "create": {"volumes": [_disk(100, pid="vol-1")]}}])
    assert _statuses(h, out)["c1"]["state"] == "OPERATION_FINISHED"
    [cp] = h.agent_msgs(out, ch.CheckpointResources)
    assert Resources.from_proto(cp.resources) == h.agents[0].total
    offer = h.allocate()[db.id][0]
    [vol] = _volumes(offer)
    assert vol["disk"] == {"persistence": {"id": "vol-1", "principal": "alice"},
                           "volume": {"container_path": "data", "mode": "RW"}}
    assert vol["reservations"] == DYN and vol["scalar"]["value"] == 100
    assert vol["allocation_info"] == {"role": "db"}
    # Another role never sees the volume.
    h.decline(db, [offer], refuse_seconds=1000)
    other = h.subscribe("other", roles=["other"])
    offers = h.allocate()
    assert db.id not in offers
    assert not _volumes(offers[other.id][0])
    assert Resources.from_proto(offers[other.id][0].resources).scalar("disk") == 900
    h.decline(other, offers[other.id], refuse_seconds=1000)
    h.core.revive(db.id, None)
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [{"type": "DESTROY", "id": {"value": "d1"},
                                  "destroy": {"volumes": [_disk(100, pid="vol-1")]}}])
    assert _statuses(h, out)["d1"]["state"] == "OPERATION_FINISHED"
    assert h.agents[0].total == Resources.parse("cpus:4;mem:1024;disk:900") + Resources.from_proto(
        m.convert([_disk(100)], list[m.Resource]))
    # GET_OPERATIONS keeps them all.
    assert [o["info"]["type"] for o in h.core.get_operations()] == ["RESERVE", "CREATE", "DESTROY"]


def test_reserve_create_and_launch_in_one_accept():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024;disk:1000")
    db = h.subscribe("db", roles=["db"])
    offer = h.allocate()[db.id][0]
    vol = _disk(50, pid="v")
    task = {"name": "w", "task_id": {"value": "w"}, "agent_id": {"value": h.agents[0].id},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}, vol],
            "command": {"value": "echo hi > data/x"}}
    out = _accept(h, db, offer, [
        {"type": "RESERVE", "id": {"value": "r"}, "reserve": {"resources": [_disk(50)]}},
        {"type": "CREATE", "id": {"value": "c"}, "create": {"volumes": [vol]}},
        {"type": "LAUNCH", "launch": {"task_infos": [task]}},
    ])
    assert {k: s["state"] for k, s in _statuses(h, out).items()} == {"r": "OPERATION_FINISHED",
                                                                      "c": "OPERATION_FINISHED"}
    [run] = h.agent_msgs(out, ch.RunTask)
    assert [m.to_builtins(r)["disk"]["persistence"]["id"] for r in run.task.resources if r.disk] == ["v"]


@pytest.mark.parametrize("volume, why", [
    (_disk(10, reservations=None, pid="v"), "reserved disk"),
    (_disk(10, pid="v", mode="RO"), "Read-only persistent volume not supported"),
    (_disk(10, pid="v", path="../escape"), "'..'"),
    (_disk(10, pid="v", path="/etc"), "absolute"),
    (_disk(10, pid="a/b"), "slash"),
    (_disk(10, pid="v", principal="mallory"), "does not match"),
    (dict(_disk(10), disk={"volume": {"container_path": "x", "mode": "RW"}}), "Non-persistent volume"),
    (_disk(500, pid="v"), "not available"),
])
def test_invalid_create_gets_operation_error_and_changes_nothing(volume, why):
    h, db = _reserved_cluster()
    db.info.principal = "alice"
    before = h.agents[0].total
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [{"type": "CREATE", "id": {"value": "bad"}, "create": {"volumes": [volume]}}])
    status = _statuses(h, out)["bad"]
    assert status["state"] == "OPERATION_ERROR" and why in status["message"], status
    assert h.agents[0].total == before and not h.agent_msgs(out, ch.CheckpointResources)


def test_duplicate_persistence_id_is_refused():
    h, db = _reserved_cluster()
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [
        {"type": "CREATE", "id": {"value": "c1"}, "create": {"volumes": [_disk(40, pid="v")]}},
        {"type": "CREATE", "id": {"value": "c2"}, "create": {"volumes": [_disk(40, pid="v", path="other")]}},
        {"type": "CREATE", "id": {"value": "c3"}, "create": {"volumes": [_disk(10, pid="w"), _disk(10, pid="w")]}},
    ])
    st = _statuses(h, out)
    assert st["c1"]["state"] == "OPERATION_FINISHED"
    assert st["c2"]["state"] == "OPERATION_ERROR" and "already exists" in st["c2"]["message"]
    assert st["c3"]["state"] == "OPERATION_ERROR" and "more than once" in st["c3"]["message"]


def _task_using_a_volume() -> tuple[Harness, object, dict]:
    """Volume 'v' made by the operator, then task 't' of the 'db' framework launched on it."""
    h, db = _reserved_cluster()
    aid = {"value": h.agents[0].id}
    h.core.volume_operation("CREATE_VOLUMES", {"agent_id": aid, "volumes": [_disk(100, pid="v")]}, h.now)
    h.drain()
    offer = h.allocate()[db.id][0]
    task = {"name": "t", "task_id": {"value": "t"}, "agent_id": aid, "command": {"value": "sleep 100"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}, _disk(100, pid="v")]}
    _accept(h, db, offer, [{"type": "LAUNCH", "launch": {"task_infos": [task]}}])
    return h, db, aid


def test_destroy_of_a_volume_in_use_is_refused_until_the_task_ends():
    h, db, aid = _task_using_a_volume()
    h.update("t", "TASK_RUNNING")
    with pytest.raises(CallError) as e:
        h.core.volume_operation("DESTROY_VOLUMES", {"agent_id": aid, "volumes": [_disk(100, pid="v")]}, h.now)
    assert e.value.status == 409 and "in use by task 't'" in e.value.message
    with pytest.raises(CallError) as e:
        h.core.volume_operation("GROW_VOLUME", {"agent_id": aid, "volume": _disk(100, pid="v"),
                                                "addition": _disk(10)}, h.now)
    assert e.value.status == 409
    h.update("t", "TASK_FINISHED")
    h.acknowledge("t")
    h.core.volume_operation("DESTROY_VOLUMES", {"agent_id": aid, "volumes": [_disk(100, pid="v")]}, h.now)
    [cp] = h.agent_msgs(h.drain(), ch.CheckpointResources)
    assert not [r for r in cp.resources if r.disk]


def test_framework_destroy_of_a_volume_in_use_gets_operation_error():
    h, db, aid = _task_using_a_volume()
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [{"type": "DESTROY", "id": {"value": "d"},
                                  "destroy": {"volumes": [_disk(100, pid="v")]}}])
    status = _statuses(h, out)["d"]
    assert status["state"] == "OPERATION_ERROR" and "in use by task 't'" in status["message"]


def test_grow_and_shrink_change_the_volume_size():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:1024;disk:1000")
    aid = {"value": h.agents[0].id}
    h.core.reserve_operation("RESERVE_RESOURCES", {"agent_id": aid, "resources": [_disk(300)]}, h.now)
    h.core.volume_operation("CREATE_VOLUMES", {"agent_id": aid, "volumes": [_disk(100, pid="v")]}, h.now)
    h.core.volume_operation("GROW_VOLUME", {"agent_id": aid, "volume": _disk(100, pid="v"),
                                            "addition": _disk(50)}, h.now)
    total = h.agents[0].total
    assert total.contains(Resources.from_proto(m.convert([_disk(150, pid="v")], list[m.Resource])))
    assert total.contains(Resources.from_proto(m.convert([_disk(150)], list[m.Resource])))
    db = h.subscribe("db", roles=["db"])
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [{"type": "SHRINK_VOLUME", "id": {"value": "s"},
                                  "shrink_volume": {"volume": _disk(150, pid="v"), "subtract": {"value": 30}}}])
    assert _statuses(h, out)["s"]["state"] == "OPERATION_FINISHED"
    total = h.agents[0].total
    assert total.contains(Resources.from_proto(m.convert([_disk(120, pid="v"), _disk(180)], list[m.Resource])))
    for body, why in [({"volume": _disk(120, pid="v"), "subtract": {"value": 120}}, "must stay > 0"),
                      ({"volume": _disk(120, pid="v"), "subtract": {"value": -1}}, "positive"),
                      ({"volume": _disk(10)}, "persistent volumes")]:
        with pytest.raises(CallError) as e:
            h.core.volume_operation("SHRINK_VOLUME", dict(body, agent_id=aid), h.now)
        assert e.value.status == 400 and why in e.value.message, e.value.message


def test_operator_volume_call_errors():
    h, _ = _reserved_cluster()
    aid = {"value": h.agents[0].id}
    for payload, status in [
        ({"agent_id": {"value": "nope"}, "volumes": [_disk(10, pid="v")]}, 404),
        ({"volumes": [_disk(10, pid="v")]}, 400),
        ({"agent_id": aid, "volumes": []}, 400),
        ({"agent_id": aid, "volumes": [dict(_disk(10, pid="v"), allocation_info={"role": "db"})]}, 400),
        ({"agent_id": aid, "volumes": [_disk(999, pid="v")]}, 409),
    ]:
        with pytest.raises(CallError) as e:
            h.core.volume_operation("CREATE_VOLUMES", payload, h.now)
        assert e.value.status == status, (payload, e.value.message)
    with pytest.raises(CallError) as e:
        h.core.volume_operation("DESTROY_VOLUMES", {"agent_id": aid, "volumes": [_disk(10, pid="nope")]}, h.now)
    assert e.value.status == 409


def test_unreserve_of_a_volume_is_refused():
    h, db = _reserved_cluster()
    aid = {"value": h.agents[0].id}
    h.core.volume_operation("CREATE_VOLUMES", {"agent_id": aid, "volumes": [_disk(100, pid="v")]}, h.now)
    with pytest.raises(CallError) as e:
        h.core.reserve_operation("UNRESERVE_RESOURCES", {"agent_id": aid, "resources": [_disk(100, pid="v")]}, h.now)
    assert e.value.status == 400 and "destroyed" in e.value.message


def test_volume_survives_master_restart_through_registry_and_agent_report():
    h, _ = _reserved_cluster()
    aid = h.agents[0].id
    h.core.volume_operation("CREATE_VOLUMES", {"agent_id": {"value": aid}, "volumes": [_disk(100, pid="v")]},
                            h.now)
    [cp] = h.agent_msgs(h.drain(), ch.CheckpointResources)
    h2 = h.restart()
    reg = ch.RegisterAgent(key="k0", hostname="h0", port=5051, resources=cp.resources, agent_id=aid)
    h2.core.register_agent(reg, h2.channel, h2.now)
    h2.drain()
    db = h2.subscribe("db", roles=["db"])
    [vol] = _volumes(h2.allocate()[db.id][0])
    assert vol["disk"]["persistence"]["id"] == "v"


def test_acl_refuses_a_framework_create():
    h, db = _reserved_cluster()
    refused = []

    def authorize(fw, action, objects):
        refused.append((action, objects))
        return f"Not authorized to {action}" if action == "create_volumes" else None

    h.core.authorize_operation = authorize
    offer = h.allocate()[db.id][0]
    out = _accept(h, db, offer, [{"type": "CREATE", "id": {"value": "c"},
                                  "create": {"volumes": [_disk(100, pid="v")]}}])
    status = _statuses(h, out)["c"]
    assert status["state"] == "OPERATION_ERROR" and "create_volumes" in status["message"]
    assert refused == [("create_volumes", ["db"])]


# ---------------------------------------------------------------------- the agent's side


def _vol_res(*items: dict) -> Resources:
    return Resources.from_proto(m.convert(list(items), list[m.Resource]))


def test_agent_volume_directory_made_on_create_kept_and_deleted_on_destroy(tmp_path):
    work = str(tmp_path)
    reserved = _vol_res(_disk(100))
    created = _vol_res(_disk(100, pid="v1"))
    agent_volumes.sync(work, reserved, created)
    path = agent_volumes.volume_path(work, "db", "v1")
    assert path == os.path.join(work, "volumes", "roles", "db", "v1") and os.path.isdir(path)
    with open(os.path.join(path, "f"), "w") as f:
        f.write("kept")
    agent_volumes.sync(work, created, created)  # a checkpoint that does not touch it
    assert open(os.path.join(path, "f")).read() == "kept"
    agent_volumes.sync(work, created, reserved)
    assert not os.path.exists(path)


def test_agent_links_the_volume_into_the_sandbox(tmp_path):
    work, box = str(tmp_path / "work"), tmp_path / "sandbox"
    box.mkdir()
    res = _vol_res(_disk(100, pid="v1", path="deep/data"))
    agent_volumes.sync(work, Resources(), res)
    specs = agent_volumes.attach(work, str(box), res, bind=False, user=None)
    assert specs == []
    assert os.path.realpath(box / "deep" / "data") == agent_volumes.volume_path(work, "db", "v1")
    (box / "deep" / "data" / "x").write_text("through the link")
    assert open(os.path.join(agent_volumes.volume_path(work, "db", "v1"), "x")).read() == "through the link"
    # bind: the containerizer mounts it (filesystem/linux); the mount point is made here.
    (tmp_path / "sandbox2").mkdir()
    specs = agent_volumes.attach(work, str(tmp_path / "sandbox2"), res, bind=True, user=None)
    assert (tmp_path / "sandbox2" / "deep" / "data").is_dir()
    assert [(s.container_path, s.host_path) for s in specs] == [("deep/data", agent_volumes.volume_path(work, "db", "v1"))]


def test_agent_refuses_a_sandbox_path_through_a_symlink(tmp_path):
    work, box = str(tmp_path / "work"), tmp_path / "sandbox"
    box.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", box / "deep")  # a task swapped a directory for a link
    res = _vol_res(_disk(100, pid="v1", path="deep/data"))
    agent_volumes.sync(work, Resources(), res)
    with pytest.raises(agent_volumes.VolumeError):
        agent_volumes.attach(work, str(box), res, bind=False, user=None)
    assert not os.path.lexists(tmp_path / "elsewhere" / "data")


def test_hierarchical_role_directory_uses_a_space(tmp_path):
    assert agent_volumes.volume_path(str(tmp_path), "eng/ml", "v") == os.path.join(
        str(tmp_path), "volumes", "roles", "eng ml", "v")


# ---------------------------------------------------------------------- a real agent

NO_NS = namespaces_unavailable()


@pytest.mark.parametrize("isolation", [
    "posix",
    pytest.param("posix,filesystem/linux",
                 marks=pytest.mark.skipif(NO_NS is not None, reason=f"namespaces unavailable: {NO_NS}")),
])
async def test_a_task_writes_through_its_volume_and_a_later_task_reads_it(make, isolation):  # noqa: F811
    master, agent = await make(isolation)
    work = agent.config.work_dir
    volume = _disk(100, pid="v1", path="state/data")
    total = Resources.parse("cpus:4;mem:4096;disk:3996") + _vol_res(volume)
    await master.send(ch.CheckpointResources(agent_id=agent.agent_id, resources=total.to_proto()))
    path = agent_volumes.volume_path(work, "db", "v1")
    await async_wait_for(lambda: os.path.isdir(path), timeout=10, message="volume directory made")

    def task_with_volume(task_id: str, cmd: str) -> ch.RunTask:
        msg = run_task(agent.agent_id, task_id, cmd)
        msg.task.resources = msg.task.resources + _vol_res(volume).to_proto()
        return msg

    await master.send(task_with_volume("writer", "echo kept > state/data/f"))
    await master.wait_state("writer", "TASK_FINISHED", timeout=30)
    assert open(os.path.join(path, "f")).read() == "kept\n"  # outside the sandbox
    in_sandbox = os.path.join(sandbox_of(agent, "writer"), "state", "data")
    # filesystem/linux bind-mounts it in the container's own mount namespace (the host sees
    # the empty mount point); posix links it.
    assert os.path.islink(in_sandbox) == ("filesystem/linux" not in isolation)
    await master.send(task_with_volume("reader", "cat state/data/f"))
    await master.wait_state("reader", "TASK_FINISHED", timeout=30)
    assert open(os.path.join(sandbox_of(agent, "reader"), "stdout")).read() == "kept\n"
    # DESTROY (the master's new total without the volume) deletes the data.
    await master.send(ch.CheckpointResources(agent_id=agent.agent_id, resources=Resources.parse(
        "cpus:4;mem:4096;disk:3996").to_proto() + _vol_res(_disk(100)).to_proto()))
    await async_wait_for(lambda: not os.path.exists(path), timeout=10, message="volume deleted")


def test_volume_acls_of_the_master_guard_apply_to_accept():
    """create_volumes by role, destroy_volumes by the volume's creator principal."""
    guard = Guard(None)
    guard.acls = ACLs.parse({"permissive": False,
                             "create_volumes": [{"principals": {"values": ["alice"]}, "roles": {"values": ["db"]}}],
                             "destroy_volumes": [{"principals": {"values": ["alice"]},
                                                  "creator_principals": {"values": ["alice"]}}]})
    h, alice = _reserved_cluster()
    alice.info.principal = "alice"
    h.core.authorize_operation = guard.authorize_operation
    offer = h.allocate()[alice.id][0]
    h.decline(alice, [offer], refuse_seconds=1000)
    bob = h.subscribe("bob", roles=["db"])
    bob.info.principal = "bob"
    offer = h.allocate()[bob.id][0]
    out = _accept(h, bob, offer, [{"type": "CREATE", "id": {"value": "c"},
                                   "create": {"volumes": [_disk(100, pid="v", principal="bob")]}}])
    status = _statuses(h, out)["c"]
    assert status["state"] == "OPERATION_ERROR" and "Not authorized" in status["message"]
    h.core.revive(alice.id, None)
    offer = h.allocate()[alice.id][0]
    out = _accept(h, alice, offer, [{"type": "CREATE", "id": {"value": "c"},
                                     "create": {"volumes": [_disk(100, pid="v")]}}])
    assert _statuses(h, out)["c"]["state"] == "OPERATION_FINISHED"
    h.decline(alice, h.allocate()[alice.id], refuse_seconds=1000)
    h.core.revive(bob.id, None)
    offer = h.allocate()[bob.id][0]
    out = _accept(h, bob, offer, [{"type": "DESTROY", "id": {"value": "d"},
                                   "destroy": {"volumes": [_disk(100, pid="v")]}}])
    status = _statuses(h, out)["d"]
    assert status["state"] == "OPERATION_ERROR" and "destroy volumes" in status["message"]
    # The operator's DESTROY_VOLUMES is checked against each volume's creator principal.
    call = {"type": "DESTROY_VOLUMES", "destroy_volumes": {"agent_id": {"value": "a"},
                                                           "volumes": [_disk(100, pid="v")]}}
    assert guard._operator_objects("DESTROY_VOLUMES", call) == ["alice"]


async def test_custom_executor_gets_its_tasks_volumes_at_launch_and_when_a_task_joins(make):  # noqa: F811
    master, agent = await make("posix")
    work = agent.config.work_dir
    first, second = _disk(10, pid="v1", path="first"), _disk(10, pid="v2", path="second")
    total = Resources.parse("cpus:4;mem:4096;disk:4076") + _vol_res(first, second)
    await master.send(ch.CheckpointResources(agent_id=agent.agent_id, resources=total.to_proto()))
    await async_wait_for(lambda: os.path.isdir(agent_volumes.volume_path(work, "db", "v2")), timeout=10)

    def with_volume(task_id: str, volume: dict) -> ch.RunTask:
        msg = run_task(agent.agent_id, task_id, None, executor=executor_info())
        msg.task.resources = msg.task.resources + _vol_res(volume).to_proto()
        return msg

    await master.send(with_volume("t1", first))
    ex = await async_wait_for(lambda: agent.frameworks[FW].executors[EX].container and agent.frameworks[FW].executors[EX],
                              timeout=20, message="executor started")
    assert os.readlink(os.path.join(ex.directory, "first")) == agent_volumes.volume_path(work, "db", "v1")
    await master.send(with_volume("t2", second))
    await async_wait_for(lambda: "t2" in ex.tasks, timeout=10)
    assert os.readlink(os.path.join(ex.directory, "second")) == agent_volumes.volume_path(work, "db", "v2")


def test_operator_calls_wait_for_a_disconnected_agent():
    h, _ = _reserved_cluster()
    aid = {"value": h.agents[0].id}
    h.lose_channel()
    with pytest.raises(CallError) as e:
        h.core.volume_operation("CREATE_VOLUMES", {"agent_id": aid, "volumes": [_disk(100, pid="v")]}, h.now)
    assert e.value.status == 409 and "not connected" in e.value.message
