"""The work the per-task call path skips in the common case (issue 14's CPU per task): the
master's guard on a scheduler call when frameworks need no credentials, aiohttp's read loop
for a call body that has all arrived, and the agent's validation of a resource list it has
already validated."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.local import LocalCluster
from mesos_nb.master.security import Guard
from mesos_nb.protocol import messages as m
from mesos_nb.protocol import parsed_resources
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task

pytest.importorskip("mesos_nb.agent.process")


class Once(Scheduler):
    def __init__(self, n: int) -> None:
        self.n, self.launched, self.finished = n, 0, 0

    async def offers(self, driver, offers):
        for offer in offers:
            if self.launched < self.n:
                tasks = [command_task(offer, "true", cpus=0.1, mem=8, task_id=f"t{self.launched + i}")
                         for i in range(self.n - self.launched)]
                self.launched = self.n
                await driver.launch([offer.id], tasks)
            else:
                await driver.decline([offer.id], refuse_seconds=60)

    def update(self, driver, status):
        if status.state == "TASK_FINISHED":
            self.finished += 1


@pytest.fixture
async def cluster(tmp_path):
    c = LocalCluster(agents=1, port=0, work_dir=str(tmp_path / "c"), agent_resources="cpus:2;mem:512")
    await c.start()
    yield c
    await c.stop()


async def test_scheduler_calls_skip_the_guard_when_frameworks_need_no_credentials(cluster, monkeypatch):
    realms: list[str] = []
    full = Guard.authenticate

    def counting(self, request, realm, required):
        realms.append(realm)
        return full(self, request, realm, required)

    monkeypatch.setattr(Guard, "authenticate", counting)
    sched = Once(3)
    d = SchedulerDriver(sched, m.FrameworkInfo(user="", name="cuts"), cluster.master_address, start_timeout=10)
    await d.start()
    try:
        await async_wait_for(lambda: sched.finished == 3, timeout=30)
    finally:
        await d.stop()
    # SUBSCRIBE, ACCEPT and 9 ACKNOWLEDGEs went through: none paid for the full guard
    assert "scheduler" not in realms


async def post(cluster, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, \
            s.post(cluster.master_url + "/api/v1/scheduler", data=b"{}", headers=headers) as r:
        return r.status, await r.text()


async def test_the_short_path_keeps_the_guards_answers(cluster):
    status, text = await post(cluster, {"Content-Type": "application/x-protobuf"})
    assert status == 415 and "protobuf" in text
    status, text = await post(cluster, {"Content-Type": "application/json", "Origin": "http://evil.example"})
    assert status == 403 and "Cross-origin" in text
    status, text = await post(cluster, {"Content-Type": "application/json"})
    assert status == 400 and "'type'" in text  # the handler's own answer


def test_a_resource_list_is_validated_once(monkeypatch):
    calls = []
    full = Resources.from_proto.__func__

    def counting(cls, items):
        calls.append(1)
        return full(cls, items)

    monkeypatch.setattr(Resources, "from_proto", classmethod(counting))
    monkeypatch.setattr(parsed_resources, "_PARSED", {})
    items = Resources.parse("cpus:0.25;mem:16").to_proto()
    a = parsed_resources.task_resources(items)
    b = parsed_resources.task_resources(Resources.parse("cpus:0.25;mem:16").to_proto())
    assert a is b and len(calls) == 1 and a == Resources.parse("cpus:0.25;mem:16")
    assert parsed_resources.task_resources(Resources.parse("cpus:0.5;mem:16").to_proto()) != a
    bad = [m.Resource(name="cpus", type="SCALAR", scalar=m.Scalar(value=1), role="bad role")]
    for _ in range(2):  # refused each time, never remembered
        with pytest.raises(ValueError):
            parsed_resources.task_resources(bad)
    assert len(parsed_resources._PARSED) == 2


async def test_a_call_sent_in_two_pieces_is_answered_on_its_whole_body(cluster):
    """Over a real socket: the second half of the body arrives after the handler may have
    started; the master answers on the whole call (the framework is unknown: 400 naming it)."""
    body = b'{"type":"DECLINE","framework_id":{"value":"nope"},"decline":{"offer_ids":[]}}'
    head = (f"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    host, port = cluster.master_url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body[:20])
    await writer.drain()
    await asyncio.sleep(0.05)  # not a synchronisation: the two halves go in two segments
    writer.write(body[20:])
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400") and b"Framework cannot be found" in answer
