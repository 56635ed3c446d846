"""The master's v1 operator API and the v0 endpoints operator tools call, against a real cluster."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from conftest import async_wait_for
from test_scheduler_integration import Framework, info, launch

from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import recordio
from mesos_nb.scheduler import SchedulerDriver

pytest.importorskip("mesos_nb.agent.process")
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
GETS = ["GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_LOGGING_LEVEL", "GET_STATE", "GET_AGENTS",
        "GET_FRAMEWORKS", "GET_EXECUTORS", "GET_OPERATIONS", "GET_TASKS", "GET_ROLES", "GET_WEIGHTS",
        "GET_MASTER", "GET_MAINTENANCE_STATUS", "GET_MAINTENANCE_SCHEDULE", "GET_QUOTA"]


async def call(s: aiohttp.ClientSession, url: str, body: dict, status: int = 200):
    async with s.post(url + "/api/v1", json=body, headers=JSON) as r:
        text = await r.text()
        assert r.status == status, (body, r.status, text)
        return json.loads(text) if text and r.content_type == "application/json" else text


@pytest.fixture
async def master():
    srv = MasterServer(MasterConfig(port=0, allocation_interval=0.2, agent_secret="s3cret"))
    await srv.start()
    yield srv
    await srv.stop()


async def test_every_get_call_answers_with_its_type(master):
    async with aiohttp.ClientSession() as s:
        for t in GETS:
            body = await call(s, master.url, {"type": t})
            assert body["type"] == t and t.lower() in body, body
        m = await call(s, master.url, {"type": "GET_METRICS", "get_metrics": {}})
        names = {x["name"] for x in m["get_metrics"]["metrics"]}
        assert {"master/elected", "master/cpus_total", "master/tasks_running",
                "master/operator_event_stream_subscribers"} <= names
        await call(s, master.url, {"type": "GET_METRICS"}, 400)  # required payload, as Mesos
        flags = (await call(s, master.url, {"type": "GET_FLAGS"}))["get_flags"]["flags"]
        assert "s3cret" not in json.dumps(flags)
        assert (await call(s, master.url, {"type": "GET_MASTER"}))["get_master"]["master_info"]["id"] == master.master_id


async def test_reserve_resources_over_http_is_validated(master):
    async with aiohttp.ClientSession() as s:
        cpus = {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
                "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "ops"}]}
        await call(s, master.url, {"type": "RESERVE_RESOURCES"}, 400)
        text = await call(s, master.url, {"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": "nope"}, "resources": [cpus]}}, 404)
        assert "nope" in text
        ops = await call(s, master.url, {"type": "GET_OPERATIONS"})
        assert ops["get_operations"] == {"operations": []}


async def test_unknown_and_unset_call_types_are_refused_with_a_sentence(master):
    async with aiohttp.ClientSession() as s:
        assert "UNKNOWN" in await call(s, master.url, {"type": "UNKNOWN"}, 501)
        assert "unknown call type 'PRUNE_EVERYTHING'" in await call(s, master.url, {"type": "PRUNE_EVERYTHING"}, 400)


async def test_bad_operator_calls_are_4xx(master):
    async with aiohttp.ClientSession() as s:
        async with s.post(master.url + "/api/v1", data=b"{}", skip_auto_headers=["Content-Type"]) as r:
            assert r.status == 400
        async with s.post(master.url + "/api/v1", data=b"{}", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with s.post(master.url + "/api/v1", json={"type": "GET_HEALTH"},
                          headers={"Content-Type": "application/json", "Accept": "text/html"}) as r:
            assert r.status == 406
        await call(s, master.url, {"type": "NOPE"}, 400)
        await call(s, master.url, {"type": "UNKNOWN"}, 501)
        await call(s, master.url, {"type": "TEARDOWN", "teardown": {"framework_id": {"value": "x"}}}, 400)
        await call(s, master.url, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "x"}}}, 404)
        await call(s, master.url, {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "a", "weight": -1}]}}, 400)
        await call(s, master.url, {"type": "SET_LOGGING_LEVEL", "set_logging_level": {"level": "x"}}, 400)


async def test_weights_roundtrip_v1_and_v0(master):
    async with aiohttp.ClientSession() as s:
        await call(s, master.url, {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "analytics", "weight": 2.5}]}})
        got = await call(s, master.url, {"type": "GET_WEIGHTS"})
        assert got["get_weights"]["weight_infos"] == [{"role": "analytics", "weight": 2.5}]
        async with s.get(master.url + "/master/weights") as r:
            assert await r.json() == [{"weight": 2.5, "role": "analytics"}]
        async with s.put(master.url + "/master/weights", json=[{"role": "b", "weight": 3}]) as r:
            assert r.status == 200
        async with s.get(master.url + "/master/roles/") as r:  # trailing slash, as libprocess
            roles = {x["name"]: x for x in (await r.json())["roles"]}
        assert roles["b"]["weight"] == 3.0 and roles["analytics"]["weight"] == 2.5
        for path in ("/master/flags", "/flags", "/master/quota", "/master/maintenance/status",
                     "/master/maintenance/schedule", "/master/frameworks/", "/master/state/", "/tasks/"):
            async with s.get(master.url + path) as r:
                assert r.status == 200, path


async def _events(resp: aiohttp.ClientResponse, dec: recordio.Decoder, want, timeout: float = 15.0):
    got = []

    async def read():
        while True:
            for rec in dec.feed(await resp.content.readany()):
                ev = json.loads(rec)
                got.append(ev)
                if want(ev):
                    return ev

    await asyncio.wait_for(read(), timeout)
    return got


async def test_subscribe_sees_tasks_added_and_updated_and_tasks_v0_shape(local_cluster):
    url = local_cluster.master_url
    async with aiohttp.ClientSession() as s:
        resp = await s.post(url + "/api/v1", json={"type": "SUBSCRIBE"}, headers=JSON)
        assert resp.status == 200
        dec = recordio.Decoder()
        first = await _events(resp, dec, lambda e: e["type"] == "HEARTBEAT")
        assert first[0]["type"] == "SUBSCRIBED"
        assert len(first[0]["subscribed"]["get_state"]["get_agents"]["agents"]) == 2
        fw = Framework()
        driver = SchedulerDriver(fw, info("op-sub"), local_cluster.master_address)
        await driver.start()
        try:
            await launch(driver, fw, "op-1", "exit 3")
            evs = await _events(resp, dec, lambda e: e["type"] == "TASK_UPDATED"
                                and e["task_updated"]["state"] == "TASK_FAILED")
            types = [e["type"] for e in evs]
            assert "FRAMEWORK_ADDED" in types and "TASK_ADDED" in types
            assert types.index("TASK_ADDED") < types.index("TASK_UPDATED")
            states = [e["task_updated"]["state"] for e in evs if e["type"] == "TASK_UPDATED"]
            assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
            await async_wait_for(lambda: "TASK_FAILED" in fw.states("op-1"), timeout=10)
            failed = fw.last("op-1")
            assert failed.reason is None and failed.message == "Command exited with status 3"
            async with s.get(url + "/tasks?limit=-1&order=bogus") as r:
                assert r.status == 200
                tasks = (await r.json())["tasks"]
            t = next(x for x in tasks if x["id"] == "op-1")
            assert [x["state"] for x in t["statuses"]] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
            assert all("value" in x["container_status"]["container_id"] for x in t["statuses"])
            async with s.get(url + "/tasks?limit=x&offset=-2") as r:
                assert r.status == 200 and (await r.json())["tasks"] == []
            async with s.get(url + "/master/state") as r:
                text = await r.text()
            assert "null" not in text
        finally:
            await driver.stop()
        await _events(resp, dec, lambda e: e["type"] == "FRAMEWORK_REMOVED")
        resp.close()


async def test_never_reading_subscriber_is_disconnected_and_memory_stays_bounded(local_cluster):
    import psutil

    ops = local_cluster.master.operator.streams
    rss0 = psutil.Process().memory_info().rss
    reader, writer = await asyncio.open_connection("127.0.0.1", local_cluster.master.port)
    body = b'{"type":"SUBSCRIBE"}'
    writer.write(b"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    await async_wait_for(lambda: len(ops.subscribers) == 1, timeout=10)
    # Frameworks with 1 MB of labels come and go (FRAMEWORK_ADDED/REMOVED carry their info);
    # the subscriber never reads a byte.
    labels = {"labels": [{"key": "blob", "value": "x" * 1_000_000}]}
    n = 0
    while ops.subscribers and n < 60:
        driver = SchedulerDriver(Framework(), info(f"flood-{n}", labels=labels), local_cluster.master_address)
        await driver.start()
        await driver.stop()
        n += 1
    assert not ops.subscribers and ops.disconnected_slow == 1, n
    assert psutil.Process().memory_info().rss - rss0 < 64 * 1024 * 1024
    assert await reader.read() is not None  # the connection was closed by the master
    writer.close()


async def test_never_reading_scheduler_is_disconnected_and_memory_stays_bounded():
    import psutil

    srv = MasterServer(MasterConfig(port=0))
    await srv.start()
    try:
        rss0 = psutil.Process().memory_info().rss
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        body = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "deaf"}}}).encode()
        writer.write(b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Accept: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        sid = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"mesos-stream-id"))
        fid = next(iter(srv.core.frameworks))
        # Each unknown task id in a RECONCILE is one TASK_LOST event on the stream nobody reads.
        rec = {"type": "RECONCILE", "framework_id": {"value": fid}, "reconcile": {"tasks": [
            {"task_id": {"value": f"ghost-{i:05d}-" + "x" * 200}} for i in range(5000)]}}
        async with aiohttp.ClientSession() as s:
            for _ in range(40):
                async with s.post(srv.url + "/api/v1/scheduler", json=rec,
                                  headers={"Mesos-Stream-Id": sid}) as r:
                    if r.status != 202:
                        break  # the framework is no longer subscribed: its stream was dropped
        # Dropped: disconnected (and, with failover_timeout 0, removed).
        await async_wait_for(lambda: fid not in srv.core.frameworks or not srv.core.frameworks[fid].connected,
                             timeout=10)
        assert psutil.Process().memory_info().rss - rss0 < 64 * 1024 * 1024
        writer.close()
    finally:
        await srv.stop()


async def test_update_framework_changes_info_and_is_validated(local_cluster):
    url = local_cluster.master_url
    fw = Framework()
    driver = SchedulerDriver(fw, info("upd", roles=["a"], capabilities=[{"type": "MULTI_ROLE"}]),
                             local_cluster.master_address)
    fid = await driver.start()
    headers = {"Mesos-Stream-Id": driver.stream_id, "Content-Type": "application/json"}

    def body(**fi):
        suppressed = fi.pop("_s", [])
        base = {"user": "tester", "name": "upd", "id": {"value": fid}, "roles": ["a"],
                "capabilities": [{"type": "MULTI_ROLE"}]}
        return {"type": "UPDATE_FRAMEWORK", "framework_id": {"value": fid},
                "update_framework": {"framework_info": {**base, **fi}, "suppressed_roles": suppressed}}

    try:
        async with aiohttp.ClientSession() as s:
            sub = await s.post(url + "/api/v1", json={"type": "SUBSCRIBE"}, headers=JSON)
            dec = recordio.Decoder()
            await _events(sub, dec, lambda e: e["type"] == "HEARTBEAT")
            async with s.post(url + "/api/v1/scheduler", json=body(name="renamed", roles=["a", "b"]),
                              headers=headers) as r:
                assert r.status == 200, await r.text()
            ev = await _events(sub, dec, lambda e: e["type"] == "FRAMEWORK_UPDATED")
            updated = ev[-1]["framework_updated"]["framework"]["framework_info"]
            assert updated["name"] == "renamed" and updated["roles"] == ["a", "b"]
            got = await call(s, url, {"type": "GET_FRAMEWORKS"})
            assert got["get_frameworks"]["frameworks"][0]["framework_info"]["name"] == "renamed"
            for bad, needle in ((body(principal="mallory"), "principal"), (body(user="root"), "user"),
                                (body(_s=["zzz"]), "Suppressed role"), (body(roles=["bad role"]), "not valid"),
                                (body(id={"value": "other"}), "differs")):
                async with s.post(url + "/api/v1/scheduler", json=bad, headers=headers) as r:
                    assert r.status == 400 and needle in await r.text(), (bad, r.status)
            sub.close()
    finally:
        await driver.stop()
