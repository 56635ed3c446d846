"""Issue 13 in the CLI: ``mesos-nb roles`` / ``mesos-nb quota`` tables and ``mesos-nb run
--role`` saying why it waits when its role is at its quota limit, against a real
``mesos-nb local`` in a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest
from conftest import REPO, start_cluster_process, stop_cluster_process, wait_for

pytest.importorskip("mesos_nb.agent.process")


def post(url: str, body: dict) -> int:
    """An operator API call (POST /api/v1, JSON) to an unauthenticated master; its status."""
    req = urllib.request.Request(url + "/api/v1", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory):
    cp = start_cluster_process(tmp_path_factory.mktemp("roles-cli"))
    try:
        assert post(cp.url, {"type": "UPDATE_WEIGHTS", "update_weights": {
            "weight_infos": [{"role": "dev", "weight": 2.5}]}}) == 200
        assert post(cp.url, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "dev", "guarantees": {"cpus": {"value": 0.5}},
             "limits": {"cpus": {"value": 1}, "mem": {"value": 512}}}]}}) == 200
        yield cp
    finally:
        stop_cluster_process(cp)


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    return {ln.split()[0]: ln for ln in lines[1:]}  # type: ignore[misc]


def test_roles_and_quota_tables(cp):
    r = cp.cli("roles")
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0].split()
    assert header[:2] == ["ROLE", "WEIGHT"] and "FRAMEWORKS" in header and "SHARE" in header
    assert "dev" in _rows(r.stdout) and " 2.5 " in _rows(r.stdout)["dev"]
    q = cp.cli("quota")
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines()[0].split() == ["ROLE", "GUARANTEE", "LIMIT", "ALLOCATED", "HEADROOM"]
    dev = _rows(q.stdout)["dev"]
    assert "cpus 0.5" in dev and "cpus 1, mem 512" in dev
    # nothing runs in dev: the whole limit is headroom
    assert dev.rstrip().endswith("cpus 1, mem 512")


def test_unreachable_master_is_exit_2_with_one_sentence(cp):
    for cmd in ("roles", "quota"):
        r = cp.cli(cmd, "--master", "127.0.0.1:9")
        assert r.returncode == 2 and r.stderr.startswith("mesos-nb: ") and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_run_in_a_role_at_its_quota_limit_says_so_while_it_waits(cp):
    # a first task in dev takes the whole cpus limit (1) and keeps it
    holder = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "run", "--role", "dev", "--cpus", "1", "--mem", "32",
         "--", "sleep", "120"],
        env=cp.env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        def dev_at_limit() -> bool:
            roles = json.loads(urllib.request.urlopen(cp.url + "/master/roles", timeout=5).read())["roles"]
            dev = [r for r in roles if r["name"] == "dev"]
            return bool(dev) and dev[0]["quota"]["consumed"].get("cpus", 0) >= 1

        wait_for(dev_at_limit, 60, message="the first dev task holds the cpus limit")
        r = cp.cli("run", "--role", "dev", "--cpus", "0.5", "--mem", "32", "--timeout", "8", "--", "true",
                   timeout=60)
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert "mesos-nb run: waiting: role 'dev' is at its quota limit of cpus 1" in r.stderr
        assert r.stderr.strip().splitlines()[-1].endswith("role 'dev' is at its quota limit of cpus 1")
        # the same request in the default role is no quota matter: it runs
        ok = cp.cli("run", "--cpus", "0.5", "--mem", "32", "--timeout", "30", "--", "true", timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert "quota" not in ok.stderr
    finally:
        holder.send_signal(signal.SIGINT)
        try:
            holder.wait(20)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(5)


def test_run_waits_saying_the_free_cpus_are_reserved_for_another_role(tmp_path):
    cp = start_cluster_process(tmp_path, agents=1, resources="cpus:1;cpus(batch):2;mem:1024;disk:1024")
    try:
        roles = cp.cli("roles")
        assert roles.returncode == 0 and "batch" in _rows(roles.stdout)
        r = cp.cli("run", "--cpus", "2", "--mem", "32", "--timeout", "6", "--", "true", timeout=60)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "mesos-nb run: waiting: the free cpus (3) are reserved for other roles ('batch')" in r.stderr
    finally:
        stop_cluster_process(cp)
