"""Hostile input on every master endpoint: never a 5xx (except 501 for UNKNOWN), never a crash."""

from __future__ import annotations

import json

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesos_nb.master.server import MasterConfig, MasterServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
call_types = st.sampled_from(
    ["SUBSCRIBE", "ACCEPT", "DECLINE", "KILL", "ACKNOWLEDGE", "RECONCILE", "MESSAGE", "REVIVE", "SUPPRESS",
     "SHUTDOWN", "TEARDOWN", "UNKNOWN", "BOGUS"]
)
calls = st.builds(
    lambda t, fid, payload: {"type": t, "framework_id": fid, t.lower(): payload},
    call_types,
    st.one_of(st.none(), st.fixed_dictionaries({"value": st.text(max_size=10)}), json_values),
    json_values,
)


async def _post_all(url: str, bodies: list[bytes]) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as s:
        for body in bodies:
            for path in ("/api/v1/scheduler", "/api/v1"):
                r = await s.post(url + path, data=body, headers={"Content-Type": "application/json", "Mesos-Stream-Id": "x"})
                statuses.append(r.status)
                if r.status != 200 or path != "/api/v1":  # an operator SUBSCRIBE streams until closed
                    await r.read()
                r.close()
        for q in ("/master/tasks?limit=-1", "/master/tasks?limit=x", "/master/tasks?order=up", "/nope", "/files/read"):
            r = await s.get(url + q)
            statuses.append(r.status)
        assert (await s.get(url + "/health")).status == 200
    return statuses


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(calls.map(lambda c: json.dumps(c).encode()) | st.binary(max_size=64), min_size=1, max_size=8))
def test_random_calls_never_crash_the_master(bodies):
    import asyncio

    async def run() -> list[int]:
        srv = MasterServer(MasterConfig(port=0))
        await srv.start()
        try:
            return await _post_all(srv.url, bodies)
        finally:
            await srv.stop()

    for status in asyncio.run(run()):
        # SUBSCRIBE with a valid framework_info may legitimately stream (200).
        assert status < 500 or status == 501, status
