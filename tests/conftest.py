"""Shared fixtures and helpers.

Helpers (import them: ``from conftest import wait_for, free_port``):

* ``free_port()``: a TCP port that was free a moment ago.
* ``with_agent_ports(resources)``: ``resources`` plus ``;ports:[A-B]``, a block of its own off the
  default 31000-32000 (unless it names ports already); for test clusters whose tasks bind ports.
* ``wait_for(predicate, timeout, message=...)``: poll a (sync) predicate until it returns something
  truthy (returned) or the deadline passes (AssertionError saying ``message``, a string or a
  function asked then). Never use bare sleeps to synchronise.
* ``await async_wait_for(predicate, timeout)``: the same from async tests; the predicate may
  be sync or async.
* ``run_cli(*args, env=..., timeout=...)``: run ``python -m mesos_nb ARGS`` as a subprocess.
* ``with cluster_thread(work_dir, agents, resources) as ct``: an embedded cluster on its own
  thread (:class:`mesos_nb.notebook.embedded.ClusterThread`), stopped afterwards.
* ``notebook_home(home, monkeypatch)``: a kernel environment that knows no master (``HOME``
  moved, no ``MESOS_NB_*`` / ``JPY_SESSION_NAME``).
* ``with mesos_shell(connect=None) as ip``: IPython with the extension loaded (and connected
  to ``connect``); its framework is torn down and the extension unloaded afterwards.

Fixtures:

* ``local_cluster``: a started in-process :class:`mesos_nb.local.LocalCluster`, 2 agents of
  ``cpus:2;mem:1024;disk:1024``, master on a free port; stopped afterwards.
* in-process async tests run on uvloop when it is installed (``$MESOS_NB_TEST_EVENT_LOOP=asyncio``:
  the stdlib loop), as the daemons do.
* ``cluster_process`` (session): ``mesos-nb local --agents 2`` as a real subprocess on a free
  port; ``.master`` (HOST:PORT), ``.url``, ``.env`` (with ``MESOS_NB_MASTER``), ``.cli(*args)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

REPO = Path(__file__).resolve().parent.parent
SMALL_AGENT = "cpus:2;mem:1024;disk:1024"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """In-process async tests run on the loop mesos-nb's daemons run on (uvloop when installed);
    ``$MESOS_NB_TEST_EVENT_LOOP=asyncio`` runs them on the stdlib's."""
    from mesos_nb.protocol import event_loop

    choice = os.environ.get("MESOS_NB_TEST_EVENT_LOOP") or "auto"
    return {event_loop.resolve(choice): event_loop.factory(choice)}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Agent port blocks for test clusters: 20000-30999 lies below the kernel's ephemeral range and off
# the default 31000-32000 that every cluster (of every checkout testing on this machine) hands out,
# where a task of another run may hold the port a task here is offered.
PORT_BLOCKS = range(20000, 31000, 200)
_ports_taken: set[int] = set()


def _block_free(begin: int, width: int) -> bool:
    for port in range(begin, begin + width):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def with_agent_ports(resources: str) -> str:
    """``resources`` with a port block not used before in this process, picked at random among the
    blocks nothing listens in now (so concurrent runs rarely meet); an agent cluster splits it."""
    if "ports" in resources:
        return resources
    blocks = [b for b in PORT_BLOCKS if b not in _ports_taken] or list(PORT_BLOCKS)
    random.shuffle(blocks)
    begin = next((b for b in blocks if _block_free(b, PORT_BLOCKS.step)), blocks[0])
    _ports_taken.add(begin)
    return f"{resources};ports:[{begin}-{begin + PORT_BLOCKS.step - 1}]"


class _Deadline:
    """When a wait gives up, and what it says then (``message`` may be a function, asked at the end)."""

    def __init__(self, timeout: float, message: str | Callable[[], str] | None) -> None:
        self.timeout, self.message = timeout, message
        self.end = time.monotonic() + timeout
        self.last_exc: BaseException | None = None  # the condition may not be checkable yet

    def check(self) -> None:
        if time.monotonic() >= self.end:
            what = self.message() if callable(self.message) else self.message
            extra = f" (last error: {self.last_exc!r})" if self.last_exc else ""
            raise AssertionError(f"{what or 'condition'} not met within {self.timeout} s{extra}")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str | Callable[[], str] | None = None) -> Any:
    deadline = _Deadline(timeout, message)
    while True:
        try:
            if value := predicate():
                return value
        except Exception as e:
            deadline.last_exc = e
        deadline.check()
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
                         message: str | Callable[[], str] | None = None) -> Any:
    deadline = _Deadline(timeout, message)
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
        except Exception as e:
            deadline.last_exc = e
        deadline.check()
        await asyncio.sleep(interval)


def get_json(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> Any:
    if headers is None:  # like every mesos-nb client: a local cluster's credentials are found by themselves
        from mesos_nb.protocol.client_auth import access_for

        headers = access_for(url).headers()
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def credential_headers(work_dir: Path) -> dict[str, str]:
    """HTTP Basic from the credentials.json a secure-by-default ``mesos-nb local`` wrote there."""
    from mesos_nb.protocol.credentials import CredentialsError, basic_header, load_credential

    try:
        c = load_credential(str(work_dir / "credentials.json"))
    except CredentialsError:
        return {}
    return {"Authorization": basic_header(c.principal, c.secret)}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_NB_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    # Test frameworks use made-up users ("u"); CLI agents run as root here, so keep their tasks
    # as the agent (the CLI default is --switch-user, as Mesos; tests of it set this themselves).
    env["MESOS_NB_SWITCH_USER"] = "0"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesos_nb", *args],
        env=env if env is not None else cli_env(),
        capture_output=True, text=True, timeout=timeout, cwd=str(REPO), input=input,
    )


@pytest_asyncio.fixture
async def local_cluster(tmp_path: Path):
    from mesos_nb.local import LocalCluster

    cluster = LocalCluster(agents=2, port=0, work_dir=str(tmp_path / "cluster"),
                           agent_resources=with_agent_ports(SMALL_AGENT))
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()


@contextlib.contextmanager
def cluster_thread(work_dir: Path, agents: int = 2, resources: str = SMALL_AGENT,
                   agent_options: dict[str, Any] | None = None) -> Iterator[Any]:
    from mesos_nb.notebook.embedded import ClusterThread

    ct = ClusterThread(agents=agents, port=0, agent_resources=resources, work_dir=str(work_dir),
                       **({"agent_options": agent_options} if agent_options else {}))
    ct.start()
    try:
        yield ct
    finally:
        ct.stop()


def notebook_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    for var in ("MESOS_NB_MASTER", "MESOS_NB_LOCAL_PORT", "MESOS_NB_LOCAL_RESOURCES", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    return home


@contextlib.contextmanager
def mesos_shell(connect: str | None = None) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mesos_nb")
    try:
        if connect is not None:
            shell.run_line_magic("mesos", f"connect {connect}")
        yield shell
    finally:
        m = shell._mesos_nb_magics
        if m is not None and m.framework is not None:
            m.disconnect("")
        shell.run_line_magic("unload_ext", "mesos_nb")


@dataclass
class ClusterProcess:
    proc: subprocess.Popen
    port: int
    work_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    started_in: float = 0.0

    @property
    def master(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.master}"

    def state(self) -> dict[str, Any]:
        return get_json(self.url + "/master/state", headers=credential_headers(self.work_dir / "cluster"))

    def cli(self, *args: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, **env}, timeout=timeout)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_cluster_process(work_dir: Path, agents: int = 2, resources: str = SMALL_AGENT,
                          timeout: float = 30.0, authenticate: bool = False) -> ClusterProcess:
    """``mesos-nb local`` in a subprocess; secure (credentials found through the discovery file of
    this HOME) only with ``authenticate``, since many tests talk to it from another HOME."""
    port = free_port()
    log_path = work_dir / "mesos-nb-local.log"
    env = cli_env(MESOS_NB_MASTER=f"127.0.0.1:{port}")
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mesos_nb", "local", "--agents", str(agents), "--port", str(port),
             "--work-dir", str(work_dir / "cluster"), "--resources", with_agent_ports(resources),
             *([] if authenticate else ["--no-authenticate"])],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
            start_new_session=True,
        )
    cp = ClusterProcess(proc=proc, port=port, work_dir=work_dir, log_path=log_path, env=env)

    def ready_or_exited() -> bool:
        if proc.poll() is not None:
            return True
        with urllib.request.urlopen(cp.url + "/health", timeout=2) as r:
            if r.status != 200:
                return False
        return len(cp.state().get("slaves", [])) >= agents

    try:
        try:
            wait_for(ready_or_exited, timeout, message="mesos-nb local ready")
        except AssertionError as e:
            raise AssertionError(f"{e}:\n{cp.log_tail()}") from None
        if proc.poll() is not None:
            raise RuntimeError(f"mesos-nb local exited with {proc.returncode}:\n{cp.log_tail()}")
    except BaseException:
        stop_cluster_process(cp)
        raise
    cp.started_in = time.monotonic() - t0
    return cp


def stop_process_groups(procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """SIGTERM every process group still running (each process leads its own session), wait up
    to ``timeout`` for each, and SIGKILL the groups that outlive it."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def stop_cluster_process(cp: ClusterProcess, timeout: float = 20.0) -> int | None:
    if cp.proc.poll() is None:
        cp.proc.send_signal(signal.SIGTERM)
        try:
            cp.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            cp.proc.kill()
            cp.proc.wait(5)
    return cp.proc.returncode


@pytest.fixture(scope="session")
def cluster_process(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("mesos_nb.agent.process", reason="the agent is not available yet")
    cp = start_cluster_process(tmp_path_factory.mktemp("cluster-process"), authenticate=True)
    try:
        yield cp
    finally:
        stop_cluster_process(cp)
