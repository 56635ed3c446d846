"""What is on the ACCEPT → TASK_RUNNING path leaves before what is not: the master sends
RUN_TASK to the agent before it answers the ACCEPT that caused it, and the ACK that frees a
task's next update (TASK_RUNNING waits for TASK_STARTING's) before it answers the
ACKNOWLEDGE."""

from __future__ import annotations

import json

from aiohttp import web
from conftest import async_wait_for
from test_health_checks import OneTask

from mesos_nb.local import LocalCluster
from mesos_nb.master.server import MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.scheduler import FrameworkInfo, SchedulerDriver, command_task


def _spy(monkeypatch) -> list[str]:
    """Record, in order: the master's answers to scheduler calls and its RUN_TASK and ACK frames."""
    order: list[str] = []
    handle = MasterServer.handle_scheduler

    async def spied_handle(self, request: web.Request) -> web.StreamResponse:
        resp = await handle(self, request)  # aiohttp writes the answer right after this returns
        order.append(f"answered {json.loads(await request.read()).get('type')}")
        return resp

    encode_frames = ch.encode_frames

    def spied_encode(batch, *a, **kw):  # the channel writer encodes a batch just before sending it
        for x in batch:
            if isinstance(x, ch.RunTask):
                order.append("run_task sent")
            elif isinstance(x, ch.AckUpdate):
                order.append("ack sent")
        return encode_frames(batch, *a, **kw)

    monkeypatch.setattr(MasterServer, "handle_scheduler", spied_handle)  # before the routes are made
    monkeypatch.setattr(ch, "encode_frames", spied_encode)
    return order


async def _one_task(tmp_path) -> None:
    cluster = LocalCluster(agents=1, port=0, work_dir=str(tmp_path / "c"), agent_resources="cpus:1;mem:256",
                           isolation="posix")
    await cluster.start()
    try:
        s = OneTask(lambda offer: command_task(offer, "/bin/true", cpus=0.1, mem=16, task_id="t1"))
        d = SchedulerDriver(s, FrameworkInfo(user="tester", name="order"), cluster.master_address)
        await d.start()
        await async_wait_for(lambda: any(u.state == "TASK_FINISHED" for u in s.updates), 20)
        await d.stop()
    finally:
        await cluster.stop()


def _before(order: list[str], first: str, then: str) -> None:
    assert first in order and then in order, order
    assert order.index(first) < order.index(then), order


async def test_run_task_leaves_for_the_agent_before_the_accept_is_answered(tmp_path, monkeypatch):
    order = _spy(monkeypatch)
    await _one_task(tmp_path)
    _before(order, "run_task sent", "answered ACCEPT")


async def test_the_ack_leaves_for_the_agent_before_the_acknowledge_is_answered(tmp_path, monkeypatch):
    order = _spy(monkeypatch)
    await _one_task(tmp_path)
    _before(order, "ack sent", "answered ACKNOWLEDGE")  # TASK_STARTING's: TASK_RUNNING waits for it
