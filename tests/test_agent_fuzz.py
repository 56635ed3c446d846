"""Hostile input on the agent's endpoints: ``/files/*``, ``/api/v1/executor``, ``/state``,
``/monitor/statistics``, ``/metrics/snapshot``. Never a 5xx, never a hang (every request
has a deadline), never a host file.

One real master and agent run in a background thread for the whole module; an attached
sandbox holds the awkward things a task can make: a FIFO (opening it for read would block),
symlinks to ``/etc`` and to ``/``, a socket, nested directories, an unreadable file.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.master.server import MasterConfig, MasterServer

VIRT = "/frameworks/fw-fuzz/executors/ex-fuzz/runs/latest"
DEADLINE = aiohttp.ClientTimeout(total=10)


class _Background:
    def __init__(self, work_dir: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.work_dir = work_dir

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def start(self) -> str:
        self.master = MasterServer(MasterConfig(port=0))
        await self.master.start()
        self.proc = AgentProcess([AgentConfig(master=f"127.0.0.1:{self.master.port}", port=0,
                                              work_dir=os.path.join(self.work_dir, "agent"), resources="cpus:1;mem:64",
                                              detect_gpus=False, authenticate_http_executors=True)])
        await self.proc.start()
        agent = self.proc.agents[0]
        sandbox = _make_sandbox(os.path.join(self.work_dir, "sandbox"))
        agent.files[sandbox] = sandbox
        agent.files[VIRT] = sandbox
        self.sandbox = sandbox
        return agent.url

    async def stop(self) -> None:
        await self.proc.stop()
        await self.master.stop()


def _make_sandbox(d: str) -> str:
    os.makedirs(os.path.join(d, "sub", "deeper"))
    with open(os.path.join(d, "stdout"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(d, "sub", "deeper", "f.txt"), "w") as f:
        f.write("deep\n")
    os.mkfifo(os.path.join(d, "fifo"))
    os.symlink("/etc", os.path.join(d, "etc"))
    os.symlink("/", os.path.join(d, "root"))
    os.symlink("stdout", os.path.join(d, "rel-link"))
    os.symlink("../../..", os.path.join(d, "sub", "up"))
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(d, "sock"))
    s.close()
    locked = os.path.join(d, "locked")
    with open(locked, "w") as f:
        f.write("x")
    os.chmod(locked, 0)
    return d


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory) -> Iterator[str]:
    bg = _Background(str(tmp_path_factory.mktemp("agent-fuzz")))
    url = bg.run(bg.start())
    try:
        yield url
    finally:
        bg.run(bg.stop())
        bg.loop.call_soon_threadsafe(bg.loop.stop)
        bg.thread.join(10)


# Query text: anything the client can put in a URL (no surrogates).
qtext = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
segments = st.sampled_from(["", ".", "..", "...", "stdout", "sub", "deeper", "f.txt", "fifo", "etc", "root",
                            "passwd", "rel-link", "up", "sock", "locked", "latest", "runs", "\x00", "%2e%2e",
                            "//", "~", "x" * 300]) | qtext
paths = st.builds(
    lambda base, segs: base + "/" + "/".join(segs),
    st.sampled_from([VIRT, "", "/frameworks", "/etc", "/proc/self"]) | qtext,
    st.lists(segments, max_size=6),
)
numbers = st.one_of(st.integers(-10, 2**70).map(str), qtext, st.just(""), st.just("-1"))


async def _get(url: str, path: str, params: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=DEADLINE) as s:
        async with s.get(url + path, params=params) as r:
            return r.status, await r.read()


def _check(status: int, body: bytes) -> None:
    assert status < 500, (status, body[:200])
    assert b"root:x:0:0" not in body  # never the host's /etc/passwd


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint=st.sampled_from(["/files/read", "/files/browse", "/files/download", "/files/read.json",
                                 "/files/browse.json"]),
       path=paths, offset=numbers, length=numbers, jsonp=st.none() | qtext)
def test_files_endpoints_never_fail_or_hang(agent_url, endpoint, path, offset, length, jsonp):
    params = {"path": path, "offset": offset, "length": length}
    if jsonp is not None:
        params["jsonp"] = jsonp
    status, body = asyncio.run(_get(agent_url, endpoint, params))
    _check(status, body)


def test_awkward_sandbox_entries_are_answered(agent_url):
    """The FIFO does not hang the agent; links are refused; the socket is not read."""
    async def run() -> dict[str, int]:
        out = {}
        for name in ("fifo", "etc/passwd", "root/etc/passwd", "rel-link", "sub/up/etc", "sock", "locked",
                     "stdout", "sub/deeper/f.txt"):
            out[name] = (await _get(agent_url, "/files/read", {"path": f"{VIRT}/{name}"}))[0]
        out["download fifo"] = (await _get(agent_url, "/files/download", {"path": f"{VIRT}/fifo"}))[0]
        out["browse"] = (await _get(agent_url, "/files/browse", {"path": VIRT}))[0]
        return out

    got = asyncio.run(run())
    assert got["stdout"] == 200 and got["sub/deeper/f.txt"] == 200 and got["browse"] == 200
    assert got["fifo"] == 403 and got["download fifo"] == 403 and got["sock"] in (403, 404)
    assert got["etc/passwd"] in (403, 404) and got["root/etc/passwd"] in (403, 404)
    assert got["rel-link"] == 403 and got["sub/up/etc"] in (403, 404)
    assert got["locked"] in (200, 403)  # root reads it; anyone else gets 403


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
executor_calls = st.builds(
    lambda t, fid, eid, payload: {"type": t, "framework_id": fid, "executor_id": eid, str(t).lower(): payload},
    st.sampled_from(["SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT", "BOGUS"]) | json_values,
    st.one_of(st.none(), st.fixed_dictionaries({"value": st.sampled_from(["fw-fuzz", "x", ""])}), json_values),
    st.one_of(st.none(), st.fixed_dictionaries({"value": st.sampled_from(["ex-fuzz", "y", ""])}), json_values),
    json_values,
)
auth_headers = st.none() | st.sampled_from(["Bearer ", "Bearer x.y", "Bearer ex-fuzz." + "0" * 64, "Basic Og==",
                                            "bearer abc"]) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(lambda t: "Bearer " + t)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=executor_calls.map(lambda c: json.dumps(c).encode()) | st.binary(max_size=64),
       ctype=st.sampled_from(["application/json", "application/x-protobuf", "text/plain", ""]),
       accept=st.sampled_from(["", "application/json", "text/html", "*/*"]), auth=auth_headers)
def test_executor_api_never_fails_or_hangs(agent_url, body, ctype, accept, auth):
    async def run() -> tuple[int, bytes]:
        headers = {"Content-Type": ctype}
        if accept:
            headers["Accept"] = accept
        if auth is not None:
            headers["Authorization"] = auth
        async with aiohttp.ClientSession(timeout=DEADLINE) as s:
            async with s.post(agent_url + "/api/v1/executor", data=body, headers=headers) as r:
                return r.status, await r.read()

    status, text = asyncio.run(run())
    _check(status, text)
    assert status in (400, 401, 403, 406, 413, 415), (status, text[:200])  # no valid token: never accepted


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint=st.sampled_from(["/state", "/state.json", "/slave(1)/state", "/monitor/statistics",
                                 "/monitor/statistics.json", "/metrics/snapshot", "/files/debug", "/health", "/nope"]),
       query=st.dictionaries(st.sampled_from(["jsonp", "path", "offset", "x"]) | qtext, qtext, max_size=3))
def test_read_endpoints_never_fail(agent_url, endpoint, query):
    status, body = asyncio.run(_get(agent_url, endpoint, query))
    _check(status, body)
