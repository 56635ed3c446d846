"""Spark on mesos-nb: a Spark standalone master and N workers as cluster tasks, started with the
``pyspark`` package's own launch classes (``$SPARK_HOME/bin/spark-class
org.apache.spark.deploy.master.Master`` / ``...deploy.worker.Worker``, ``SPARK_HOME`` being
pyspark's install dir), on ports taken from the offers; the driver (``SparkSession``) stays in
the kernel.

    from mesos_nb.frameworks.spark import SparkCluster
    sc = SparkCluster("127.0.0.1:5050", executors=2, cpus=1, mem=1024).start()
    spark = sc.session()
    spark.range(10**6).count()
    sc.logs()          # every task's sandbox stdout/stderr (dead workers too)
    sc.stop()          # SparkSession, then the framework (its tasks are killed)

Memory: a worker task of ``mem`` MB runs the worker daemon (``SPARK_DAEMON_MEMORY``, 256 MB)
and offers the rest less a JVM overhead (128 MB) to its executor (``spark.executor.memory``).
The daemons start with :data:`DAEMON_JAVA_OPTS` (quick start-up); executors keep the JVM's defaults.
Java 17+ must be installed where the tasks run and in the kernel (:func:`check_java`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from typing import Any

from .launcher import TaskPool, TaskSpec, local_ip_for

DAEMON_MB = 256
# The master and worker daemons only route messages and launch executors: the C1 compiler alone
# and the serial collector start them on less CPU (a 2-executor cluster's whole start-up, driver
# and executors included: 31 -> 25 CPU seconds measured on 2 cores), at no cost to jobs, whose code
# runs in the executors. $SPARK_DAEMON_JAVA_OPTS overrides.
DAEMON_JAVA_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
OVERHEAD_MB = 128
MIN_EXECUTOR_MB = 450  # Spark refuses smaller executors


class SparkUnavailable(RuntimeError):
    """pyspark or Java is missing (one sentence that says what to install)."""

    def _render_traceback_(self) -> list[str]:
        return [f"SparkUnavailable: {self}"]


def spark_home() -> str:
    try:
        import pyspark
    except ImportError:
        raise SparkUnavailable("Spark needs the pyspark package: pip install 'mesos-nb[spark]'.") from None
    return os.path.dirname(pyspark.__file__)


def java_version() -> int | None:
    """The major version of ``$JAVA_HOME/bin/java`` (else ``java`` on PATH), None when absent."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java(minimum: int = 17) -> int:
    v = java_version()
    if v is None:
        raise SparkUnavailable(f"Spark needs Java {minimum} or newer and no java was found: install "
                               f"one (for example apt install openjdk-{minimum}-jre-headless) or set JAVA_HOME.")
    if v < minimum:
        raise SparkUnavailable(f"Spark needs Java {minimum} or newer but java is version {v}: install a "
                               "newer one or point JAVA_HOME at it.")
    return v


class SparkCluster:
    """A Spark standalone cluster whose master and workers are tasks of one framework."""

    def __init__(self, master: str | None = None, executors: int = 2, *, cpus: float = 1.0,
                 mem: float = 1024.0, master_cpus: float = 0.5, master_mem: float = 512.0,
                 constraints: dict[str, str] | None = None, role: str = "*",
                 timeout: float = 180.0, conf: dict[str, str] | None = None) -> None:
        self.mesos_master = master or os.environ.get("MESOS_NB_MASTER") or "127.0.0.1:5050"
        if mem < DAEMON_MB + OVERHEAD_MB + MIN_EXECUTOR_MB:
            raise ValueError(f"each Spark worker needs mem >= {DAEMON_MB + OVERHEAD_MB + MIN_EXECUTOR_MB} MB "
                             f"({DAEMON_MB} for the worker daemon, the rest for its executor)")
        self.executors = executors
        self.cpus, self.mem = cpus, mem
        self.master_cpus, self.master_mem = master_cpus, master_mem
        self.constraints = dict(constraints or {})
        self.timeout = timeout
        self.conf = dict(conf or {})
        self.home = spark_home()
        check_java()
        self.pool = TaskPool(self.mesos_master, "spark", role=role)
        self.master_task: Any = None
        self.worker_tasks: list[Any] = []
        self.url: str | None = None
        self.webui: str | None = None
        self.spark: Any = None

    @property
    def executor_mb(self) -> int:
        return int(self.mem - DAEMON_MB - OVERHEAD_MB)

    @property
    def cores(self) -> int:
        return max(1, int(self.cpus))

    def _env(self) -> dict[str, str]:
        env = {"SPARK_HOME": self.home, "SPARK_DAEMON_MEMORY": f"{DAEMON_MB}m", "SPARK_NO_DAEMONIZE": "1",
               "SPARK_DAEMON_JAVA_OPTS": os.environ.get("SPARK_DAEMON_JAVA_OPTS", DAEMON_JAVA_OPTS)}
        if os.environ.get("JAVA_HOME"):
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        return env

    def _class(self, cls: str, host: str, args: list[str]) -> str:
        return (f'export SPARK_LOCAL_IP={shlex.quote(host)} SPARK_LOCAL_DIRS="$MESOS_SANDBOX/local"; '
                f"exec {shlex.quote(os.path.join(self.home, 'bin', 'spark-class'))} {cls} "
                + shlex.join(args))

    def _master_cmd(self, host: str, ports: list[int]) -> str:
        return self._class("org.apache.spark.deploy.master.Master", host,
                           ["--host", host, "--port", str(ports[0]), "--webui-port", str(ports[1])])

    def _worker_cmd(self, host: str, ports: list[int]) -> str:
        assert self.url
        return self._class("org.apache.spark.deploy.worker.Worker", host, [
            self.url, "--host", host, "--port", str(ports[0]), "--webui-port", str(ports[1]),
            "--cores", str(self.cores), "--memory", f"{self.executor_mb}m"]) + ' --work-dir "$MESOS_SANDBOX/work"'

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SparkCluster:
        self.pool.start()
        try:
            self._start()
        except BaseException:
            self.pool.stop(True)
            raise
        return self

    def _wait_running(self, task: Any, what: str, deadline: float) -> None:
        while True:
            if task.done:
                tail = "\n".join((self.pool.logs(task.id).get("stderr") or "").splitlines()[-15:])
                raise RuntimeError(f"the Spark {what} task {task.id} ended ({task.state}: {task.message})\n{tail}")
            if task.state == "TASK_RUNNING":
                return
            if time.monotonic() > deadline:
                why = self.pool.status().get("waiting") or task.phase
                raise TimeoutError(f"the Spark {what} did not start within {self.timeout:g} s ({why})")
            task.wait_for({"TASK_RUNNING"}, 0.5)

    def _start(self) -> None:
        deadline = time.monotonic() + self.timeout
        self.master_task = self.pool.submit(TaskSpec(
            cmd=self._master_cmd, cpus=self.master_cpus, mem=self.master_mem, ports=2,
            name="spark-master", constraints=self.constraints, env=self._env()))
        self._wait_running(self.master_task, "master", deadline)
        host, ports = self.master_task.hostname, self.master_task.ports
        self.url = f"spark://{host}:{ports[0]}"
        self.webui = f"http://{host}:{ports[1]}"
        self.worker_tasks = [self.pool.submit(TaskSpec(
            cmd=self._worker_cmd, cpus=self.cpus, mem=self.mem, ports=2, name="spark-worker",
            constraints=self.constraints, env=self._env())) for _ in range(self.executors)]
        while self.alive_workers() < self.executors:
            for t in [self.master_task, *self.worker_tasks]:
                if t.done:
                    self._wait_running(t, "worker" if t is not self.master_task else "master", deadline)
            if time.monotonic() > deadline:
                why = self.pool.status().get("waiting") or "workers not registered yet"
                raise TimeoutError(f"only {self.alive_workers()} of {self.executors} Spark workers "
                                   f"registered within {self.timeout:g} s ({why})")
            time.sleep(0.2)

    def alive_workers(self) -> int:
        if not self.webui:
            return 0
        try:
            with urllib.request.urlopen(self.webui + "/json/", timeout=5) as r:
                return int(json.load(r).get("aliveworkers", 0))
        except (OSError, ValueError):
            return 0

    def session(self, app_name: str = "mesos-nb") -> Any:
        """A ``SparkSession`` (driver in this process) on this cluster's master."""
        from pyspark.sql import SparkSession

        os.environ.setdefault("SPARK_HOME", self.home)
        driver_host = local_ip_for(self.mesos_master)
        b = (SparkSession.builder.master(self.url).appName(app_name)
             .config("spark.executor.memory", f"{self.executor_mb}m")
             .config("spark.executor.cores", str(self.cores))
             .config("spark.cores.max", str(self.cores * self.executors))
             .config("spark.driver.host", driver_host)
             .config("spark.driver.bindAddress", driver_host)
             .config("spark.driver.memory", "512m")
             .config("spark.ui.showConsoleProgress", "false"))
        for k, v in self.conf.items():
            b = b.config(k, v)
        self.spark = b.getOrCreate()
        return self.spark

    def logs(self) -> dict[str, str]:
        """Task id -> sandbox stdout + stderr for the master and every worker (dead ones too)."""
        out = {}
        for tid, task in list(self.pool.tasks.items()):
            files = self.pool.logs(tid)
            out[f"{tid} ({task.phase})"] = "\n".join(f"--- {k} ---\n{v}" for k, v in files.items())
        return out

    def status(self) -> dict[str, Any]:
        st = self.pool.status()
        st["alive_workers"] = self.alive_workers()
        st["master"] = self.url
        return st

    def stop(self) -> None:
        if self.spark is not None:
            with contextlib.suppress(Exception):
                self.spark.stop()
            self.spark = None
        self.pool.stop(True)

    def __repr__(self) -> str:
        st = self.pool.status()
        return (f"<SparkCluster {self.url} executors={self.executors} running={st['running']} "
                f"launching={st['launching']} waiting={st['requested']}>")


def start_spark(master: str | None = None, executors: int = 2, cpus: float = 1.0,
                mem: float = 1024.0, **kwargs: Any) -> Any:
    """A started :class:`SparkCluster` and its ``SparkSession`` (``spark.mesos_cluster`` holds
    the cluster): what ``%mesos spark`` runs."""
    cluster = SparkCluster(master, executors, cpus=cpus, mem=mem, **kwargs).start()
    try:
        spark = cluster.session()
    except BaseException:
        cluster.stop()
        raise
    with contextlib.suppress(AttributeError, TypeError):
        spark.mesos_cluster = cluster
    return spark


__all__ = ["SparkCluster", "SparkUnavailable", "check_java", "java_version", "spark_home", "start_spark"]
