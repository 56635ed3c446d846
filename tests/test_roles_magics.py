"""Issue 13 in the notebook: ``%mesos roles`` / ``%mesos quota`` tables, ``%mesos run --role``,
and "why it waits" naming a role at its quota limit, in an in-process IPython shell against a
real local cluster."""

from __future__ import annotations

import pytest

pytest.importorskip("IPython")
pytest.importorskip("ipywidgets")

# the notebook tests' shell fixtures (HOME, the extension loaded, connected), on this module's cluster
from conftest import get_json, wait_for  # noqa: E402
from test_notebook_magics import cluster as nb_cluster  # noqa: E402,F401
from test_notebook_magics import connected, home, ip  # noqa: E402,F401
from test_roles_cli import post as _post  # noqa: E402

from mesos_nb.notebook import MesosNotebookError  # noqa: E402


@pytest.fixture(scope="module")
def cluster(nb_cluster):  # noqa: F811
    """The notebook tests' cluster, with role 'team' weighted 3 and a cpus quota (0.5 .. 1)."""
    assert _post(nb_cluster.master_url, {"type": "UPDATE_WEIGHTS", "update_weights": {
        "weight_infos": [{"role": "team", "weight": 3}]}}) == 200
    assert _post(nb_cluster.master_url, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "team", "guarantees": {"cpus": {"value": 0.5}}, "limits": {"cpus": {"value": 1}}}]}}) == 200
    return nb_cluster


def test_roles_and_quota_magics_show_weights_quota_and_headroom(connected):  # noqa: F811
    roles = connected.run_line_magic("mesos", "roles")
    assert roles.headers == ["ROLE", "WEIGHT", "FRAMEWORKS", "ALLOCATED", "DRF SHARE"]
    rec = {r["ROLE"]: r for r in roles.records}
    assert rec["team"]["WEIGHT"] == "3"
    assert rec["*"]["FRAMEWORKS"] == "1"  # this notebook's framework
    assert "<table" in roles._repr_html_()
    quota = connected.run_line_magic("mesos", "quota")
    assert quota.headers == ["ROLE", "GUARANTEE", "LIMIT", "ALLOCATED", "HEADROOM"]
    [team] = [r for r in quota.records if r["ROLE"] == "team"]
    assert team["GUARANTEE"] == "cpus 0.5" and team["LIMIT"] == "cpus 1" and team["HEADROOM"] == "cpus 1"


def test_run_with_a_role_at_its_quota_limit_says_why_it_waits(connected, cluster):  # noqa: F811
    holder = connected.run_line_magic("mesos", "run --role team --cpus 1 --mem 32 -- sleep 120")
    try:
        wait_for(lambda: holder.state == "TASK_RUNNING", 60, message="the team task runs")
        fws = get_json(cluster.master_url + "/master/state")["frameworks"]
        assert any(f["roles"] == ["team"] for f in fws)  # a framework of this notebook in role team
        quota = {r["ROLE"]: r for r in connected.run_line_magic("mesos", "quota").records}
        assert quota["team"]["HEADROOM"] == "-"  # nothing left under the limit
        t = connected.run_line_magic("mesos", "run --role team --cpus 0.5 --mem 32 -- true")
        with pytest.raises(MesosNotebookError, match="role 'team' is at its quota limit of cpus 1"):
            t.wait(10)
        assert t.state == "PENDING" and "role 'team' is at its quota limit of cpus 1" in repr(t)
        t.kill()
    finally:
        holder.kill()


def test_bad_role_is_one_sentence(connected):  # noqa: F811
    for sub in ("run --role a//b -- true", "dask --role=-x", "spark --role . --executors 1"):
        with pytest.raises(MesosNotebookError, match="bad --role"):
            connected.run_line_magic("mesos", sub)


def test_dask_with_a_role_registers_its_framework_in_that_role(connected, cluster):  # noqa: F811
    pytest.importorskip("distributed")
    client = connected.run_line_magic("mesos", "dask --role team --workers 1 --cpus 0.5 --mem 256")
    try:
        fid = client.cluster.pool.framework_id
        fws = {f["id"]: f for f in get_json(cluster.master_url + "/master/state")["frameworks"]}
        assert fws[fid]["roles"] == ["team"]
        assert all(t["role"] == "team" for t in fws[fid]["tasks"]) and fws[fid]["tasks"]
        # the table counts every framework subscribed to the role, so it is checked against the
        # master's /master/roles (an earlier test's team framework may still be going away)
        members = {r["name"]: r["frameworks"] for r in get_json(cluster.master_url + "/master/roles")["roles"]}
        assert fid in members["team"]
        roles = {r["ROLE"]: r for r in connected.run_line_magic("mesos", "roles").records}
        assert int(roles["team"]["FRAMEWORKS"]) >= 1 and "cpus" in roles["team"]["ALLOCATED"]  # (its offers count too)
    finally:
        connected.run_line_magic("mesos", "disconnect")


def test_ipyparallel_with_a_role_runs_its_controller_and_engines_in_that_role(connected, cluster):  # noqa: F811
    pytest.importorskip("ipyparallel")
    rc = connected.run_line_magic("mesos", "ipyparallel --role other --engines 1 --cpus 0.25 --mem 128")
    try:
        assert rc[:].apply_sync(pow, 6, 2) == [36]  # an engine answers
        fws = get_json(cluster.master_url + "/master/state")["frameworks"]
        ipp = [f for f in fws if f["roles"] == ["other"]]
        assert ipp and all(t["role"] == "other" for f in ipp for t in f["tasks"])
    finally:
        connected.run_line_magic("mesos", "disconnect")
