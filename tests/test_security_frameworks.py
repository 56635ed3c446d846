"""Attack 3, "no auth for frameworks or operators", performed against a master with
authentication and ACLs on: alice may register only in role eng, bob only in ops; each may tear
down only their own frameworks; bob may run no task at all."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.local import LocalCluster
from mesos_nb.master.security import SecurityConfig
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.credentials import Credential, basic_header, write_credentials
from mesos_nb.scheduler import MesosError, Scheduler, SchedulerDriver, command_task

pytest.importorskip("mesos_nb.agent.process")

ROOT = Path(__file__).resolve().parent.parent
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))

ACLS = {
    "permissive": True,
    "register_frameworks": [
        {"principals": {"values": ["alice"]}, "roles": {"values": ["eng", "*"]}},
        {"principals": {"values": ["bob"]}, "roles": {"values": ["ops"]}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}},
    ],
    "teardown_frameworks": [
        {"principals": {"values": ["alice"]}, "framework_principals": {"values": ["alice"]}},
        {"principals": {"values": ["bob"]}, "framework_principals": {"values": ["bob"]}},
        {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}},
    ],
    "run_tasks": [{"principals": {"values": ["bob"]}, "users": {"type": "NONE"}}],
}
ALICE, BOB = Credential("alice", "alice-secret"), Credential("bob", "bob-secret")


@pytest.fixture
async def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    creds = tmp_path / "creds.json"
    write_credentials(str(creds), [ALICE, BOB])
    sec = SecurityConfig(credentials=str(creds), authenticate_frameworks=True, authenticate_agents=True,
                         authenticate_http_readonly=True, authenticate_http_readwrite=True,
                         acls=json.dumps(ACLS))
    c = LocalCluster(agents=1, port=0, work_dir=str(tmp_path / "c"), agent_resources="cpus:2;mem:512",
                     authenticate=True, master_options={"security": sec})
    await c.start()
    yield c
    await c.stop()


def basic(c: Credential) -> dict[str, str]:
    return {"Authorization": basic_header(c.principal, c.secret)}


async def post(cluster, path: str, body: bytes | str | dict, headers: dict[str, str]) -> tuple[int, str, dict]:
    data = json.dumps(body) if isinstance(body, dict) else body
    h = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession() as s, s.post(cluster.master_url + path, data=data, headers=h) as r:
        return r.status, await r.text(), dict(r.headers)


async def state(cluster) -> dict:
    async with aiohttp.ClientSession(headers=basic(ALICE)) as s, s.get(cluster.master_url + "/master/state") as r:
        return await r.json()


class Sleeper(Scheduler):
    def __init__(self, user: str | None = None) -> None:
        self.updates: list[m.TaskStatus] = []
        self.launched = False
        self.user = user
        self.disconnects = 0

    async def offers(self, driver, offers):
        if not self.launched:
            self.launched = True
            t = command_task(offers[0], "sleep 60", cpus=0.1, mem=32, task_id=f"t-{driver.framework_id[-4:]}")
            await driver.launch([offers[0].id], [t])
        else:
            await driver.decline([o.id for o in offers], refuse_seconds=60)

    def update(self, driver, status):
        self.updates.append(status)

    def disconnected(self, driver):
        self.disconnects += 1


async def start(cluster, cred: Credential, role: str = "eng", fid: str | None = None,
                sched: Sleeper | None = None) -> tuple[SchedulerDriver, Sleeper]:
    sched = sched or Sleeper()
    info = m.FrameworkInfo(user="", name=f"{cred.principal}-fw", roles=[role],
                           capabilities=[m.Capability(type="MULTI_ROLE")],
                           id=m.ID(value=fid) if fid else None, failover_timeout=60)
    d = SchedulerDriver(sched, info, cluster.master_address, principal=cred.principal, secret=cred.secret,
                        start_timeout=10)
    await d.start()
    return d, sched


async def test_subscribe_without_or_with_wrong_credentials_is_401(cluster):
    sub = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "x"}}}
    for headers in ({}, basic(Credential("alice", "wrong")), basic(Credential("mallory", "x")),
                    {"Authorization": "Bearer alice-secret"}):
        status, text, h = await post(cluster, "/api/v1/scheduler", sub, headers)
        assert status == 401, text
        assert h["WWW-Authenticate"] == 'Basic realm="mesos"'
    with pytest.raises(MesosError) as e:
        await start(cluster, Credential("alice", "wrong"))
    assert e.value.status == 401


async def test_operator_calls_need_credentials(cluster):
    for body in ({"type": "KILL_TASK", "kill_task": {"task_id": {"value": "x"}}},
                 {"type": "TEARDOWN", "teardown": {"framework_id": {"value": "x"}}}):
        for headers in ({}, basic(Credential("bob", "alice-secret"))):
            status, _, h = await post(cluster, "/api/v1", body, headers)
            assert status == 401 and h["WWW-Authenticate"] == 'Basic realm="mesos"'
    async with aiohttp.ClientSession() as s:
        for path in ("/master/state", "/master/tasks", "/", "/master/files/read?agent_id=x&path=/"):
            async with s.get(cluster.master_url + path) as r:
                assert r.status == 401, path
        async with s.get(cluster.master_url + "/health") as r:
            assert r.status == 200


async def test_sdk_framework_runs_tasks_and_others_cannot_touch_it(cluster):
    alice, sched = await start(cluster, ALICE)
    try:
        await async_wait_for(lambda: any(u.state == "TASK_RUNNING" for u in sched.updates), 20)
        fid = alice.framework_id
        tid = sched.updates[0].task_id.value
        st = await state(cluster)
        assert st["frameworks"][0]["principal"] == "alice"

        # bob takes alice's framework id: refused, alice is not failed over
        with pytest.raises(MesosError) as e:
            await start(cluster, BOB, role="ops", fid=fid)
        assert e.value.status == 403 and "another principal" in e.value.message
        # bob (even claiming role eng) cannot subscribe as alice's framework either
        sub = {"type": "SUBSCRIBE", "framework_id": {"value": fid},
               "subscribe": {"framework_info": {"user": "", "name": "x", "id": {"value": fid}}}}
        status, text, _ = await post(cluster, "/api/v1/scheduler", sub, basic(BOB))
        assert status == 403, text
        # bob cannot tear it down or kill its task through the operator API
        status, text, _ = await post(cluster, "/api/v1", {"type": "TEARDOWN", "teardown": {
            "framework_id": {"value": fid}}}, basic(BOB))
        assert status == 403 and "TEARDOWN" in text
        status, text, _ = await post(cluster, "/api/v1", {"type": "KILL_TASK", "kill_task": {
            "task_id": {"value": tid}}}, basic(BOB))
        assert status == 403, text
        # nor through the scheduler API with alice's framework id
        status, text, _ = await post(cluster, "/api/v1/scheduler", {
            "type": "TEARDOWN", "framework_id": {"value": fid}}, {**basic(BOB), "Mesos-Stream-Id": alice.stream_id})
        assert status == 403, text
        st = await state(cluster)
        assert [f["id"] for f in st["frameworks"]] == [fid]
        assert st["frameworks"][0]["tasks"][0]["state"] == "TASK_RUNNING"
        assert alice.connected and sched.disconnects == 0
        assert not any(m.is_terminal(u.state) for u in sched.updates)

        # alice may tear down her own framework
        status, text, _ = await post(cluster, "/api/v1", {"type": "TEARDOWN", "teardown": {
            "framework_id": {"value": fid}}}, basic(ALICE))
        assert status == 200, text

        async def gone() -> bool:
            return [f["id"] for f in (await state(cluster))["completed_frameworks"]] == [fid]

        await async_wait_for(gone, 20)
    finally:
        await alice.stop()


async def test_a_principal_not_allowed_a_role_is_403(cluster):
    with pytest.raises(MesosError) as e:
        await start(cluster, ALICE, role="ops")
    assert e.value.status == 403 and "Not authorized to register framework" in e.value.message
    # FrameworkInfo.principal naming someone else than the authenticated principal: 400 (Mesos)
    sub = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "x", "principal": "bob"}}}
    status, text, _ = await post(cluster, "/api/v1/scheduler", sub, basic(ALICE))
    assert status == 400 and "does not match" in text


async def test_run_tasks_acl_refuses_the_launch(cluster):
    bob, sched = await start(cluster, BOB, role="ops")
    try:
        await async_wait_for(lambda: sched.updates, 20)
        u = sched.updates[0]
        assert u.state == "TASK_ERROR" and u.reason == "REASON_TASK_UNAUTHORIZED"
    finally:
        await bob.stop()


async def test_operator_api_takes_only_json_from_this_origin(cluster):
    call = json.dumps({"type": "GET_HEALTH"})
    for ctype, want in (("text/plain", 415), ("application/x-www-form-urlencoded", 415),
                        ("application/x-protobuf", 415)):
        status, text, _ = await post(cluster, "/api/v1", call, {**basic(ALICE), "Content-Type": ctype})
        assert status == want, (ctype, text)
    status, text, _ = await post(cluster, "/api/v1", call, {**basic(ALICE), "Content-Type": "application/x-protobuf"})
    assert "not supported" in text
    status, text, _ = await post(cluster, "/api/v1", call, {**basic(ALICE), "Origin": "http://evil.example"})
    assert status == 403 and "Cross-origin" in text
    status, _, _ = await post(cluster, "/api/v1", call, basic(ALICE))
    assert status == 200


async def test_deeply_nested_json_is_400(cluster):
    for path in ("/api/v1", "/api/v1/scheduler"):
        for body in ("[" * 200_000, '{"type":"SUBSCRIBE","x":' + "[" * 200_000):
            status, text, _ = await post(cluster, path, body, basic(ALICE))
            assert status == 400, (path, status, text[:200])


@pytest.mark.pymesos
@pytest.mark.skipif(not PYMESOS_PY.exists(), reason="no pymesos virtualenv (scripts/test.sh makes it)")
async def test_unmodified_pymesos_framework_with_credentials(cluster):
    app = ROOT / "tests" / "pymesos_apps" / "scheduler.py"

    async def run(secret: str, timeout: float) -> tuple[int | None, list[dict]]:
        env = {**os.environ, "PYMESOS_PRINCIPAL": "alice", "PYMESOS_SECRET": secret}
        proc = await asyncio.create_subprocess_exec(
            str(PYMESOS_PY), str(app), "many", cluster.master_address, "5", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
        return proc.returncode, [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]

    rc, lines = await run("alice-secret", 90)
    assert rc == 0 and lines[-1]["result"] == {"finished": 5}, lines
    st = await state(cluster)
    fw = next(f for f in st["completed_frameworks"] + st["frameworks"] if f["name"] == "pymesos-many")
    assert fw["principal"] == "alice"
