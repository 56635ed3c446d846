"""ipyparallel on mesos-nb: a controller launcher and an engine-set launcher whose processes
are cluster tasks, registered as ``mesos`` in ipyparallel's entry points:

    import ipyparallel as ipp
    rc = ipp.Cluster(controller="mesos", engines="mesos", n=4).start_and_connect_sync(activate=True)
    %px import os; os.getpid()

The master is ``$MESOS_NB_MASTER`` (or ``c.MesosLauncherMixin.master`` / the ``master=``
keyword). The controller runs in its task's sandbox (profile dir ``$MESOS_SANDBOX/profile``)
on ports taken from the offer; its connection files are read back through the agent's
``/files/read`` and written to the local profile, so the kernel and the agents need not share
a filesystem. Engines get the connection info in ``$IPP_CONNECTION_INFO`` (ipyparallel's
``send_engines_connection_env``). Each launcher is one framework; ``stop()`` tears it down.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal as _signal
import sys
import time
from typing import Any

from ipyparallel.cluster.launcher import ControllerLauncher, EngineLauncher, NotRunning
from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from .launcher import TaskPool, TaskSpec

PORTS = 30  # the controller binds about a dozen sockets; ipyparallel takes random ones beyond


def _master_default() -> str:
    return os.environ.get("MESOS_NB_MASTER") or "127.0.0.1:5050"


def _port_args(ports: list[int]) -> list[str]:
    """``--ports=B-E`` per contiguous run (ipcontroller's port pool)."""
    runs: list[list[int]] = []
    for p in sorted(ports):
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return [f"--ports={b}-{e}" for b, e in runs]


class MesosLauncherMixin(LoggingConfigurable):
    master = Unicode(config=True, help="the mesos-nb master (host:port); default $MESOS_NB_MASTER")
    role = Unicode("*", config=True, help="the role the framework uses")
    cpus = Float(1.0, config=True, help="cpus of each task")
    mem = Float(512.0, config=True, help="memory (MB) of each task")
    python = Unicode(config=True, help="the Python on the agents (default: this kernel's)")
    start_timeout = Float(120.0, config=True, help="seconds to wait for the task(s) to run")
    framework_id = Unicode("").tag(to_dict=True)

    pool: TaskPool | None = None

    def _pool(self, name: str) -> TaskPool:
        if self.pool is None:
            self.pool = TaskPool(self.master or _master_default(), name, role=self.role)
            self.pool.start()
            self.framework_id = self.pool.framework_id or ""
        return self.pool

    def _python(self) -> str:
        return self.python or sys.executable

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in self.get_env().items() if k != "IPP_PROFILE_DIR"}  # type: ignore[attr-defined]
        env["PYTHONUNBUFFERED"] = "1"
        return env


class MesosControllerLauncher(MesosLauncherMixin, ControllerLauncher):
    """ipcontroller as a cluster task."""

    task_id = Unicode("").tag(to_dict=True)
    hostname = Unicode("").tag(to_dict=True)

    def find_args(self) -> list[str]:
        return [self._python(), "-m", "ipyparallel.controller", *self.cluster_args, *self.controller_args]

    def _cmd(self, host: str, ports: list[int]) -> str:
        args = [self._python(), "-m", "ipyparallel.controller", f"--ip={host}",
                f"--cluster-id={self.cluster_id}", *self.controller_args, *_port_args(ports)]
        return ('mkdir -p "$MESOS_SANDBOX/profile" && exec ' + shlex.join(args) +
                ' --profile-dir="$MESOS_SANDBOX/profile"')

    async def start(self) -> None:
        pool = await asyncio.to_thread(self._pool, f"ipyparallel-controller-{self.cluster_id}")
        task = pool.submit(TaskSpec(cmd=self._cmd, cpus=self.cpus, mem=self.mem, ports=PORTS,
                                    name="ipcontroller", env=self._env()))
        self.task_id = task.id
        pool.listeners.append(self._on_task)
        self.notify_start({"task_id": task.id})

    def _on_task(self, task: Any) -> None:
        if task.id == self.task_id and task.done and self.state != "after":
            code = 0 if task.state == "TASK_FINISHED" else 1
            data = {"exit_code": code, "state": task.state, "message": task.message}
            self.loop.add_callback(self.notify_stop, data)

    def poll(self) -> int | None:
        t = self.pool.tasks.get(self.task_id) if self.pool else None
        if t is None or not t.done:
            return None
        return 0 if t.state == "TASK_FINISHED" else 1

    async def get_connection_info(self, timeout: float | None = None) -> dict[str, Any]:
        timeout = self.connection_info_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        files = self.connection_files
        if all(os.path.exists(p) for p in files.values()):
            return {k: json.load(open(p)) for k, p in files.items()}
        assert self.pool is not None
        task = self.pool.tasks[self.task_id]
        prefix = f"ipcontroller-{self.cluster_id}" if self.cluster_id else "ipcontroller"
        names = {k: f"profile/security/{prefix}-{k}.json" for k in files}
        info: dict[str, Any] = {}
        while True:
            if task.done:
                out = await asyncio.to_thread(self.get_output)
                raise RuntimeError(f"the controller task {task.id} ended ({task.state}: {task.message})\n{out}")
            if task.state == "TASK_RUNNING":
                got = await asyncio.to_thread(self.pool.logs, task.id, tuple(names.values()))
                for k, name in names.items():
                    try:
                        info[k] = json.loads(got.get(name) or "")
                    except ValueError:
                        pass
                if len(info) == len(names):
                    break
            if time.monotonic() > deadline:
                why = self.pool.status().get("waiting") or task.phase
                raise TimeoutError(f"the controller's connection files did not arrive in {timeout:g} s ({why})")
            await asyncio.sleep(0.2)
        for k, path in files.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(info[k], f)
        return info

    def get_output(self, remove: bool = False) -> str:
        if self.pool is None or not self.task_id:
            return ""
        logs = self.pool.logs(self.task_id)
        return (logs.get("stdout") or "") + (logs.get("stderr") or "")

    def signal(self, sig: int | str) -> None:
        if self.pool is not None and sig in (_signal.SIGKILL, _signal.SIGTERM, "KILL", "TERM"):
            self.pool.kill(self.task_id)
        else:
            self.log.warning("mesos launchers can only kill tasks, not send signal %s", sig)

    async def join(self, timeout: float | None = None) -> None:
        if self.pool is not None and self.task_id:
            t = self.pool.tasks[self.task_id]
            await asyncio.to_thread(t.wait_for, frozenset(), timeout or 3600)

    async def stop(self) -> None:
        await _stop_pool(self.pool)
        if self.state != "after":
            self.notify_stop({"exit_code": 0, "state": "TASK_KILLED"})

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> MesosControllerLauncher:
        raise NotRunning("reconnecting to a mesos controller from a cluster file is not supported")


class MesosEngineSetLauncher(MesosLauncherMixin, EngineLauncher):
    """``n`` ipengines as cluster tasks (one framework per engine set)."""

    cpus = Float(1.0, config=True, help="cpus of each engine")
    mem = Float(256.0, config=True, help="memory (MB) of each engine")

    def find_args(self) -> list[str]:
        return [self._python(), "-m", "ipyparallel.engine", *self.cluster_args, *self.engine_args]

    def _cmd(self) -> str:
        args = [self._python(), "-m", "ipyparallel.engine", f"--cluster-id={self.cluster_id}", *self.engine_args]
        return ('mkdir -p "$MESOS_SANDBOX/profile" && exec ' + shlex.join(args) +
                ' --profile-dir="$MESOS_SANDBOX/profile"')

    async def start(self, n: int) -> list[str]:
        self.n = n
        pool = await asyncio.to_thread(self._pool, f"ipyparallel-engines-{self.cluster_id}-{self.engine_set_id}")
        env = self._env()
        self.task_ids = [pool.submit(TaskSpec(cmd=self._cmd(), cpus=self.cpus, mem=self.mem,
                                              name="ipengine", env=env)).id for _ in range(n)]
        pool.listeners.append(self._on_task)
        self.notify_start({"task_ids": self.task_ids})
        return self.task_ids

    def _on_task(self, task: Any) -> None:
        if self.state == "after" or self.pool is None:
            return
        ts = [self.pool.tasks[i] for i in getattr(self, "task_ids", [])]
        if ts and all(t.done for t in ts):
            code = 0 if all(t.state == "TASK_FINISHED" for t in ts) else 1
            self.loop.add_callback(self.notify_stop, {"exit_code": code})

    def poll(self) -> int | None:
        ts = [self.pool.tasks[i] for i in getattr(self, "task_ids", [])] if self.pool else []
        if ts and all(t.done for t in ts):
            return 0
        return None

    def get_output(self, remove: bool = False) -> str:
        if self.pool is None:
            return ""
        out = []
        for tid in getattr(self, "task_ids", []):
            logs = self.pool.logs(tid)
            out.append(f"--- {tid} ---\n" + (logs.get("stdout") or "") + (logs.get("stderr") or ""))
        return "\n".join(out)

    def signal(self, sig: int | str) -> None:
        if self.pool is not None and sig in (_signal.SIGKILL, _signal.SIGTERM, "KILL", "TERM"):
            for tid in getattr(self, "task_ids", []):
                self.pool.kill(tid)
        else:
            self.log.warning("mesos launchers can only kill tasks, not send signal %s", sig)

    async def join(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or 3600)
        while self.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await _stop_pool(self.pool)
        if self.state != "after":
            self.notify_stop({"exit_code": 0})

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> MesosEngineSetLauncher:
        raise NotRunning("reconnecting to mesos engines from a cluster file is not supported")


async def _stop_pool(pool: TaskPool | None) -> None:
    if pool is None:
        return
    try:
        await asyncio.to_thread(pool.stop, True)
    except RuntimeError:  # at interpreter exit (ipyparallel's atexit cleanup) no executor is left
        pool.stop(True)


def start_ipyparallel(engines: int = 4, master: str | None = None, cpus: float = 1.0,
                      mem: float = 256.0, activate: bool = True, timeout: float = 120.0,
                      role: str = "*") -> Any:
    """Controller + ``engines`` engines as cluster tasks; returns a connected
    ``ipyparallel.Client`` (``rc.cluster``) with ``%px`` activated: what ``%mesos ipyparallel`` runs."""
    import ipyparallel as ipp
    from traitlets.config import Config

    cfg = Config()
    if master:
        cfg.MesosControllerLauncher.master = master
        cfg.MesosEngineSetLauncher.master = master
    cfg.MesosEngineSetLauncher.cpus = cpus
    cfg.MesosEngineSetLauncher.mem = mem
    cfg.MesosControllerLauncher.role = role
    cfg.MesosEngineSetLauncher.role = role
    cluster = ipp.Cluster(controller="mesos", engines="mesos", n=engines, config=cfg,
                          engine_timeout=timeout, delay=0)
    return cluster.start_and_connect_sync(activate=activate)


__all__ = ["MesosControllerLauncher", "MesosEngineSetLauncher", "start_ipyparallel"]
