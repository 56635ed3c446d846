"""The apps framework's REST API, store, leadership and DNS resolver, without a cluster:
the framework object is real but not subscribed (the API only stores definitions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import REPO, cli_env, free_port
from dnslib import QTYPE, DNSRecord

from mesos_nb.frameworks.apps import notebooks
from mesos_nb.frameworks.apps.api import make_app
from mesos_nb.frameworks.apps.dns import Resolver
from mesos_nb.frameworks.apps.framework import AppsFramework
from mesos_nb.frameworks.apps.model import RunRecord, parse_app, run_key
from mesos_nb.frameworks.apps.reconcile import Backoff, Instance
from mesos_nb.frameworks.apps.schedule import parse_job
from mesos_nb.frameworks.apps.store import FileLock, SQLiteStore, State
from mesos_nb.frameworks.apps.tasks import health_check, take
from mesos_nb.protocol.resources import Resources


@pytest.fixture
def framework(tmp_path):
    fw = AppsFramework("127.0.0.1:1", State(SQLiteStore(str(tmp_path / "s.sqlite"))), clock=lambda: 1000.0)
    yield fw
    fw.state.store.close()


@pytest.fixture
async def api(framework):
    client = TestClient(TestServer(make_app(framework)))
    await client.start_server()
    yield client
    await client.close()


async def test_bad_input_is_4xx_naming_the_problem(api):
    r = await api.post("/v2/apps", data="{not json")
    assert r.status == 400 and "not JSON" in (await r.json())["message"]
    r = await api.post("/v2/apps", json={"id": "web", "cmd": "x", "instances": -2})
    body = await r.json()
    assert r.status == 422 and body["field"] == "instances" and ">= 0" in body["message"]
    r = await api.post("/v2/apps", json={"id": "web", "cmd": "x", "role": "prod"})
    assert r.status == 422 and (await r.json())["field"] == "role"
    r = await api.get("/v2/apps/nope")
    assert r.status == 404 and "no app /nope" in (await r.json())["message"]
    r = await api.post("/v2/jobs", json={"id": "j", "cmd": "x", "schedule": "61 * * * *"})
    assert r.status == 422 and (await r.json())["field"] == "schedule"
    r = await api.post("/v2/jobs", json={"id": "j", "cmd": "x", "parents": ["ghost"]})
    assert r.status == 422 and "unknown parent" in (await r.json())["message"]
    r = await api.get("/v2/jobs/j/runs")
    assert r.status == 404


async def test_apps_crud_scale_restart(api, framework):
    r = await api.post("/v2/apps", json={"id": "/team/web", "cmd": "sleep 9", "instances": 2})
    assert r.status == 201
    v1 = (await r.json())["version"]
    assert (await api.post("/v2/apps", json={"id": "/team/web", "cmd": "x"})).status == 409
    r = await api.put("/v2/apps/team/web", json={"instances": 5})  # scale: merged, same version
    app = await r.json()
    assert r.status == 200 and app["instances"] == 5 and app["cmd"] == "sleep 9" and app["version"] == v1
    r = await api.put("/v2/apps/team/web", json={"cmd": "sleep 10"})  # change: new version
    assert (await r.json())["version"] != v1
    listing = await (await api.get("/v2/apps")).json()
    assert [a["id"] for a in listing["apps"]] == ["/team/web"]
    assert listing["apps"][0]["waiting"]["instances"] == 5
    r = await api.post("/v2/apps/team/web/restart")
    assert r.status == 200
    assert (await api.delete("/v2/apps/team/web")).status == 200
    assert framework.state.apps.all() == {}


async def test_jobs_and_runs(api):
    r = await api.post("/v2/jobs", json={"id": "nightly", "cmd": "true", "schedule": "0 2 * * *",
                                         "timezone": "Europe/Berlin"})
    assert r.status == 201
    r = await api.post("/v2/jobs/nightly/runs")
    run = await r.json()
    assert r.status == 201 and run["status"] == "INITIAL" and run["trigger"] == "manual"
    runs = (await (await api.get("/v2/jobs/nightly/runs")).json())["runs"]
    assert [x["id"] for x in runs] == [run["id"]]
    assert (await api.get(f"/v2/jobs/nightly/runs/{run['id']}")).status == 200
    r = await api.get(f"/v2/jobs/nightly/runs/{run['id']}/notebook")
    assert r.status == 404


async def test_openapi_describes_every_route(api):
    spec = await (await api.get("/openapi.json")).json()
    for path in ("/v2/apps", "/v2/apps/{id}", "/v2/apps/{id}/restart", "/v2/jobs", "/v2/jobs/{id}/runs",
                 "/v2/discovery/{id}"):
        assert path in spec["paths"], path
    assert "AppDef" in spec["components"]["schemas"] and "JobDef" in spec["components"]["schemas"]


def test_store_survives_reopen(tmp_path):
    s = State(SQLiteStore(str(tmp_path / "s.sqlite")))
    s.apps.save(parse_app({"id": "a", "cmd": "x", "version": "v"}))
    s.instances.save(Instance(task_id="t1", app_id="/a", version="v", state="TASK_RUNNING"))
    s.save_framework_id("fid")
    s.store.close()
    s2 = State(SQLiteStore(str(tmp_path / "s.sqlite")))
    assert list(s2.apps.all()) == ["/a"] and s2.instances.all()["t1"].state == "TASK_RUNNING"
    assert s2.framework_id() == "fid"


def test_store_keys_each_kind_of_record(tmp_path):
    """Runs are kept per job, back-offs under their app's id; deleting an app drops its back-off."""
    s = State(SQLiteStore(str(tmp_path / "s.sqlite")))
    s.apps.save(parse_app({"id": "a", "cmd": "x"}))
    s.backoffs.save(Backoff(delay=4.0), key="/a")
    s.jobs.save(parse_job({"id": "nightly", "cmd": "true"}))
    run = RunRecord(id="r1", job_id="nightly")
    s.runs.save(run)
    assert s.runs.all() == {"nightly/r1": run} and s.backoffs.all()["/a"].delay == 4.0
    with pytest.raises(TypeError, match="given key"):
        s.backoffs.save(Backoff())
    s.delete_app("/a")
    s.runs.delete(run_key(run))
    assert s.apps.all() == {} and s.backoffs.all() == {} and s.runs.all() == {}
    assert list(s.jobs.all()) == ["nightly"]


def test_file_lock_admits_one_leader(tmp_path):
    a, b = FileLock(str(tmp_path / "leader.lock")), FileLock(str(tmp_path / "leader.lock"))
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()


def test_dns_resolver_names():
    app = parse_app({"id": "/shop/web", "cmd": "x", "ports": [0], "version": "v"})
    insts = [Instance(task_id="shop_web.instance-abc123._app", app_id="/shop/web", version="v",
                      state="TASK_RUNNING", host_ip="10.0.0.7", ports=[31005]),
             Instance(task_id="shop_web.instance-def456._app", app_id="/shop/web", version="v",
                      state="TASK_STAGING", host_ip="10.0.0.8", ports=[31006])]
    r = Resolver(lambda: ([app], lambda _id: insts))

    def ask(name, t):
        return r.answer(DNSRecord.question(name, t))

    srv = ask("_web-shop._tcp.default.mesos-nb", "SRV")
    assert [(x.rdata.port, str(x.rdata.target)) for x in srv.rr] == [(31005, "abc123.web-shop.default.mesos-nb.")]
    assert [str(x.rdata) for x in ask("web-shop.default.mesos-nb", "A").rr] == ["10.0.0.7"]
    assert [str(x.rdata) for x in ask("abc123.web-shop.default.mesos-nb", "A").rr] == ["10.0.0.7"]
    assert ask("other.default.mesos-nb", "A").header.rcode == 3
    assert ask("example.com", "A").header.rcode == 5
    assert QTYPE.SRV == srv.rr[0].rtype


def test_take_ports_and_health_check():
    have = Resources.parse("cpus:1;mem:128;ports:[31000-31002]")
    res, ports = take(have, "*", {"cpus": 0.5, "mem": 64}, [0, 31002])
    assert ports == [31000, 31002]
    assert "port 31009 is not offered" == take(have, "*", {"cpus": 0.5}, [31009])
    assert "cpus 2" in take(have, "*", {"cpus": 2}, [])
    app = parse_app({"id": "a", "cmd": "x", "ports": [0], "healthChecks": [{"path": "/ok",
                                                                             "maxConsecutiveFailures": 0}]})
    hc = health_check(app, [31000])
    assert hc["type"] == "HTTP" and hc["http"] == {"port": 31000, "path": "/ok", "scheme": "http"}
    assert hc["consecutive_failures"] > 10**6  # Marathon's 0 = never kill


def test_notebook_command_and_failing_cell():
    job = parse_job({"id": "nb", "notebook": {"notebook": {"cells": []}, "parameters": {"x": 1, "s": "a b"}}})
    cmd, uris = notebooks.command(job, "/usr/bin/python3", "http://h:1")
    assert "-y '{\"x\": 1, \"s\": \"a b\"}'" in cmd and "-k python3" in cmd
    assert uris[0]["value"] == "http://h:1/v2/jobs/nb/notebook" and uris[0]["output_file"] == "input.ipynb"
    nb = {"cells": [{"metadata": {"tags": ["papermill-error-cell-tag"]}, "source": "x"},
                    {"metadata": {"papermill": {"status": "completed"}}, "source": "a = 1", "outputs": []},
                    {"metadata": {"papermill": {"status": "failed"}}, "source": ["raise ", "E"], "execution_count": 2,
                     "outputs": [{"output_type": "error", "ename": "E", "evalue": "v"}]}]}
    assert notebooks.failing_cell(nb) == {"index": 2, "executionCount": 2, "source": "raise E", "ename": "E",
                                          "evalue": "v"}
    assert notebooks.failing_cell(json.loads(json.dumps({"cells": []}))) is None


@pytest.mark.parametrize("args,says", [
    (["--zk", "zk://127.0.0.1:99999/apps", "--state", "x"], "--zk: Invalid port '99999'"),
    ([], "--state DIR is required"),
])
def test_process_refuses_unsupported_options_with_one_sentence(args, says):
    p = subprocess.run([sys.executable, "-m", "mesos_nb.frameworks.apps", *args], capture_output=True, text=True,
                       env=cli_env(), cwd=str(REPO), timeout=60)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr


def test_unreachable_master_is_one_sentence(tmp_path):
    p = subprocess.run([sys.executable, "-m", "mesos_nb.frameworks.apps", "--master", f"127.0.0.1:{free_port()}",
                        "--state", str(tmp_path), "--port", "0", "--dns-port", "-1"],
                       capture_output=True, text=True, env=cli_env(), cwd=str(REPO), timeout=120)
    assert p.returncode == 2 and "cannot subscribe to the master" in p.stderr and "Traceback" not in p.stderr


def test_client_error_carries_the_servers_sentence(framework):
    from mesos_nb.frameworks.apps import client

    with pytest.raises(client.AppsError) as e:
        client.list_apps(url=f"http://127.0.0.1:{free_port()}")
    assert e.value.status == 0 and "unreachable" in str(e.value)
