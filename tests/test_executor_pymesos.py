"""An unmodified pymesos 0.3.15 custom executor and its scheduler against a real local cluster."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from mesos_nb.local import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "pymesos_apps"
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))

pytestmark = [
    pytest.mark.pymesos,
    pytest.mark.skipif(not PYMESOS_PY.exists() and not os.environ.get("CI"),
                       reason=f"no pymesos virtualenv at {PYMESOS_PY} (scripts/test.sh makes it)"),
]


async def test_pymesos_executor_three_tasks_messages_and_executor_lost(tmp_path):
    cluster = LocalCluster(agents=2, port=0, work_dir=str(tmp_path), agent_resources="cpus:2;mem:1024")
    await cluster.start()
    try:
        cmd = f"{PYMESOS_PY} {APPS / 'executor_app.py'}"
        proc = await asyncio.create_subprocess_exec(
            str(PYMESOS_PY), str(APPS / "executor_scheduler.py"), cluster.master_address, cmd, "90",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
        assert lines and "done" in lines[-1], f"no result; stderr:\n{err.decode()[-3000:]}"
        final = lines[-1]
        assert final["done"] is True and proc.returncode == 0, (lines, err.decode()[-3000:])
        states = final["result"]["states"]
        for tid in ("t1", "t2", "t3"):
            assert states[tid] == ["TASK_RUNNING", "TASK_FINISHED"], states
        updates = [x for x in lines if x.get("event") == "update"]
        assert all(u["executor"] == "pm-exec" and u["source"] == "SOURCE_EXECUTOR" for u in updates)
        assert [x["tasks"] for x in lines if x.get("event") == "launch"] == [["t1"], ["t2", "t3"]]
        msgs = final["result"]["messages"]
        assert "hello" in msgs and sorted(m for m in msgs if m.startswith("pong")) == ["pong:1", "pong:2"]
        assert final["result"]["lost"]["executor"] == "pm-exec"
        # One executor served all three tasks.
        sandboxes = list(Path(tmp_path).rglob("executors/pm-exec/runs/latest"))
        assert len(sandboxes) == 1
    finally:
        await cluster.stop()
