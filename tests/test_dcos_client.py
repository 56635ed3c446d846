"""The DC/OS operator client (npm ``@dcos/mesos-client``) driven by a small Node script.

``tests/node`` holds the script and its package.json; scripts/test.sh runs ``npm ci`` there.
The tests skip when Node or the installed package is missing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from conftest import async_wait_for
from test_scheduler_integration import Framework, info, launch

from mesos_nb.scheduler import SchedulerDriver

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (NODE_DIR / "node_modules" / "@dcos" / "mesos-client").exists(),
    reason="node or @dcos/mesos-client is not installed; run scripts/test.sh")


async def test_every_get_call_answers(local_cluster):
    proc = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "dcos_client.js"), local_cluster.master_url, "gets",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(NODE_DIR))
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    answers = json.loads(out.decode().strip().splitlines()[-1])
    assert len(answers) == 17 and all(v == "ok" for v in answers.values()), answers


async def test_subscribe_sees_a_task_launched_meanwhile(local_cluster):
    proc = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "dcos_client.js"), local_cluster.master_url, "subscribe",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(NODE_DIR))
    lines: list[dict] = []

    async def read_until(pred) -> None:
        while not any(pred(x) for x in lines):
            raw = await proc.stdout.readline()
            assert raw, f"node exited: {lines}"
            lines.append(json.loads(raw))

    try:
        await asyncio.wait_for(read_until(lambda x: x.get("type") == "SUBSCRIBED"), 30)
        fw = Framework()
        driver = SchedulerDriver(fw, info("dcos-sub"), local_cluster.master_address)
        await driver.start()
        try:
            await launch(driver, fw, "dcos-1", "true")
            await asyncio.wait_for(read_until(lambda x: x.get("state") == "TASK_FINISHED"), 30)
            await async_wait_for(lambda: "TASK_FINISHED" in fw.states("dcos-1"), timeout=10)
        finally:
            await driver.stop()
    finally:
        proc.kill()
        await proc.wait()
    assert {"type": "TASK_ADDED", "task": "dcos-1"} in lines
    assert [x["state"] for x in lines if x.get("type") == "TASK_UPDATED"] == [
        "TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
