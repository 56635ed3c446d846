"""The apps framework end to end: a master and two agents (distinct hostnames 127.0.0.1 and
127.0.0.2) and the framework, all real processes; the REST API through the client module."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from apps_cluster import Framework, running_cluster, running_framework, running_ids, tail
from conftest import wait_for
from dnslib import QTYPE, DNSRecord

from mesos_nb.frameworks.apps import client

pytest.importorskip("mesos_nb.agent.process", reason="the agent is not available")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("apps-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def fw(cluster, tmp_path_factory):
    with running_framework(Framework(tmp_path_factory.mktemp("apps-fw") / "state", cluster.master)) as f:
        yield f


@pytest.fixture
def scratch(tmp_path):
    d = tmp_path / "scratch"
    d.mkdir()
    return d


def check(cond, fw, what):
    """wait_for with the framework log in the failure message."""
    try:
        return wait_for(cond, 60, interval=0.1, message=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- framework log ---\n{tail(fw.log)}") from None


def poll(fw, what, get, pred):
    """Wait until ``pred(get())`` holds; returns that value of ``get()``."""
    box = {}

    def cond():
        v = get()
        if pred(v):
            box["v"] = v
            return True
        return False

    check(cond, fw, what)
    return box["v"]


def sleeper(app_id: str, **kw):
    return {"id": app_id, "cmd": "exec sleep 1000", "cpus": 0.1, "mem": 16, **kw}


def test_unique_hostname_runs_two_of_three_and_says_why(fw):
    client.deploy(sleeper("uniq", instances=3, constraints=[["hostname", "UNIQUE"]]), url=fw.api)
    app = check(lambda: (a := client.get_app("uniq", url=fw.api)) and len(running_ids(a)) == 2 and a, fw,
                "two instances running")
    assert {t["hostname"] for t in app["tasks"]} == {"127.0.0.1", "127.0.0.2"}
    app = check(lambda: (a := client.get_app("uniq", url=fw.api))["waiting"] and a["waiting"]["reasons"] and a,
                fw, "a reason for the third")
    assert app["waiting"]["instances"] == 1
    assert any("UNIQUE" in r for r in app["waiting"]["reasons"]), app["waiting"]
    client.delete_app("uniq", url=fw.api)


def test_killed_instance_process_is_replaced(fw, scratch):
    cmd = f"echo $$ > {scratch}/$MESOS_TASK_ID.pid; exec sleep 1000"
    client.deploy({"id": "phoenix", "cmd": cmd, "instances": 2, "cpus": 0.1, "mem": 16, "backoffSeconds": 0.5},
                  url=fw.api)
    first = poll(fw, "two instances", lambda: running_ids(client.get_app("phoenix", url=fw.api)),
                 lambda ids: len(ids) == 2)
    victim = sorted(first)[0]
    pid = int(check(lambda: (scratch / f"{victim}.pid").read_text().strip(), fw, "pid file"))
    os.kill(pid, signal.SIGKILL)
    after = poll(fw, "a replacement instance", lambda: running_ids(client.get_app("phoenix", url=fw.api)),
                 lambda ids: len(ids) == 2 and victim not in ids)
    assert len(after & first) == 1  # the other one was left alone
    client.delete_app("phoenix", url=fw.api)


def test_framework_sigkill_restart_adopts_instances(fw, cluster):
    client.deploy(sleeper("keep", instances=2), url=fw.api)
    before = poll(fw, "two instances", lambda: running_ids(client.get_app("keep", url=fw.api)),
                  lambda ids: len(ids) == 2)
    fid = fw.get("/v2/info")["frameworkId"]
    fw.kill9()
    fw.start()
    assert fw.get("/v2/info")["frameworkId"] == fid
    # give the restarted framework time to act (ticks counted since it re-subscribed)
    check(lambda: fw.get("/v2/info")["ticksSinceSubscribed"] >= 30, fw, "30 ticks after re-subscribing")
    assert running_ids(client.get_app("keep", url=fw.api)) == before
    on_master = {t["id"] for t in cluster.framework_tasks(fid)
                 if t["id"].startswith("keep.") and t["state"] not in ("TASK_KILLED", "TASK_FINISHED", "TASK_FAILED")}
    assert on_master == before  # no duplicates, no restarts
    client.delete_app("keep", url=fw.api)


def test_standby_replica_takes_over_and_adopts(fw):
    client.deploy(sleeper("ha", instances=2), url=fw.api)
    before = poll(fw, "two instances", lambda: running_ids(client.get_app("ha", url=fw.api)), lambda ids: len(ids) == 2)
    standby = Framework(fw.state_dir, fw.master, name="standby").spawn(clear=False)
    try:
        check(lambda: "standing by" in standby.log.read_text(), fw, "the second replica stands by")
        assert json.loads((fw.state_dir / "endpoints.json").read_text())["pid"] == fw.proc.pid
        fw.kill9()
        standby.wait_up()
        check(lambda: standby.get("/v2/info")["ticksSinceSubscribed"] >= 30, standby, "30 ticks")
        assert running_ids(client.get_app("ha", url=standby.api)) == before
    finally:
        # the module's framework is now the standby
        fw.proc, fw.api, fw.dns_port, fw.name = standby.proc, standby.api, standby.dns_port, standby.name
    client.delete_app("ha", url=fw.api)


def test_rolling_restart_keeps_minimum_healthy(fw):
    client.deploy(sleeper("roll", instances=3, upgradeStrategy={"minimumHealthCapacity": 0.5,
                                                                  "maximumOverCapacity": 0},
                          healthChecks=[{"protocol": "COMMAND", "command": "true", "gracePeriodSeconds": 20,
                                         "intervalSeconds": 1, "timeoutSeconds": 5}]), url=fw.api)

    def healthy(app):
        return {t["taskId"] for t in app["tasks"] if t.get("state") == "TASK_RUNNING" and t.get("healthy")
                and not t.get("killing")}

    before = poll(fw, "three healthy", lambda: healthy(client.get_app("roll", url=fw.api)), lambda h: len(h) == 3)
    client.restart("roll", url=fw.api)
    lowest = 3

    def done():
        nonlocal lowest
        app = client.get_app("roll", url=fw.api)
        h = healthy(app)
        lowest = min(lowest, len(h))
        return len(h) == 3 and not (h & before) and len(app["tasks"]) == 3

    check(done, fw, "three new healthy instances")
    assert lowest >= 2  # ceil(3 x 0.5)
    client.delete_app("roll", url=fw.api)


def test_dns_srv_and_discovery_answer_healthy_instances(fw):
    client.deploy({"id": "web", "cmd": "exec python3 -m http.server --bind 127.0.0.1 $PORT0", "instances": 2,
                   "cpus": 0.1, "mem": 64, "ports": [0], "constraints": [["hostname", "UNIQUE"]],
                   "healthChecks": [{"protocol": "TCP", "gracePeriodSeconds": 30, "intervalSeconds": 1,
                                     "timeoutSeconds": 2}]}, url=fw.api)
    inst = poll(fw, "two healthy instances", lambda: client.discover("web", url=fw.api), lambda d: len(d) == 2)
    want = {(i["ip"], i["ports"][0]) for i in inst}

    def srv(name):
        reply = DNSRecord.parse(DNSRecord.question(name, "SRV").send("127.0.0.1", fw.dns_port, timeout=3))
        addrs = {str(r.rname): str(r.rdata) for r in reply.ar if r.rtype == QTYPE.A}
        return {(addrs[str(r.rdata.target)], r.rdata.port) for r in reply.rr if r.rtype == QTYPE.SRV}

    assert srv("_web._tcp.default.mesos-nb") == want
    assert srv("_app._tcp.web.default.mesos-nb") == want
    assert {ip for ip, _ in want} == {"127.0.0.1", "127.0.0.2"}
    client.scale("web", 1, url=fw.api)
    check(lambda: len(srv("_web._tcp.default.mesos-nb")) == 1, fw, "one SRV record after scaling to 1")
    nx = DNSRecord.parse(DNSRecord.question("nothing.default.mesos-nb", "A").send("127.0.0.1", fw.dns_port, timeout=3))
    assert nx.header.rcode == 3  # NXDOMAIN
    client.delete_app("web", url=fw.api)


def _start_in(seconds: float) -> str:
    t = datetime.fromtimestamp(int(time.time()) + seconds, timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_job_every_two_seconds_runs_on_time(fw):
    client.schedule_job({"id": "tick", "cmd": "true", "mem": 16, "schedule": f"R/{_start_in(2)}/PT2S"}, url=fw.api)
    runs = poll(fw, "four runs", lambda: [x for x in fw.runs("tick") if x["status"] == "SUCCESS"],
                lambda r: len(r) >= 4)
    client.delete_job("tick", url=fw.api)
    sched = [r["scheduledAt"] for r in runs[:4]]
    assert [b - a for a, b in zip(sched, sched[1:], strict=False)] == [2.0, 2.0, 2.0]
    drift = [r["attempts"][0]["startedAt"] - r["scheduledAt"] for r in runs[:4]]
    print("job start drift (s):", [round(d, 3) for d in drift])
    assert all(0 <= d < 1.5 for d in drift), drift
    assert all(r["exitCode"] == 0 and r["duration"] is not None for r in runs)


def test_job_failure_is_retried(fw, scratch):
    cmd = f"test -f {scratch}/second || {{ touch {scratch}/second; exit 3; }}"
    client.schedule_job({"id": "flaky", "cmd": cmd, "mem": 16, "retries": 2, "retryBackoffSeconds": 0.5}, url=fw.api)
    run = client.run_job("flaky", url=fw.api)
    done = check(lambda: (r := [x for x in fw.runs("flaky") if x["id"] == run["id"]][0])["status"] == "SUCCESS" and r,
                 fw, "the run succeeded")
    assert [a["exitCode"] for a in done["attempts"]] == [3, 0]
    assert done["attempts"][1]["startedAt"] - done["attempts"][0]["finishedAt"] >= 0.5
    assert done["attempts"][0]["sandbox"].startswith("http")


def test_job_forbid_skips_while_a_run_is_active(fw):
    client.schedule_job({"id": "slow", "cmd": "sleep 5", "mem": 16, "concurrencyPolicy": "FORBID",
                         "schedule": f"R/{_start_in(1)}/PT2S"}, url=fw.api)
    max_active = 0

    def seen():
        nonlocal max_active
        runs = fw.runs("slow")
        max_active = max(max_active, sum(r["status"] in ("STARTING", "ACTIVE") for r in runs))
        return any(r["status"] == "SUCCESS" for r in runs) and sum(r["status"] == "SKIPPED" for r in runs) >= 2

    check(seen, fw, "a finished run and skipped triggers")
    skipped = [r for r in fw.runs("slow") if r["status"] == "SKIPPED"]
    client.delete_job("slow", url=fw.api)
    assert max_active == 1 and "FORBID" in skipped[0]["message"]


def test_job_replace_kills_the_active_run(fw, cluster):
    client.schedule_job({"id": "repl", "cmd": "exec sleep 100", "mem": 16, "concurrencyPolicy": "REPLACE",
                         "schedule": f"R/{_start_in(1)}/PT2S"}, url=fw.api)
    runs = poll(fw, "a replaced run", lambda: fw.runs("repl"),
                lambda rs: any(r["status"] == "FAILED" for r in rs) and any(r["status"] == "ACTIVE" for r in rs))
    client.delete_job("repl", url=fw.api)
    replaced = [r for r in runs if r["status"] == "FAILED"][0]
    assert "REPLACE" in replaced["message"] and replaced["attempts"][0]["state"] == "TASK_KILLED"
    assert sum(r["status"] == "ACTIVE" for r in runs) == 1
    fid = fw.get("/v2/info")["frameworkId"]
    # deleting the job killed its active run
    check(lambda: all(t["state"] != "TASK_RUNNING" for t in cluster.framework_tasks(fid) if t["id"].startswith("repl.")),
          fw, "the deleted job's run killed")


def test_child_runs_only_after_parent_succeeded(fw, scratch):
    client.schedule_job({"id": "parent", "cmd": f"test -f {scratch}/ok", "mem": 16}, url=fw.api)
    client.schedule_job({"id": "child", "cmd": "true", "mem": 16, "parents": ["parent"]}, url=fw.api)
    with pytest.raises(client.AppsError) as e:
        client.delete_job("parent", url=fw.api)
    assert e.value.status == 409 and "child" in e.value.message
    client.run_job("parent", url=fw.api)
    check(lambda: [r["status"] for r in fw.runs("parent")] == ["FAILED"], fw, "the parent failed")
    assert fw.runs("child") == []
    (scratch / "ok").touch()
    client.run_job("parent", url=fw.api)
    check(lambda: [r["status"] for r in fw.runs("child")] == ["SUCCESS"], fw, "the child ran once")
    child = fw.runs("child")[0]
    parent_ok = [r for r in fw.runs("parent") if r["status"] == "SUCCESS"][0]
    assert child["trigger"] == "parent" and child["createdAt"] >= parent_ok["finishedAt"]
    client.delete_job("child", url=fw.api)
    client.delete_job("parent", url=fw.api)


def _notebook(*sources: str, params: str = "x = 1\nname = 'nobody'") -> dict:
    def cell(src, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": src, "outputs": [],
                "execution_count": None}

    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [cell(params, ["parameters"]), *[cell(s) for s in sources]]}


def test_notebook_job_keeps_executed_copy_with_parameters(fw, tmp_path):
    nb = tmp_path / "report.ipynb"
    nb.write_text(json.dumps(_notebook("print(f'{name}:{x * 2}')")))
    client.schedule_notebook("report", str(nb), {"x": 21, "name": "zoe"}, url=fw.api, mem=256, cpus=0.5)
    run = client.run_job("report", url=fw.api)
    done = check(lambda: (r := [x for x in fw.runs("report") if x["id"] == run["id"]][0]).get("outputNotebook") and r,
                 fw, "the executed notebook")
    assert done["status"] == "SUCCESS", done
    out = client.run_notebook("report", run["id"], url=fw.api)
    injected = [c for c in out["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "x = 21" in "".join(injected[0]["source"]) and "zoe" in "".join(injected[0]["source"])
    texts = [o.get("text", "") for c in out["cells"] for o in c.get("outputs", [])]
    printed = "".join("".join(t) if isinstance(t, list) else t for t in texts)
    assert "zoe:42" in printed
    assert Path(done["outputNotebook"]).exists() and done.get("failingCell") is None


def test_failing_notebook_records_the_failing_cell(fw, tmp_path):
    nb = tmp_path / "broken.ipynb"
    nb.write_text(json.dumps(_notebook("y = x + 1", "raise ValueError(f'boom {y}')", "print('never')")))
    client.schedule_notebook("broken", str(nb), {"x": 4}, url=fw.api, mem=256, cpus=0.5)
    run = client.run_job("broken", url=fw.api)
    done = check(lambda: (r := [x for x in fw.runs("broken") if x["id"] == run["id"]][0]).get("failingCell") and r,
                 fw, "the failing cell recorded")
    assert done["status"] == "FAILED"
    cell = done["failingCell"]
    assert cell["ename"] == "ValueError" and cell["evalue"] == "boom 5" and "raise ValueError" in cell["source"]
