"""The agent's endpoints: Basic authentication by realm, executor tokens, TLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess

import aiohttp
import pytest
from agent_security_support import cluster
from aiohttp import web

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.agent.auth import basic_header

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def _creds(tmp_path) -> str:
    p = tmp_path / "http-credentials.json"
    p.write_text(json.dumps({"credentials": [{"principal": "ops", "secret": "pw"}]}))
    return str(p)


async def test_readonly_endpoints_need_basic_auth(tmp_path):
    async with cluster(str(tmp_path / "agent"), http_credentials=_creds(tmp_path),
                       authenticate_http_readonly=True) as c:
        final = await c.run("t", {"value": "echo hi"})
        assert final["state"] == "TASK_FINISHED"
        url = c.agent.url
        stdout = {"path": c.sandbox("t") + "/stdout"}
        for path, params in (("/state", {}), ("/files/read", stdout), ("/files/browse", {"path": c.sandbox("t")}),
                             ("/files/download", stdout), ("/monitor/statistics", {}), ("/metrics/snapshot", {}),
                             ("/files/debug", {})):
            for header in (None, basic_header("ops", "wrong"), basic_header("nobody", "pw"), "Bearer pw",
                           "Basic !!!notbase64", basic_header("ops", "pw:extra")):
                headers = {"Authorization": header} if header else {}
                async with c.s.get(url + path, params=params, headers=headers) as r:
                    assert r.status == 401, (path, header, r.status)
                    assert r.headers["WWW-Authenticate"] == 'Basic realm="mesos-agent-readonly"'
            async with c.s.get(url + path, params=params, headers={"Authorization": basic_header("ops", "pw")}) as r:
                assert r.status == 200, (path, await r.text())
        async with c.s.get(url + "/health") as r:  # never authenticated, as in Mesos
            assert r.status == 200


def test_authentication_without_credentials_is_refused_at_start(tmp_path):
    from mesos_nb.agent import Agent

    with pytest.raises(ValueError, match="--http-credentials"):
        Agent(AgentConfig(work_dir=str(tmp_path), resources="cpus:1;mem:64", detect_gpus=False,
                          authenticate_http_readonly=True))


def _executor_task(task_id: str) -> dict:
    res = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
           {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]
    return {"name": task_id, "task_id": {"value": task_id}, "resources": res,
            "executor": {"executor_id": {"value": f"ex-{task_id}"}, "resources": res,
                         "command": {"value": "echo $MESOS_EXECUTOR_AUTHENTICATION_TOKEN; exec sleep 120"}}}


async def test_executor_calls_need_their_own_containers_token(tmp_path):
    async with cluster(str(tmp_path / "agent"), authenticate_http_executors=True) as c:
        c.fw.pending += [_executor_task("a"), _executor_task("b")]
        tokens = {}
        for name in ("a", "b"):
            path = f"/frameworks/{c.fw.fid}/executors/ex-{name}/runs/latest/stdout"
            for _ in range(1500):
                code, body = await c.read(path)
                if code == 200 and body["data"].strip():
                    tokens[name] = body["data"].strip()
                    break
                await asyncio.sleep(0.02)
        assert set(tokens) == {"a", "b"} and tokens["a"] != tokens["b"]
        url = c.agent.url + "/api/v1/executor"

        def subscribe(name: str) -> dict:
            return {"type": "SUBSCRIBE", "framework_id": {"value": c.fw.fid},
                    "executor_id": {"value": f"ex-{name}"}, "subscribe": {}}

        async def post(body: dict, token: str | None) -> tuple[int, str, str]:
            headers = {**JSON, **({"Authorization": f"Bearer {token}"} if token is not None else {})}
            async with c.s.post(url, json=body, headers=headers) as r:
                if r.status == 200:
                    n = int(await r.content.readline())  # RecordIO: "<length>\n" then the event
                    return 200, "", (await r.content.readexactly(n)).decode()
                return r.status, r.headers.get("WWW-Authenticate", ""), await r.text()

        forged = tokens["a"].rsplit(".", 1)[0] + "." + "0" * 64
        for token in (None, "", "garbage", forged, tokens["a"] + "x"):
            code, www, _ = await post(subscribe("a"), token)
            assert code == 401 and www == 'Bearer realm="mesos-agent-executor"', (token, code)
        heartbeat = {"type": "HEARTBEAT", "framework_id": {"value": c.fw.fid}, "executor_id": {"value": "ex-a"}}
        assert (await post(heartbeat, None))[0] == 401
        # A's token cannot act for B.
        code, _, text = await post(subscribe("b"), tokens["a"])
        assert code == 403 and "not for executor 'ex-b'" in text
        update = {"type": "UPDATE", "framework_id": {"value": c.fw.fid}, "executor_id": {"value": "ex-b"},
                  "update": {"status": {"task_id": {"value": "b"}, "state": "TASK_RUNNING",
                                        "source": "SOURCE_EXECUTOR", "uuid": "AAAAAAAAAAAAAAAAAAAAAA=="}}}
        assert (await post(update, tokens["a"]))[0] == 403
        # Its own token works.
        code, _, first = await post(subscribe("b"), tokens["b"])
        assert code == 200 and json.loads(first)["type"] == "SUBSCRIBED"


# ---------------------------------------------------------------------- TLS
@pytest.fixture
def cert(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    crt, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(crt), str(key)


async def test_agent_serves_https_and_verifies_the_master(tmp_path, cert):
    crt, key = cert
    seen: list[str] = []

    async def channel(request: web.Request) -> web.StreamResponse:
        seen.append(request.scheme + " " + request.headers.get("Authorization", ""))
        return web.Response(status=401)

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    app = web.Application()
    app.router.add_get("/api/v1/agent-channel", channel)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    master = f"127.0.0.1:{runner.addresses[0][1]}"
    try:
        # The master's certificate is verified against --tls-ca; with TLS on, host:port means wss://.
        proc = AgentProcess([AgentConfig(master=master, port=0, work_dir=str(tmp_path / "a"), resources="cpus:1;mem:64",
                                         detect_gpus=False, tls_cert=crt, tls_key=key, tls_ca=crt,
                                         agent_secret="legacy")], register_timeout=10)
        assert proc.ws_url.startswith("wss://")
        with pytest.raises(ConnectionError, match="refused"):
            await proc.start()
        assert seen == ["https Bearer legacy"]
        # Without the CA the master's self-signed certificate is refused: no request reaches it.
        proc = AgentProcess([AgentConfig(master="https://" + master, port=0, work_dir=str(tmp_path / "b"),
                                         resources="cpus:1;mem:64", detect_gpus=False)], register_timeout=2)
        with pytest.raises(ConnectionError, match="cannot reach"):
            await proc.start()
        assert len(seen) == 1
    finally:
        await runner.cleanup()


async def test_agent_listener_is_https_only(tmp_path, cert):
    crt, key = cert
    from mesos_nb.master.server import MasterConfig, MasterServer

    m = MasterServer(MasterConfig(port=0))
    await m.start()
    proc = AgentProcess([AgentConfig(master=f"http://127.0.0.1:{m.port}", port=0, work_dir=str(tmp_path / "a"),
                                     resources="cpus:1;mem:64", detect_gpus=False, tls_cert=crt, tls_key=key)])
    try:
        await proc.start()
        agent = proc.agents[0]
        assert agent.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=crt)
        async with aiohttp.ClientSession() as s:
            async with s.get(agent.url + "/state", ssl=ctx) as r:
                assert r.status == 200 and (await r.json())["id"] == agent.agent_id
            with pytest.raises(aiohttp.ClientError):
                async with s.get(agent.url.replace("https", "http") + "/state") as r:
                    await r.read()
    finally:
        await proc.stop()
        await m.stop()


def test_tls_settings_errors_are_one_sentence(monkeypatch):
    from mesos_nb.agent import tls

    monkeypatch.setenv("LIBPROCESS_SSL_ENABLED", "true")
    with pytest.raises(tls.TLSConfigError, match="CERT_FILE"):
        tls.server_context(AgentConfig())
    monkeypatch.delenv("LIBPROCESS_SSL_ENABLED")
    with pytest.raises(tls.TLSConfigError, match="together"):
        tls.server_context(AgentConfig(tls_cert="/x"))
    with pytest.raises(tls.TLSConfigError, match="cannot load"):
        tls.server_context(AgentConfig(tls_cert="/nope.crt", tls_key="/nope.key"))
    with pytest.raises(ValueError, match="cannot load"):  # the AgentProcess refuses before listening
        AgentProcess([AgentConfig(master="https://127.0.0.1:1", tls_ca="/nope.crt")])
