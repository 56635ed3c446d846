"""The operator client library (``mesos_nb.client``) against a real ``mesos-nb local``, and
the SDK's one offer matcher / task handle / constraint parser that ``mesos-nb run``, the
notebook and the framework launchers share."""

from __future__ import annotations

import msgspec
import pytest
from conftest import free_port

from mesos_nb.client import (
    MasterClient,
    MesosClientError,
    agent_url_for,
    all_tasks,
    find_task,
    locate,
)
from mesos_nb.protocol.messages import Offer
from mesos_nb.protocol.state import MasterState, TaskView
from mesos_nb.scheduler.pool import TaskHandle, TaskSpec, match_offer, ports_of, unfit_reason
from mesos_nb.scheduler.tasks import parse_constraints


def offer(oid: str = "o1", cpus: float = 2, mem: float = 1024, ports: tuple[int, int] | None = (31000, 31009),
          attrs: dict[str, str] | None = None, role: str = "*") -> Offer:
    res = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
           {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}]
    if ports:
        res.append({"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": ports[0], "end": ports[1]}]}})
    for r in res:
        r["allocation_info"] = {"role": role}
    return msgspec.convert({
        "id": {"value": oid}, "framework_id": {"value": "fw"}, "agent_id": {"value": "a1"},
        "hostname": "h1", "resources": res, "allocation_info": {"role": role},
        "attributes": [{"name": k, "type": "TEXT", "text": {"value": v}} for k, v in (attrs or {}).items()],
    }, Offer)


def handle(spec: TaskSpec, tid: str) -> TaskHandle:
    return TaskHandle(tid, spec)


# ------------------------------------------------------------------ the one matcher
def test_several_tasks_share_an_offer_first_come_first_served_with_distinct_ports():
    tasks = [handle(TaskSpec("x", cpus=1, mem=256, ports=2), f"t{i}") for i in range(3)]
    got = match_offer(offer(cpus=2), tasks)
    assert [t.id for _, t in got] == ["t0", "t1"]  # the third does not fit in 2 cpus
    p0, p1 = ports_of(got[0][0]), ports_of(got[1][0])
    assert len(p0) == 2 and len(p1) == 2 and not set(p0) & set(p1)
    assert all(t.state == "PENDING" for t in tasks)  # pure: handles untouched
    assert "each task needs cpus:1 mem:256 ports:2" in unfit_reason(offer(cpus=0.5), tasks[2].spec)


def test_constraints_ports_and_a_pinned_offer():
    rack = handle(TaskSpec("x", cpus=1, mem=64, constraints={"rack": "b", "zone": "1"}), "t")
    assert match_offer(offer(attrs={"rack": "a", "zone": "1"}), [rack]) == []
    assert len(match_offer(offer(attrs={"rack": "b", "zone": "1.0"}), [rack])) == 1  # numbers as numbers
    assert "rack=b" in unfit_reason(offer(attrs={"rack": "a"}), rack.spec)
    too_many_ports = handle(TaskSpec("x", cpus=1, mem=64, ports=20), "p")
    assert match_offer(offer(), [too_many_ports]) == []
    pinned = handle(TaskSpec("x", cpus=1, mem=64, offer_id="o2"), "q")
    assert match_offer(offer("o1"), [pinned]) == [] and len(match_offer(offer("o2"), [pinned])) == 1


def test_command_function_gets_host_and_ports_and_role_reservations_are_used():
    spec = TaskSpec(lambda host, ports: f"serve {host}:{ports[0]}", cpus=1, mem=64, ports=1)
    [(info, _)] = match_offer(offer(role="analytics"), [handle(spec, "t")])
    assert info.command.value.startswith("serve h1:310")
    assert {r.allocation_info.role for r in info.resources if r.allocation_info} == {"analytics"}


def test_reserved_cpus_and_unreserved_mem_make_one_task_and_volumes_are_left_alone():
    """An offer to role 'batch' holding cpus reserved for batch and unreserved mem (and a
    persistent volume): the task takes the unreserved part first, the reservation for the rest,
    and never the volume for a plain disk request."""
    o = offer(cpus=0.5, mem=1024, role="batch")
    dyn = [{"type": "DYNAMIC", "role": "batch", "principal": "ops"}]
    o.resources.extend(msgspec.convert([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, "reservations": dyn,
         "allocation_info": {"role": "batch"}},
        {"name": "disk", "type": "SCALAR", "scalar": {"value": 100}, "reservations": dyn,
         "allocation_info": {"role": "batch"},
         "disk": {"persistence": {"id": "v1", "principal": "ops"}, "volume": {"container_path": "d", "mode": "RW"}}},
    ], list[type(o.resources[0])]))
    [(info, _)] = match_offer(o, [handle(TaskSpec("x", cpus=2, mem=512), "t")])
    cpus = {("reserved" if r.reservations else "unreserved"): r.scalar.value for r in info.resources if r.name == "cpus"}
    assert cpus == {"unreserved": 0.5, "reserved": 1.5}
    assert [r.scalar.value for r in info.resources if r.name == "mem"] == [512]
    assert match_offer(o, [handle(TaskSpec("x", cpus=1, mem=64, disk=50), "d")]) == []  # the volume is not free disk
    assert match_offer(o, [handle(TaskSpec("x", cpus=3, mem=64), "big")]) == []  # 2.5 cpus in all


def test_one_set_of_phases():
    t = handle(TaskSpec("x"), "t")
    seen = [t.phase]
    for state in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FAILED"):
        t._set(state)
        seen.append(t.phase)
    assert seen == ["requested", "launching", "launching", "running", "running", "failed"]
    assert t.done and [s for _, s in t.history][0] == "PENDING"


def test_constraint_parser():
    assert parse_constraints(["rack = a", "zone=1"]) == {"rack": "a", "zone": "1"}
    assert parse_constraints("rack=a,zone=1") == {"rack": "a", "zone": "1"}
    for bad in (["rack"], ["=a"]):
        with pytest.raises(ValueError, match="expected KEY=VALUE"):
            parse_constraints(bad)


# ------------------------------------------------------------------ typed views
def test_state_views_ignore_unknown_fields_and_keep_defaults():
    raw = (b'{"version": "1.12.0", "future_field": 1, "slaves": [{"id": "a1", "hostname": "h", "port": 5051,'
           b' "pid": "slave(1)@10.0.0.1:5051", "resources": {"cpus": 4, "ports": "[31000-32000]"}}],'
           b' "frameworks": [{"id": "f", "tasks": [{"id": "t-1", "state": "TASK_RUNNING", "slave_id": "a1"}],'
           b' "completed_tasks": [{"id": "t-1", "state": "TASK_FINISHED"}, {"id": "t-2", "state": "TASK_KILLED"}]}]}')
    state = msgspec.json.decode(raw, type=MasterState)
    assert state.slaves[0].scalar("cpus") == 4 and state.slaves[0].url == "http://h:5051"
    assert agent_url_for(state, "a1") == "http://h:5051"
    t, fw = find_task(state, "t-1")
    assert t.state == "TASK_RUNNING" and fw.id == "f"  # the live one wins over the completed one
    assert find_task(state, "t-2")[0].terminal
    with pytest.raises(MesosClientError, match="matches 2 tasks"):
        find_task(state, "t-")
    assert [x.id for x, _ in all_tasks(state, completed=False)] == ["t-1"]
    assert TaskView().terminal is False


def test_unreachable_master_is_one_sentence():
    port = free_port()
    with pytest.raises(MesosClientError, match=f"cannot reach the master at http://127.0.0.1:{port}"):
        MasterClient(f"127.0.0.1:{port}").state()


def test_client_reads_a_real_cluster_and_a_task_sandbox(cluster_process):
    res = cluster_process.cli("run", "--cpus", "0.1", "--mem", "32", "--name", "client-probe", "--",
                              "echo", "hello-from-the-client")
    assert res.returncode == 0, res.stderr
    client = MasterClient(cluster_process.master)
    state = client.state()
    assert len(state.slaves) >= 2 and all(s.active for s in state.slaves)
    assert {s.id for s in client.agents().slaves} == {s.id for s in state.slaves}
    task, fw = client.find_task("client-probe")
    assert task.state == "TASK_FINISHED" and fw.name.startswith("mesos-nb run")
    assert task.id in {t.id for t in client.tasks().tasks}
    assert fw.id in {f.id for f in client.frameworks().completed_frameworks}
    box = locate(client, task.id)
    assert box.read("stdout").strip() == "hello-from-the-client"
    assert box.read("no-such-file") == ""


def test_import_mesos_nb_stays_light():
    import subprocess
    import sys

    code = ("import sys, mesos_nb; print(sorted(m for m in sys.modules if m.startswith("
            "('mesos_nb.notebook', 'mesos_nb.frameworks', 'mesos_nb.cli', 'IPython', 'distributed', 'dask'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_http_client_sends_the_auth_hook_headers_and_names_bad_bodies():
    import http.server
    import threading

    from mesos_nb.client import HttpClient

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's hook name
            seen.append(self.headers.get("Authorization"))
            body = b"not json" if self.path == "/bad" else b'{"version": "9"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        client = HttpClient(timeout=5, auth=lambda: {"Authorization": "Bearer s3cret"})
        assert client.get_view(url + "/master/state", MasterState).version == "9"
        assert seen == ["Bearer s3cret"]
        with pytest.raises(MesosClientError, match="/bad did not answer the expected JSON"):
            client.get_view(url + "/bad", MasterState)
    finally:
        server.shutdown()
        server.server_close()
