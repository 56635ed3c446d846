"""``mesos-nb master`` and ``mesos-nb agent`` as separate processes; logging; local helpers."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import urllib.request

import pytest
from conftest import REPO, cli_env, free_port, wait_for

from mesos_nb import logs
from mesos_nb.local import default_agent_resources, port_slices


def _get(url: str):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)


def _spawn(args: list[str], log_path, env=None) -> subprocess.Popen:
    with open(log_path, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "mesos_nb", *args], env=env or cli_env(),
                                cwd=str(REPO), stdout=f, stderr=subprocess.STDOUT)


def _stop(p: subprocess.Popen) -> int:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    return p.returncode


def test_master_and_agent_processes(tmp_path):
    pytest.importorskip("mesos_nb.agent.process")
    port = free_port()
    env = cli_env(MESOS_NB_PORT=str(port), MESOS_NB_LOG_LEVEL="info")  # options read the environment
    master = _spawn(["master", "--work-dir", str(tmp_path / "m")], tmp_path / "master.log", env)
    agent = None
    try:
        version = wait_for(lambda: _get(f"http://127.0.0.1:{port}/version"), timeout=15)
        assert version["version"] == "1.12.0"
        agent = _spawn(["agent", "--master", f"127.0.0.1:{port}", "--port", "0", "--work-dir",
                        str(tmp_path / "a"), "--resources", "cpus:1;mem:128", "--attributes", "rack:r1"],
                       tmp_path / "agent.log")
        slaves = wait_for(lambda: _get(f"http://127.0.0.1:{port}/master/state")["slaves"], timeout=20)
        assert slaves[0]["resources"]["cpus"] == 1 and slaves[0]["attributes"] == {"rack": "r1"}
        res = subprocess.run([sys.executable, "-m", "mesos_nb", "--master", f"127.0.0.1:{port}", "agents"],
                             capture_output=True, text=True, env=cli_env(), cwd=str(REPO), timeout=30)
        assert res.returncode == 0 and "rack:r1" in res.stdout and "0/1" in res.stdout
    finally:
        if agent is not None:
            assert _stop(agent) == 0, (tmp_path / "agent.log").read_text()
        assert _stop(master) == 0, (tmp_path / "master.log").read_text()
    out = (tmp_path / "master.log").read_text()
    assert f"master: http://127.0.0.1:{port}" in out
    assert "Traceback" not in out and "Traceback" not in (tmp_path / "agent.log").read_text()
    # structured log lines: "<ISO time>Z LEVEL logger message"
    lines = [ln for ln in out.splitlines() if " INFO " in ln]
    assert lines and all(ln.split()[0].endswith("Z") and ln.split()[2].startswith("mesos_nb") for ln in lines)


def test_master_port_in_use_is_one_sentence(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        res = subprocess.run([sys.executable, "-m", "mesos_nb", "master", "--port", str(port)],
                             capture_output=True, text=True, env=cli_env(), cwd=str(REPO), timeout=30)
    finally:
        s.close()
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.strip()][-1].startswith("mesos-nb: ")
    assert str(port) in res.stderr


def test_log_lines_are_one_line_per_event():
    buf = io.StringIO()
    logs.setup("debug", stream=buf)
    try:
        log = logging.getLogger("mesos_nb.test")
        logs.event(log, "task launched", task_id="t 1", agent="a1")
        log.info("multi\nline")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        log.debug("dbg")
    finally:
        logs.setup("warning")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].endswith('mesos_nb.test task launched task_id="t 1" agent=a1')
    assert "multi\\nline" in lines[1]
    assert "exc=" in lines[2] and "ValueError: boom" in lines[2]
    with pytest.raises(ValueError):
        logs.parse_level("loud")


async def test_local_agents_given_one_ports_range_split_it(tmp_path):
    """Agents of one host must never offer the same port (two tasks would then bind it)."""
    from mesos_nb.local import LocalCluster

    lc = LocalCluster(agents=2, port=0, work_dir=str(tmp_path), agent_resources="cpus:1;mem:64;ports:[20000-20199]")
    await lc.start()
    try:
        ports = sorted(a.config.resources.split("ports:")[1].split(";")[0] for a in lc.agents)
    finally:
        await lc.stop()
    assert ports == ["[20000-20099]", "[20100-20199]"]


def test_local_default_resources_split_the_machine():
    assert port_slices(2) == [(31000, 31499), (31500, 31999)]
    parts = default_agent_resources(4, "/tmp")
    assert len(parts) == 4
    ports = [p.split("ports:")[1] for p in parts]
    assert len(set(ports)) == 4
    from mesos_nb.protocol.resources import Resources

    total = sum((Resources.parse(p).scalar("cpus") for p in parts), 0.0)
    import psutil

    assert abs(total - (psutil.cpu_count() or 1)) < 0.01
