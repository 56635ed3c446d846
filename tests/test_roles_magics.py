"""Issue 13 in the notebook: ``%mesos roles`` / ``%mesos quota`` tables, ``%mesos run --role``,
and "why it waits" naming a role at its quota limit, in an in-process IPython shell against a
real local cluster."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("IPython")
pytest.importorskip("ipywidgets")

from conftest import get_json, wait_for  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from mesos_nb.notebook import MesosNotebookError  # noqa: E402
from mesos_nb.notebook.embedded import ClusterThread  # noqa: E402

AGENT = "cpus:2;mem:1024;disk:1024"


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url + "/api/v1", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    ct = ClusterThread(agents=2, port=0, agent_resources=AGENT,
                       work_dir=str(tmp_path_factory.mktemp("nb-roles")))
    ct.start()
    try:
        assert _post(ct.master_url, {"type": "UPDATE_WEIGHTS", "update_weights": {
            "weight_infos": [{"role": "team", "weight": 3}]}}) == 200
        assert _post(ct.master_url, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "team", "guarantees": {"cpus": {"value": 0.5}}, "limits": {"cpus": {"value": 1}}}]}}) == 200
        yield ct
    finally:
        ct.stop()


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster):
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("MESOS_NB_MASTER", "MESOS_NB_LOCAL_PORT", "MESOS_NB_LOCAL_RESOURCES", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mesos_nb")
    shell.run_line_magic("mesos", f"connect {cluster.master_address}")
    try:
        yield shell
    finally:
        m = shell._mesos_nb_magics
        if m is not None and m.framework is not None:
            m.disconnect("")
        shell.run_line_magic("unload_ext", "mesos_nb")


def test_roles_and_quota_magics_show_weights_quota_and_headroom(ip):
    roles = ip.run_line_magic("mesos", "roles")
    assert roles.headers == ["ROLE", "WEIGHT", "FRAMEWORKS", "ALLOCATED", "DRF SHARE"]
    rec = {r["ROLE"]: r for r in roles.records}
    assert rec["team"]["WEIGHT"] == "3"
    assert rec["*"]["FRAMEWORKS"] == "1"  # this notebook's framework
    assert "<table" in roles._repr_html_()
    quota = ip.run_line_magic("mesos", "quota")
    assert quota.headers == ["ROLE", "GUARANTEE", "LIMIT", "ALLOCATED", "HEADROOM"]
    [team] = [r for r in quota.records if r["ROLE"] == "team"]
    assert team["GUARANTEE"] == "cpus 0.5" and team["LIMIT"] == "cpus 1" and team["HEADROOM"] == "cpus 1"


def test_run_with_a_role_at_its_quota_limit_says_why_it_waits(ip, cluster):
    holder = ip.run_line_magic("mesos", "run --role team --cpus 1 --mem 32 -- sleep 120")
    try:
        wait_for(lambda: holder.state == "TASK_RUNNING", 60, message="the team task runs")
        fws = get_json(cluster.master_url + "/master/state")["frameworks"]
        assert any(f["roles"] == ["team"] for f in fws)  # a framework of this notebook in role team
        quota = {r["ROLE"]: r for r in ip.run_line_magic("mesos", "quota").records}
        assert quota["team"]["HEADROOM"] == "-"  # nothing left under the limit
        t = ip.run_line_magic("mesos", "run --role team --cpus 0.5 --mem 32 -- true")
        with pytest.raises(MesosNotebookError, match="role 'team' is at its quota limit of cpus 1"):
            t.wait(10)
        assert t.state == "PENDING" and "role 'team' is at its quota limit of cpus 1" in repr(t)
        t.kill()
    finally:
        holder.kill()


def test_bad_role_is_one_sentence(ip):
    for sub in ("run --role a//b -- true", "dask --role=-x", "spark --role . --executors 1"):
        with pytest.raises(MesosNotebookError, match="bad --role"):
            ip.run_line_magic("mesos", sub)
