"""``%mesos connect zk://…/mesos``: the notebook follows the leading master that ZooKeeper names
(real ZooKeeper, two real master processes with ``--zk``, one agent given the zk:// URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("IPython")
pytest.importorskip("ipywidgets")

from conftest import mesos_shell, notebook_home, wait_for  # noqa: E402
from ha_cluster import HaCluster  # noqa: E402

from mesos_nb.notebook import MesosNotebookError  # noqa: E402

pytest_plugins = ["zk_fixture"]


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    notebook_home(tmp_path / "home", monkeypatch)
    with mesos_shell() as shell:
        yield shell


def test_connect_zk_status_and_run_follow_the_leader(zk, tmp_path, ip):
    cluster = HaCluster(zk.url("/mesos"), tmp_path, masters=2, quorum=1)
    try:
        cluster.start(agents=1)
        wait_for(lambda: len((cluster.leader_state() or {}).get("slaves", [])) == 1, 90,
                 message="the agent registered with the leader")
        leader = cluster.leader()
        c = ip.run_line_magic("mesos", f"connect {cluster.zk_url}")
        assert c.master_url == cluster.zk_url and c.agents == 1
        st = ip.run_line_magic("mesos", "status")
        rows = dict(st.rows)
        assert rows["leader"] == f"http://127.0.0.1:{leader}"
        assert rows["agents"].startswith("1 active")
        t = ip.run_line_magic("mesos", "run --cpus 0.1 --mem 32 -- echo hi")
        assert t.wait(60).state == "TASK_FINISHED"
        assert t.logs().stdout == "hi\n"
        assert t.id in ip.run_line_magic("mesos", "tasks --all").column("ID")

        cluster.kill_master(leader)  # the next reads and tasks go to the new leader
        wait_for(lambda: cluster.leader() not in (None, leader), 60, message="a new leader")
        new = cluster.leader()

        def agent_back() -> bool:
            try:
                return dict(ip.run_line_magic("mesos", "status").rows)["agents"].startswith("1 active")
            except MesosNotebookError:  # the old leader's znode may not be gone yet
                return False
        wait_for(agent_back, 90, message="the agent re-registered with the new leader")
        assert dict(ip.run_line_magic("mesos", "status").rows)["leader"] == f"http://127.0.0.1:{new}"
        t2 = ip.run_line_magic("mesos", "run --cpus 0.1 --mem 32 -- echo again")
        assert t2.wait(90).state == "TASK_FINISHED"
        assert t2.logs().stdout == "again\n"
    finally:
        cluster.stop()
