"""The apps framework's REST API with ``--http-credentials``: what an attacker on the network
tries (no credentials, a wrong secret, a cross-site form post from a logged-in browser, a
task's notebook token used for another job) is refused, and what a user does still works
(the client module with ``$MESOS_NB_PRINCIPAL``, a scheduled notebook whose task fetches its
input without holding the operator's secret)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from apps_cluster import Framework, running_cluster, running_framework, tail
from conftest import cli_env, wait_for

from mesos_nb.frameworks.apps import client
from mesos_nb.protocol.credentials import Credential, basic_header, write_credentials

pytest.importorskip("mesos_nb.agent.process", reason="the agent is not available")

OPERATOR = Credential("ops", "s3cret-ops")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("apps-auth-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def fw(cluster, tmp_path_factory):
    d = tmp_path_factory.mktemp("apps-auth-fw")
    creds = d / "http-credentials.json"
    write_credentials(str(creds), [OPERATOR])
    with running_framework(Framework(d / "state", cluster.master, extra=["--http-credentials", str(creds)],
                                     headers={"Authorization": basic_header(OPERATOR.principal, OPERATOR.secret)})) as f:
        yield f


@pytest.fixture
def as_operator(monkeypatch):
    monkeypatch.setenv("MESOS_NB_PRINCIPAL", OPERATOR.principal)
    monkeypatch.setenv("MESOS_NB_SECRET", OPERATOR.secret)


def _status(url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                        **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw and raw[:1] in b"[{" else {}, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw[:1] == b"{" else {}, dict(e.headers)


def test_anonymous_and_wrong_secret_are_refused_with_a_sentence(fw):
    code, body, headers = _status(fw.api + "/v2/apps")
    assert code == 401 and "authentication required" in body["message"]
    assert headers.get("WWW-Authenticate", "").startswith("Basic")
    bad = {"Authorization": basic_header(OPERATOR.principal, "guess")}
    assert _status(fw.api + "/v2/apps", "POST", {"id": "/x", "cmd": "sleep 1"}, bad)[0] == 401
    assert _status(fw.api + "/ui/", headers=bad)[0] == 401
    assert _status(fw.api + "/ping")[0] == 200  # liveness stays open for load balancers
    assert fw.get("/v2/apps")["apps"] == []  # nothing was created by the refused POST


def test_client_with_credentials_deploys(fw, as_operator):
    app = client.deploy({"id": "/auth-web", "cmd": "exec sleep 1000", "cpus": 0.1, "mem": 16}, url=fw.api)
    assert app["id"] == "/auth-web"
    assert [a["id"] for a in client.list_apps(url=fw.api)] == ["/auth-web"]
    client.delete_app("/auth-web", url=fw.api)


def test_client_without_credentials_says_so(fw, monkeypatch):
    for k in ("MESOS_NB_PRINCIPAL", "MESOS_NB_SECRET", "MESOS_NB_CREDENTIAL"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(client.AppsError) as e:
        client.list_apps(url=fw.api)
    assert e.value.status == 401 and "authentication required" in e.value.message


def test_cross_site_post_from_a_logged_in_browser_is_refused(fw):
    auth = {"Authorization": basic_header(OPERATOR.principal, OPERATOR.secret)}
    code, body, _ = _status(fw.api + "/v2/apps", "POST", {"id": "/csrf", "cmd": "id"},
                            {**auth, "Origin": "http://evil.example"})
    assert code == 403 and "cross-site" in body["message"]
    assert "/csrf" not in [a["id"] for a in fw.get("/v2/apps")["apps"]]


def _notebook(source: str) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": source, "id": "c0"}]}


def test_notebook_job_fetches_with_a_job_bound_token_not_a_secret(fw, cluster, as_operator, tmp_path):
    nb = tmp_path / "env.ipynb"
    nb.write_text(json.dumps(_notebook("print('ran ' + 'remotely')")))
    client.schedule_notebook("authnb", str(nb), {}, url=fw.api, mem=256, cpus=0.5)
    run = client.run_job("authnb", url=fw.api)

    def finished():
        r = [x for x in fw.runs("authnb") if x["id"] == run["id"]][0]
        return r if r.get("outputNotebook") else None

    try:
        done = wait_for(finished, 120, interval=0.2, message="the notebook run finished")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{tail(fw.log)}") from None
    assert done["status"] == "SUCCESS", done
    out = client.run_notebook("authnb", run["id"], url=fw.api)
    printed = "".join("".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert "ran remotely" in printed  # the task's fetcher got its input with the job's token alone
    # the fetch route wants the token bound to that very job
    assert _status(fw.api + "/v2/jobs/authnb/notebook")[0] == 401
    assert _status(fw.api + "/v2/jobs/authnb/notebook?token=" + "0" * 64)[0] == 401


def test_unreadable_credentials_file_exits_2_with_one_sentence(tmp_path):
    p = subprocess.run([sys.executable, "-m", "mesos_nb.frameworks.apps", "--state", str(tmp_path / "s"),
                        "--http-credentials", str(tmp_path / "missing.json")],
                       capture_output=True, text=True, env=cli_env(), timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("--http-credentials: cannot read credentials file") and "Traceback" not in p.stderr
