"""The master reads agents that serve HTTPS and require HTTP authentication: the web UI's
sandbox log proxy (``/master/files/read``) and the utilization feed (``/monitor/statistics``).

A real master and a real agent, both over TLS with a CA made for the test; the agent runs with
``--authenticate-http-readonly``. The master presents ``--agent-http-credential``; without it
(or with a wrong one) the proxy answers 502 with a sentence naming the flag.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from agent_security_support import Framework
from conftest import async_wait_for
from tls_certs import make_certs, openssl_available

from mesos_nb.protocol.tls import client_context

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl CLI")
pytest.importorskip("mesos_nb.agent.process")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls"))


def _write(path, doc: Any) -> str:
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return str(path)


@contextlib.asynccontextmanager
async def secure_cluster(tmp_path, certs, master_credential: dict | None, tls: bool = True) -> AsyncIterator[Any]:
    from mesos_nb.agent import AgentConfig, AgentProcess
    from mesos_nb.master.server import MasterConfig, MasterServer

    agent_creds = _write(tmp_path / "agent-http.json", {"credentials": [{"principal": "ui", "secret": "s3cret"}]})
    mcred = _write(tmp_path / "master-cred.json", master_credential) if master_credential else None
    files = dict(tls_cert=certs.cert, tls_key=certs.key, tls_ca=certs.ca) if tls else {}
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.05, agent_http_credential=mcred, **files))
    await master.start()
    proc = AgentProcess([AgentConfig(
        master=f"127.0.0.1:{master.port}", port=0, work_dir=str(tmp_path / "agent"), resources="cpus:2;mem:512",
        detect_gpus=False, http_credentials=agent_creds, authenticate_http_readonly=True, **files)])
    try:
        await proc.start()
        ctx = client_context(certs.ca)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            fw = Framework(s, master.url, "")
            await fw.subscribe()
            try:
                yield master, proc.agents[0], fw, s
            finally:
                fw.reader.cancel()
                fw.resp.close()
    finally:
        await proc.stop()
        await master.stop()


async def _read_stdout(master, agent, fw, s, task_id: str) -> tuple[int, str]:
    path = f"/frameworks/{fw.fid}/executors/{task_id}/runs/latest/stdout"
    async with s.get(master.url + "/master/files/read",
                     params={"agent_id": agent.agent_id, "path": path, "offset": "0"}) as r:
        return r.status, await r.text()


async def test_log_proxy_and_utilization_reach_an_https_agent_that_requires_auth(tmp_path, certs):
    async with secure_cluster(tmp_path, certs, {"principal": "ui", "secret": "s3cret"}) as (master, agent, fw, s):
        # the agent said at registration that it serves https
        assert master.core.agents[agent.agent_id].scheme == "https"
        fw.launch("hello", {"value": "echo hello-from-the-sandbox"})
        final = await fw.wait_state("hello", {"TASK_FINISHED", "TASK_FAILED"})
        assert final["state"] == "TASK_FINISHED"
        status, body = await _read_stdout(master, agent, fw, s, "hello")
        assert status == 200, body
        assert "hello-from-the-sandbox" in json.loads(body)["data"]

        # the feed polls agents that run tasks: a running task's agent shows its statistics
        fw.launch("busy", {"value": "sleep 60"})
        await fw.wait_state("busy", {"TASK_RUNNING"})
        url = master.url + "/master/utilization"

        async def used() -> dict | None:
            async with s.get(url) as r:
                snap = await r.json()
            rows = [a for a in snap["agents"] if a["id"] == agent.agent_id]
            return rows[0]["used"] if rows and rows[0]["used"]["mem"] else None

        use = await async_wait_for(used, 20)
        assert use["mem"] > 0 and use["cpus"] is not None
        assert master.webui.feed.usage[agent.agent_id].failures == 0


async def test_without_the_master_credential_the_proxy_names_the_flag(tmp_path, certs):
    async with secure_cluster(tmp_path, certs, None) as (master, agent, fw, s):
        fw.launch("hello", {"value": "echo hi"})
        await fw.wait_state("hello", {"TASK_FINISHED", "TASK_FAILED"})
        status, body = await _read_stdout(master, agent, fw, s, "hello")
        assert status == 502
        assert "requires HTTP authentication" in body and "--agent-http-credential" in body
        assert "Traceback" not in body


async def test_a_wrong_master_credential_is_named_and_its_secret_is_not(tmp_path, certs):
    async with secure_cluster(tmp_path, certs, {"principal": "ui", "secret": "not-it"}) as (master, agent, fw, s):
        fw.launch("hello", {"value": "echo hi"})
        await fw.wait_state("hello", {"TASK_FINISHED", "TASK_FAILED"})
        status, body = await _read_stdout(master, agent, fw, s, "hello")
        assert status == 502
        assert "refused the master's credential" in body and "'ui'" in body and "not-it" not in body


async def test_the_credential_never_goes_to_a_plain_http_agent(tmp_path, certs):
    async with secure_cluster(tmp_path, certs, {"principal": "ui", "secret": "s3cret"}, tls=False) as (
            master, agent, fw, s):
        assert master.core.agents[agent.agent_id].scheme == "http"
        fw.launch("hello", {"value": "echo hi"})
        await fw.wait_state("hello", {"TASK_FINISHED", "TASK_FAILED"})
        status, body = await _read_stdout(master, agent, fw, s, "hello")
        assert status == 502
        assert "only over https" in body and "--tls-cert" in body and "s3cret" not in body


async def test_an_unknown_scheme_is_refused_at_registration(tmp_path, certs):
    from mesos_nb.master.security import Guard
    from mesos_nb.protocol import channel as ch
    from mesos_nb.protocol.resources import Resources

    reg = ch.RegisterAgent(key="k", hostname="127.0.0.1", port=5051, scheme="gopher",
                           resources=Resources.parse("cpus:1;mem:64").to_proto())
    assert "Invalid agent scheme" in (Guard(None).check_agent_registration(reg, None, None, None) or "")
    # an agent that does not send the field (an older one) is read over http
    old = ch.decode_to_master(ch.encode_frame([ch.RegisterAgent(
        key="k", hostname="127.0.0.1", port=5051, resources=[])]))[0]
    assert old.scheme == "http"


def test_the_master_cli_takes_the_credential_and_shows_only_its_path(tmp_path):
    from mesos_nb.cli.parser import build_parser
    from mesos_nb.cli.services import _master_security
    from mesos_nb.master.server import MasterConfig, MasterServer

    cred = _write(tmp_path / "c.json", {"principal": "ui", "secret": "s3cret"})
    args = build_parser().parse_args(["master", "--agent-http-credential", cred])
    cfg = MasterConfig(port=0, **_master_security(args))
    assert cfg.agent_http_credential == cred
    srv = MasterServer(cfg)
    assert srv.flags()["agent_http_credential"] == cred
    flags = srv.operator.flag_map()
    assert flags["agent_http_credential"] == cred and "s3cret" not in json.dumps(flags)
    with pytest.raises(ValueError, match="--agent-http-credential"):
        MasterServer(MasterConfig(port=0, agent_http_credential=str(tmp_path / "missing.json")))
