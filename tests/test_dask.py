"""MesosCluster: Dask workers (and scheduler) as tasks of a real `mesos-nb local` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed (pip install -e '.[dask]')")

from conftest import (  # noqa: E402
    REPO,
    cli_env,
    get_json,
    mesos_shell,
    start_cluster_process,
    stop_cluster_process,
    wait_for,
)
from distributed import Client, Event  # noqa: E402

from mesos_nb.frameworks.dask import MesosCluster  # noqa: E402

SMALL = dict(cpus=0.5, mem=256)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory):
    cp = start_cluster_process(tmp_path_factory.mktemp("dask-cluster"))
    try:
        yield cp
    finally:
        stop_cluster_process(cp)


def framework_tasks(url: str, framework_id: str, completed: bool = False) -> dict[str, dict]:
    state = get_json(url + "/master/state")
    out = {}
    for fw in state.get("frameworks", []) + state.get("completed_frameworks", []):
        if fw["id"] != framework_id:
            continue
        for t in fw.get("tasks", []) + (fw.get("completed_tasks", []) if completed else []):
            out[t["id"]] = t
    return out


def test_package_import_does_not_import_distributed():
    code = "import sys, mesos_nb; assert 'distributed' not in sys.modules; print(mesos_nb.MesosCluster.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(),
                       cwd=str(REPO), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "MesosCluster"


def test_four_workers_are_cluster_tasks_and_compute(master):
    import dask.array as da

    with MesosCluster(master.master, n_workers=4, **SMALL) as cluster, Client(cluster) as client:
        client.wait_for_workers(4, timeout=90)
        names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
        assert len(names) == 4
        tasks = framework_tasks(master.url, cluster.pool.framework_id)
        # each Dask worker is a running task whose id is the worker's name, on a known agent
        agents = {a["id"] for a in get_json(master.url + "/master/state")["slaves"]}
        for n in names:
            assert tasks[n]["state"] == "TASK_RUNNING"
            assert tasks[n]["slave_id"] in agents
        # and the operator CLI lists them
        listed = master.cli("tasks").stdout
        assert all(n in listed for n in names)
        x = da.ones((2000, 2000), chunks=(500, 500))
        assert (x + x.T).sum().compute() == 2 * 2000 * 2000
        status = cluster.mesos_status()
        assert status["running"] == 4 and status["connected"] == 4
        assert "running" in cluster._repr_html_() and "Mesos" in cluster._repr_html_()
        fid = cluster.pool.framework_id
    # close() ends the framework and its tasks
    wait_for(lambda: not framework_tasks(master.url, fid), 30, message="worker tasks gone after close")


def test_waiting_reason_when_no_offer_fits(master):
    cluster = MesosCluster(master.master, n_workers=1, cpus=64, mem=256)
    try:
        wait_for(lambda: "no offer fits" in cluster.mesos_status()["why waiting"], 30,
                 message="a reason for waiting")
        assert cluster.mesos_status()["waiting for an offer"] == 1
        assert "waiting: no offer fits" in cluster._repr_html_()
        assert "waiting=1" in repr(cluster)
    finally:
        cluster.close()


def test_dashboard_link_templates(master, monkeypatch):
    import dask

    with MesosCluster(master.master, n_workers=0, dashboard_address=":0") as cluster:
        port = cluster.scheduler_info["services"]["dashboard"]
        assert cluster.dashboard_link == f"http://127.0.0.1:{port}/status"
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
        assert cluster.dashboard_link == f"/user/ada/proxy/127.0.0.1:{port}/status"
        with dask.config.set({"distributed.dashboard.link": "https://hub/{JUPYTERHUB_SERVICE_PREFIX}p/{port}"}):
            assert cluster.dashboard_link == f"https://hub//user/ada/p/{port}"


def test_adapt_grows_shrinks_and_keeps_results(master, tmp_path: Path):
    marks = tmp_path / "made.txt"

    # functions of this module are pickled by reference and the workers cannot import tests/:
    # closures travel by value
    def slow(i: int) -> int:  # held until the test has seen the growth it causes
        from distributed import Event

        Event("release-slow").wait(120)
        return i

    def make(i: int, path: str = str(marks)) -> int:
        with open(path, "a") as f:
            f.write(f"{i}\n")
        return i * 10

    with MesosCluster(master.master, n_workers=0, dashboard_address=":0", **SMALL) as cluster, \
            Client(cluster) as client:
        opts = dict(minimum=1, maximum=4, interval="300ms", wait_count=3, cooldown=2)
        cluster.adapt(**opts)
        client.wait_for_workers(1, timeout=60)
        first = {w["name"] for w in client.scheduler_info()["workers"].values()}
        # calling adapt() again replaces the policy: the running worker is not retired
        cluster.adapt(**opts)

        def changed() -> set[str] | None:
            now = {w["name"] for w in client.scheduler_info()["workers"].values()}
            return None if now == first else (now or {"<no worker>"})

        try:  # over 2 s (~7 adapt rounds, wait_count 3) the workers must stay as they were
            seen = wait_for(changed, 2, interval=0.1)
        except AssertionError:
            seen = None
        assert seen is None, f"the running worker was replaced: {first} -> {seen}"

        slow = client.map(slow, range(40))
        wait_for(lambda: len(client.scheduler_info()["workers"]) >= 3, 60, interval=0.2,
                 message="adaptive growth under a queue of slow tasks")
        Event("release-slow", client=client).set()
        made = client.map(make, range(16), pure=False)
        assert client.gather(made) == [i * 10 for i in range(16)]
        assert client.gather(slow) == list(range(40))
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 90, interval=0.2,
                 message="adaptive shrink back to the minimum")
        # the results held by retired workers were moved, not lost and recomputed
        assert client.gather(made) == [i * 10 for i in range(16)]
        assert sorted(int(x) for x in marks.read_text().split()) == list(range(16))
        # no thrash: never more worker tasks than the maximum over the whole run
        assert len(cluster.worker_tasks()) <= 4
        assert cluster.mesos_status()["requested"] == 1


def test_get_logs_includes_a_killed_worker(master):
    with MesosCluster(master.master, n_workers=2, dashboard_address=":0", **SMALL) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        workers = client.scheduler_info()["workers"]
        addr, info = sorted(workers.items())[0]
        victim = info["name"]
        client.run(lambda: print("hello from the victim", flush=True), workers=[addr])
        r = master.cli("kill", victim)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: cluster.pool.tasks[victim].state == "TASK_KILLED", 30,
                 message="the worker task is killed")
        logs = cluster.get_logs()
        key = next(k for k in logs if k.startswith(victim + " "))
        assert "(killed)" in key
        assert "hello from the victim" in logs[key]
        assert "Start worker" in logs[key]  # its stderr too


SCRIPT_START = """
import json, os, sys
from distributed import Client
from mesos_nb import MesosCluster
cluster = MesosCluster(sys.argv[1], n_workers=2, name="nb-restart", cpus=0.5, mem=256,
                       scheduler_cpus=0.5, scheduler_mem=256)
client = Client(cluster)
client.wait_for_workers(2, timeout=90)
pids = client.run(os.getpid)
print(json.dumps({"scheduler": cluster.scheduler_address, "pids": {k: v for k, v in pids.items()},
                  "framework": cluster.pool.framework_id}))
sys.stdout.flush()
# the kernel goes away without closing the cluster
"""

SCRIPT_RECONNECT = """
import json, os, sys
from distributed import Client
from mesos_nb import MesosCluster
cluster = MesosCluster.from_name("nb-restart")
client = Client(cluster)
pids = client.run(os.getpid)
total = client.submit(sum, range(101)).result()
print(json.dumps({"scheduler": cluster.scheduler_address, "pids": pids, "total": total,
                  "framework": cluster.pool.framework_id, "workers": sorted(cluster.workers)}))
sys.stdout.flush()
client.close()
cluster.close()
"""


SCRIPT_STRANGER = """
import sys
from mesos_nb import MesosCluster
MesosCluster.adopt_timeout = 2
try:
    MesosCluster.from_name("nb-restart")
except RuntimeError as e:
    print(e)
    sys.exit(3)
"""


def test_from_name_reconnects_after_the_kernel_exits(master, tmp_path: Path):
    env = cli_env(HOME=str(tmp_path))

    def run(script: str) -> dict:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(script), master.master],
                           capture_output=True, text=True, env=env, cwd=str(REPO), timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = run(SCRIPT_START)
    record = tmp_path / ".mesos-nb" / "dask-clusters" / "nb-restart.json"
    assert json.loads(record.read_text())["framework_id"] == first["framework"]
    # the first process is gone; its workers kept running as tasks of the framework
    wait_for(lambda: len([t for t in framework_tasks(master.url, first["framework"]).values()
                          if t["state"] == "TASK_RUNNING"]) == 3, 60, message="scheduler + 2 workers running")

    # a worker that is no task of the framework is never adopted: a clear error once the master
    # has not reported its task within adopt_timeout (main adopted it after a silent fixed wait)
    stranger = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", first["scheduler"], "--name", "stranger",
         "--nthreads", "1", "--no-nanny", "--no-dashboard"],
        env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(first["scheduler"], timeout=60) as c:
            c.wait_for_workers(3, timeout=120)
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT_STRANGER), master.master],
                           capture_output=True, text=True, env=env, cwd=str(REPO), timeout=180)
        assert r.returncode == 3, r.stderr[-3000:]
        assert "did not report the tasks of its workers stranger within 2 s" in r.stdout
    finally:
        stranger.kill()
        stranger.wait(30)
    with Client(first["scheduler"], timeout=60) as c:
        wait_for(lambda: len(c.scheduler_info()["workers"]) == 2, 120, message="stranger gone")

    second = run(SCRIPT_RECONNECT)
    assert second["framework"] == first["framework"]
    assert second["scheduler"] == first["scheduler"]
    assert second["pids"] == first["pids"]  # the very same worker processes: never stopped
    assert second["total"] == 5050
    assert len(second["workers"]) == 2
    # close() in the second kernel ended it for good
    wait_for(lambda: not framework_tasks(master.url, first["framework"]), 60, message="tasks gone")
    assert not record.exists()
    assert not os.path.exists(str(record) + ".tmp")


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("IPython")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MESOS_NB_MASTER", raising=False)
    with mesos_shell() as shell:
        yield shell


def test_mesos_dask_magic_four_workers(ip, master):
    import dask.array as da

    ip.run_line_magic("mesos", f"connect {master.master}")
    client = ip.run_line_magic("mesos", "dask --workers 4 --cpus 0.5 --mem 256")
    assert isinstance(client, Client)
    names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
    assert len(names) == 4
    table = ip.run_line_magic("mesos", "tasks")
    assert all(n in repr(table) for n in names)
    assert da.arange(1000, chunks=100).sum().compute() == sum(range(1000))
    fid = client.cluster.pool.framework_id
    with pytest.raises(Exception, match="bad --adapt"):
        ip.run_line_magic("mesos", "dask --adapt 4:1")
    msg = ip.run_line_magic("mesos", "disconnect")
    assert "disconnected" in repr(msg)
    wait_for(lambda: not framework_tasks(master.url, fid), 30, message="dask tasks gone after disconnect")


def test_mesos_dask_magic_adaptive(ip, master):
    ip.run_line_magic("mesos", f"connect {master.master}")
    client = ip.run_line_magic("mesos", "dask --adapt 1:3 --cpus 0.5 --mem 256")
    assert len(client.scheduler_info()["workers"]) >= 1
    assert client.cluster._adaptive is not None and client.cluster._adaptive.maximum == 3


def test_dask_notebook(master, tmp_path):
    """notebooks/dask.ipynb in a real kernel (nbclient); its cells declare the outputs they expect."""
    pytest.importorskip("nbclient")
    from test_notebook_kernel import check_declared, kernel_env

    from mesos_nb.notebook.demo import execute_notebook

    nb, err = execute_notebook(REPO / "notebooks" / "dask.ipynb", master.master, cwd=str(tmp_path),
                               timeout=300, env=kernel_env(tmp_path / "home"))
    assert err is None, f"dask.ipynb failed: {err}"
    check_declared(nb, master.url)
