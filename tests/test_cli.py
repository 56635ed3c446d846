"""``mesos-nb`` as a user runs it: real subprocesses against a real ``mesos-nb local``."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid

import pytest
from conftest import (
    REPO,
    cli_env,
    free_port,
    run_cli,
    start_cluster_process,
    stop_cluster_process,
    wait_for,
)


def one_sentence(stderr: str) -> None:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr


def task_rows(cp, *args: str) -> dict[str, list[str]]:
    """``mesos-nb tasks`` rows by task id (plain output: stdout is not a tty)."""
    res = cp.cli("tasks", *args)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines and lines[0].split()[:3] == ["ID", "NAME", "STATE"]
    return {ln.split()[0]: ln.split() for ln in lines[1:] if ln.strip()}


# ------------------------------------------------------------------ errors: one sentence, exit 2
def test_bad_resources_exit_2_with_one_sentence():
    res = run_cli("agent", "--master", "127.0.0.1:1", "--resources", "cpus:lots")
    assert res.returncode == 2
    one_sentence(res.stderr)
    assert "cpus:lots" in res.stderr


def test_bad_resources_from_the_environment_too():
    res = run_cli("agent", env=cli_env(MESOS_NB_RESOURCES="mem:-5", MESOS_NB_MASTER="127.0.0.1:1"))
    assert res.returncode == 2
    one_sentence(res.stderr)


def test_unreachable_master_exit_2_with_one_sentence():
    port = free_port()
    for args in (["tasks"], ["agents"], ["status"], ["run", "--", "true"], ["kill", "x"], ["logs", "x"]):
        res = run_cli(*args, env=cli_env(MESOS_NB_MASTER=f"127.0.0.1:{port}"))
        assert res.returncode == 2, (args, res.stderr)
        one_sentence(res.stderr)
        assert f"127.0.0.1:{port}" in res.stderr


def test_unreachable_master_for_an_agent():
    res = run_cli("agent", "--master", f"127.0.0.1:{free_port()}", "--port", "0",
                  "--resources", "cpus:1;mem:64", timeout=60)
    assert res.returncode == 2, res.stderr
    one_sentence(res.stderr)


def test_bad_flags_exit_2_with_one_line():
    for args in (["bogus"], ["master", "--port", "notaport"], ["agent", "--isolation", "docker"],
                 ["run", "--cpus", "-1", "--", "true"], ["tasks", "--nope"]):
        res = run_cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        one_sentence(res.stderr)
    res = run_cli("master", env=cli_env(MESOS_NB_PORT="abc"))
    assert res.returncode == 2 and "MESOS_NB_PORT" in res.stderr
    one_sentence(res.stderr)


def test_python_dash_m_and_help():
    res = subprocess.run([sys.executable, "-m", "mesos_nb", "--help"], capture_output=True, text=True,
                         cwd=str(REPO), env=cli_env(), timeout=30)
    assert res.returncode == 0
    for c in ("master", "agent", "local", "status", "agents", "frameworks", "tasks", "run", "logs", "kill"):
        assert c in res.stdout


# ------------------------------------------------------------------ local
def test_local_is_up_in_under_3_seconds_and_stops_cleanly(tmp_path):
    pytest.importorskip("mesos_nb.agent.process")
    cp = start_cluster_process(tmp_path, agents=2)
    try:
        assert cp.started_in < 3.0, f"took {cp.started_in:.2f} s"
        slaves = cp.state()["slaves"]
        assert len(slaves) == 2 and all(s.get("active", True) for s in slaves)
        out = wait_for(lambda: cp.log_path.read_text(), timeout=5)
        assert f"master: http://127.0.0.1:{cp.port}" in out
        assert f"web UI: http://127.0.0.1:{cp.port}/" in out
        assert out.count("agent:") == 2
        # a running task dies with the cluster
        marker = f"300.{uuid.uuid4().int % 10**9}"
        run = subprocess.Popen([sys.executable, "-m", "mesos_nb", "run", "--cpus", "0.1", "--mem", "32",
                                "--", "sleep", marker], env=cp.env, cwd=str(REPO),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _sleepers(marker), timeout=15, message="the task's process")
    finally:
        rc = stop_cluster_process(cp)
    assert rc == 0, cp.log_tail()
    assert "Traceback" not in cp.log_path.read_text()
    wait_for(lambda: not _sleepers(marker), timeout=10, message="the task killed")
    run.wait(30)


def _sleepers(marker: str) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if p.info["cmdline"] and p.info["cmdline"][-1] == marker and "sleep" in p.info["cmdline"][0]:
                out.append(p.pid)
    return out


# ------------------------------------------------------------------ operator commands
def test_status_agents_frameworks(cluster_process):
    cp = cluster_process
    st = cp.cli("status")
    assert st.returncode == 0, st.stderr
    assert cp.url in st.stdout and "2 active / 2" in st.stdout
    ag = cp.cli("agents")
    assert ag.returncode == 0, ag.stderr
    lines = ag.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "HOST", "ACTIVE"]
    assert len(lines) == 3 and all("127.0.0.1:" in ln and "/2" in ln for ln in lines[1:])
    fr = cp.cli("frameworks", "--all")
    assert fr.returncode == 0 and fr.stdout.splitlines()[0].split()[:2] == ["ID", "NAME"]


def test_run_prints_output_and_exits_with_the_task_code(cluster_process):
    cp = cluster_process
    name = f"exit3-{uuid.uuid4().hex[:6]}"
    res = cp.cli("run", "--cpus", "0.5", "--mem", "64", "--name", name, "--", "sh", "-c", "echo hi; exit 3")
    assert res.returncode == 3, res.stderr
    assert res.stdout.splitlines() == ["hi"]
    assert "TASK_FAILED" in res.stderr and "Traceback" not in res.stderr
    rows = task_rows(cp, "--all")
    mine = [r for tid, r in rows.items() if tid.startswith(name)]
    assert len(mine) == 1 and mine[0][2] == "TASK_FAILED"
    assert not any(tid.startswith(name) for tid in task_rows(cp))  # not live any more


def test_run_success_and_stderr(cluster_process):
    res = cluster_process.cli("run", "--cpus", "0.1", "--mem", "32", "--", "sh -c 'echo out; echo err >&2'")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "out\n"
    assert "err" in res.stderr


def test_run_with_unsatisfiable_constraints_times_out_with_one_sentence(cluster_process):
    res = cluster_process.cli("run", "--cpus", "0.1", "--mem", "32", "--attr", "rack=nowhere",
                              "--timeout", "1.5", "--", "true")
    assert res.returncode == 2
    one_sentence(res.stderr)
    assert "rack=nowhere" in res.stderr


def test_logs_prints_what_the_task_printed(cluster_process):
    cp = cluster_process
    name = f"logs-{uuid.uuid4().hex[:6]}"
    marker = f"marker-{uuid.uuid4().hex}"
    res = cp.cli("run", "--cpus", "0.1", "--mem", "32", "--name", name, "--",
                 "sh", "-c", f"echo {marker}; echo to-stderr >&2")
    assert res.returncode == 0, res.stderr
    out = cp.cli("logs", name)
    assert out.returncode == 0, out.stderr
    assert marker in out.stdout
    err = cp.cli("logs", "--stderr", name)
    assert "to-stderr" in err.stdout
    missing = cp.cli("logs", "no-such-task-anywhere")
    assert missing.returncode == 2
    one_sentence(missing.stderr)


def test_logs_follow_until_the_task_ends(cluster_process):
    cp = cluster_process
    name = f"follow-{uuid.uuid4().hex[:6]}"
    run = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "run", "--cpus", "0.1", "--mem", "32", "--name", name, "--",
         "sh", "-c", "echo first; sleep 1.5; echo second"],
        env=cp.env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: any(t.startswith(name) for t in task_rows(cp)), timeout=15)
        res = cp.cli("logs", "-f", name, timeout=30)
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == ["first", "second"]
    finally:
        assert run.wait(30) == 0


def test_kill_kills_a_running_task(cluster_process):
    cp = cluster_process
    name = f"sleeper-{uuid.uuid4().hex[:6]}"
    run = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "run", "--cpus", "0.1", "--mem", "32", "--name", name, "--",
         "sleep", "60"],
        env=cp.env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        tid = wait_for(lambda: next((t for t, r in task_rows(cp).items()
                                     if t.startswith(name) and r[2] == "TASK_RUNNING"), None), timeout=15)
        res = cp.cli("kill", tid)
        assert res.returncode == 0, res.stderr
        assert tid in res.stdout
        _, err = run.communicate(timeout=30)
        assert run.returncode == 1
        assert "TASK_KILLED" in err
    finally:
        if run.poll() is None:
            run.kill()
    assert task_rows(cp, "--all")[tid][2] == "TASK_KILLED"
    again = cp.cli("kill", "no-such-task-anywhere")
    assert again.returncode == 2
    one_sentence(again.stderr)


def test_ctrl_c_on_run_kills_the_task(cluster_process):
    cp = cluster_process
    name = f"interrupt-{uuid.uuid4().hex[:6]}"
    run = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "run", "--cpus", "0.1", "--mem", "32", "--name", name, "--",
         "sleep", "60"],
        env=cp.env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        tid = wait_for(lambda: next((t for t, r in task_rows(cp).items()
                                     if t.startswith(name) and r[2] == "TASK_RUNNING"), None), timeout=15)
        t0 = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 130, err
        assert time.monotonic() - t0 < 15
        assert "Traceback" not in err
    finally:
        if run.poll() is None:
            run.kill()
    assert task_rows(cp, "--all")[tid][2] == "TASK_KILLED"


# ------------------------------------------------------------------ what a new user meets
def test_run_that_no_agent_can_ever_fit_says_so_at_once(cluster_process):
    t0 = time.monotonic()
    res = cluster_process.cli("run", "--cpus", "99", "--", "echo", "hi")
    assert res.returncode == 2, res.stderr
    one_sentence(res.stderr)
    assert "no agent can ever fit cpus 99" in res.stderr and "the largest of 2 agent(s)" in res.stderr
    assert time.monotonic() - t0 < 30  # it used to wait forever


def test_master_pointing_at_an_agent_says_it_is_an_agent(cluster_process):
    agent = cluster_process.state()["slaves"][0]
    addr = f"{agent['hostname']}:{agent['port']}"
    res = run_cli("tasks", "--master", addr, env=cli_env())
    assert res.returncode == 2
    one_sentence(res.stderr)
    # Not "404" alone: the agent's or master's port may contain those digits (CI: port 34045).
    assert "is an agent, not a master" in res.stderr and "answered 404" not in res.stderr


def test_help_shows_defaults_and_services_take_no_master():
    for cmd in ("master", "local"):
        res = run_cli(cmd, "--help", env=cli_env())
        assert res.returncode == 0 and "--master" not in res.stdout, res.stdout
    res = run_cli("run", "--help", env=cli_env())
    assert "(default: 1.0)" in res.stdout and "(default: 256.0)" in res.stdout
    assert "(default: 127.0.0.1:5050)" in " ".join(run_cli("tasks", "--help", env=cli_env()).stdout.split())
