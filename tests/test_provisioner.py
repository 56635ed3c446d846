"""``mesos-provisioner``: a jupyter_client ``KernelManager`` runs its kernel as a cluster task.

A real ``mesos-nb local`` cluster (subprocess), the real provisioner found through its entry
point (see provisioner_support), a real ipykernel in an agent's sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import pytest
from conftest import (
    REPO,
    SMALL_AGENT,
    get_json,
    start_cluster_process,
    stop_cluster_process,
    wait_for,
)
from provisioner_support import install_kernels, register_provisioner

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from mesos_nb.frameworks.provisioner import pools  # noqa: E402
from mesos_nb.frameworks.provisioner.request import (  # noqa: E402
    KernelRequestError,
    kernel_request,
    never_fits,
)

SMALL = "mesos-nb-cluster-small"


def agent_resources(offset: int = 0) -> str:
    """One small agent whose ports are off the default 31000-32000, which the test clusters of
    other suites on this machine also hand out (their tasks may hold them)."""
    base = 20000 + (os.getpid() % 45) * 200 + offset
    return f"{SMALL_AGENT};ports:[{base}-{base + 99}]"


@pytest.fixture(scope="module")
def kcluster(tmp_path_factory: pytest.TempPathFactory):
    cp = start_cluster_process(tmp_path_factory.mktemp("prov-cluster"), agents=1,
                               resources=agent_resources())
    try:
        yield cp
    finally:
        pools.close_all()
        stop_cluster_process(cp)


@pytest.fixture
def kernel_env(kcluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KernelSpecManager:
    register_provisioner(tmp_path / "eps")
    kdir = install_kernels(tmp_path / "prefix")
    monkeypatch.setenv("MESOS_NB_MASTER", kcluster.master)
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("KERNEL_CPUS", "KERNEL_MEM", "KERNEL_GPUS", "KERNEL_ROLE", "KERNEL_ATTRIBUTES",
                "KERNEL_LAUNCH_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    return KernelSpecManager(kernel_dirs=[str(kdir)])


def live_tasks(cp) -> dict[str, str]:
    return {t["id"]: t["state"] for fw in cp.state()["frameworks"] for t in fw["tasks"]}


async def run_cell(kc, code: str, timeout: float = 60) -> tuple[dict, str]:
    """Execute ``code``; the execute_reply content and everything printed on stdout."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    reply = await kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return reply["content"], "".join(out)


async def test_kernel_runs_as_a_task_interrupt_restart_shutdown(kcluster, kernel_env):
    km = AsyncKernelManager(kernel_name=SMALL, kernel_spec_manager=kernel_env)
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        tid = km.provisioner.task_id
        assert tid and tid.startswith("kernel-")
        # the code runs in the task's sandbox on an agent of the cluster, and sees the master
        content, out = await run_cell(kc, "import os; print(os.getcwd()); "
                                          "print(os.environ['MESOS_SANDBOX']); "
                                          "print(os.environ['MESOS_NB_MASTER']); "
                                          "print('KEY' + str('MESOS_NB_KERNEL_KEY' in os.environ))")
        assert content["status"] == "ok", content
        cwd, sandbox, master, key = out.split()
        assert cwd == sandbox and cwd.startswith(str(kcluster.work_dir / "cluster")), out
        assert tid in cwd
        assert master.endswith(kcluster.master) and key == "KEYFalse"
        # `mesos-nb tasks` lists it
        listing = kcluster.cli("tasks")
        assert listing.returncode == 0 and tid in listing.stdout, listing.stdout + listing.stderr
        assert live_tasks(kcluster)[tid] == "TASK_RUNNING"
        # `%mesos` inside the remote kernel talks to the same master: it lists this very task
        content, out = await run_cell(kc, "%load_ext mesos_nb\n_c = %mesos connect\n_t = %mesos tasks\n"
                                          "print(' '.join(_t.column('ID')))\n%mesos disconnect")
        assert content["status"] == "ok" and tid in out.split(), (content, out)
        # and its sandbox log is the one the web UI's log viewer reads (through the master)
        row = next(r for r in get_json(f"{kcluster.url}/master/ui/tasks?q={tid}")["rows"] if r["id"] == tid)
        log = get_json(f"{kcluster.url}/master/files/read?agent_id={row['agent_id']}"
                       f"&path={row['sandbox']}/stdout&offset=0&length=65536")
        assert "launch: kernel on" in log["data"], log

        # interrupting `while True` raises KeyboardInterrupt in the remote kernel
        msg_id = kc.execute("import time\nprint('looping', flush=True)\nwhile True:\n"
                            "    time.sleep(0.01)", stop_on_error=False)
        await wait_printed(kc, "looping")
        await km.interrupt_kernel()
        reply = await kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = await kc.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        content, out = await run_cell(kc, "print(6 * 7)")
        assert content["status"] == "ok" and out.strip() == "42", (content, out)

        # restart: a fresh task (with the ports of its own offer: a client reconnects, as
        # jupyter_server does for port-changing restarts), the old one ends
        await km.restart_kernel()
        tid2 = km.provisioner.task_id
        assert tid2 and tid2 != tid
        kc.stop_channels()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=90)
        content, out = await run_cell(kc, "print(os.environ.get('MESOS_TASK_ID', 'x') "
                                          "if 'os' in dir() else 'fresh')")
        assert out.strip() == "fresh", out
        wait_for(lambda: tid not in live_tasks(kcluster), 30, message="old kernel task ended")
        assert live_tasks(kcluster)[tid2] == "TASK_RUNNING"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel()
    # shutdown leaves no task of the kernel running
    wait_for(lambda: tid2 not in live_tasks(kcluster), 30, message="kernel task ended")
    assert not any(t.startswith("kernel-") for t in live_tasks(kcluster))


async def wait_printed(kc, text: str, timeout: float = 30) -> None:
    """Until the running cell printed ``text`` (so it is inside its loop, not about to start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        msg = await kc.get_iopub_msg(timeout=timeout)
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return
    raise AssertionError(f"the cell never printed {text!r}")


async def test_a_kernel_no_agent_can_hold_fails_at_once(kcluster, kernel_env, monkeypatch):
    monkeypatch.setenv("KERNEL_CPUS", "64")
    km = AsyncKernelManager(kernel_name=SMALL, kernel_spec_manager=kernel_env)
    with pytest.raises(RuntimeError, match="no agent of the cluster can ever run this kernel: "
                                           "it needs cpus:64 mem:512 ports:5.*largest has cpus:2"):
        await asyncio.wait_for(km.start_kernel(), 20)
    assert not any(t.startswith("kernel-") for t in live_tasks(kcluster))


async def test_a_launch_that_times_out_says_what_it_waited_for(kcluster, kernel_env, monkeypatch):
    from mesos_nb.scheduler.pool import TaskPool, TaskSpec

    # the agent has mem 1024: a 600 MB task leaves no room for a 512 MB kernel
    holder = TaskPool(kcluster.master, "holder")
    holder.start()
    try:
        held = [holder.submit(TaskSpec("sleep 600", cpus=0.1, mem=600, name="hold"))]
        wait_for(lambda: all(h.phase == "running" for h in held), 30, message="holders running")
        monkeypatch.setenv("KERNEL_LAUNCH_TIMEOUT", "3")
        km = AsyncKernelManager(kernel_name=SMALL, kernel_spec_manager=kernel_env)
        with pytest.raises(TimeoutError, match=r"waited 3 s for an offer with cpus:1 mem:512 "
                                               r"ports:5 and got none that fits \(.+\)"):
            await km.start_kernel()
    finally:
        holder.stop(teardown=True)
    wait_for(lambda: not any(t.startswith(("kernel-", "hold")) for t in live_tasks(kcluster)), 30,
             message="no kernel task left")


def test_kernel_request_reads_config_and_overrides():
    r = kernel_request({"cpus": 1, "mem": 512}, {"KERNEL_MEM": "2048", "KERNEL_GPUS": "1",
                                                 "KERNEL_ATTRIBUTES": "rack=r1,zone=a",
                                                 "KERNEL_ROLE": "ml"})
    assert (r.cpus, r.mem, r.gpus, r.role) == (1, 2048, 1, "ml")
    assert dict(r.attributes) == {"rack": "r1", "zone": "a"}
    with pytest.raises(KernelRequestError, match="cpus must be a number"):
        kernel_request({}, {"KERNEL_CPUS": "lots"})
    with pytest.raises(KernelRequestError, match="bad attribute constraint 'rack'"):
        kernel_request({}, {"KERNEL_ATTRIBUTES": "rack"})


def test_never_fits_names_the_gap():
    from mesos_nb.protocol.state import AgentView

    agents = [AgentView(id="a", resources={"cpus": 2, "mem": 1024, "ports": "[31000-31010]"},
                        attributes={"rack": "r1"})]
    assert never_fits(agents, kernel_request({"cpus": 1, "mem": 512}, {})) is None
    assert never_fits([], kernel_request({"cpus": 99}, {})) is None  # agents may still join
    assert "none has rack=r2" in never_fits(agents, kernel_request({"attributes": "rack=r2"}, {}))
    assert "needs cpus:1 mem:1024 gpus:1" in never_fits(agents, kernel_request({"gpus": 1}, {}))
    few = [AgentView(id="a", resources={"cpus": 2, "mem": 1024, "ports": "[31000-31002]"})]
    assert never_fits(few, kernel_request({}, {})) is not None


async def test_key_stays_off_argv_and_logs_and_a_new_server_reattaches(kcluster, kernel_env):
    import psutil

    from mesos_nb.frameworks.provisioner import MesosProvisioner

    km = AsyncKernelManager(kernel_name=SMALL, kernel_spec_manager=kernel_env)
    await km.start_kernel()
    try:
        info = await km.provisioner.get_provisioner_info()
        key, tid = info["connection_info"]["key"], info["task_id"]
        assert info["framework_id"] and tid and info["master"].endswith(kcluster.master)
        # the key is on no process's command line, and not in the task's stdout/stderr
        port = info["connection_info"]["shell_port"]
        owners = [c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                  and c.status == psutil.CONN_LISTEN]
        assert owners, "the kernel listens on its shell port"
        for proc in psutil.process_iter(["cmdline"]):
            assert key not in " ".join(proc.info["cmdline"] or [])
        logs = km.provisioner._pool.logs(tid)
        assert "launch: kernel on" in logs["stdout"] and key not in logs["stdout"] + logs["stderr"]

        # "the server restarts": its framework fails over (the kernel keeps running), and a
        # provisioner loaded from the persisted info re-subscribes and adopts the task
        pools.close_all()
        assert live_tasks(kcluster)[tid] == "TASK_RUNNING"
        km2 = AsyncKernelManager(kernel_name=SMALL, kernel_spec_manager=kernel_env)
        prov = MesosProvisioner(kernel_id=info["kernel_id"], kernel_spec=km2.kernel_spec, parent=km2)
        await prov.load_provisioner_info(info)
        assert prov.has_process and prov._pool.framework_id == info["framework_id"]
        wait_for(lambda: prov._handle.state == "TASK_RUNNING", 30, message="task reconciled")
        assert await prov.poll() is None
        km2.provisioner = prov
        km2.load_connection_info(info["connection_info"])
        kc = km2.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            content, out = await run_cell(kc, "print('still', 'here')")
            assert out.strip() == "still here"
        finally:
            kc.stop_channels()
        await prov.kill()
        assert await asyncio.wait_for(prov.wait(), 30) == -9
        wait_for(lambda: tid not in live_tasks(kcluster), 30, message="adopted kernel killed")
    finally:
        with contextlib.suppress(Exception):
            await km.shutdown_kernel(now=True)


def test_kernel_install_remote_writes_the_three_sizes(tmp_path):
    from conftest import cli_env, run_cli

    res = run_cli("kernel", "install", "--remote", "--prefix", str(tmp_path), env=cli_env())
    assert res.returncode == 0, res.stderr
    kdir = tmp_path / "share" / "jupyter" / "kernels"
    sizes = {}
    for name in ("mesos-nb-cluster-small", "mesos-nb-cluster-large", "mesos-nb-cluster-gpu"):
        spec = json.loads((kdir / name / "kernel.json").read_text())
        assert spec["interrupt_mode"] == "message"
        prov = spec["metadata"]["kernel_provisioner"]
        assert prov["provisioner_name"] == "mesos-provisioner"
        sizes[name] = prov["config"]
        assert name in res.stdout
    assert sizes["mesos-nb-cluster-gpu"]["gpus"] == 1
    assert sizes["mesos-nb-cluster-large"]["cpus"] > sizes["mesos-nb-cluster-small"]["cpus"]


async def test_gpu_kernel_gets_a_gpu_agent_through_a_gpu_aware_framework(tmp_path, kernel_env,
                                                                        monkeypatch):
    # an agent declaring one GPU is offered only to GPU-aware frameworks (Mesos' rule)
    cp = start_cluster_process(tmp_path, agents=1,
                               resources=agent_resources(100) + ";gpus:1")
    try:
        monkeypatch.setenv("MESOS_NB_MASTER", cp.master)
        monkeypatch.setenv("KERNEL_MEM", "512")  # the gpu size asks for more than this agent has
        km = AsyncKernelManager(kernel_name="mesos-nb-cluster-gpu", kernel_spec_manager=kernel_env)
        await km.start_kernel()
        try:
            tid = km.provisioner.task_id
            fw = next(f for f in cp.state()["frameworks"] if any(t["id"] == tid for t in f["tasks"]))
            assert "GPU_RESOURCES" in fw.get("capabilities", []), fw.get("capabilities")
            task = next(t for t in fw["tasks"] if t["id"] == tid)
            assert task["resources"]["gpus"] == 1 and task["state"] == "TASK_RUNNING"
        finally:
            await km.shutdown_kernel()
    finally:
        pools.close_all()
        stop_cluster_process(cp)
