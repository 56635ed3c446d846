"""Warm executors for %%mesos task and Cluster.submit, in an in-process IPython shell against a
real local cluster (real agent, real executor process, real forks and signals)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

pytest.importorskip("IPython")

from conftest import cluster_thread, get_json, mesos_shell, notebook_home, wait_for  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from mesos_nb.notebook import MesosNotebookError, RemoteTaskError  # noqa: E402
from mesos_nb.notebook.remote import run_warm_cell  # noqa: E402

AGENT = "cpus:2;mem:1024;disk:1024"
CELL = "task --cpus 0.1 --mem 64"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with cluster_thread(tmp_path_factory.mktemp("warm-cluster"), 2, AGENT) as ct:
        yield ct


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return notebook_home(tmp_path / "home", monkeypatch)


@pytest.fixture
def ip(cluster):
    with mesos_shell(connect=cluster.master_address) as shell:
        yield shell


def fw(ip):
    return ip._mesos_nb_magics.framework


def cell(ip, source: str, opts: str = CELL):
    return ip.run_cell_magic("mesos", opts, source)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def executors_on_master(cluster, framework_id: str) -> list[str]:
    state = get_json(cluster.master_url + "/master/state")
    return [e["executor_id"] for f in state["frameworks"] if f["id"] == framework_id
            for e in f.get("executors", [])]


# ============================================================================ reuse and isolation
def test_cells_share_one_warm_executor_but_never_each_others_globals(ip):
    src = "import os\nsecret = 41\nprint('set it')\n(os.getppid(), os.getpid(), os.environ['MESOS_TASK_ID'])"
    with capture_output() as cap:
        ppid1, pid1, tid1 = cell(ip, src)
    first = fw(ip).last_cell_task
    # outside a kernel the first cell says it starts the executor (in a kernel: a live line)
    assert "starting a warm Python executor on 127.0.0.1 (the first cell pays its start)" in cap.stdout
    assert cap.stdout.endswith("set it\n") and first.fresh_executor and first.state == "TASK_FINISHED"
    with capture_output() as cap:
        cell(ip, "print('quick')")
    assert cap.stdout == "quick\n"  # a warm cell draws no progress
    assert tid1 == first.id and first.executor_id.startswith("pyexec-")
    seen, (ppid2, pid2) = cell(ip, "import os\n'secret' in globals(), (os.getppid(), os.getpid())")
    second = fw(ip).last_cell_task
    assert seen is False  # the second cell does not see the first one's global
    assert second.executor_id == first.executor_id and not second.fresh_executor
    assert ppid2 == ppid1 and pid2 != pid1 != ppid1  # same warm parent, a new child per cell
    # another shape gets its own executor
    cell(ip, "1", "task --cpus 0.2 --mem 64")
    assert fw(ip).last_cell_task.executor_id != first.executor_id


def test_output_value_and_remote_traceback(ip):
    cell(ip, "0")  # the executor is started (and says so) by this one
    src = ("import sys\nprint('out line')\nprint('err line', file=sys.stderr)\n"
           "class Point:\n    pass\np = Point()\np.x = 6 * 7\np")
    with capture_output() as cap:
        value = cell(ip, src)
    assert value.x == 42 and type(value).__name__ == "Point"  # a class defined in the cell travels
    assert cap.stdout == "out line\n" and cap.stderr == "err line\n"
    with pytest.raises(RemoteTaskError) as e:
        cell(ip, "def f(n):\n    return 10 / n\n\nf(0)\n")
    err = e.value
    assert err.ename == "ZeroDivisionError" and err.evalue == "division by zero"
    tb = err.remote_traceback
    assert 'File "<mesos cell>", line 4, in <module>' in tb and "line 2, in f" in tb
    assert "return 10 / n" in tb and "mesos_nb/" not in tb
    assert fw(ip).last_cell_task.state == "TASK_FAILED"


def test_a_cell_past_its_mem_is_killed_and_the_executor_keeps_running(ip):
    ppid = cell(ip, "import os\nos.getppid()")
    ex_id = fw(ip).last_cell_task.executor_id
    with pytest.raises(MesosNotebookError, match="more memory than its --mem") as e:
        cell(ip, "b = bytearray(400 * 1024 * 1024)\nlen(b)")
    t = fw(ip).last_cell_task
    assert t.state == "TASK_FAILED" and t.reason == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert "Memory limit exceeded: Requested: 64MB" in str(e.value)
    assert cell(ip, "import os\nos.getppid()") == ppid  # the next cell runs in the same executor
    assert fw(ip).last_cell_task.executor_id == ex_id and alive(ppid)


def test_killing_the_executor_mid_cell_fails_that_cell_and_the_next_starts_a_fresh_one(ip, cluster):
    ppid = cell(ip, "import os\nos.getppid()")
    old = fw(ip).last_cell_task.executor
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = run_warm_cell(fw(ip), "import time\ntime.sleep(120)", cpus=0.1, mem=64,
                                             progress=False)
        except BaseException as ex:  # noqa: BLE001 - the test looks at it
            outcome["error"] = ex

    th = threading.Thread(target=run)
    th.start()
    wait_for(lambda: fw(ip).last_cell_task.state == "TASK_RUNNING", 30, message="the sleeping cell runs")
    os.kill(ppid, signal.SIGKILL)
    th.join(60)
    assert not th.is_alive()
    err = outcome.get("error")
    assert isinstance(err, MesosNotebookError), outcome
    assert f"the warm executor {old.executor_id}" in str(err) and "died while running" in str(err)
    assert "the next cell starts a fresh executor" in str(err)
    with capture_output():
        new_ppid = cell(ip, "import os\nos.getppid()")
    t = fw(ip).last_cell_task
    assert new_ppid != ppid and t.fresh_executor and t.executor_id != old.executor_id


# ============================================================================ Python API
def test_submit_returns_a_future_of_the_value_and_raises_the_remote_exception(ip):
    cluster_handle = ip._mesos_nb_magics.cluster

    def square_plus(x, plus=0):
        return x * x + plus

    ip.run_cell("def divide(x):\n    return 1 / x\n")  # defined in a notebook cell
    divide = ip.user_ns["divide"]
    fut = cluster_handle.submit(square_plus, 12, plus=1, cpus=0.1, mem=64)
    assert fut.result(60) == 145
    assert fut.task.state == "TASK_FINISHED" and fut.task.executor_id.startswith("pyexec-")
    bad = cluster_handle.submit(divide, 0, cpus=0.1, mem=64)
    with pytest.raises(ZeroDivisionError) as e:
        bad.result(60)
    cause = e.value.__cause__
    assert isinstance(cause, RemoteTaskError) and "in divide" in cause.remote_traceback
    assert "return 1 / x" in cause.remote_traceback and "mesos_nb/" not in cause.remote_traceback


# ============================================================================ options and lifecycle
def test_preload_imports_modules_before_the_cell(ip):
    assert cell(ip, "import sys\n'colorsys' in sys.modules", CELL + " --preload colorsys,json") is True
    assert cell(ip, "import sys\n'colorsys' in sys.modules") is False  # another executor, no preload
    with capture_output() as cap:
        assert cell(ip, "7", CELL + " --preload no_such_module_xyz") == 7
    assert "preloading no_such_module_xyz failed" in cap.stderr
    with pytest.raises(MesosNotebookError, match="is not one"):
        cell(ip, "1", CELL + " --preload 'os;rm'")


def test_fresh_runs_the_cell_in_a_new_process(ip):
    cwd = cell(ip, "import os\nos.getcwd()", CELL + " --fresh")
    t = fw(ip).last_cell_task
    assert f"/executors/{t.id}/" in cwd and not hasattr(t, "executor_id")


def used_on_master(cluster, framework_id: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(cpus, mem) in use by the framework, and on its executor's agent, in /master/state."""
    state = get_json(cluster.master_url + "/master/state")
    f = next(f for f in state["frameworks"] if f["id"] == framework_id)
    agent_ids = {e["slave_id"] for e in f.get("executors", [])}
    on_agents = [s["used_resources"] for s in state["slaves"] if s["id"] in agent_ids]
    a = on_agents[0] if on_agents else {"cpus": 0.0, "mem": 0.0}
    return (f["used_resources"]["cpus"], f["used_resources"]["mem"]), (a["cpus"], a["mem"])


def test_after_a_cell_the_master_counts_only_the_warm_executors_own_resources(ip, cluster):
    """The cell's resources come back when it ends; the executor's stay while it waits for
    the next cell (idle timeout 600 s here: no time window for the check to fall out of)."""
    cell(ip, "1", "task --cpus 0.3 --mem 64")
    fid = fw(ip).framework_id
    # the cell's TASK_FINISHED may still be on its way to the master when the result is shown
    wait_for(lambda: used_on_master(cluster, fid) == ((0.5, 128.0), (0.5, 128.0)), 30,
             message=lambda: "the master counts only the executor's own resources (0.5 cpus, 128 MB); "
                             f"last seen (framework, agent): {used_on_master(cluster, fid)}")


def test_an_idle_executor_ends_and_gives_its_resources_back(ip, cluster):
    ip._mesos_nb_magics.warm_idle_timeout = 3.0
    ppid = cell(ip, "import os\nos.getppid()", "task --cpus 0.3 --mem 64")
    ex = fw(ip).last_cell_task.executor
    fid = fw(ip).framework_id
    wait_for(lambda: not alive(ppid), 30, message="the idle executor exits")
    wait_for(lambda: ex.state == "dead", 30, message="the framework learns it ended")
    wait_for(lambda: ex.executor_id not in executors_on_master(cluster, fid), 30,
             message="the master forgets the executor")
    assert used_on_master(cluster, fid)[0] == (0.0, 0.0)  # ... and gives its resources back
    assert cell(ip, "import os\nos.getppid()", "task --cpus 0.3 --mem 64") != ppid
    assert fw(ip).last_cell_task.fresh_executor


def test_disconnect_ends_the_warm_executor(ip):
    ppid = cell(ip, "import os\nos.getppid()")
    ip.run_line_magic("mesos", "disconnect")
    wait_for(lambda: not alive(ppid), 30, message="the executor ends with the framework")


def test_warm_cells_run_where_the_agent_authenticates_executors(tmp_path_factory):
    """With --authenticate-http-executors the executor must present its container's token;
    the token is the executor's and does not reach the cells."""
    with cluster_thread(tmp_path_factory.mktemp("auth-exec"), 1, AGENT, {"authenticate_http_executors": True}) as ct, \
            mesos_shell(connect=ct.master_address) as shell:
        with capture_output():
            assert cell(shell, "6 * 7") == 42
        assert cell(shell, "import os\n'MESOS_EXECUTOR_AUTHENTICATION_TOKEN' in os.environ") is False
        assert cell(shell, "import os\n'MESOS_EXECUTOR_ID' in os.environ") is True


def test_the_wait_notice_uses_the_tasks_wall_clock_age():
    """Both paths say why a cell waits once it has waited 3 s (then every 30 s); the fresh
    path compared wall-clock creation with the monotonic clock and never said it."""
    import time

    from mesos_nb.notebook.remote import _follow, _WaitNotice

    class Waiting:  # what _follow reads of a TaskHandle
        phase, done, id, state = "requested", False, "cell-x", "TASK_STAGING"
        created = time.time() - 5.0
        cond = threading.Condition()

    task, ages, notice = Waiting(), [], _WaitNotice()

    def step(age: float) -> None:
        ages.append((age, notice.due(task, age)))
        task.done = True

    class Fw:
        def refresh_waiting(self) -> None:
            pass

    _follow(Fw(), task, timeout=None, poll=0.01, step=step)
    assert len(ages) == 1 and 5.0 <= ages[0][0] < 60 and ages[0][1] is True
    assert notice.due(task, 6.0) is False and notice.due(task, 34.0) is True
