"""A real ZooKeeper server for the HA tests (pytest plugin).

Load it from a test module with ``pytest_plugins = ["zk_fixture"]`` (``tests/`` is on
``sys.path`` in pytest's rootdir-conftest mode).

Fixtures:

* ``zk_server`` (session): one server for the whole run; tests isolate themselves by using
  their own znode path (``zk_server.url("/some/unique/path")``).
* ``zk`` (function): a fresh server on its own port and data dir, for tests that stop and
  restart it (``zk.stop()``, ``zk.start()``: same port, same data dir, so sessions and data
  survive a restart as they do in production).

The server is the Debian ``zookeeper`` package's ``ZooKeeperServerMain`` run directly with
``java`` (no init scripts, no log files), ``tickTime`` 200 ms so session timeouts of 0.4 s
to 40 s are allowed and tests that expire sessions stay short. Readiness is ZooKeeper's own
``ruok`` four-letter command answering ``imok``, polled with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ZK_JAR = Path(os.environ.get("MESOS_NB_ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar"))
ZK_CONF_DIR = Path("/etc/zookeeper/conf")  # log4j config of the package; absent is fine
JAVA = shutil.which("java")
TICK_MS = 200
START_TIMEOUT = 60.0  # a JVM on a loaded 2-core machine can take a while


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter(host: str, port: int, cmd: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command and return the answer ('' when unreachable)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            chunks = []
            while True:
                b = s.recv(4096)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def _poll(pred, deadline: float, what: str, proc: subprocess.Popen, tail) -> None:
    """Until ``pred()`` holds, waiting on the server's process in between: RuntimeError as soon
    as it exits (with ``tail()``, its log's end), TimeoutError(what) at ``deadline``."""
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"ZooKeeper exited with {proc.returncode}: {tail()}")


def zookeeper_missing_reason() -> str | None:
    if JAVA is None:
        return "no java on PATH (Debian package openjdk-17-jre-headless; scripts/test.sh installs it)"
    if not ZK_JAR.exists():
        return f"no ZooKeeper jar at {ZK_JAR} (Debian package zookeeper; scripts/test.sh installs it)"
    return None


class ZooKeeperServer:
    """One standalone ZooKeeper server process on 127.0.0.1:<port>."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = base_dir
        self.port = port or _free_port()
        self.data_dir = base_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = base_dir / "zoo.cfg"
        self.cfg.write_text(
            f"tickTime={TICK_MS}\n"
            f"dataDir={self.data_dir}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            f"minSessionTimeout={2 * TICK_MS}\n"
            "maxSessionTimeout=40000\n"
            "maxClientCnxns=0\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,stat,cons\n"
        )
        self.log = base_dir / "zookeeper.out"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/mesos") -> str:
        return f"zk://{self.hosts}{path}"

    def unique_url(self, prefix: str = "/t") -> str:
        """A zk:// URL whose path no other test uses (for the session-scoped server)."""
        return self.url(f"{prefix}/{uuid.uuid4().hex[:12]}/mesos")

    @contextlib.contextmanager
    def client(self, timeout: float = 10.0) -> Iterator[Any]:
        """A started KazooClient on this server, stopped afterwards (for inspecting znodes)."""
        from kazoo.client import KazooClient

        kz = KazooClient(hosts=self.hosts, timeout=timeout)
        kz.start(timeout=timeout)
        try:
            yield kz
        finally:
            kz.stop()
            kz.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert not self.running(), "already running"
        cp = f"{ZK_CONF_DIR}:{ZK_JAR}" if ZK_CONF_DIR.is_dir() else str(ZK_JAR)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [JAVA or "java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                 "-Dzookeeper.4lw.commands.whitelist=*", "-cp", cp,
                 "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.cfg)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        proc = self.proc

        try:
            _poll(lambda: four_letter("127.0.0.1", self.port, "ruok") == "imok", deadline, "answer ruok",
                  proc, self._tail)
            # ruok answers before the server accepts sessions; 'srvr' needs the server to be serving
            _poll(lambda: "Mode:" in four_letter("127.0.0.1", self.port, "srvr"), deadline, "serve",
                  proc, self._tail)
        except TimeoutError as e:
            self.stop()
            raise RuntimeError(f"ZooKeeper did not {e} within {timeout} s: {self._tail()}") from None

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill``); the data dir is kept."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=20)
        self.proc = None  # (reaped: its listening socket closed when it exited)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _server(tmp: Path) -> Iterator[ZooKeeperServer]:
    reason = zookeeper_missing_reason()
    if reason:
        pytest.skip(reason)
    srv = ZooKeeperServer(tmp)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(kill=True)


@pytest.fixture(scope="session")
def zk_server() -> Iterator[ZooKeeperServer]:
    tmp = Path(tempfile.mkdtemp(prefix="mesos-nb-zk-"))
    try:
        yield from _server(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def zk(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    yield from _server(tmp_path / "zk")
