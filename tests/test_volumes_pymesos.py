"""Done-when 2 of the shared-cluster issue, with the ecosystem's client: an unmodified pymesos
0.3.15 framework reserves resources and creates a persistent volume; a task writes into it;
the agent is SIGKILLed and restarted and the master restarted; a new task reads the file
back; DESTROY removes the data; a framework of another role is never offered any of it.

Real processes: the agent is a `mesos-nb agent` process (killed with SIGKILL), the master a
MasterServer stopped and started again on the same port and registry, the frameworks pymesos
under CPython 3.10. Plus the operator API's CREATE_VOLUMES / DESTROY_VOLUMES over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.master.server import MasterConfig, MasterServer

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "pymesos_apps" / "volume_scheduler.py"
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def start_agent(master: str, work_dir: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_NB_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "agent", "--master", master, "--port", "0", "--work-dir", str(work_dir),
         "--resources", "cpus:2;mem:512;disk:1000", "--isolation", "posix"],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
    )


def master_config(work_dir: Path, port: int = 0) -> MasterConfig:
    return MasterConfig(port=port, work_dir=str(work_dir), allocation_interval=0.1, agent_ping_timeout=1.0,
                        max_agent_ping_timeouts=30)


async def run_app(master: str, *args: str, timeout: float = 90) -> dict:
    proc = await asyncio.create_subprocess_exec(str(PYMESOS_PY), str(APP), args[0], master, *args[1:],
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert lines and "done" in lines[-1], f"pymesos app produced no result; stderr:\n{err.decode()[-3000:]}"
    assert proc.returncode == 0 and lines[-1]["done"], lines
    return lines[-1]["result"]


async def api(url: str, body: dict, status: int = 200) -> dict | str:
    async with aiohttp.ClientSession() as s, s.post(url + "/api/v1", json=body, headers=JSON) as r:
        text = await r.text()
        assert r.status == status, (body, r.status, text)
        return json.loads(text) if r.content_type == "application/json" else text


async def agent_volumes(url: str) -> list[dict]:
    """The persistent volumes in the (only) agent's total, if it is connected and active."""
    agents = (await api(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
    if not agents or not agents[0]["active"]:
        return []
    return [r for r in agents[0]["total_resources"] if r.get("disk")]


@pytest.mark.pymesos
@pytest.mark.skipif(not PYMESOS_PY.exists() and not os.environ.get("CI"), reason=f"no pymesos at {PYMESOS_PY}")
async def test_pymesos_volume_survives_agent_sigkill_and_master_restart_then_destroy_removes_it(tmp_path):
    secret = f"s-{uuid.uuid4().hex[:8]}"
    master = MasterServer(master_config(tmp_path / "master"))
    await master.start()
    port = master.port
    work = tmp_path / "agent"
    volume_dir = work / "volumes" / "roles" / "db" / "vol-1"
    agent = start_agent(master.address, work, tmp_path / "agent.log")
    try:
        await async_wait_for(lambda: master.core.agents, timeout=30, message="agent registered")
        created = await run_app(master.address, "create", secret)
        assert created["operations"] == {"reserve": "OPERATION_FINISHED", "create": "OPERATION_FINISHED"}
        assert created["writer"] == "TASK_FINISHED"
        # The data is outside the sandbox, under the agent's work dir.
        assert (volume_dir / "hello.txt").read_text().strip() == secret
        watched = await run_app(master.address, "watch", "3")
        assert watched["offers"] >= 3 and watched["reserved_seen"] == []

        # The agent dies hard and comes back; then the master restarts on the same registry.
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        agent = start_agent(master.address, work, tmp_path / "agent.log")
        await async_wait_for(lambda: len(master.core.agents) == 1 and next(iter(master.core.agents.values())).connected,
                             timeout=30)
        await master.stop()
        master = MasterServer(master_config(tmp_path / "master", port))
        await master.start()
        vols = await async_wait_for(lambda: agent_volumes(master.url), timeout=60, message="agent back with its volume")
        assert [v["disk"]["persistence"]["id"] for v in vols] == ["vol-1"]

        watched = await run_app(master.address, "watch", "3")
        assert watched["offers"] >= 3 and watched["reserved_seen"] == []
        read = await run_app(master.address, "read", secret)
        assert read["reader"] == "TASK_FINISHED"  # it found the file the first task wrote
        assert read["offered_volume"]["disk"] == {"persistence": {"id": "vol-1", "principal": "alice"},
                                                  "volume": {"container_path": "data", "mode": "RW"}}
        assert read["offered_volume"]["allocation_info"] == {"role": "db"}
        assert read["operations"] == {"destroy": "OPERATION_FINISHED", "unreserve": "OPERATION_FINISHED"}
        await async_wait_for(lambda: not volume_dir.exists(), timeout=30, message="volume data deleted")
        assert await agent_volumes(master.url) == []
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
        await master.stop()


async def test_operator_create_and_destroy_volumes_over_http(tmp_path):
    master = MasterServer(master_config(tmp_path / "master"))
    await master.start()
    work = tmp_path / "agent"
    agent = start_agent(master.address, work, tmp_path / "agent.log")
    try:
        await async_wait_for(lambda: master.core.agents, timeout=30, message="agent registered")
        aid = {"value": next(iter(master.core.agents))}
        reserved = {"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
                    "reservations": [{"type": "DYNAMIC", "role": "db", "principal": "ops"}]}
        volume = dict(reserved, disk={"persistence": {"id": "v1", "principal": "ops"},
                                      "volume": {"container_path": "data", "mode": "RW"}})
        url = master.url
        await api(url, {"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": aid, "volumes": [volume]}}, 409)
        await api(url, {"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": aid, "resources": [reserved]}},
                  202)
        async with aiohttp.ClientSession() as s:  # an operator reads the reservation in /master/state
            async with s.get(url + "/master/state") as r:
                slave = (await r.json())["slaves"][0]
        assert slave["reserved_resources"]["db"]["disk"] == 64
        assert slave["unreserved_resources"]["disk"] == slave["resources"]["disk"] - 64
        bad = dict(volume, disk={"persistence": {"id": "v1"}, "volume": {"container_path": "x", "mode": "RO"}})
        text = await api(url, {"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": aid, "volumes": [bad]}}, 400)
        assert "Read-only persistent volume not supported" in text
        await api(url, {"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": aid, "volumes": [volume]}}, 202)
        path = work / "volumes" / "roles" / "db" / "v1"
        await async_wait_for(path.is_dir, timeout=20, message="volume directory made by the agent")
        ops = (await api(url, {"type": "GET_OPERATIONS"}))["get_operations"]["operations"]
        assert [o["info"]["type"] for o in ops] == ["RESERVE", "CREATE"]
        assert [v["disk"]["persistence"]["id"] for v in await agent_volumes(url)] == ["v1"]
        text = await api(url, {"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": aid, "volumes": [volume]}},
                         400)
        assert "already exists" in text
        (path / "data.bin").write_bytes(b"x" * 1000)
        await api(url, {"type": "DESTROY_VOLUMES", "destroy_volumes": {"agent_id": aid, "volumes": [volume]}}, 202)
        await async_wait_for(lambda: not path.exists(), timeout=20, message="volume deleted by the agent")
        assert await agent_volumes(url) == []
        text = await api(url, {"type": "GROW_VOLUME", "grow_volume": {"agent_id": {"value": "nope"},
                                                                      "volume": volume, "addition": reserved}}, 404)
        assert "nope" in text
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
        await master.stop()
