"""End to end: a real MasterServer, a real AgentProcess, a framework on the scheduler HTTP API."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.protocol import recordio

pytest.importorskip("mesos_nb.master.server")
from mesos_nb.master.server import MasterConfig, MasterServer  # noqa: E402

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class Framework:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.s = session
        self.url = url
        self.events: list[dict] = []
        self.fid = ""
        self.sid = ""

    async def subscribe(self) -> None:
        body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "agent-e2e"}}}
        self.resp = await self.s.post(self.url + "/api/v1/scheduler", json=body, headers=JSON)
        assert self.resp.status == 200
        self.sid = self.resp.headers["Mesos-Stream-Id"]
        self.reader = asyncio.get_running_loop().create_task(self._read())
        ev = await self.wait(lambda e: e["type"] == "SUBSCRIBED")
        self.fid = ev["subscribed"]["framework_id"]["value"]

    async def _read(self) -> None:
        dec = recordio.Decoder()
        while True:
            chunk = await self.resp.content.readany()
            if not chunk:
                return
            for rec in dec.feed(chunk):
                self.events.append(json.loads(rec))

    async def wait(self, pred, timeout: float = 15.0) -> dict:
        """The first event ``pred`` accepts (AssertionError naming the events seen at the deadline)."""
        return await async_wait_for(lambda: next((e for e in self.events if pred(e)), None), timeout, interval=0.01,
                                    message=lambda: f"an event; events: {[e['type'] for e in self.events]}")

    async def call(self, body: dict) -> None:
        body = {"framework_id": {"value": self.fid}, **body}
        async with self.s.post(self.url + "/api/v1/scheduler", json=body,
                               headers={**JSON, "Mesos-Stream-Id": self.sid}) as r:
            assert r.status == 202, await r.text()

    def updates(self, task_id: str) -> list[dict]:
        return [e["update"]["status"] for e in self.events
                if e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"] == task_id]


async def test_command_task_through_real_master(tmp_path):
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1))
    await master.start()
    proc = AgentProcess([AgentConfig(master=f"127.0.0.1:{master.port}", port=0, work_dir=str(tmp_path),
                                     resources="cpus:2;mem:512;disk:100", detect_gpus=False)])
    try:
        await proc.start()
        agent = proc.agents[0]
        async with aiohttp.ClientSession() as s:
            fw = Framework(s, f"http://127.0.0.1:{master.port}")
            await fw.subscribe()
            ev = await fw.wait(lambda e: e["type"] == "OFFERS" and e["offers"]["offers"])
            offer = ev["offers"]["offers"][0]
            assert offer["agent_id"]["value"] == agent.agent_id
            task = {
                "name": "e2e", "task_id": {"value": "e2e-1"}, "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                "command": {"value": "echo hi; exit 3"},
            }
            await fw.call({"type": "ACCEPT", "accept": {
                "offer_ids": [offer["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}})
            seen: list[str] = []
            deadline = time.monotonic() + 20
            while "TASK_FAILED" not in seen:
                assert time.monotonic() < deadline, seen
                for st in fw.updates("e2e-1")[len(seen):]:
                    seen.append(st["state"])
                    if "uuid" in st:
                        await fw.call({"type": "ACKNOWLEDGE", "acknowledge": {
                            "agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": st["uuid"]}})
                await asyncio.sleep(0.01)
            assert [x for x in seen if x != "TASK_STAGING"] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
            failed = fw.updates("e2e-1")[-1]
            assert failed["message"] == "Command exited with status 3"
            assert base64.b64decode(failed["uuid"])
            # All acknowledged: the agent forgets the stream.
            deadline = time.monotonic() + 10
            while agent.tasks:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            async with s.get(agent.url + "/files/read", params={
                    "path": f"/frameworks/{fw.fid}/executors/e2e-1/runs/latest/stdout"}) as r:
                assert (await r.json())["data"] == "hi\n"
            fw.reader.cancel()
            fw.resp.close()
    finally:
        await proc.stop()
        await master.stop()
