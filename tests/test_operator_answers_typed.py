"""The v1 operator calls the master answers on the spot are typed (``protocol/operator_answers.py``)
and their JSON is byte for byte what it was when they were dicts.

``tests/golden/operator_answers.json`` holds every such answer (and the v0 ``/quota`` and
``/maintenance/*`` bodies built from the same records) as the master of dafe117 wrote them,
taken through HTTP on a real master with weights, quota, a maintenance schedule with a machine
down and a logging level set; what depends on the run (times, ports, the master's id) is
replaced by its JSON kind. Regenerate only on purpose: ``python tests/test_operator_answers_typed.py``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from mesos_nb.master.harness import Harness
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import operator_answers as oa

GOLDEN = Path(__file__).resolve().parent / "golden" / "operator_answers.json"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
CALLS = ["GET_HEALTH", "GET_VERSION", "GET_FLAGS", "GET_METRICS", "GET_LOGGING_LEVEL", "GET_OPERATIONS",
         "GET_WEIGHTS", "GET_MASTER", "GET_MAINTENANCE_STATUS", "GET_MAINTENANCE_SCHEDULE", "GET_QUOTA"]
ROLES = "GET_ROLES"  # typed already (operator_state.py); only its Response was a dict
V0 = ["/quota", "/maintenance/status", "/maintenance/schedule"]
# values that differ from run to run, by the call whose answer holds them
VOLATILE = {"GET_VERSION": {"version", "build_time"},
            "GET_MASTER": {"id", "ip", "port", "pid", "hostname", "version", "start_time", "elected_time"}}
START = {"nanoseconds": 1_700_000_000_000_000_000}


def _kind(x: Any) -> str:
    return f"<{type(x).__name__}>"


def _normal(x: Any, volatile: set[str]) -> Any:
    if isinstance(x, dict):
        return {k: _kind(v) if k in volatile and not isinstance(v, dict | list) else _normal(v, volatile)
                for k, v in x.items()}
    if isinstance(x, list):
        return [_normal(v, volatile) for v in x]
    return x


def normalise(call: str, raw: bytes) -> Any:
    """The answer as parsed JSON (key order and int/float kept), run-dependent values replaced;
    flags and metrics by the kinds of their fields (which ones exist is another matter)."""
    doc = json.loads(raw)
    body = doc.get(call.lower()) if call.startswith("GET_") else None
    if call in ("GET_FLAGS", "GET_METRICS"):
        key = "flags" if call == "GET_FLAGS" else "metrics"
        items = body[key]
        assert items and all(list(i) == ["name", "value"] for i in items), items
        body[key] = sorted({json.dumps({k: _kind(v) for k, v in i.items()}) for i in items})
    return _normal(doc, VOLATILE.get(call, set()))


async def set_up(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for body in (
            {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
                {"role": "dev", "weight": 2.5}, {"role": "ops", "weight": 1}]}},
            {"type": "UPDATE_QUOTA", "update_quota": {"force": True, "quota_configs": [
                {"role": "dev", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 10},
                                                                             "mem": {"value": 4096.5}}},
                {"role": "ops", "limits": {"gpus": {"value": 1}}}]}},
            {"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {"schedule": {"windows": [
                {"machine_ids": [{"hostname": "h1"}, {"hostname": "h2", "ip": "10.0.0.2"}],
                 "unavailability": {"start": START, "duration": {"nanoseconds": 3_600_000_000_000}}},
                {"machine_ids": [{"ip": "10.0.0.3"}], "unavailability": {"start": START}}]}}},
            {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [{"ip": "10.0.0.3"}]}},
            {"type": "SET_LOGGING_LEVEL", "set_logging_level": {"level": 1, "duration": {"nanoseconds": 10 ** 12}}},
        ):
            async with s.post(url + "/api/v1", json=body, headers=JSON) as r:
                assert r.status == 200, (body["type"], await r.text())


async def answers(url: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as s:
        for call in [*CALLS, ROLES]:
            body = {"type": call} | ({"get_metrics": {}} if call == "GET_METRICS" else {})
            async with s.post(url + "/api/v1", json=body, headers=JSON) as r:
                assert r.status == 200, (call, await r.text())
                assert r.content_type == "application/json"
                out[call] = await r.read()
        for path in V0:
            async with s.get(url + path) as r:
                assert r.status == 200
                out[path] = await r.read()
    return out


async def _run() -> dict[str, bytes]:
    srv = MasterServer(MasterConfig(port=0, allocation_interval=0.5))
    await srv.start()
    try:
        await set_up(srv.url)
        return await answers(srv.url)
    finally:
        await srv.stop()


async def test_each_answer_is_the_json_it_was_as_a_dict():
    got = await _run()
    golden = json.loads(GOLDEN.read_text())
    assert list(golden) == [*CALLS, ROLES, *V0]
    for call, raw in got.items():
        # as text: the keys' order counts too (dicts compare equal in any order)
        assert json.dumps(normalise(call, raw)) == json.dumps(golden[call]), call


async def test_each_answer_decodes_into_its_strict_type():
    """Every key of every answer is a declared field (unknown ones are refused), of its type."""
    got = await _run()
    for call in CALLS:
        resp = msgspec.json.decode(got[call], type=oa.RESPONSES[call])
        assert isinstance(getattr(resp, call.lower()), oa.ANSWERS[call])
        # nothing dropped on the way back (a float field reads an int metric as a float: 1 == 1.0)
        assert json.loads(msgspec.json.encode(resp)) == json.loads(got[call]), call
    status = msgspec.json.decode(got["/maintenance/status"], type=oa.ClusterStatus)
    assert [d.id for d in status.draining_machines] == [oa.MachineID(hostname="h1"),
                                                        oa.MachineID(hostname="h2", ip="10.0.0.2")]
    assert status.down_machines == [oa.MachineID(ip="10.0.0.3")]
    quota = msgspec.json.decode(got["/quota"], type=oa.QuotaStatus)
    assert quota.configs[0].limits["mem"].value == 4096.5


def test_a_misspelt_or_missing_field_is_refused_where_the_answer_is_built():
    for bad in ({"healthy": True, "heathy": True}, {}):
        try:
            oa.GetHealth(**bad)
        except TypeError:
            continue
        raise AssertionError(f"GetHealth({bad}) was accepted")


def test_maintenance_status_with_inverse_offer_answers_encodes_as_the_dict_did():
    """The statuses of inverse offers (a framework answered one) keep their shape too."""
    h = Harness()
    h.add_agent(hostname="10.0.0.1")
    fw = h.subscribe("fw")
    h.drain()
    h.launch(fw, h.allocate()[fw.id][0], "t1")  # a framework using the agent gets inverse offers
    h.update("t1", "TASK_RUNNING")
    h.acknowledge("t1")
    h.core.maintenance_call("UPDATE_MAINTENANCE_SCHEDULE", {"schedule": {"windows": [
        {"machine_ids": [{"hostname": "10.0.0.1", "ip": "10.0.0.1"}], "unavailability": {"start": START}}]}}, h.now)
    h.drain()
    h.core.allocate(h.now)  # the framework gets an inverse offer for the draining agent
    h.drain()
    old = h.core.maintenance_status()
    assert old["draining_machines"][0]["statuses"][0]["status"] == "UNKNOWN"
    enc = msgspec.json.Encoder()
    assert enc.encode(msgspec.convert(old, oa.ClusterStatus)) == enc.encode(old)


if __name__ == "__main__":  # regenerate the golden file from this checkout's master
    result = asyncio.run(_run())
    GOLDEN.write_text(json.dumps({c: normalise(c, raw) for c, raw in result.items()}, indent=1) + "\n")
    sys.stdout.write(f"wrote {GOLDEN}\n")
