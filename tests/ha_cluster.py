"""Real-process HA clusters for the tests: M masters with ``--zk``, agents given the zk:// URL.

The test is the supervisor: it SIGKILLs masters and starts them again (a master that loses
leadership exits non-zero by design, as Mesos aborts). Logs go to files under the work dir so
that a failure shows what each process said.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from conftest import REPO, cli_env, free_port, stop_process_groups, wait_for

SESSION = 2.0  # ZooKeeper session timeout of every process in the test clusters


class HaCluster:
    def __init__(self, zk_url: str, work: Path, masters: int = 3, quorum: int = 2,
                 master_flags: tuple[str, ...] = ()) -> None:
        self.zk_url = zk_url
        self.work = work
        self.quorum = quorum
        self.ports = [free_port() for _ in range(masters)]
        self.masters: dict[int, subprocess.Popen[bytes]] = {}
        self.agents: list[subprocess.Popen[bytes]] = []
        self.master_flags = master_flags
        self.env = cli_env(MESOS_NB_LOG_LEVEL="info")

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        return subprocess.Popen([sys.executable, "-m", "mesos_nb", *args], env=self.env, cwd=str(REPO),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_master(self, port: int) -> None:
        self.masters[port] = self._spawn(f"master-{port}", [
            "master", "--zk", self.zk_url, "--quorum", str(self.quorum), "--host", "127.0.0.1",
            "--port", str(port), "--work-dir", str(self.work / f"master-{port}"),
            "--zk-session-timeout", str(SESSION), "--allocation-interval", "0.2", *self.master_flags])

    def start_agent(self, i: int, resources: str = "cpus:16;mem:8192", extra: tuple[str, ...] = ()) -> None:
        self.agents.append(self._spawn(f"agent-{i}", [
            "agent", "--master", self.zk_url, "--host", "127.0.0.1", "--port", "0", "--resources", resources,
            "--work-dir", str(self.work / f"agent-{i}"), "--isolation", "posix",
            "--zk-session-timeout", str(SESSION), *extra]))

    def start(self, agents: int = 2) -> None:
        for p in self.ports:
            self.start_master(p)
        for i in range(agents):
            self.start_agent(i)

    def kill_master(self, port: int) -> None:
        p = self.masters[port]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)

    def restart_exited_masters(self) -> list[int]:
        """Be the supervisor: start again every master process that has exited."""
        again = [port for port, p in self.masters.items() if p.poll() is not None]
        for port in again:
            self.start_master(port)
        return again

    def stop(self) -> None:
        stop_process_groups([*self.agents, *self.masters.values()], timeout=30)

    # ------------------------------------------------------------------ observation
    def leader(self) -> int | None:
        """Port of the leading master, asked of any live master (``/master/redirect``)."""
        for port, p in self.masters.items():
            if p.poll() is not None:
                continue
            req = urllib.request.Request(f"http://127.0.0.1:{port}/master/redirect")
            opener = urllib.request.build_opener(_NoRedirect)
            try:
                opener.open(req, timeout=2)
            except urllib.error.HTTPError as e:
                if e.code == 307:
                    loc = e.headers.get("Location", "")
                    with contextlib.suppress(ValueError):
                        return int(loc.rsplit(":", 1)[1])
            except OSError:
                continue
        return None

    def state(self, port: int) -> dict[str, Any]:
        import json

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/master/state", timeout=5) as r:
            return json.load(r)

    def leader_state(self) -> dict[str, Any] | None:
        """The leader's /master/state once it is leading (None while none is)."""
        port = self.leader()
        if port is None:
            return None
        try:
            return self.state(port)
        except OSError:
            return None

    def logs(self) -> str:
        out = []
        for f in sorted(self.work.glob("*.log")):
            out.append(f"==== {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(out)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a: Any, **k: Any) -> None:
        return None


def running_tasks(state: dict[str, Any] | None) -> dict[str, str]:
    """task id -> state of every task the leader knows as active."""
    if not state:
        return {}
    return {t["id"]: t["state"] for fw in state.get("frameworks", []) for t in fw.get("tasks", [])}


def wait(pred: Any, timeout: float, what: str, cluster: HaCluster | None = None) -> Any:
    """conftest.wait_for, with the cluster's logs in the failure."""
    try:
        return wait_for(pred, timeout, interval=0.05, message=what)
    except AssertionError as e:
        raise AssertionError(f"{e}" + (f"\n{cluster.logs()}" if cluster else "")) from None
