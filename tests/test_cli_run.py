"""``mesos-nb run`` on the SDK's TaskPool: what a user sees when the task outlives --timeout,
and what --verbose says (real subprocesses against a real ``mesos-nb local``)."""

from __future__ import annotations

import uuid

from conftest import wait_for


def _rows(cp, *args: str) -> dict[str, list[str]]:
    res = cp.cli("tasks", *args)
    assert res.returncode == 0, res.stderr
    return {ln.split()[0]: ln.split() for ln in res.stdout.splitlines()[1:] if ln.strip()}


def test_timeout_kills_the_launched_task_and_exits_124(cluster_process):
    cp = cluster_process
    name = f"slow-{uuid.uuid4().hex[:6]}"
    res = cp.cli("run", "--verbose", "--cpus", "0.1", "--mem", "32", "--name", name, "--timeout", "8",
                 "--", "sh", "-c", "echo started; sleep 120", timeout=90)
    assert res.returncode == 124, (res.stdout, res.stderr)
    assert res.stdout.splitlines() == ["started"]
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("mesos-nb run: ")]
    assert lines[0].startswith(f"mesos-nb run: launching {name}")
    assert any(ln.startswith("mesos-nb run: TASK_RUNNING") for ln in lines)
    assert any(ln.startswith("mesos-nb run: timed out after 8 s; killing task " + name) for ln in lines)
    assert "TASK_KILLED" in res.stderr
    tid = next(t for t in _rows(cp, "--all") if t.startswith(name))
    wait_for(lambda: _rows(cp, "--all")[tid][2] == "TASK_KILLED", timeout=15)
    assert not any(t.startswith(name) for t in _rows(cp))  # and the framework is gone with it


def test_run_leaves_no_framework_behind(cluster_process):
    cp = cluster_process
    res = cp.cli("run", "--cpus", "0.1", "--mem", "32", "--name", "tidy", "--", "true")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""

    def active_run_frameworks() -> list[str]:
        out = cp.cli("frameworks")
        assert out.returncode == 0, out.stderr
        return [ln for ln in out.stdout.splitlines() if "mesos-nb run tidy" in ln]

    wait_for(lambda: not active_run_frameworks(), timeout=15)
