"""``mesos-nb local`` is secure by default: credentials.json (Mesos format, 0600) in its work
dir, its path printed, authentication on everywhere; the CLI finds the credentials itself."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from conftest import REPO, cli_env, credential_headers, free_port, get_json, wait_for

pytest.importorskip("mesos_nb.agent.process")


def _start(tmp_path, *extra: str) -> tuple[subprocess.Popen, int, dict]:
    port = free_port()
    env = cli_env(HOME=str(tmp_path / "home"), MESOS_NB_MASTER=f"127.0.0.1:{port}")
    log = open(tmp_path / "local.log", "wb")  # noqa: SIM115
    p = subprocess.Popen([sys.executable, "-m", "mesos_nb", "local", "--agents", "1", "--port", str(port),
                          "--work-dir", str(tmp_path / "wd"), "--resources", "cpus:1;mem:256", *extra],
                         env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def up() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200 and b"master:" in (tmp_path / "local.log").read_bytes()

    wait_for(up, 30)
    return p, port, env


def _stop(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait(20)


def test_local_generates_credentials_and_requires_them(tmp_path):
    p, port, env = _start(tmp_path)
    try:
        creds = tmp_path / "wd" / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        doc = json.loads(creds.read_text())
        assert list(doc) == ["credentials"] and set(doc["credentials"][0]) == {"principal", "secret"}
        assert str(creds) in (tmp_path / "local.log").read_text()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/master/state", timeout=5)
        assert e.value.code == 401
        state = get_json(f"http://127.0.0.1:{port}/master/state", headers=credential_headers(tmp_path / "wd"))
        assert len(state["slaves"]) == 1
        # the CLI of the same user finds them by itself
        r = subprocess.run([sys.executable, "-m", "mesos_nb", "agents"], env=env, cwd=str(REPO),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "127.0.0.1" in r.stdout, r.stderr
        r = subprocess.run([sys.executable, "-m", "mesos_nb", "run", "--cpus", "0.1", "--mem", "32", "--",
                            "echo", "authenticated"], env=env, cwd=str(REPO), capture_output=True, text=True,
                           timeout=90)
        assert r.returncode == 0 and "authenticated" in r.stdout, r.stderr
        # another user (another HOME) without credentials gets one sentence
        r = subprocess.run([sys.executable, "-m", "mesos_nb", "agents"], env={**env, "HOME": str(tmp_path)},
                           cwd=str(REPO), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "requires authentication" in r.stderr, r.stderr
        # ... unless given the credential file
        r = subprocess.run([sys.executable, "-m", "mesos_nb", "--credential", str(creds), "agents"],
                           env={**env, "HOME": str(tmp_path)}, cwd=str(REPO), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        _stop(p)


def test_no_authenticate_turns_it_off(tmp_path):
    p, port, _ = _start(tmp_path, "--no-authenticate")
    try:
        assert not (tmp_path / "wd" / "credentials.json").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/master/state", timeout=5) as r:
            assert r.status == 200
    finally:
        _stop(p)
