"""The master reads agents that serve HTTPS and require HTTP authentication: the web UI's
sandbox log proxy (``/master/files/read``) and the utilization feed (``/monitor/statistics``).

A real master and a real agent, both over TLS with a CA made for the test; the agent runs with
``--authenticate-http-readonly``. The master presents ``--agent-http-credential``; without it
(or with a wrong one) the proxy answers 502 with a sentence naming the flag.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_security_support import cluster
from conftest import async_wait_for
from tls_certs import make_certs, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl CLI")
pytest.importorskip("mesos_nb.agent.process")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls"))


def _write(path, doc: Any) -> str:
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return str(path)


def secure_cluster(tmp_path, certs, master_credential: dict | None, tls: bool = True):
    """A master and an agent (both TLS unless ``tls=False``); the agent requires HTTP auth."""
    agent_creds = _write(tmp_path / "agent-http.json", {"credentials": [{"principal": "ui", "secret": "s3cret"}]})
    mcred = _write(tmp_path / "master-cred.json", master_credential) if master_credential else None
    files = dict(tls_cert=certs.cert, tls_key=certs.key, tls_ca=certs.ca) if tls else {}
    return cluster(str(tmp_path / "agent"), master_kw=dict(agent_http_credential=mcred, **files),
                   http_credentials=agent_creds, authenticate_http_readonly=True, **files)


async def _read_stdout(c, task_id: str) -> tuple[int, str]:
    async with c.s.get(c.master_url + "/master/files/read",
                       params={"agent_id": c.agent.agent_id, "path": c.sandbox(task_id) + "/stdout"}) as r:
        return r.status, await r.text()


async def test_log_proxy_and_utilization_reach_an_https_agent_that_requires_auth(tmp_path, certs):
    async with secure_cluster(tmp_path, certs, {"principal": "ui", "secret": "s3cret"}) as c:
        # the agent said at registration that it serves https
        assert c.master.core.agents[c.agent.agent_id].scheme == "https"
        final = await c.run("hello", {"value": "echo hello-from-the-sandbox"})
        assert final["state"] == "TASK_FINISHED"
        status, body = await _read_stdout(c, "hello")
        assert status == 200, body
        assert "hello-from-the-sandbox" in json.loads(body)["data"]

        # the feed polls agents that run tasks: a running task's agent shows its statistics
        await c.run("busy", {"value": "sleep 60"}, {"TASK_RUNNING"})

        async def used() -> dict | None:
            async with c.s.get(c.master_url + "/master/utilization") as r:
                snap = await r.json()
            rows = [a for a in snap["agents"] if a["id"] == c.agent.agent_id]
            return rows[0]["used"] if rows and rows[0]["used"]["mem"] else None

        use = await async_wait_for(used, 20)
        assert use["mem"] > 0 and use["cpus"] is not None
        assert c.master.webui.feed.usage[c.agent.agent_id].failures == 0


async def _refused_read(tmp_path, certs, credential: dict | None, tls: bool = True) -> str:
    """Run a task, read its stdout through the master: the proxy must answer 502 with a sentence."""
    async with secure_cluster(tmp_path, certs, credential, tls) as c:
        assert c.master.core.agents[c.agent.agent_id].scheme == ("https" if tls else "http")
        await c.run("hello", {"value": "echo hi"})
        status, body = await _read_stdout(c, "hello")
        assert status == 502 and "Traceback" not in body
        return body


async def test_without_the_master_credential_the_proxy_names_the_flag(tmp_path, certs):
    body = await _refused_read(tmp_path, certs, None)
    assert "requires HTTP authentication" in body and "--agent-http-credential" in body


async def test_a_wrong_master_credential_is_named_and_its_secret_is_not(tmp_path, certs):
    body = await _refused_read(tmp_path, certs, {"principal": "ui", "secret": "not-it"})
    assert "refused the master's credential" in body and "'ui'" in body and "not-it" not in body


async def test_the_credential_never_goes_to_a_plain_http_agent(tmp_path, certs):
    body = await _refused_read(tmp_path, certs, {"principal": "ui", "secret": "s3cret"}, tls=False)
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
