"""The unmodified PyPI pymesos 0.3.15 (CPython 3.10 virtualenv) against `mesos-nb local`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from mesos_nb.local import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "pymesos_apps" / "scheduler.py"
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))

pytestmark = [
    pytest.mark.pymesos,
    # In CI a missing virtualenv is a failure, not a skip.
    pytest.mark.skipif(not PYMESOS_PY.exists() and not os.environ.get("CI"), reason=f"no pymesos virtualenv at {PYMESOS_PY} (scripts/test.sh makes it)"),
]


@pytest.fixture
async def cluster(tmp_path):
    c = LocalCluster(agents=2, port=0, work_dir=str(tmp_path), agent_resources="cpus:2;mem:1024")
    await c.start()
    yield c
    await c.stop()


async def run_app(cluster, *args: str, timeout: float = 90) -> tuple[int, list[dict]]:
    proc = await asyncio.create_subprocess_exec(
        str(PYMESOS_PY), str(APP), args[0], cluster.master_address, *args[1:],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert lines and "done" in lines[-1], f"pymesos app produced no result; stderr:\n{err.decode()[-3000:]}"
    return proc.returncode, lines


async def state(cluster) -> dict:
    async with aiohttp.ClientSession() as s:
        return await (await s.get(cluster.master_url + "/master/state")).json()


async def wait_for(pred, timeout: float = 30.0, interval: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = await pred()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)


def all_frameworks(st: dict) -> list[dict]:
    return st["frameworks"] + st["completed_frameworks"]


async def test_fifty_command_tasks_finish_with_acknowledgements(cluster):
    rc, lines = await run_app(cluster, "many", "50")
    assert rc == 0 and lines[-1]["result"] == {"finished": 50}
    assert [x for x in lines if x.get("event") == "executor_lost"] == []  # no FAILURE for command tasks
    st = await state(cluster)
    fw = next(f for f in all_frameworks(st) if f["name"] == "pymesos-many")
    # A task leaves `tasks` for `completed_tasks` only once its terminal update is acknowledged.
    assert fw["tasks"] == []
    assert len(fw["completed_tasks"]) == 50
    assert {t["state"] for t in fw["completed_tasks"]} == {"TASK_FINISHED"}


async def test_kill_and_explicit_reconciliation(cluster):
    rc, lines = await run_app(cluster, "kill")
    result = lines[-1]["result"]
    assert rc == 0, lines
    assert result["reconciled"] == {"sleeper": "TASK_RUNNING", "no-such-task": "TASK_LOST"}
    assert result["killed"] is True
    updates = [x for x in lines if x.get("event") == "update"]
    # Reconciliation answers carry no uuid, so pymesos does not acknowledge them.
    assert all(not u["has_uuid"] for u in updates if u["reason"] == "REASON_RECONCILIATION")
    assert [u["state"] for u in updates if u["reason"] is None] == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


async def test_declined_offers_stay_away_for_refuse_seconds(cluster):
    refuse = 2.0
    rc, lines = await run_app(cluster, "decline", str(refuse))
    assert rc == 0
    gaps = lines[-1]["result"]["gaps"]
    assert len(gaps) >= 2 and min(gaps) >= refuse - 0.05, gaps


async def test_failover_within_timeout_keeps_tasks(cluster):
    rc, lines = await run_app(cluster, "failover", "start", "60")
    assert rc == 0 and lines[-1]["result"]["running"]
    fid = lines[-1]["result"]["framework_id"]

    async def disconnected():
        fws = [f for f in (await state(cluster))["frameworks"] if f["id"] == fid]
        return fws and not fws[0]["connected"]

    await wait_for(disconnected)
    rc, lines = await run_app(cluster, "failover", "resume", "60", fid)
    assert rc == 0, lines
    assert any(x.get("event") == "reregistered" for x in lines)
    assert lines[-1]["result"]["reconciled_state"] == "TASK_RUNNING"
    st = await state(cluster)
    fw = next(f for f in st["frameworks"] if f["id"] == fid)
    assert [t["state"] for t in fw["tasks"]] == ["TASK_RUNNING"]


async def test_failover_timeout_expiry_loses_tasks(cluster):
    rc, lines = await run_app(cluster, "failover", "start", "1")
    assert rc == 0 and lines[-1]["result"]["running"]
    fid = lines[-1]["result"]["framework_id"]

    async def removed():
        st = await state(cluster)
        done = [f for f in st["completed_frameworks"] if f["id"] == fid]
        return done and done[0]

    fw = await wait_for(removed, timeout=30)
    assert [t["state"] for t in fw["completed_tasks"]] == ["TASK_KILLED"]

    # The sleep process is really gone from the agent.
    async def agent_has_no_running_task():
        async with aiohttp.ClientSession() as s:
            for a in (await state(cluster))["slaves"]:
                ast = await (await s.get(f"http://{a['hostname']}:{a['port']}/state")).json()
                for f in ast["frameworks"]:
                    for ex in f["executors"]:
                        if ex["tasks"]:
                            return False
        return True

    await wait_for(agent_has_no_running_task)
    rc, lines = await run_app(cluster, "failover", "resume", "1", fid, timeout=90)
    assert any(x.get("event") == "error" and "removed" in x["message"] for x in lines)


_ = sys
