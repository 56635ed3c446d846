"""A JupyterLab server on a loopback port, for the notebook benchmarks and the browser tests.

Token auth, a private HOME / settings / config / runtime under ``base``, the notebook tracker
not windowed (every cell's output stays in the DOM, so the page can be read) and no news
fetched. It also serves Notebook 7 at ``/notebooks/``. Stopped (terminate, then kill) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _settings(settings: Path) -> None:
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = settings / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@contextlib.contextmanager
def jupyter_lab(base: Path, root: Path, env: dict[str, str], timeout: float = 90.0) -> Iterator[dict[str, Any]]:
    """Run JupyterLab serving ``root``; yields ``{"url", "token", "root", "log"}``.

    ``env`` is the server's (and so its kernels') environment: HOME and the Jupyter dirs are
    set here, under ``base``."""
    home, settings = base / "home", base / "settings"
    home.mkdir(parents=True, exist_ok=True)
    _settings(settings)
    token = secrets.token_hex(16)
    port = free_port()
    env = {**env, "HOME": str(home), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "ws"), "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime")}
    env.pop("JPY_SESSION_NAME", None)
    log_path = base / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Jupyter server did not start in {timeout:g} s: {log_path}")
            time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError("the Jupyter server exited: " + log_path.read_text()[-3000:])
        yield {"url": url, "token": token, "root": root, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def shutdown_kernels(server: dict[str, Any]) -> None:
    """Stop every kernel the server runs (each notebook page started one)."""
    base, tok = server["url"], server["token"]
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/api/kernels?token={tok}", timeout=10) as r:
        kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={tok}", method="DELETE")
            with contextlib.suppress(OSError), urllib.request.urlopen(req, timeout=20):
                pass
