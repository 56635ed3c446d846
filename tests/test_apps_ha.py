"""The apps framework highly available: three masters and ZooKeeper, two agents, the framework
given ``--master zk://…`` and ``--zk zk://…`` (all real processes).

* The framework is SIGKILLed, the leading master is SIGKILLed meanwhile, the framework is
  started again: it follows the new leading master, re-subscribes with its framework id and
  adopts its running instances (same task ids, same pids, no extra task).
* Two replicas under ZooKeeper: SIGKILL the leader, the standby takes over and adopts.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from apps_cluster import Framework, running_ids, tail
from conftest import wait_for
from ha_cluster import HaCluster

from mesos_nb.frameworks.apps import client

pytest_plugins = ["zk_fixture"]
pytest.importorskip("mesos_nb.agent.process", reason="the agent is not available")


@pytest.fixture(scope="module")
def ha(zk_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("apps-ha")
    root = f"/apps-ha/{uuid.uuid4().hex[:10]}"
    c = HaCluster(zk_server.url(root + "/mesos"), work)
    c.apps_root = zk_server.url(root)  # type: ignore[attr-defined]
    c.start(agents=2)
    try:
        wait_for(lambda: len((c.leader_state() or {}).get("slaves", [])) == 2, 90, interval=0.1,
                 message="a leading master with two agents")
        yield c
    finally:
        c.stop()


def check(cond, fws, what, ha=None, timeout=90):
    try:
        return wait_for(cond, timeout, interval=0.1, message=what)
    except AssertionError as e:
        logs = "\n".join(f"--- {f.name} ---\n{tail(f.log)}" for f in fws)
        raise AssertionError(f"{e}\n{logs}\n{ha.logs() if ha else ''}") from None


def pids(scratch: Path, ids: set[str]) -> dict[str, int]:
    return {t: int((scratch / f"{t}.pid").read_text()) for t in ids}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def deploy_and_wait(fw: Framework, app_id: str, n: int, scratch: Path) -> set[str]:
    cmd = f"echo $$ > {scratch}/$MESOS_TASK_ID.pid; exec sleep 1000"
    client.deploy({"id": app_id, "cmd": cmd, "cpus": 0.1, "mem": 16, "instances": n}, fw.api)
    ids = check(lambda: r if len(r := running_ids(fw.app(app_id))) == n else None, [fw], f"{n} running")
    check(lambda: all((scratch / f"{t}.pid").exists() for t in ids), [fw], "pid files")
    return ids


def settled(fw: Framework, ticks: int = 30) -> bool:
    """Re-subscribed, reconciled, and ``ticks`` reconciliation ticks (0.1 s each) run since."""
    info = fw.get("/v2/info")
    return bool(info.get("reconciledAt")) and info.get("ticksSinceSubscribed", 0) >= ticks


def master_tasks(ha: HaCluster, fid: str) -> dict[str, str]:
    st = ha.leader_state() or {}
    return {t["id"]: t["state"] for f in st.get("frameworks", []) if f["id"] == fid for t in f.get("tasks", [])}


def test_sigkill_and_master_failover_meanwhile_adopts_instances(ha, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fw = Framework(tmp_path / "state", ha.zk_url, name="fw-a", zk=ha.apps_root + "/one").start(90)
    try:
        fid = fw.get("/v2/info")["frameworkId"]
        ids = deploy_and_wait(fw, "/svc", 3, scratch)
        before = pids(scratch, ids)
        check(lambda: set(master_tasks(ha, fid)) == ids, [fw], "the master knows the 3 tasks", ha)

        fw.kill9()
        old_leader = ha.leader()
        assert old_leader is not None
        ha.kill_master(old_leader)
        check(lambda: (p := ha.leader()) is not None and p != old_leader and
              len((ha.leader_state() or {}).get("slaves", [])) == 2, [fw], "a new leading master", ha)
        ha.restart_exited_masters()

        fw.start(90)
        assert fw.get("/v2/info")["frameworkId"] == fid
        check(lambda: settled(fw), [fw], "reconciled and 3 s of ticks", ha)
        assert running_ids(fw.app("/svc")) == ids
        assert pids(scratch, ids) == before and all(alive(p) for p in before.values())
        assert master_tasks(ha, fid) == {t: "TASK_RUNNING" for t in ids}
        assert len(fw.app("/svc")["tasks"]) == 3
    finally:
        fw.stop()
        # leave nothing running for the next test
        for p in pids(scratch, {f.stem for f in scratch.glob("*.pid")}).values():
            if alive(p):
                os.kill(p, 9)


def test_standby_replica_takes_over_without_duplicating(ha, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    zk = ha.apps_root + "/two"
    a = Framework(tmp_path / "a", ha.zk_url, name="replica-a", zk=zk).start(90)
    b = Framework(tmp_path / "b", ha.zk_url, name="replica-b", zk=zk).spawn()
    try:
        fid = a.get("/v2/info")["frameworkId"]
        ids = deploy_and_wait(a, "/web", 2, scratch)
        before = pids(scratch, ids)
        check(lambda: "standing by" in b.log.read_text(), [a, b], "replica b standing by")
        assert not (tmp_path / "b" / "endpoints.json").exists()

        a.kill9()
        b.wait_up(90)
        assert b.get("/v2/info")["frameworkId"] == fid
        check(lambda: settled(b), [b], "reconciled and 3 s of ticks", ha)
        assert running_ids(b.app("/web")) == ids
        assert pids(scratch, ids) == before and all(alive(p) for p in before.values())
        assert master_tasks(ha, fid) == {t: "TASK_RUNNING" for t in ids}
        assert len(b.app("/web")["tasks"]) == 2
    finally:
        a.stop()
        b.stop()
        for p in pids(scratch, {f.stem for f in scratch.glob("*.pid")}).values():
            if alive(p):
                os.kill(p, 9)
