"""Partitions with a real cut network link (Mesos 1.11 behaviour).

The master (and the frameworks) run in one network namespace, the agent in another, joined by
a veth pair the test cuts for 15 s. A PARTITION_AWARE framework is told TASK_UNREACHABLE and,
once the link heals and the agent re-registers, TASK_RUNNING again; a framework that is not
partition aware is told TASK_LOST and then sees its tasks running again (reconciliation
agrees). No task is restarted or duplicated: each task's shell wrote its pid exactly once.
Then MARK_AGENT_GONE on the cut-off agent ends its tasks as TASK_GONE_BY_OPERATOR (TASK_LOST),
and the agent is refused when the link heals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO, cli_env, stop_process_groups, wait_for

pytest_plugins = ["netns"]

APP = REPO / "tests" / "partition_apps" / "frameworks.py"
N = 3
CUT_SECONDS = 15.0


class Lines:
    """JSON lines of a process's stdout, collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.items, self.lock = proc, [], threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self.lock:
                    self.items.append(json.loads(line))

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def updates(self, fw: str, state: str | None = None, reason: str | None = None) -> list[dict]:
        with self.lock:
            return [x for x in self.items if x.get("fw") == fw and (state is None or x["state"] == state)
                    and (reason is None or x["reason"] == reason)]

    def tasks_with(self, fw: str, state: str, reason: str | None = None, times: int = 1) -> bool:
        ups = self.updates(fw, state, reason)
        return all(sum(1 for u in ups if u["task"] == f"{fw}-{i}") >= times for i in range(N))

    def last(self, key: str) -> object:
        with self.lock:
            return next((x[key] for x in reversed(self.items) if key in x), None)


def wait(pred, timeout: float, what: str, logs: Path) -> None:
    """conftest.wait_for, with every process log's tail in the failure."""
    try:
        wait_for(pred, timeout, interval=0.05, message=what)
    except AssertionError as e:
        tails = "\n".join(f"==== {f.name}\n{f.read_text(errors='replace')[-2500:]}" for f in logs.glob("*.log"))
        raise AssertionError(f"{e}\n{tails}") from None


def test_cut_agent_unreachable_then_back_running_then_marked_gone(netns_pair, tmp_path):
    pair = netns_pair
    env = cli_env(MESOS_NB_LOG_LEVEL="info")
    master_addr = f"{pair.addr_a}:5050"
    piddir, release = tmp_path / "pids", tmp_path / "release"
    piddir.mkdir()
    procs: list[subprocess.Popen] = []

    def spawn(ns: str, name: str, argv: list[str], **kw) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        kw.setdefault("stdout", log)
        p = pair.popen(ns, argv, env=env, cwd=str(REPO), stderr=log, start_new_session=True, **kw)
        procs.append(p)
        return p

    py = sys.executable
    try:
        spawn(pair.ns_a, "master", [py, "-m", "mesos_nb", "master", "--host", pair.addr_a, "--port", "5050",
                                    "--agent-ping-timeout", "0.5", "--max-agent-ping-timeouts", "6",
                                    "--allocation-interval", "0.2"])
        spawn(pair.ns_b, "agent", [py, "-m", "mesos_nb", "agent", "--master", master_addr, "--host", pair.addr_b,
                                   "--port", "0", "--resources", "cpus:4;mem:2048", "--isolation", "posix",
                                   "--work-dir", str(tmp_path / "agent"), "--master-ping-timeout", "3"])
        fws = Lines(spawn(pair.ns_a, "frameworks", [py, str(APP), master_addr, str(N), str(piddir), str(release)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        wait(lambda: fws.tasks_with("aware", "TASK_RUNNING") and fws.tasks_with("plain", "TASK_RUNNING"),
             90, "all tasks running", tmp_path)
        fws.send("state")
        wait(lambda: fws.last("master_state") is not None, 30, "the master's state", tmp_path)
        agent_id = fws.last("master_state")["slaves"][0]["id"]

        # ---- a 15 s partition
        pair.cut()
        t0 = time.monotonic()
        wait(lambda: fws.tasks_with("aware", "TASK_UNREACHABLE", "REASON_AGENT_REMOVED")
             and fws.tasks_with("plain", "TASK_LOST", "REASON_AGENT_REMOVED"), 30, "partition reported", tmp_path)
        # the scenario is a partition of this length, not a synchronisation
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - t0)))
        pair.heal()
        wait(lambda: fws.tasks_with("aware", "TASK_RUNNING", "REASON_AGENT_REREGISTERED")
             and fws.tasks_with("plain", "TASK_RUNNING", "REASON_AGENT_REREGISTERED"), 90,
             "tasks running again after the heal", tmp_path)
        fws.send("reconcile")
        wait(lambda: fws.tasks_with("plain", "TASK_RUNNING", "REASON_RECONCILIATION")
             and fws.tasks_with("aware", "TASK_RUNNING", "REASON_RECONCILIATION"), 30,
             "reconciliation says running", tmp_path)
        for fw in ("aware", "plain"):
            ended = [u for u in fws.updates(fw) if u["state"] in ("TASK_KILLED", "TASK_FAILED", "TASK_FINISHED",
                                                                  "TASK_GONE", "TASK_ERROR", "TASK_DROPPED")]
            assert ended == [], ended
        for i in range(N):  # started once each: no restart, no duplicate
            for fw in ("aware", "plain"):
                assert len((piddir / f"{fw}-{i}").read_text().split()) == 1

        # ---- cut again, and the operator marks the agent gone
        pair.cut()
        wait(lambda: fws.tasks_with("aware", "TASK_UNREACHABLE", "REASON_AGENT_REMOVED", times=2), 30,
             "second partition reported", tmp_path)
        fws.send(f"gone {agent_id}")
        wait(lambda: fws.last("gone") is not None, 30, "MARK_AGENT_GONE answered", tmp_path)
        assert fws.last("gone") == 200
        wait(lambda: fws.tasks_with("aware", "TASK_GONE_BY_OPERATOR", "REASON_AGENT_REMOVED_BY_OPERATOR")
             and fws.tasks_with("plain", "TASK_LOST", "REASON_AGENT_REMOVED_BY_OPERATOR"), 30,
             "tasks gone by operator", tmp_path)
        pair.heal()
        wait(lambda: "marked gone" in (tmp_path / "agent.log").read_text(errors="replace"), 90,
             "the agent refused when it returns", tmp_path)
        fws.send("state")
        time_asked = len(fws.items)
        wait(lambda: len(fws.items) > time_asked and fws.last("master_state") is not None, 30, "state", tmp_path)
        assert fws.last("master_state")["slaves"] == []
    finally:
        release.touch()
        stop_process_groups(procs, timeout=20)
