"""Dask on mesos-nb: :class:`MesosCluster`, a ``distributed`` ``SpecCluster`` whose workers
(and, for a reconnectable cluster, whose scheduler) are cluster tasks.

    from mesos_nb import MesosCluster
    cluster = MesosCluster("127.0.0.1:5050", n_workers=4, cpus=1, mem=1024)
    client = cluster.get_client()

* Each worker is one command task running ``python -m distributed.cli.dask_worker ADDR
  --name NAME --nthreads C --memory-limit M --no-nanny``. No nanny: the agent is the
  supervisor (it enforces the task's memory and reports the death as a task state), so a
  nanny would only add a second process and a second restart policy; ``nanny=True`` brings
  it back. The worker's Dask name is its Mesos task id (a relaunch after a death adds
  ``.rN`` to the task id, keeping the Dask name).
* The scheduler runs in this process (``scheduler="local"``, the default) or as a cluster task
  (``scheduler="task"``, the default when ``name=`` is given): only then can the cluster outlive
  the kernel and be found again with :meth:`MesosCluster.from_name` (framework id, scheduler
  address and worker options are kept in ``~/.mesos-nb/dask-clusters/<name>.json``; the
  framework has a ``failover_timeout`` so the master keeps its tasks while no kernel is
  connected). ``close()`` ends it for good; a kernel that simply exits leaves it running.
* ``adapt()`` uses :class:`MesosAdaptive`: calling it again replaces the old policy; workers are
  removed only after ``wait_count`` consecutive suggestions and not within ``cooldown`` of a
  scale-up, always through ``retire_workers`` first (their results move to other workers).
* ``get_logs()`` adds every worker task's sandbox stdout/stderr, including dead workers'.
* The repr/widget shows what was requested, what waits for an offer and why, what is
  launching and running; ``dashboard_link`` honours ``distributed.dashboard.link`` (with
  environment variables) and defaults to the JupyterHub proxy when
  ``$JUPYTERHUB_SERVICE_PREFIX`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dask
from distributed.core import Status
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.spec import ProcessInterface, SpecCluster
from distributed.utils import Log, Logs, format_dashboard_link

from .launcher import TaskPool, TaskSpec, image_container, local_ip_for

DEFAULT_LINK = "{scheme}://{host}:{port}/status"
HUB_LINK = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{host}:{port}/status"


def clusters_dir() -> Path:
    """``~/.mesos-nb/dask-clusters`` (follows ``$HOME``)."""
    return Path(os.environ.get("HOME") or os.path.expanduser("~")) / ".mesos-nb" / "dask-clusters"


def _record_path(name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return clusters_dir() / f"{safe}.json"


def default_master() -> str:
    return os.environ.get("MESOS_NB_MASTER") or "127.0.0.1:5050"


async def _port_open(host: str, port: int) -> bool:
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    w.close()
    with contextlib.suppress(Exception):
        await w.wait_closed()
    return True


# ====================================================================== process interfaces
class MesosScheduler(ProcessInterface):
    """The Dask scheduler as a cluster task (ports: scheduler, dashboard). With ``attach`` it
    stands for an already running scheduler task at that address."""

    def __init__(self, pool: TaskPool, *, cpus: float = 1.0, mem: float = 1024.0,
                 constraints: dict[str, str] | None = None, python: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 120.0,
                 task_id: str | None = None, attach: str | None = None, name: str | None = None,
                 container: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.container = container
        self.pool = pool
        self.cpus, self.mem = cpus, mem
        self.constraints = dict(constraints or {})
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.timeout = timeout
        self.task_id = task_id or f"dask-scheduler-{uuid.uuid4().hex[:8]}"
        self.attach = attach
        self.task = None

    def _cmd(self, host: str, ports: list[int]) -> str:
        return (f"exec {shlex.quote(self.python)} -m distributed.cli.dask_scheduler --host {host} "
                f"--port {ports[0]} --dashboard-address {host}:{ports[1]}")

    async def start(self) -> None:
        if self.attach:
            self.address = self.attach
            self.task = self.pool.tasks.get(self.task_id)
            await super().start()
            return
        spec = TaskSpec(cmd=self._cmd, cpus=self.cpus, mem=self.mem, ports=2, name="dask-scheduler",
                        task_id=self.task_id, constraints=self.constraints,
                        env={"PYTHONUNBUFFERED": "1", **self.env}, container=self.container)
        self.task = self.pool.submit(spec)
        deadline = time.monotonic() + self.timeout
        while True:
            t = self.task
            if t.done:
                logs = await asyncio.to_thread(self.pool.logs, t.id)
                tail = "\n".join((logs.get("stderr") or "").splitlines()[-15:])
                raise RuntimeError(f"the Dask scheduler task {t.id} ended ({t.state}: {t.message})\n{tail}")
            if t.state == "TASK_RUNNING" and t.ports and await _port_open(t.hostname or "", t.ports[0]):
                break
            if time.monotonic() > deadline:
                why = self.pool.status().get("waiting") or t.phase
                raise TimeoutError(f"the Dask scheduler task did not start within {self.timeout:g} s ({why})")
            await asyncio.sleep(0.05)
        self.address = f"tcp://{t.hostname}:{t.ports[0]}"
        await super().start()

    async def close(self) -> None:
        self.pool.kill(self.task_id)
        await super().close()


class MesosWorker(ProcessInterface):
    """One Dask worker as a cluster task. ``start()`` only queues the request (it does not wait
    for an offer); ``close()`` kills the task (after the cluster retired the worker)."""

    def __init__(self, scheduler: str, name: str, *, pool: TaskPool, cpus: float = 1.0,
                 mem: float = 1024.0, gpus: float = 0.0, nthreads: int | None = None,
                 memory_limit: int | str | None = None, constraints: dict[str, str] | None = None,
                 python: str | None = None, env: dict[str, str] | None = None, nanny: bool = False,
                 death_timeout: float = 60.0, extra_args: list[str] | tuple[str, ...] = (),
                 attach: bool = False, container: dict[str, Any] | None = None) -> None:
        super().__init__(scheduler, name)
        self.scheduler_address = scheduler
        self.name = name
        self.pool = pool
        self.cpus, self.mem, self.gpus = cpus, mem, gpus
        self.nthreads = nthreads or max(1, int(math.floor(cpus)) or 1)
        self.memory_limit = memory_limit if memory_limit is not None else int(mem * 2**20)
        self.constraints = dict(constraints or {})
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.nanny = nanny
        self.death_timeout = death_timeout
        self.extra_args = list(extra_args)
        self.attach = attach
        self.container = container
        self.task_id: str | None = None

    def command(self) -> str:
        args = [self.python, "-m", "distributed.cli.dask_worker", self.scheduler_address,
                "--name", str(self.name), "--nthreads", str(self.nthreads),
                "--memory-limit", str(self.memory_limit),
                "--nanny" if self.nanny else "--no-nanny", "--no-dashboard",
                "--death-timeout", f"{self.death_timeout:g}", *self.extra_args]
        return "exec " + shlex.join(args) + ' --local-directory "$MESOS_SANDBOX/dask-worker-space"'

    def _next_task_id(self) -> str:
        base = str(self.name)
        if base not in self.pool.tasks:
            return base
        n = 1
        while f"{base}.r{n}" in self.pool.tasks:
            n += 1
        return f"{base}.r{n}"

    async def start(self) -> None:
        if self.attach:
            live = [t for tid, t in self.pool.tasks.items()
                    if (tid == self.name or tid.startswith(f"{self.name}.r")) and not t.done]
            self.task_id = live[-1].id if live else str(self.name)
        else:
            self.task_id = self._next_task_id()
            self.pool.submit(TaskSpec(
                cmd=self.command(), cpus=self.cpus, mem=self.mem, gpus=self.gpus,
                name="dask-worker", task_id=self.task_id, constraints=self.constraints,
                env={"PYTHONUNBUFFERED": "1", **self.env}, container=self.container))
        await super().start()

    async def close(self) -> None:
        if self.task_id:
            self.pool.kill(self.task_id)
        await super().close()


class MesosAdaptive(Adaptive):
    """Dask's ``Adaptive`` with scale-down hysteresis for an offer-based cluster: a worker is
    removed after ``wait_count`` consecutive suggestions (default 5 × 1 s) and never within
    ``cooldown`` seconds (default 10) of a scale-up."""

    def __init__(self, cluster: Any, *args: Any, cooldown: float | str = 10.0, **kwargs: Any) -> None:
        from dask.utils import parse_timedelta

        kwargs.setdefault("interval", "1s")
        kwargs.setdefault("wait_count", 5)
        self.cooldown = parse_timedelta(cooldown)
        self._last_up = 0.0
        super().__init__(cluster, *args, **kwargs)

    async def recommendations(self, target: int) -> dict:
        rec = await super().recommendations(target)
        if rec.get("status") == "up":
            self._last_up = time.monotonic()
        elif rec.get("status") == "down" and time.monotonic() - self._last_up < self.cooldown:
            return {"status": "same"}
        return rec


# ====================================================================== the cluster
class MesosCluster(SpecCluster):
    """A Dask cluster whose workers are mesos-nb tasks (see the module doc).

    Parameters: ``master`` (``host:port``; default ``$MESOS_NB_MASTER``), ``n_workers``,
    per worker ``cpus``, ``mem`` (MB), ``gpus``, ``nthreads``, ``constraints`` (agent
    attributes ``{"rack": "a"}``), ``name`` (reconnectable with :meth:`from_name`),
    ``scheduler`` (``"local"`` or ``"task"``), ``scheduler_cpus``/``scheduler_mem``, ``role``,
    ``python`` (the interpreter on the agents; default this one), ``env``, ``nanny``,
    ``worker_args``, ``failover_timeout`` (default 0, or a week for named clusters),
    ``image`` (workers and a ``scheduler="task"`` scheduler run in this Docker image; the agents
    need ``filesystem/linux`` isolation and ``--docker-registry``) with ``volumes``
    (``(host_path, container_path)`` pairs bound read-only, e.g. a Python installation the image
    lacks).
    """

    adopt_timeout = 120.0  # from_name: how long the master may take to report the workers' tasks

    def __init__(self, master: str | None = None, n_workers: int = 0, *, cpus: float = 1.0,
                 mem: float = 1024.0, gpus: float = 0.0, nthreads: int | None = None,
                 memory_limit: int | str | None = None, constraints: dict[str, str] | None = None,
                 name: str | None = None, scheduler: str | None = None,
                 scheduler_cpus: float = 1.0, scheduler_mem: float = 1024.0, role: str = "*",
                 python: str | None = None, env: dict[str, str] | None = None, nanny: bool = False,
                 worker_args: list[str] | tuple[str, ...] = (), death_timeout: float = 60.0,
                 failover_timeout: float | None = None, scheduler_timeout: float = 120.0,
                 dashboard_address: str = ":8787", asynchronous: bool = False, loop: Any = None,
                 silence_logs: Any = False, image: str | None = None,
                 volumes: list[tuple[str, str]] | None = None, container: dict[str, Any] | None = None,
                 _reconnect: dict[str, Any] | None = None) -> None:
        self.master = master or default_master()
        if volumes and not image:
            raise ValueError("volumes are for workers in an image: give image= too")
        if image:
            container = image_container(image, volumes)
        self.cluster_name = name
        where = scheduler or ("task" if name else "local")
        if where not in ("local", "task"):
            raise ValueError("scheduler must be 'local' (in this process) or 'task' (a cluster task)")
        self.scheduler_where = where
        if failover_timeout is None:
            failover_timeout = 7 * 24 * 3600.0 if name else 0.0
        fid = _reconnect.get("framework_id") if _reconnect else None
        self.pool = TaskPool(self.master, f"dask-{name}" if name else "dask", role=role,
                             failover_timeout=failover_timeout, framework_id=fid)
        self._reconnect = _reconnect
        self._token = uuid.uuid4().hex[:4]
        self._n = 0
        self._prefix = f"dask-{name}" if name else "dask"
        self.worker_options = dict(
            pool=self.pool, cpus=cpus, mem=mem, gpus=gpus, nthreads=nthreads,
            memory_limit=memory_limit, constraints=dict(constraints or {}), python=python,
            env=dict(env or {}), nanny=nanny, death_timeout=death_timeout,
            extra_args=list(worker_args), container=container,
        )
        if _reconnect:
            sched = {"cls": MesosScheduler, "options": {
                "pool": self.pool, "attach": _reconnect["scheduler_address"],
                "task_id": _reconnect.get("scheduler_task_id")}}
        elif where == "task":
            sched = {"cls": MesosScheduler, "options": {
                "pool": self.pool, "cpus": scheduler_cpus, "mem": scheduler_mem,
                "constraints": dict(constraints or {}), "python": python, "env": dict(env or {}),
                "timeout": scheduler_timeout, "container": container}}
        else:
            from distributed.scheduler import Scheduler

            sched = {"cls": Scheduler, "options": {
                "host": local_ip_for(self.master), "dashboard_address": dashboard_address}}
        workers = {}
        for _ in range(n_workers):
            workers[self._fresh_name()] = {"cls": MesosWorker, "options": dict(self.worker_options)}
        super().__init__(
            workers=workers, scheduler=sched,
            worker={"cls": MesosWorker, "options": dict(self.worker_options)},
            asynchronous=asynchronous, loop=loop, silence_logs=silence_logs, name=name,
            shutdown_on_close=not name,
        )

    # ------------------------------------------------------------------ names
    def _fresh_name(self) -> str:
        self._n += 1
        return f"{self._prefix}-{self._token}-{self._n}"

    def _new_worker_name(self, worker_number: int) -> str:
        return self._fresh_name()  # never reuse a name (nor a task id) within this kernel

    # ------------------------------------------------------------------ lifecycle
    async def _start(self) -> None:
        if self.status in (Status.created,) and self.pool.driver is None:
            try:
                await asyncio.to_thread(self.pool.start)
            except Exception as e:
                self.status = Status.failed
                raise RuntimeError(f"cannot start the Dask framework on {self.master}: {e}") from None
        if self._reconnect:
            await self._check_scheduler_alive()
        await super()._start()
        if self._reconnect:
            try:
                await self._adopt_workers()
            except RuntimeError:
                self.status = Status.failed
                await asyncio.to_thread(self.pool.stop, False)  # the cluster stays as it was
                raise
        elif self.cluster_name:
            self._save()

    async def _check_scheduler_alive(self) -> None:
        addr = self._reconnect["scheduler_address"]  # type: ignore[index]
        host, port = addr.split("://", 1)[-1].rsplit(":", 1)
        if not await _port_open(host, int(port)):
            raise RuntimeError(f"the Dask cluster '{self.cluster_name}' is gone: its scheduler at "
                               f"{addr} does not answer")

    async def _adopt_workers(self) -> None:
        """Attach to the workers the scheduler knows, each through its task. The pool learns
        those tasks from the master's answer to the reconciliation it sends after SUBSCRIBED,
        which comes late on a busy machine: wait for that answer (asking again now and then,
        since Mesos reconciliation is answered at most once per request) instead of for a fixed
        time, so that no worker is adopted before its task is known (it could not be killed)."""
        deadline = time.monotonic() + self.adopt_timeout
        ask_again = time.monotonic() + 2.0
        while missing := [n for n in self._scheduler_worker_names() if not self._worker_task_known(n)]:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(
                    f"the Dask cluster '{self.cluster_name}': the master did not report the tasks of "
                    f"its workers {', '.join(sorted(missing))} within {self.adopt_timeout:g} s")
            if now >= ask_again:
                self.pool.reconcile()
                ask_again = now + 2.0
            await asyncio.sleep(0.05)
        for n in self._scheduler_worker_names():
            self.worker_spec[n] = {"cls": MesosWorker, "options": {**self.worker_options, "attach": True}}

    def _scheduler_worker_names(self) -> list[str]:
        # kept current by the cluster's worker-status subscription: a worker that leaves drops out
        return [str(w["name"]) for w in self.scheduler_info["workers"].values()]

    def _worker_task_known(self, name: str) -> bool:
        return any(tid == name or tid.startswith(name + ".r") for tid in list(self.pool.tasks))

    def _save(self) -> None:
        assert self.cluster_name
        path = _record_path(self.cluster_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = {k: v for k, v in self.worker_options.items() if k != "pool"}
        record = {
            "name": self.cluster_name, "master": self.master, "framework_id": self.pool.framework_id,
            "failover_timeout": self.pool.failover_timeout,
            "scheduler_address": self.scheduler_address,
            "scheduler_task_id": getattr(self.scheduler, "task_id", None),
            "worker_options": opts, "saved": time.time(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> MesosCluster:  # type: ignore[override]
        """Reconnect to the named cluster started by an earlier kernel (its workers keep running).
        Each worker is adopted through its task, once the master reports it (``RuntimeError``
        naming the workers whose tasks it did not report within ``adopt_timeout`` seconds)."""
        path = _record_path(name)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ValueError(f"no Dask cluster named '{name}' is known here ({path} is missing)") from None
        opts = dict(record.get("worker_options") or {})
        opts.pop("extra_args", None)
        worker_args = (record.get("worker_options") or {}).get("extra_args", ())
        opts.update(kwargs)
        return cls(record["master"], 0, name=name, scheduler="task", worker_args=worker_args,
                   failover_timeout=record.get("failover_timeout"), _reconnect=record, **opts)

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            await asyncio.to_thread(self.pool.stop, True)
            if self.cluster_name:
                with contextlib.suppress(OSError):
                    _record_path(self.cluster_name).unlink()

    def adapt(self, *args: Any, Adaptive: type[Adaptive] = MesosAdaptive, **kwargs: Any) -> Adaptive:  # noqa: N803
        """Adaptive scaling with hysteresis (:class:`MesosAdaptive`); a second call replaces the first."""
        if hasattr(self, "_adaptive_options"):
            self._adaptive_options = {}  # the new call's options, not a merge with the old ones
        return super().adapt(*args, Adaptive=Adaptive, **kwargs)

    # ------------------------------------------------------------------ tasks and logs
    def worker_tasks(self) -> dict[str, Any]:
        """Task id -> :class:`~mesos_nb.scheduler.pool.TaskHandle` for every worker task ever
        started by this cluster (dead ones included)."""
        sched = getattr(self.scheduler, "task_id", None)
        return {tid: t for tid, t in self.pool.tasks.items() if tid != sched}

    async def _get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Logs:
        try:
            logs = await super()._get_logs(cluster=cluster, scheduler=scheduler, workers=workers)
        except (OSError, RuntimeError) as e:  # the scheduler may be gone; the sandboxes are not
            logs = Logs()
            logs["Cluster"] = Log(f"the scheduler did not answer ({e})")
        if not workers and not scheduler:
            return logs
        wanted = None if workers is True or not workers else {str(w) for w in workers}
        sched = getattr(self.scheduler, "task_id", None)
        for tid, task in list(self.pool.tasks.items()):
            if tid == sched and not scheduler:
                continue
            if tid != sched and (not workers or (wanted is not None and tid not in wanted)):
                continue
            files = await asyncio.to_thread(self.pool.logs, tid)
            text = "\n".join(f"--- {k} ---\n{v}" for k, v in files.items())
            logs[f"{tid} ({task.phase})"] = Log(text)
        return logs

    # ------------------------------------------------------------------ display
    def mesos_status(self) -> dict[str, Any]:
        st = self.pool.status()
        try:
            connected = len(self.scheduler_info["workers"])
        except (AttributeError, KeyError, TypeError):
            connected = 0
        sched = getattr(self.scheduler, "task_id", None)
        phases = [t.phase for tid, t in self.pool.tasks.items() if tid != sched]
        return {
            "requested": len(self.worker_spec),
            "waiting for an offer": phases.count("requested"),
            "launching": phases.count("launching"),
            "running": phases.count("running"),
            "connected": connected,
            "offers seen": st["offers_seen"],
            "why waiting": st["waiting"],
        }

    def _mesos_status_html(self) -> str:
        s = self.mesos_status()
        cells = "".join(f"<td style='text-align:left'><strong>{html.escape(k)}:</strong> {v}</td>"
                        for k, v in s.items() if k != "why waiting")
        why = (f"<tr><td colspan='6' style='text-align:left'><em>waiting: {html.escape(s['why waiting'])}"
               "</em></td></tr>") if s["why waiting"] else ""
        return (f"<div><strong>Mesos</strong> ({html.escape(self.master)}, framework "
                f"{html.escape(self.pool.framework_id or '-')})<table><tr>{cells}</tr>{why}</table></div>")

    def _repr_html_(self, cluster_status: str | None = None) -> str:
        return super()._repr_html_(cluster_status=(cluster_status or "") + self._mesos_status_html())

    def __repr__(self) -> str:
        s = self.mesos_status()
        text = super().__repr__()
        extra = (f" mesos: requested={s['requested']} waiting={s['waiting for an offer']} "
                 f"launching={s['launching']} running={s['running']}")
        if s["why waiting"]:
            extra += f" ({s['why waiting']})"
        return text[:-1] + extra + ")"

    @property
    def dashboard_link(self) -> str:
        try:
            port = self.scheduler_info["services"]["dashboard"]
        except (KeyError, AttributeError, TypeError):
            return ""
        host = self.scheduler_address.split("://")[-1].split("/")[0].rsplit(":", 1)[0]
        template = dask.config.get("distributed.dashboard.link")
        if template == DEFAULT_LINK and os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
            with dask.config.set({"distributed.dashboard.link": HUB_LINK}):
                return format_dashboard_link(host, port)
        return format_dashboard_link(host, port)


def start_dask(master: str | None = None, workers: int = 1, cpus: float = 1.0, mem: float = 1024.0,
               adapt: tuple[int, int] | None = None, **kwargs: Any) -> Any:
    """A :class:`MesosCluster` and a connected ``distributed.Client`` (``client.cluster``):
    what ``%mesos dask`` runs. Waits for ``workers`` workers unless adaptive."""
    from distributed import Client

    cluster = MesosCluster(master, n_workers=0 if adapt else workers, cpus=cpus, mem=mem, **kwargs)
    if adapt:
        cluster.adapt(minimum=adapt[0], maximum=adapt[1])
    client = Client(cluster)
    n = adapt[0] if adapt else workers
    if n:
        client.wait_for_workers(n, timeout=kwargs.get("scheduler_timeout", 120))
    return client


__all__ = ["MesosAdaptive", "MesosCluster", "MesosScheduler", "MesosWorker", "clusters_dir", "start_dask"]
