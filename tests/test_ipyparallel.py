"""ipyparallel's `mesos` launchers: controller and engines as tasks of a real `mesos-nb local`."""

from __future__ import annotations

import pytest

pytest.importorskip("ipyparallel", reason="the ipyparallel extra is not installed (pip install -e '.[ipyparallel]')")

from conftest import REPO, get_json, start_cluster_process, stop_cluster_process, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory):
    cp = start_cluster_process(tmp_path_factory.mktemp("ipp-cluster"), resources="cpus:2;mem:2048;disk:1024")
    try:
        yield cp
    finally:
        stop_cluster_process(cp)


def running_tasks(url: str, framework_name_prefix: str) -> dict[str, dict]:
    out = {}
    for fw in get_json(url + "/master/state").get("frameworks", []):
        if fw["name"].startswith(framework_name_prefix):
            for t in fw.get("tasks", []):
                if t["state"] == "TASK_RUNNING":
                    out[t["id"]] = t
    return out


def test_launchers_are_registered_entry_points():
    from ipyparallel.cluster.cluster import Cluster

    from mesos_nb.frameworks.ipyparallel import MesosControllerLauncher, MesosEngineSetLauncher

    c = Cluster(controller="mesos", engines="mesos")
    assert c.controller_launcher_class is MesosControllerLauncher
    assert c.engine_launcher_class is MesosEngineSetLauncher


def test_px_runs_on_four_engine_tasks(master, monkeypatch, tmp_path):
    import ipyparallel as ipp
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("MESOS_NB_MASTER", master.master)
    cfg = Config()
    cfg.MesosControllerLauncher.cpus = 0.5
    cfg.MesosEngineSetLauncher.cpus = 0.5
    cfg.MesosEngineSetLauncher.mem = 256
    shell = InteractiveShell.instance()
    cluster = ipp.Cluster(controller="mesos", engines="mesos", n=4, config=cfg, delay=0,
                          profile_dir=str(tmp_path / "profile"), engine_timeout=120)
    try:
        rc = cluster.start_and_connect_sync(activate=True)
        assert len(rc.ids) == 4
        result = shell.run_cell("%px import os; pid = os.getpid(); tid = os.environ['MESOS_TASK_ID']")
        assert result.success, result.error_in_exec
        pids = rc[:]["pid"]
        tids = rc[:]["tid"]
        assert len(set(pids)) == 4
        engines = running_tasks(master.url, "ipyparallel-engines-")
        assert set(tids) == set(engines)  # every engine is a running cluster task
        assert len(running_tasks(master.url, "ipyparallel-controller-")) == 1
        rc.close()
    finally:
        cluster.stop_cluster_sync()
    wait_for(lambda: not running_tasks(master.url, "ipyparallel-"), 30, message="tasks gone after stop")


def test_mesos_ipyparallel_magic(master, monkeypatch, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / ".ipython"))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "mesos_nb")
    try:
        ip.run_line_magic("mesos", f"connect {master.master}")
        rc = ip.run_line_magic("mesos", "ipyparallel --engines 2 --cpus 0.5 --mem 256")
        assert len(rc.ids) == 2
        assert ip.run_cell("%px import os; tid = os.environ['MESOS_TASK_ID']").success
        assert set(rc[:]["tid"]) == set(running_tasks(master.url, "ipyparallel-engines-"))
        assert "disconnected" in repr(ip.run_line_magic("mesos", "disconnect"))
    finally:
        m = ip._mesos_nb_magics
        if m is not None and m.framework is not None:
            m.disconnect("")
        ip.run_line_magic("unload_ext", "mesos_nb")
    wait_for(lambda: not running_tasks(master.url, "ipyparallel-"), 30, message="tasks gone after disconnect")


def test_ipyparallel_notebook(master, tmp_path):
    """notebooks/ipyparallel.ipynb in a real kernel (nbclient); its cells declare the outputs they expect."""
    pytest.importorskip("nbclient")
    from test_notebook_kernel import check_declared, kernel_env

    from mesos_nb.notebook.demo import execute_notebook

    nb, err = execute_notebook(REPO / "notebooks" / "ipyparallel.ipynb", master.master, cwd=str(tmp_path),
                               timeout=300, env=kernel_env(tmp_path / "home"))
    assert err is None, f"ipyparallel.ipynb failed: {err}"
    check_declared(nb, master.url)
