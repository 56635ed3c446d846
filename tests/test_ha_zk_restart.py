"""ZooKeeper itself restarted under three masters, two agents and a framework: the masters
elect a leader again (the old one stops leading and is restarted by the test, its supervisor),
the registry is intact, the agents and the framework come back, and no task is lost."""

from __future__ import annotations

import time
from collections import Counter

from ha_cluster import HaCluster, running_tasks
from test_ha_failover import TERMINAL, Sdk, states_by_task, until

from mesos_nb.scheduler import FrameworkInfo, SchedulerDriver

pytest_plugins = ["zk_fixture"]


async def test_zookeeper_restart_masters_reelect_nothing_lost(zk, tmp_path):
    release = tmp_path / "release"
    cluster = HaCluster(zk.url("/mesos"), tmp_path)
    sdk = Sdk(10, release)
    driver = SchedulerDriver(sdk, FrameworkInfo(user="u", name="sdk-zk", failover_timeout=3600, checkpoint=True),
                             cluster.zk_url, start_timeout=60, zk_session_timeout=2.0)
    try:
        cluster.start(agents=2)
        await until(lambda: len((cluster.leader_state() or {}).get("slaves", [])) == 2, 90, "two agents", cluster)
        fid = await driver.start()
        await until(lambda: Counter(running_tasks(cluster.leader_state()).values())["TASK_RUNNING"] == 10,
                    120, "10 running tasks", cluster)
        agent_ids = {s["id"] for s in cluster.leader_state()["slaves"]}

        zk.stop()
        zk.start()

        def recovered() -> bool:
            cluster.restart_exited_masters()  # the supervisor
            st = cluster.leader_state()
            if not st:
                return False
            fws = [f for f in st["frameworks"] if f["id"] == fid and f["active"]]
            return (bool(fws) and {s["id"] for s in st["slaves"] if s["active"]} == agent_ids
                    and Counter(running_tasks(st).values())["TASK_RUNNING"] == 10)

        t0 = time.monotonic()
        await until(recovered, 120, "a leader with the framework, both agents and 10 running tasks", cluster)
        await until(lambda: driver.connected, 60, "the framework subscribed", cluster)
        assert time.monotonic() - t0 < 120
        assert not any(set(s) & TERMINAL for s in states_by_task(sdk.updates).values())
        release.touch()
        await until(lambda: len([1 for s in states_by_task(sdk.updates).values() if set(s) & TERMINAL]) == 10,
                    120, "every task to finish", cluster)
        for tid, sts in states_by_task(sdk.updates).items():
            assert [s for s in sts if s in TERMINAL] == ["TASK_FINISHED"], f"{tid}: {sts}"
    finally:
        await driver.stop(failover=True)
        cluster.stop()
