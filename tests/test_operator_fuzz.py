"""Hostile input on the operator APIs (master and agent): never a 5xx (501 = "not supported"), never a crash."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesos_nb.master.operator_api import CALLS as MASTER_CALLS
from mesos_nb.master.server import MasterConfig, MasterServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
ids = st.one_of(st.none(), st.fixed_dictionaries({"value": st.text(max_size=12)}), json_values)


def _calls(types: list[str]) -> st.SearchStrategy[bytes]:
    payload = st.one_of(
        json_values,
        st.fixed_dictionaries({}, optional={
            "framework_id": ids, "agent_id": ids, "task_id": ids, "container_id": ids, "path": json_values,
            "offset": json_values, "length": json_values, "level": json_values, "duration": json_values,
            "weight_infos": json_values, "signal": json_values, "command": json_values, "container": json_values}),
    )
    call = st.builds(lambda t, p: {"type": t, t.lower(): p}, st.sampled_from(types + ["UNKNOWN", "BOGUS"]), payload)
    return st.one_of(call.map(lambda c: json.dumps(c).encode()), st.binary(max_size=48))


def _ok(status: int) -> bool:
    return status < 500 or status == 501


QUERIES = ["/master/tasks?limit=-1&offset=2", "/tasks?limit=0x10&order=asc", "/tasks?offset=-5", "/tasks/?limit=abc",
           "/master/frameworks/", "/master/roles/", "/master/weights/", "/flags/", "/master/state//", "/nope/"]

MASTER_TYPES = sorted(MASTER_CALLS - {"SUBSCRIBE"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_calls(MASTER_TYPES), min_size=1, max_size=8), st.sampled_from(["application/json", "text/plain",
                                                                                 "application/x-protobuf"]))
def test_master_operator_calls_never_crash(bodies, ctype):
    async def run() -> list[int]:
        srv = MasterServer(MasterConfig(port=0))
        await srv.start()
        out = []
        try:
            async with aiohttp.ClientSession() as s:
                for body in bodies:
                    for path in ("/api/v1", "/master/api/v1/"):
                        async with s.post(srv.url + path, data=body, headers={"Content-Type": ctype}) as r:
                            out.append(r.status)
                for q in QUERIES:
                    async with s.get(srv.url + q) as r:
                        out.append(r.status)
                async with s.put(srv.url + "/master/weights", data=bodies[0]) as r:
                    out.append(r.status)
                async with s.get(srv.url + "/health") as r:
                    assert r.status == 200
        finally:
            await srv.stop()
        return out

    for status in asyncio.run(run()):
        assert _ok(status), status


AGENT_TYPES = ["GET_HEALTH", "GET_FLAGS", "GET_STATE", "GET_CONTAINERS", "GET_TASKS", "LIST_FILES", "READ_FILE",
               "WAIT_NESTED_CONTAINER", "WAIT_CONTAINER", "KILL_NESTED_CONTAINER", "KILL_CONTAINER",
               "REMOVE_NESTED_CONTAINER", "ATTACH_CONTAINER_OUTPUT", "LAUNCH_NESTED_CONTAINER_SESSION",
               "ATTACH_CONTAINER_INPUT", "LAUNCH_CONTAINER", "GET_METRICS"]
records = st.lists(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=24)), max_size=4)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_calls(AGENT_TYPES), min_size=1, max_size=6), records)
def test_agent_operator_calls_never_crash(bodies, input_records):
    pytest.importorskip("mesos_nb.agent.process")
    from mesos_nb.local import LocalCluster
    from mesos_nb.protocol import recordio

    async def run() -> list[int]:
        cluster = LocalCluster(agents=1, port=0, agent_resources="cpus:1;mem:256")
        await cluster.start()
        out = []
        try:
            url = cluster.agents[0].url
            async with aiohttp.ClientSession() as s:
                for body in bodies:
                    async with s.post(url + "/api/v1", data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        out.append(r.status)
                raw = b"".join(recordio.encode(x) for x in input_records) + b"12\nshort"
                async with s.post(url + "/api/v1", data=raw, headers={
                        "Content-Type": "application/recordio", "Message-Content-Type": "application/json"}) as r:
                    out.append(r.status)
                for q in ("/flags/", "/containers", "/version", "/slave(1)/containers/"):
                    async with s.get(url + q) as r:
                        out.append(r.status)
                async with s.get(url + "/health") as r:
                    assert r.status == 200
        finally:
            await cluster.stop()
        return out

    for status in asyncio.run(run()):
        assert _ok(status), status


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "framework_info": st.one_of(json_values, st.fixed_dictionaries(
        {"user": st.text(max_size=6), "name": st.text(max_size=6)},
        optional={"id": ids, "roles": json_values, "role": json_values, "principal": json_values,
                  "checkpoint": json_values, "failover_timeout": json_values, "capabilities": json_values})),
    "suppressed_roles": json_values, "offer_constraints": json_values})), min_size=1, max_size=6))
def test_update_framework_never_crashes(payloads):
    async def run() -> list[int]:
        srv = MasterServer(MasterConfig(port=0))
        await srv.start()
        out = []
        try:
            async with aiohttp.ClientSession() as s:
                sub = await s.post(srv.url + "/api/v1/scheduler", json={"type": "SUBSCRIBE", "subscribe": {
                    "framework_info": {"user": "u", "name": "fz"}}}, headers={"Accept": "application/json"})
                sid = sub.headers["Mesos-Stream-Id"]
                fid = next(iter(srv.core.frameworks))
                for p in payloads:
                    if isinstance(p, dict) and isinstance(p.get("framework_info"), dict) and p["framework_info"].get(
                            "id") is None:
                        p["framework_info"]["id"] = {"value": fid}
                    async with s.post(srv.url + "/api/v1/scheduler", json={
                            "type": "UPDATE_FRAMEWORK", "framework_id": {"value": fid}, "update_framework": p},
                            headers={"Mesos-Stream-Id": sid}) as r:
                        out.append(r.status)
                async with s.post(srv.url + "/api/v1", json={"type": "GET_FRAMEWORKS"},
                                  headers={"Content-Type": "application/json"}) as r:
                    out.append(r.status)
                sub.close()
        finally:
            await srv.stop()
        return out

    for status in asyncio.run(run()):
        assert _ok(status), status
