"""The user interfaces of the built-in services and jobs: ``mesos-nb apps|jobs`` (subprocesses),
the ``%mesos app|apps|job|jobs`` magics (in-process IPython) and the framework's ``/ui`` pages,
against a real master, two agents and the framework (processes).

``mesos-nb apps …`` is run without ``--apps``: it finds the framework by the ``webui_url`` the
framework registered with the master.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from apps_cluster import Framework, running_cluster, running_framework, running_ids, tail
from conftest import REPO, cli_env, wait_for

pytest.importorskip("mesos_nb.agent.process", reason="the agent is not available")
pytest.importorskip("IPython")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("apps-ui-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def fw(cluster, tmp_path_factory):
    with running_framework(Framework(tmp_path_factory.mktemp("apps-ui-fw") / "state", cluster.master)) as f:
        yield f


def cli(*args: str, master: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = cli_env(**({"MESOS_NB_MASTER": master} if master else {}))
    return subprocess.run([sys.executable, "-m", "mesos_nb", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=timeout)


def check(cond, fw, what, timeout=90):
    try:
        return wait_for(cond, timeout, interval=0.1, message=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- framework log ---\n{tail(fw.log)}") from None


def notebook(tmp_path: Path, name: str = "report.ipynb") -> Path:
    def cell(src, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": src, "outputs": [],
                "execution_count": None}
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [cell("alpha = 1.0", ["parameters"]), cell("print(f'alpha is {alpha * 10}')")]}
    p = tmp_path / name
    p.write_text(json.dumps(nb))
    return p


def get_text(url: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


# ------------------------------------------------------------------ CLI: bad input
@pytest.mark.parametrize("args, says", [
    (("apps", "scale", "/web", "-1", "--apps", "http://127.0.0.1:9"), "instances must be >= 0"),
    (("apps", "deploy", "/nonexistent/app.json", "--apps", "http://127.0.0.1:9"), "no such file"),
    (("apps", "deploy", "--cmd", "sleep 1", "--apps", "http://127.0.0.1:9"), "--cmd needs --id"),
    (("jobs", "schedule", "--id", "j", "--cmd", "true", "--every", "5x", "--apps", "http://127.0.0.1:9"),
     "--every '5x'"),
    (("jobs", "schedule", "--id", "j", "--cmd", "true", "-p", "a=1", "--apps", "http://127.0.0.1:9"),
     "-p NAME=VALUE is for notebook jobs"),
    (("apps", "list", "--apps", "http://127.0.0.1:9"), "is unreachable"),
    (("apps", "list", "--master", "127.0.0.1:9"), "cannot ask the master at 127.0.0.1:9"),
    (("apps", "delete", "/web", "--master", "127.0.0.1:9"), "cannot ask the master at 127.0.0.1:9"),
    (("jobs", "run", "j", "--master", "127.0.0.1:9"), "cannot ask the master at 127.0.0.1:9"),
    (("apps", "frobnicate"), "invalid choice"),
])
def test_cli_bad_input_is_one_sentence_exit_2(args, says):
    r = cli(*args)
    assert r.returncode == 2, r
    assert says in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_against_a_master_without_the_framework_says_so(cluster):
    # runs before the module's framework is started (the fw fixture is first used below)
    r = cli("apps", "list", master=cluster.master)
    assert r.returncode == 2
    assert "no running framework named 'mesos-nb-apps'" in r.stderr and "mesos-nb apps serve" in r.stderr


# ------------------------------------------------------------------ CLI: the commands
def test_cli_apps_found_through_the_master(fw, cluster):
    r = cli("apps", "deploy", "--id", "/cli-web", "--cmd", "exec sleep 1000", "--instances", "2", "--cpus", "0.1",
            "--mem", "16", master=cluster.master)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("deployed /cli-web version ")
    check(lambda: len(running_ids(fw.app("/cli-web"))) == 2, fw, "2 instances")
    r = cli("apps", "list", master=cluster.master)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("/cli-web"))
    assert line.split()[:3] == ["/cli-web", "2", "2"] and line.rstrip().endswith("running")
    r = cli("apps", "show", "/cli-web", master=cluster.master)
    assert r.returncode == 0 and r.stdout.count("TASK_RUNNING") == 2
    assert cli("apps", "scale", "/cli-web", "1", master=cluster.master).returncode == 0
    check(lambda: len(running_ids(fw.app("/cli-web"))) == 1, fw, "scaled to 1")
    assert cli("apps", "suspend", "/cli-web", master=cluster.master).returncode == 0
    check(lambda: not fw.app("/cli-web")["tasks"], fw, "suspended: no tasks")
    assert "suspended" in cli("apps", "list", master=cluster.master).stdout
    r = cli("apps", "restart", "/nope", master=cluster.master)
    assert r.returncode == 2 and "no app /nope" in r.stderr
    assert cli("apps", "delete", "/cli-web", master=cluster.master).returncode == 0
    assert "/cli-web" not in cli("apps", "list", master=cluster.master).stdout


def test_cli_jobs_schedule_run_history(fw, cluster, tmp_path):
    nb = notebook(tmp_path, "cli-report.ipynb")
    r = cli("jobs", "schedule", str(nb), "--cron", "0 * * * *", "-p", "alpha=0.5", master=cluster.master)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "scheduled cli-report: 0 * * * *"
    job = fw.get("/v2/jobs/cli-report")
    assert job["notebook"]["parameters"] == {"alpha": 0.5} and job["schedule"] == "0 * * * *"
    r = cli("jobs", "run", "cli-report", master=cluster.master)
    assert r.returncode == 0 and r.stdout.startswith("started run ")
    run_id = r.stdout.split()[2]
    check(lambda: [x for x in fw.runs("cli-report") if x["id"] == run_id][0].get("outputNotebook"), fw,
          "the executed notebook", timeout=120)
    r = cli("jobs", "history", "cli-report", master=cluster.master)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith(run_id))
    assert "manual" in row and "SUCCESS" in row and row.rstrip().endswith("yes")
    out = tmp_path / "out.ipynb"
    assert cli("jobs", "notebook", "cli-report", run_id, "-o", str(out), master=cluster.master).returncode == 0
    assert "alpha is 5.0" in out.read_text()
    r = cli("jobs", "list", master=cluster.master)
    assert any(ln.startswith("cli-report") and "notebook" in ln and "SUCCESS" in ln for ln in r.stdout.splitlines())
    r = cli("jobs", "schedule", "--id", "cli-every", "--cmd", "true", "--every", "1h", master=cluster.master)
    assert r.returncode == 0 and "/PT1H" in r.stdout
    assert cli("jobs", "delete", "cli-every", master=cluster.master).returncode == 0
    r = cli("jobs", "history", "cli-every", master=cluster.master)
    assert r.returncode == 2 and "cli-every" in r.stderr


# ------------------------------------------------------------------ magics
@pytest.fixture
def ip(cluster, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("MESOS_NB_MASTER", cluster.master)
    monkeypatch.delenv("MESOS_NB_APPS", raising=False)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mesos_nb")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "mesos_nb")


def test_magics_deploy_schedule_and_run_history(ip, fw, tmp_path, monkeypatch):
    from mesos_nb.notebook import MesosNotebookError

    monkeypatch.chdir(tmp_path)
    notebook(tmp_path, "notebook.ipynb")
    m = ip.run_line_magic("mesos", 'app deploy --id /nb-web --cmd "exec sleep 1000" --instances 1 --cpus 0.1 '
                                   "--mem 16")
    assert repr(m).startswith("Deployed /nb-web version ")
    check(lambda: len(running_ids(fw.app("/nb-web"))) == 1, fw, "the magic's app running")
    t = ip.run_line_magic("mesos", "apps")
    assert t.records and any(r["ID"] == "/nb-web" and r["RUNNING"] == "1" for r in t.records)
    m = ip.run_line_magic("mesos", 'job schedule notebook.ipynb --cron "0 * * * *" -p alpha=0.1')
    assert repr(m) == "Scheduled notebook: 0 * * * *."
    assert fw.get("/v2/jobs/notebook")["notebook"]["parameters"] == {"alpha": 0.1}
    m = ip.run_line_magic("mesos", "job run notebook")
    run_id = repr(m).split()[2]
    check(lambda: [x for x in fw.runs("notebook") if x["id"] == run_id][0].get("outputNotebook"), fw,
          "the executed notebook", timeout=120)
    t = ip.run_line_magic("mesos", "jobs")
    rec = next(r for r in t.records if r["RUN"] == run_id)
    assert rec["JOB"] == "notebook" and rec["STATUS"] == "SUCCESS" and rec["NOTEBOOK"] == "yes"
    text, page = repr(t), t._repr_html_()
    assert run_id in text and "SUCCESS" in text and "<" not in text
    assert f'{fw.api}/ui/jobs/notebook/runs/{run_id}' in page and "download=1" in page and "<table>" in page
    with pytest.raises(MesosNotebookError, match="instances must be >= 0"):
        ip.run_line_magic("mesos", "app scale /nb-web -1")
    with pytest.raises(MesosNotebookError, match="no app /ghost"):
        ip.run_line_magic("mesos", "app show /ghost")
    with pytest.raises(MesosNotebookError, match="unknown job action"):
        ip.run_line_magic("mesos", "job explode")
    with pytest.raises(MesosNotebookError, match="not a valid cron"):
        ip.run_line_magic("mesos", 'job schedule notebook.ipynb --cron "61 * * * *"')
    ip.run_line_magic("mesos", "app delete /nb-web")


# ------------------------------------------------------------------ web UI
def test_ui_pages_show_apps_instances_jobs_and_notebooks(fw, tmp_path):
    from mesos_nb.frameworks.apps import client

    client.deploy({"id": "/ui-web", "cmd": "exec sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2}, fw.api)
    ids = check(lambda: r if len(r := running_ids(fw.app("/ui-web"))) == 2 else None, fw, "2 running")
    client.schedule_notebook("ui-report", str(notebook(tmp_path)), {"alpha": 2}, url=fw.api, schedule="0 0 * * *")
    run = client.run_job("ui-report", url=fw.api)
    check(lambda: [x for x in fw.runs("ui-report") if x["id"] == run["id"]][0].get("outputNotebook"), fw,
          "the executed notebook", timeout=120)
    status, page, _ = get_text(fw.api + "/")
    assert status == 200 and "<h2>Apps</h2>" in page  # / redirects to /ui (the master UI links webui_url)
    assert '<table class="apps">' in page and "/ui-web" in page
    assert all(t in page for t in ids) and page.count("TASK_RUNNING") >= 2
    assert '<table class="jobs">' in page and "0 0 * * *" in page
    assert f'href="/ui/jobs/ui-report/runs/{run["id"]}"' in page and "SUCCESS" in page
    status, nb_page, _ = get_text(f"{fw.api}/ui/jobs/ui-report/runs/{run['id']}")
    assert status == 200 and "alpha is 20" in nb_page and "download .ipynb" in nb_page
    status, body, headers = get_text(f"{fw.api}/v2/jobs/ui-report/runs/{run['id']}/notebook?download=1")
    assert status == 200 and "attachment" in headers.get("Content-Disposition", "")
    assert json.loads(body)["nbformat"] == 4
    status, body, _ = get_text(f"{fw.api}/ui/jobs/ui-report/runs/nope")
    assert status == 404 and "no executed notebook" in body
    # the master lists the framework with its webui_url: the link to these pages
    fws = json.load(urllib.request.urlopen(f"http://{fw.master}/master/frameworks", timeout=10))["frameworks"]
    assert [f["webui_url"] for f in fws if f["name"] == "mesos-nb-apps"] == [fw.api]
    _screenshot(fw.api + "/ui", tmp_path)
    client.delete_app("/ui-web", fw.api)


def _screenshot(url: str, tmp_path: Path) -> None:
    """A Chromium screenshot of the page when Chromium and Playwright are here (else skipped)."""
    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    if not os.path.exists(chromium):
        return
    out = tmp_path / "apps-ui.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(url)
            page.wait_for_selector("table.instances")
            assert page.locator("table.instances tbody tr").count() >= 2
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    assert out.stat().st_size > 1000
    shot_dir = os.environ.get("MESOS_NB_SCREENSHOTS")
    if shot_dir:
        Path(shot_dir).mkdir(parents=True, exist_ok=True)
        (Path(shot_dir) / "apps-ui.png").write_bytes(out.read_bytes())


def test_apps_serve_runs_the_framework_beside_the_master(cluster, tmp_path):
    """``mesos-nb apps serve`` registers with the master; ``mesos-nb apps list`` finds it there."""
    from apps_cluster import stop

    state = tmp_path / "served"
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mesos_nb", "apps", "serve", "--master", cluster.master,
                                 "--state", str(state), "--port", "0", "--dns-port", "-1", "--name", "apps-served"],
                                env=cli_env(), cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: (state / "endpoints.json").exists(), 60, message="the served framework's endpoints")
        api = json.loads((state / "endpoints.json").read_text())["api"]
        env_name = {"MESOS_NB_APPS_NAME": "apps-served"}

        def listed():
            r = subprocess.run([sys.executable, "-m", "mesos_nb", "apps", "list", "--master", cluster.master],
                               capture_output=True, text=True, env=cli_env(**env_name), cwd=str(REPO), timeout=60)
            return r if r.returncode == 0 else None

        r = wait_for(listed, 60, interval=0.2, message="apps list through the master")
        assert r.stdout.split()[:6] == ["ID", "INSTANCES", "RUNNING", "HEALTHY", "VERSION", "STATUS"]
        fws = json.load(urllib.request.urlopen(f"http://{cluster.master}/master/frameworks", timeout=10))
        assert [f["webui_url"] for f in fws["frameworks"] if f["name"] == "apps-served"] == [api]
    finally:
        stop(proc)
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
