"""The scheduler API's HTTP contract: status codes and messages of Mesos for bad input."""

from __future__ import annotations

import json

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.master import connections
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import recordio

SUB = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "api-test"}}}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def master():
    srv = MasterServer(MasterConfig(port=0, allocation_interval=0.2))
    await srv.start()
    yield srv
    await srv.stop()


async def _subscribe(session: aiohttp.ClientSession, url: str, body=SUB):
    resp = await session.post(url + "/api/v1/scheduler", json=body, headers={"Accept": "application/json"})
    assert resp.status == 200, await resp.text()
    dec = recordio.Decoder()
    while True:
        chunk = await resp.content.readany()
        recs = dec.feed(chunk)
        if recs:
            ev = json.loads(recs[0])
            assert ev["type"] == "SUBSCRIBED"
            return resp, ev["subscribed"]["framework_id"]["value"], resp.headers["Mesos-Stream-Id"]


async def test_subscribe_stream_headers_and_first_event(master):
    async with aiohttp.ClientSession() as s:
        resp, fid, sid = await _subscribe(s, master.url)
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in resp.headers
        assert fid.startswith(master.master_id)
        assert len(sid) <= 128
        resp.close()


@pytest.mark.parametrize(
    "headers,body,status,needle",
    [
        ({}, b"{}", 400, "Content-Type"),
        ({"Content-Type": "text/plain"}, b"{}", 415, "Content-Type"),
        (JSON, b"{not json", 400, "Failed to parse"),
        (JSON, b'{"type": "NOPE"}', 400, "unknown call type"),
        (JSON, b'{"type": "UNKNOWN"}', 501, "UNKNOWN"),
        (JSON, b"{}", 400, "'type'"),
        (JSON, b'{"type": "SUBSCRIBE"}', 400, "subscribe"),
        (JSON, b'{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x"}}}', 400, "user"),
        (JSON, b'{"type": "DECLINE", "decline": {}}', 400, "framework_id"),
        (JSON, b'{"type": "DECLINE", "framework_id": {"value": "nope"}, "decline": {}}', 400, "Framework cannot be found"),
        (JSON, b'{"type": "KILL", "framework_id": {"value": "x"}}', 400, "kill"),
        ({**JSON, "Mesos-Stream-Id": "abc"}, json.dumps(SUB).encode(), 400, "should not include"),
        ({**JSON, "Accept": "application/x-protobuf"}, json.dumps(SUB).encode(), 406, "Accept"),
        (
            JSON,
            b'{"type":"SUBSCRIBE","framework_id":{"value":"a"},"subscribe":{"framework_info":{"user":"u","name":"n","id":{"value":"b"}}}}',
            400,
            "differs",
        ),
    ],
)
async def test_bad_calls_get_mesos_answers(master, headers, body, status, needle):
    async with aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as s:
        r = await s.post(master.url + "/api/v1/scheduler", data=body, headers=headers)
        text = await r.text()
        assert r.status == status, text
        assert needle.lower() in text.lower()
        assert "Traceback" not in text
    # The master is still serving.
    async with aiohttp.ClientSession() as s:
        assert (await s.get(master.url + "/health")).status == 200


async def test_get_is_405_and_huge_body_is_413(master):
    async with aiohttp.ClientSession() as s:
        r = await s.get(master.url + "/api/v1/scheduler")
        assert r.status == 405
        r = await s.post(master.url + "/api/v1/scheduler", data=b"x" * (17 * 1024 * 1024), headers=JSON)
        assert r.status == 413


async def test_stream_id_missing_stale_and_foreign(master):
    async with aiohttp.ClientSession() as s:
        resp1, fid1, sid1 = await _subscribe(s, master.url)
        resp2, fid2, sid2 = await _subscribe(s, master.url)
        call = {"type": "REVIVE", "framework_id": {"value": fid1}}
        r = await s.post(master.url + "/api/v1/scheduler", json=call)
        assert r.status == 400 and "Mesos-Stream-Id" in await r.text()
        # Another framework's stream id: rejected.
        r = await s.post(master.url + "/api/v1/scheduler", json=call, headers={"Mesos-Stream-Id": sid2})
        assert r.status == 400 and "didn't match" in await r.text()
        r = await s.post(master.url + "/api/v1/scheduler", json=call, headers={"Mesos-Stream-Id": sid1})
        assert r.status == 202
        # Failover: a new subscription for fid1 makes sid1 stale and ends the old stream with ERROR.
        body = {"type": "SUBSCRIBE", "framework_id": {"value": fid1},
                "subscribe": {"framework_info": {"user": "u", "name": "api-test", "id": {"value": fid1}, "failover_timeout": 60}}}
        resp3, fid3, sid3 = await _subscribe(s, master.url, body)
        assert fid3 == fid1 and sid3 != sid1
        rest = await resp1.content.read()
        assert b"Framework failed over" in rest
        r = await s.post(master.url + "/api/v1/scheduler", json=call, headers={"Mesos-Stream-Id": sid1})
        assert r.status == 400
        for r_ in (resp2, resp3):
            r_.close()


async def test_version_is_numeric_for_pymesos(master):
    async with aiohttp.ClientSession() as s:
        v = (await (await s.get(master.url + "/version")).json())["version"]
        assert all(p.isdigit() for p in v.split("."))
        r = await s.get(master.url + "/master/redirect", allow_redirects=False)
        assert r.status == 307 and r.headers["Location"] == f"//{master.hostname}:{master.port}"
        snap = await (await s.get(master.url + "/metrics/snapshot")).json()
        assert snap["master/elected"] == 1


async def test_unacceptable_channel_secret(master):
    master.config.agent_secret = "s3cret"
    async with aiohttp.ClientSession() as s:
        r = await s.get(master.url + "/api/v1/agent-channel", headers={"Authorization": "Bearer wrong"})
        assert r.status == 401


async def test_scheduler_that_stops_reading_is_disconnected(master, monkeypatch):
    monkeypatch.setattr(connections, "STREAM_LIMIT", 256 * 1024)
    async with aiohttp.ClientSession() as s:
        resp, fid, sid = await _subscribe(s, master.url)
        # From here on the scheduler reads nothing; each RECONCILE of unknown tasks queues an
        # UPDATE per task until the stream holds more than its limit and the master drops it.
        tasks = [{"task_id": {"value": f"t-{i}"}} for i in range(2000)]
        call = {"type": "RECONCILE", "framework_id": {"value": fid}, "reconcile": {"tasks": tasks}}

        async def dropped() -> bool:
            if fid not in master.streams:
                return True
            r = await s.post(master.url + "/api/v1/scheduler", json=call, headers={"Mesos-Stream-Id": sid})
            assert r.status == 202, await r.text()
            return False

        await async_wait_for(dropped, timeout=30, message="the non-reading scheduler's stream is dropped")
        assert sid not in master.streams_by_id
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()  # the master aborted the connection: no clean end of stream
        resp.close()
