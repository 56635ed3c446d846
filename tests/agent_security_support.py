"""A real master, a real agent and a v1 HTTP framework, for the agent's security tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from conftest import async_wait_for

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import recordio
from mesos_nb.protocol.tls import client_context

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class Framework:
    """Subscribes, accepts each offer with the next queued task, acknowledges every update."""

    def __init__(self, session: aiohttp.ClientSession, url: str, user: str, checkpoint: bool = False) -> None:
        self.s, self.url, self.user, self.checkpoint = session, url, user, checkpoint
        self.events: list[dict] = []
        self.fid = self.sid = ""
        self.pending: list[dict] = []

    async def subscribe(self) -> None:
        body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": self.user, "name": "sec", "checkpoint": self.checkpoint}}}
        self.resp = await self.s.post(self.url + "/api/v1/scheduler", json=body, headers=JSON)
        assert self.resp.status == 200, await self.resp.text()
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
                e = json.loads(rec)
                self.events.append(e)
                if e["type"] == "SUBSCRIBED":
                    self.fid = e["subscribed"]["framework_id"]["value"]
                elif e["type"] == "OFFERS":
                    for offer in e["offers"]["offers"]:
                        asyncio.get_running_loop().create_task(self._use(offer))
                elif e["type"] == "UPDATE" and "uuid" in e["update"]["status"]:
                    st = e["update"]["status"]
                    asyncio.get_running_loop().create_task(self.call({"type": "ACKNOWLEDGE", "acknowledge": {
                        "agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": st["uuid"]}}))

    async def _use(self, offer: dict) -> None:
        tasks = []
        while self.pending:
            t = self.pending.pop(0)
            t["agent_id"] = offer["agent_id"]
            tasks.append(t)
        ops = [{"type": "LAUNCH", "launch": {"task_infos": tasks}}] if tasks else []
        await self.call({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": ops,
                                                      "filters": {"refuse_seconds": 0.05}}})

    async def wait(self, pred, timeout: float = 30.0) -> dict:
        """The first event ``pred`` accepts (AssertionError naming the events seen at the deadline)."""
        return await async_wait_for(lambda: next((e for e in self.events if pred(e)), None), timeout, interval=0.01,
                                    message=lambda: f"an event; events: {[e['type'] for e in self.events]}")

    async def call(self, body: dict) -> None:
        body = {"framework_id": {"value": self.fid}, **body}
        async with self.s.post(self.url + "/api/v1/scheduler", json=body,
                               headers={**JSON, "Mesos-Stream-Id": self.sid}) as r:
            assert r.status == 202, await r.text()

    def launch(self, task_id: str, command: dict, cpus: float = 0.1, mem: float = 32) -> None:
        self.pending.append({
            "name": task_id, "task_id": {"value": task_id},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
            "command": command})

    def states(self, task_id: str) -> list[dict]:
        return [e["update"]["status"] for e in self.events
                if e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"] == task_id]

    async def wait_state(self, task_id: str, states: set[str], timeout: float = 30.0) -> dict:
        await self.wait(lambda e: e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"] == task_id
                        and e["update"]["status"]["state"] in states, timeout)
        return next(s for s in self.states(task_id) if s["state"] in states)


class Cluster:
    def __init__(self, master: MasterServer, proc: AgentProcess, fw: Framework, session: aiohttp.ClientSession):
        self.master, self.proc, self.fw, self.s = master, proc, fw, session
        self.agent = proc.agents[0]

    @property
    def master_url(self) -> str:
        return self.master.url

    def sandbox(self, task_id: str) -> str:
        return f"/frameworks/{self.fw.fid}/executors/{task_id}/runs/latest"

    async def run(self, task_id: str, command: dict, final: set[str] | None = None, **kw: Any) -> dict:
        self.fw.launch(task_id, command, **kw)
        return await self.fw.wait_state(task_id, final or {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED",
                                                           "TASK_ERROR", "TASK_LOST"})

    async def read(self, path: str) -> tuple[int, Any]:
        async with self.s.get(self.agent.url + "/files/read", params={"path": path}) as r:
            return r.status, (await r.json() if r.status == 200 else await r.text())


@contextlib.asynccontextmanager
async def cluster(work_dir: str, *, user: str = "", checkpoint: bool = False,
                  master_kw: dict[str, Any] | None = None, **agent_kw: Any) -> AsyncIterator[Cluster]:
    """``master_kw``: more MasterConfig fields (with ``tls_ca``, the test's client trusts that CA)."""
    master_kw = master_kw or {}
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.05, **master_kw))
    await master.start()
    cfg = AgentConfig(master=f"127.0.0.1:{master.port}", port=0, work_dir=work_dir,
                      resources="cpus:4;mem:2048;disk:100", detect_gpus=False, **agent_kw)
    proc = AgentProcess([cfg])
    try:
        await proc.start()
        ssl = client_context(master_kw["tls_ca"]) if master_kw.get("tls_ca") else None
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl if ssl else True)) as s:
            fw = Framework(s, master.url, user, checkpoint)
            await fw.subscribe()
            try:
                yield Cluster(master, proc, fw, s)
            finally:
                fw.reader.cancel()
                fw.resp.close()
    finally:
        await proc.stop()
        await master.stop()
