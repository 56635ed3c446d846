"""The %mesos magics in an in-process IPython shell against a real local cluster."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("IPython")
pytest.importorskip("ipywidgets")

from conftest import cluster_thread, free_port, get_json, mesos_shell, notebook_home, wait_for  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from mesos_nb.notebook import MesosNotebookError, RemoteTaskError  # noqa: E402

AGENT = "cpus:2;mem:1024;disk:1024"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with cluster_thread(tmp_path_factory.mktemp("nb-cluster"), 2, AGENT) as ct:
        yield ct


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return notebook_home(tmp_path / "home", monkeypatch)


@pytest.fixture
def ip():
    with mesos_shell() as shell:
        yield shell


@pytest.fixture
def connected(ip, cluster):
    ip.run_line_magic("mesos", f"connect {cluster.master_address}")
    return ip


def frameworks(cluster) -> list[dict]:
    return get_json(cluster.master_url + "/master/state")["frameworks"]


def magics(ip):
    return ip._mesos_nb_magics


# ============================================================================ connect & tables
def test_connect_returns_cluster_handle_and_registers_one_framework(ip, cluster, home):
    c = ip.run_line_magic("mesos", f"connect {cluster.master_address}")
    assert c.master_url == cluster.master_url
    assert c.agents == 2 and c.resources["cpus"] == 4 and c.resources["mem"] == 2048
    assert not c.embedded and not c.started
    assert f"Connected to the cluster at {cluster.master_url}: 2 agent(s), cpus 4, mem 2048" in repr(c)
    assert "<b>Connected</b>" in c._repr_html_()
    fws = [f for f in frameworks(cluster) if f["id"] == c.framework_id]
    assert len(fws) == 1 and fws[0]["name"] == "notebook"
    # connecting again reuses the same framework (one per kernel)
    again = ip.run_line_magic("mesos", "connect " + cluster.master_address)
    assert again.framework_id == c.framework_id
    assert not (home / ".mesos-nb" / "local.json").exists()


def test_connect_to_unreachable_master_is_one_sentence(ip):
    port = free_port()
    with pytest.raises(MesosNotebookError) as e:
        ip.run_line_magic("mesos", f"connect 127.0.0.1:{port}")
    assert str(e.value) == f"the master at http://127.0.0.1:{port} is unreachable (is it running?)"
    assert e.value._render_traceback_() == [f"MesosError: {e.value}"]
    with capture_output() as cap:
        ip.run_cell(f"%mesos connect 127.0.0.1:{port}")
    assert "unreachable" in cap.stdout and "Traceback" not in cap.stdout and "mesos_nb/" not in cap.stdout


def test_unreachable_configured_master_fails_instead_of_falling_back(ip, monkeypatch, home):
    """$MESOS_NB_MASTER set but not answering (a typo): a sentence, no embedded cluster started."""
    port = free_port()
    monkeypatch.setenv("MESOS_NB_MASTER", f"127.0.0.1:{port}")
    with pytest.raises(MesosNotebookError) as e:
        ip.run_line_magic("mesos", "connect")
    assert str(e.value).startswith(f"the master at http://127.0.0.1:{port} (from $MESOS_NB_MASTER) "
                                   "is unreachable")
    assert not (home / ".mesos-nb" / "local.json").exists()


def test_status_agents_frameworks_tables(connected, cluster):
    st = connected.run_line_magic("mesos", "status")
    rec = {r["FIELD"]: r["VALUE"] for r in st.records}
    assert rec["master"] == cluster.master_url
    assert rec["agents"] == "2 active / 2"
    assert rec["cpus used/total"] == "0/4"
    assert rec["this notebook"].startswith("framework ")
    assert "<table>" in st._repr_html_()

    ag = connected.run_line_magic("mesos", "agents")
    assert len(ag) == 2 and ag.column("CPUS") == ["0/2", "0/2"] and ag.column("MEM") == ["0/1024", "0/1024"]
    ids = {a.agent_id for a in cluster.cluster.agents}
    assert set(ag.column("ID")) == ids
    with capture_output() as cap:
        connected.run_cell("%mesos agents")
    assert "2 agent(s) of" in cap.stdout and all(i in cap.stdout for i in ids)

    fw = connected.run_line_magic("mesos", "frameworks")
    mine = [r for r in fw.records if r["NAME"] == "notebook (this notebook)"]
    assert len(mine) == 1 and mine[0]["ACTIVE"] == "yes"


def test_help_and_unknown_subcommands(ip):
    assert "%%mesos task" in repr(ip.run_line_magic("mesos", "help"))
    with pytest.raises(MesosNotebookError, match="unknown subcommand 'frobnicate'"):
        ip.run_line_magic("mesos", "frobnicate")
    with pytest.raises(MesosNotebookError, match="not a cell magic"):
        ip.run_cell_magic("mesos", "run", "print(1)")


def test_config_traits_set_task_defaults(connected):
    connected.run_line_magic("config", "MesosMagics.default_mem = 48.0")
    connected.run_line_magic("config", "MesosMagics.default_cpus = 0.25")
    try:
        t = connected.run_line_magic("mesos", "run -- true")
        assert t.requested == {"cpus": 0.25, "mem": 48.0}
        assert t.wait(60).state == "TASK_FINISHED"
    finally:
        connected.run_line_magic("config", "MesosMagics.default_mem = 256.0")
        connected.run_line_magic("config", "MesosMagics.default_cpus = 1.0")


# ============================================================================ run / logs / kill
def test_run_wait_logs_and_logs_magic(connected, cluster):
    t = connected.run_line_magic("mesos", "run --cpus 0.5 --mem 64 --name greet -- echo hello out && echo oops >&2")
    assert t.name == "greet" and t.requested == {"cpus": 0.5, "mem": 64.0}
    assert t.wait(60) is t
    assert t.state == "TASK_FINISHED" and t.done
    assert t.agent_id in {a.agent_id for a in cluster.cluster.agents}
    assert [s for _, s in t.history][0] == "PENDING" and "TASK_RUNNING" in [s for _, s in t.history]
    logs = t.logs()
    assert logs.stdout == "hello out\n" and logs.stderr == "oops\n"
    assert "TASK_FINISHED" in repr(t) and "echo hello out" in repr(t) and "TASK_FINISHED" in t._repr_html_()
    by_magic = connected.run_line_magic("mesos", f"logs {t.id[:-2]}")  # a unique prefix is enough
    assert by_magic.stdout == "hello out\n" and "hello out" in repr(by_magic)
    err = connected.run_line_magic("mesos", f"logs {t.id} --stderr")
    assert err.stdout == "oops\n"
    with capture_output() as cap:
        assert connected.run_line_magic("mesos", f"logs {t.id} --follow") is None
    assert cap.stdout == "hello out\n"


def test_kill_running_task(connected):
    t = connected.run_line_magic("mesos", "run --cpus 0.5 --mem 32 -- sleep 120")
    wait_for(lambda: t.state == "TASK_RUNNING", 60, message="task running")
    live = connected.run_line_magic("mesos", "tasks")
    assert t.id in live.column("ID")
    assert connected.run_line_magic("mesos", f"kill {t.id}") is t
    assert t.state == "TASK_KILLED"
    assert t.id not in connected.run_line_magic("mesos", "tasks").column("ID")
    everything = connected.run_line_magic("mesos", "tasks --all")
    assert {r["ID"]: r["STATE"] for r in everything.records}[t.id] == "TASK_KILLED"
    assert "already ended" in repr(connected.run_line_magic("mesos", f"kill {t.id}"))


def test_errors_are_one_sentence(connected):
    with pytest.raises(MesosNotebookError, match="no task 'no-such-task' is known to the master"):
        connected.run_line_magic("mesos", "logs no-such-task")
    with pytest.raises(MesosNotebookError, match="no task 'no-such-task'"):
        connected.run_line_magic("mesos", "kill no-such-task")
    with pytest.raises(MesosNotebookError, match=r"no agent could ever fit cpus 64, mem 32: the largest agent \(127.0.0.1\) has cpus 2, mem 1024"):
        connected.run_line_magic("mesos", "run --cpus 64 --mem 32 -- true")
    with pytest.raises(MesosNotebookError, match="no agent has the attributes rack=zz"):
        connected.run_line_magic("mesos", "run --cpus 0.1 --mem 32 --attr rack=zz -- true")
    with pytest.raises(MesosNotebookError, match="no command given"):
        connected.run_line_magic("mesos", "run --cpus 1 --")
    with capture_output() as cap:
        connected.run_cell("%mesos logs no-such-task")
    assert cap.stdout.strip() == "MesosError: no task 'no-such-task' is known to the master"


def test_pending_task_says_why_it_waits(connected):
    big = [connected.run_line_magic("mesos", "run --cpus 1.5 --mem 64 -- sleep 120") for _ in range(2)]
    try:
        for b in big:
            wait_for(lambda b=b: b.state == "TASK_RUNNING", 60, message="sleeper running")
        t = connected.run_line_magic("mesos", "run --cpus 1 --mem 64 -- true")
        wait_for(lambda: t.waiting and t.waiting.startswith("no offer fits"), 30,
                 message=f"a reason for waiting (last: {t.waiting})")
        assert t.state == "PENDING"
        assert "requested cpus 1, mem 64; the largest of" in t.waiting and "has cpus 0.5, mem" in t.waiting
        assert "waiting: no offer fits" in repr(t) and "no offer fits" in t._repr_html_()
        pending = [r for r in connected.run_line_magic("mesos", "tasks").records if r["ID"] == t.id]
        assert pending and pending[0]["STATE"] == "PENDING"
        with pytest.raises(MesosNotebookError, match=f"task {t.id} is still PENDING after 0.2 s"):
            t.wait(0.2)
        connected.run_line_magic("mesos", f"kill {t.id}")
        assert t.state == "TASK_KILLED" and t.message == "killed before it was launched"
    finally:
        for b in big:
            b.kill()


# ============================================================================ %%mesos task
def test_cell_task_returns_value_computed_on_an_agent(connected, cluster):
    cell = ("import os, sys\n"
            "print('hello from the agent')\n"
            "print('to stderr', file=sys.stderr)\n"
            "x = 6 * 7\n"
            "(x, os.getcwd(), os.getpid(), os.environ['MESOS_SANDBOX'], os.environ['MESOS_AGENT_ID'])")
    with capture_output() as cap:
        value = connected.run_cell_magic("mesos", "task --cpus 0.5 --mem 64", cell)
    x, cwd, pid, sandbox, agent_id = value
    task = magics(connected).framework.last_cell_task
    assert x == 42
    assert pid != os.getpid() and pid == task.remote_pid
    assert cwd == sandbox == task.sandbox_dir
    assert cwd.startswith(cluster.cluster.work_dir) and f"/executors/{task.executor_id}/" in cwd
    assert agent_id == task.agent_id and task.state == "TASK_FINISHED"
    assert cap.stdout.endswith("hello from the agent\n")  # after "starting a warm Python executor"
    assert cap.stderr == "to stderr\n"


def test_cell_task_without_expression_returns_none(connected):
    assert connected.run_cell_magic("mesos", "task --cpus 0.5 --mem 64", "y = 1\n") is None


def test_cell_task_exception_carries_remote_traceback(connected):
    cell = "def f(n):\n    return 10 / n\n\nf(0)\n"
    with pytest.raises(RemoteTaskError) as e:
        connected.run_cell_magic("mesos", "task --cpus 0.5 --mem 64", cell)
    err = e.value
    assert err.ename == "ZeroDivisionError" and err.evalue == "division by zero"
    tb = err.remote_traceback
    assert 'File "<mesos cell>", line 4, in <module>' in tb and 'line 2, in f' in tb
    assert "return 10 / n" in tb and "<string>" not in tb
    lines = err._render_traceback_()
    assert lines[0].startswith(f"Remote traceback (task {err.task_id} on 127.0.0.1")
    assert lines[-1] == "ZeroDivisionError: division by zero"
    with capture_output() as cap:
        connected.run_cell("%%mesos task --cpus 0.5 --mem 64\nraise KeyError('missing')\n")
    assert "Remote traceback" in cap.stdout and "KeyError: 'missing'" in cap.stdout
    assert "mesos_nb/" not in cap.stdout


# ============================================================================ offers
def test_offer_browser_launch_and_decline_buttons(connected, cluster):
    browser = connected.run_line_magic("mesos", "offers --wait 30")
    try:
        wait_for(lambda: len({o.agent_id.value for o in browser.offers}) == 2, 30,
                 message="offers from both agents")
        assert "2 offer(s) held" in repr(browser) or "offer(s) held" in repr(browser)
        bundle = browser._repr_mimebundle_()
        assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(bundle)
        chosen, other = browser.offers[0], browser.offers[1]
        assert chosen.agent_id.value != other.agent_id.value

        browser.command.value = "echo launched by the button"
        launch, _ = browser.buttons[chosen.id.value]
        launch.click()
        assert len(browser.launched) == 1
        task = browser.launched[0]
        assert task.wait(60).state == "TASK_FINISHED"
        assert task.agent_id == chosen.agent_id.value
        assert task.logs().stdout == "launched by the button\n"

        oid, agent = other.id.value, other.agent_id.value
        # Decline refuses the agent's resources for 30 s by default (1 s made the row come back
        # at once, as if the click did nothing); shortened here to keep the test quick
        assert browser.refuse_seconds == 30
        browser.refuse_seconds = 4
        _, decline = browser.buttons[oid]
        declined_at = time.monotonic()
        decline.click()
        assert oid not in [o.id.value for o in browser.offers]
        assert oid not in magics(connected).framework.held
        assert f"declined offer {oid}" in browser.status.value and "for 4 s" in browser.status.value
        # the declined resources went back to the master: offered again (a new offer id), but
        # not before the refuse period
        wait_for(lambda: any(o.agent_id.value == agent and o.id.value != oid for o in browser.offers), 30,
                 message="the declined agent's resources offered again")
        assert time.monotonic() - declined_at >= 3.5
    finally:
        browser.close()
    assert browser.closed and magics(connected).framework.held == {}


# ============================================================================ lifecycle
def test_disconnect_tears_the_framework_down(connected, cluster):
    fid = magics(connected).framework.framework_id
    t = connected.run_line_magic("mesos", "run --cpus 0.5 --mem 32 -- sleep 120")
    wait_for(lambda: t.state == "TASK_RUNNING", 60, message="task running")
    msg = connected.run_line_magic("mesos", "disconnect")
    assert repr(msg) == f"disconnected: framework {fid} torn down on {cluster.master_url}; 1 running task(s) killed"
    wait_for(lambda: fid not in [f["id"] for f in frameworks(cluster)], 30, message="framework gone")
    assert magics(connected).framework is None
    assert repr(connected.run_line_magic("mesos", "disconnect")) == "not connected: nothing to disconnect"


def test_kernel_restart_reconnects_to_the_same_framework(ip, cluster, home, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/analysis.ipynb")
    first = ip.run_line_magic("mesos", f"connect {cluster.master_address}")
    t = ip.run_line_magic("mesos", "run --cpus 0.5 --mem 32 --name survivor -- sleep 120")
    wait_for(lambda: t.state == "TASK_RUNNING", 60, message="task running")
    saved = json.loads((home / ".mesos-nb" / "notebook-frameworks.json").read_text())
    assert saved[f"{cluster.master_url} /work/analysis.ipynb"]["framework_id"] == first.framework_id
    # the kernel goes away without %mesos disconnect (a restart): the framework fails over
    ip.run_line_magic("unload_ext", "mesos_nb")
    ip.run_line_magic("load_ext", "mesos_nb")
    again = ip.run_line_magic("mesos", f"connect {cluster.master_address}")
    assert again.framework_id == first.framework_id and again.reconnected
    assert any("reconnected to framework" in n for n in again.notes)
    fw = magics(ip).framework
    wait_for(lambda: t.id in fw.tasks and fw.tasks[t.id].state == "TASK_RUNNING", 30,
             message="the old task learnt by reconciliation")
    assert t.id in ip.run_line_magic("mesos", "tasks").column("ID")
    ip.run_line_magic("mesos", f"kill {t.id}")
    assert fw.tasks[t.id].state == "TASK_KILLED"


def test_connect_without_master_starts_embedded_cluster(ip, home, monkeypatch):
    from mesos_nb.notebook import embedded

    port = free_port()
    ip.run_line_magic("config", f"MesosMagics.local_port = {port}")
    ip.run_line_magic("config", f"MesosMagics.local_resources = '{AGENT}'")
    try:
        c = ip.run_line_magic("mesos", "connect")
        assert c.embedded and c.started and c.master_url == f"http://127.0.0.1:{port}"
        assert "started an embedded local cluster in this kernel (2 agents)" in repr(c)
        info = json.loads((home / ".mesos-nb" / "local.json").read_text())
        assert info["pid"] == os.getpid() and info["url"] == c.master_url
        # %mesos local now finds it instead of starting another
        again = ip.run_line_magic("mesos", "local")
        assert again.master_url == c.master_url and not again.started
        assert "already running" in repr(again)
    finally:
        ip.run_line_magic("mesos", "disconnect")
        embedded.stop_embedded()
        ip.run_line_magic("config", "MesosMagics.local_port = 5050")
        ip.run_line_magic("config", "MesosMagics.local_resources = ''")
    assert not (home / ".mesos-nb" / "local.json").exists()


def test_dashboard_without_bokeh_is_one_sentence(connected, monkeypatch):
    monkeypatch.setitem(sys.modules, "bokeh", None)  # as if bokeh were not installed
    with pytest.raises(MesosNotebookError, match=r"needs bokeh and jupyter_bokeh .*pip install 'mesos-nb\[notebook\]'"):
        connected.run_line_magic("mesos", "dashboard")



@pytest.fixture
def gpu_cluster(tmp_path):
    """One agent with a GPU, on a master that filters GPU agents as a shared cluster's does."""
    from mesos_nb.notebook.embedded import ClusterThread

    ct = ClusterThread(agents=1, port=0, agent_resources="cpus:2;mem:1024;disk:1024;gpus:1",
                       work_dir=str(tmp_path / "gpu-cluster"), master_options={"filter_gpu_resources": True})
    ct.start()
    try:
        yield ct
    finally:
        ct.stop()


def test_gpu_task_runs_on_a_gpu_agent_through_a_gpu_aware_framework(ip, gpu_cluster):
    """Only frameworks that declare GPU_RESOURCES are offered GPU agents (as in Mesos); the
    notebook's own framework does not, so ``--gpus`` goes through a second one. Before, the
    task waited forever for an offer that could never come."""
    ip.run_line_magic("mesos", f"connect {gpu_cluster.master_address}")
    t = ip.run_line_magic("mesos", "run --cpus 0.1 --mem 32 --gpus 1 -- echo gpus=$CUDA_VISIBLE_DEVICES")
    assert t.wait(60).state == "TASK_FINISHED" and t.logs().stdout.startswith("gpus=")
    names = {f["name"]: f for f in get_json(gpu_cluster.master_url + "/master/state")["frameworks"]}
    gpu_fw = next(f for n, f in names.items() if n.endswith("(gpus)"))
    assert "GPU_RESOURCES" in gpu_fw["capabilities"] and len(gpu_fw["completed_tasks"]) == 1
    ip.run_line_magic("mesos", "disconnect")


def test_embedded_cluster_offers_its_gpu_agent_to_the_notebooks_cpu_tasks(ip, tmp_path):
    """A workstation's local cluster has one agent, with the GPU: the notebook's plain tasks
    must run there too (the embedded master does not filter GPU agents)."""
    with cluster_thread(tmp_path / "gpu-local", 1, "cpus:2;mem:1024;disk:1024;gpus:1") as ct:
        ip.run_line_magic("mesos", f"connect {ct.master_address}")
        plain = ip.run_line_magic("mesos", "run --cpus 0.1 --mem 32 -- true")
        assert plain.wait(60).state == "TASK_FINISHED"
        ip.run_line_magic("mesos", "disconnect")
