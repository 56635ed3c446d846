"""A real cluster for the apps framework's end-to-end tests: a master and two agents as
processes, on two loopback addresses (127.0.0.1 and 127.0.0.2) so that they have distinct
hostnames, and the framework as a process (``python -m mesos_nb.frameworks.apps``)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import REPO, cli_env, free_port, wait_for

AGENT_HOSTS = ("127.0.0.1", "127.0.0.2")


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=f, stderr=subprocess.STDOUT,
                                cwd=str(REPO), start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return json.load(r)


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@dataclass
class Cluster:
    work: Path
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def master(self) -> str:
        return f"127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        return get(f"http://{self.master}/master/state")

    def framework_tasks(self, framework_id: str) -> list[dict[str, Any]]:
        for fw in self.state().get("frameworks", []):
            if fw.get("id") == framework_id:
                return fw.get("tasks", [])
        return []


def start_cluster(work: Path) -> Cluster:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    c = Cluster(work=work, port=port)
    env = cli_env()
    c.procs.append(_spawn(["-m", "mesos_nb", "master", "--port", str(port), "--work-dir", str(work / "master")],
                          work / "master.log", env))
    for i, host in enumerate(AGENT_HOSTS):
        ports = f"[{31000 + 200 * i}-{31199 + 200 * i}]"
        c.procs.append(_spawn(["-m", "mesos_nb", "agent", "--master", c.master, "--host", host, "--port", "0",
                               "--resources", f"cpus:2;mem:1024;disk:1024;ports:{ports}", "--isolation", "posix",
                               "--attributes", f"node:n{i}", "--work-dir", str(work / f"agent-{i}")],
                              work / f"agent-{i}.log", env))

    def ready() -> bool:
        for p in c.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a cluster process exited: {p.args}")
        return len([s for s in c.state().get("slaves", []) if s.get("active", True)]) == len(AGENT_HOSTS)

    try:
        wait_for(ready, 60, message="master and two agents")
    except BaseException:
        stop_cluster(c)
        raise
    return c


def stop_cluster(c: Cluster) -> None:
    for p in reversed(c.procs):
        stop(p)


@dataclass
class Framework:
    state_dir: Path
    master: str
    proc: subprocess.Popen | None = None
    api: str = ""
    dns_port: int = 0
    name: str = "framework"
    zk: str | None = None  # --zk zk://…: state and leader election in ZooKeeper
    extra: list[str] = field(default_factory=list)  # more command-line options
    headers: dict[str, str] = field(default_factory=dict)  # sent with the fixture's own GETs

    def spawn(self, clear: bool = True) -> Framework:
        """Start the process; ``clear=False`` for a second replica (it waits for the lock)."""
        ep = self.state_dir / "endpoints.json"
        if clear and ep.exists():
            ep.unlink()
        zk = ["--zk", self.zk, "--zk-session-timeout", "2"] if self.zk else []
        self.proc = _spawn(["-m", "mesos_nb.frameworks.apps", "--master", self.master, "--state", str(self.state_dir),
                            "--port", "0", "--dns-port", "0", *zk, *self.extra], self.log, cli_env())
        return self

    def wait_up(self, timeout: float = 60.0) -> Framework:
        """Until this process leads: its endpoints file is written and it has reconciled."""
        ep = self.state_dir / "endpoints.json"

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the framework exited:\n{tail(self.log)}")
            info = json.loads(ep.read_text())
            if self.proc is None or info["pid"] != self.proc.pid:
                return False
            self.api, self.dns_port = info["api"], info["dns_port"]
            return bool(self.get("/v2/info").get("reconciledAt"))

        wait_for(up, timeout, message="the apps framework subscribed")
        return self

    def start(self, timeout: float = 60.0) -> Framework:
        return self.spawn().wait_up(timeout)

    @property
    def log(self) -> Path:
        return self.state_dir.parent / f"{self.name}.log"

    def kill9(self) -> None:
        assert self.proc is not None
        stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def get(self, path: str) -> Any:
        return get(self.api + path, headers=self.headers)

    def app(self, app_id: str) -> dict[str, Any]:
        return self.get("/v2/apps/" + app_id.strip("/"))["app"]

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return self.get(f"/v2/jobs/{job_id}/runs")["runs"]


@contextlib.contextmanager
def running_cluster(work: Path) -> Iterator[Cluster]:
    """A module's cluster: started, and stopped however the module ends."""
    c = start_cluster(work)
    try:
        yield c
    finally:
        stop_cluster(c)


@contextlib.contextmanager
def running_framework(f: Framework) -> Iterator[Framework]:
    """The framework started; at the end stopped, with its log's tail in the test output."""
    f.start()
    try:
        yield f
    finally:
        f.stop()
        print("framework log tail:\n" + tail(f.log, 15))


def running_ids(app: dict[str, Any]) -> set[str]:
    return {t["taskId"] for t in app["tasks"] if t.get("state") == "TASK_RUNNING" and not t.get("killing")}


__all__ = ["AGENT_HOSTS", "Cluster", "Framework", "running_cluster", "running_framework", "running_ids",
           "start_cluster", "stop_cluster", "tail"]

