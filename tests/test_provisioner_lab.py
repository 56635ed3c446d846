"""A Jupyter server started here lists the cluster kernelspecs and starts one through its REST
API; a notebook opened in JupyterLab (headless Chromium) on that kernelspec runs a cell in an
agent's sandbox; stopping the server leaves no kernel task running."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, free_port, start_cluster_process, stop_cluster_process, wait_for
from provisioner_support import install_kernels, register_provisioner
from test_provisioner import agent_resources, live_tasks
from test_webui import CHROMIUM_ARGS, _browser_or_skip, artifact_path

pytest.importorskip("jupyterlab")
pytest.importorskip("jupyter_server")

SMALL = "mesos-nb-cluster-small"
CELL = 'import os\nprint("ran-in", os.environ["MESOS_SANDBOX"], os.environ.get("JPY_SESSION_NAME"))'


def api(base: str, token: str, path: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


@pytest.fixture
def lab(tmp_path: Path):
    (tmp_path / "cluster").mkdir()
    cp = start_cluster_process(tmp_path / "cluster", agents=1, resources=agent_resources(100))
    eps = register_provisioner(tmp_path / "eps")
    prefix = tmp_path / "prefix"
    install_kernels(prefix)
    root = tmp_path / "root"
    root.mkdir()
    (root / "remote.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                   "outputs": [], "source": CELL}],
        "metadata": {"kernelspec": {"name": SMALL, "display_name": "Python 3 (mesos-nb cluster, small)",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "MESOS_NB_MASTER": cp.master,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(eps), os.environ.get("PYTHONPATH", "")]),
           "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jconfig"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jruntime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces")}
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.port_retries=0", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(root), start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up_or_exited() -> bool:
        return proc.poll() is not None or api(base, token, "/api/status") is not None

    try:
        wait_for(up_or_exited, 90, interval=0.2, message="jupyter server answering")
        assert proc.poll() is None, (tmp_path / "jupyter.log").read_text()[-3000:]
        yield base, token, cp, proc, tmp_path / "jupyter.log"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)  # jupyter asks to confirm the first one
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        stop_cluster_process(cp)


async def test_jupyter_server_and_lab_run_a_cell_on_a_cluster_kernel(lab):
    _browser_or_skip()
    from playwright.async_api import async_playwright

    base, token, cp, proc, log = lab
    specs = api(base, token, "/api/kernelspecs")["kernelspecs"]
    assert specs[SMALL]["spec"]["display_name"] == "Python 3 (mesos-nb cluster, small)"
    assert specs[SMALL]["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"] == "mesos-provisioner"

    # started through the REST API: a kernel task appears on the master
    k = api(base, token, "/api/kernels", "POST", {"name": SMALL})
    wait_for(lambda: any(t.startswith(f"kernel-{k['id'][:8]}") and s == "TASK_RUNNING"
                         for t, s in live_tasks(cp).items()), 90, interval=0.2,
             message="the REST-started kernel's task running")
    api(base, token, f"/api/kernels/{k['id']}", "DELETE")
    wait_for(lambda: not any(t.startswith(f"kernel-{k['id'][:8]}") for t in live_tasks(cp)), 30,
             message="the deleted kernel's task gone")

    # a notebook opened in JupyterLab on that kernelspec runs a cell in an agent's sandbox
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        try:
            await page.goto(f"{base}/lab/tree/remote.ipynb?token={token}", timeout=120_000)
            editor = page.locator(".jp-NotebookPanel .jp-Cell .jp-InputArea-editor").first
            await editor.wait_for(timeout=120_000)
            # the session's kernel is up (a cell run before that is not sent anywhere)
            await page.get_by_text(re.compile(r"mesos-nb cluster, small\) \| Idle")).first.wait_for(
                timeout=120_000)
            await editor.click()
            await page.keyboard.press("Shift+Enter")
            out = page.locator(".jp-OutputArea-output", has_text="ran-in")
            await out.first.wait_for(timeout=120_000)
            text = await out.first.inner_text()
        except BaseException:
            await page.screenshot(path=str(artifact_path(log.parent, "lab-remote-kernel.png")))
            artifact_path(log.parent, "lab-remote-kernel.log").write_bytes(log.read_bytes())
            raise
        finally:
            await browser.close()
    assert str(cp.work_dir / "cluster") in text, text
    assert text.strip().endswith("remote.ipynb"), text  # the notebook's session name travelled
    sessions = api(base, token, "/api/sessions")
    kid = next(s["kernel"]["id"] for s in sessions if s["path"].endswith("remote.ipynb"))
    assert any(t.startswith(f"kernel-{kid[:8]}") for t in live_tasks(cp))

    # stopping the server shuts its kernels down: no kernel task left running
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    wait_for(lambda: not any(t.startswith("kernel-") for t in live_tasks(cp)), 30,
             message="no kernel task after the server stopped")
