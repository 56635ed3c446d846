"""TLS end to end: a master and two agents (wss:// channel), an SDK framework, the CLI and
``%mesos connect``, all over TLS with a CA made for the test, authentication on."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli_env, free_port, run_cli
from tls_certs import make_certs, openssl_available

from mesos_nb.client import HttpClient, MasterClient, MesosClientError
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.tls import TLSConfigError, server_context, server_settings
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl CLI")
pytest.importorskip("mesos_nb.agent.process")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in ("MESOS_NB_MASTER", "MESOS_NB_CA_FILE", "MESOS_NB_CREDENTIAL", "LIBPROCESS_SSL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    return h


@pytest.fixture
def cluster(certs, home, tmp_path):
    from mesos_nb.notebook.embedded import ClusterThread

    ct = ClusterThread(agents=2, port=0, agent_resources="cpus:1;mem:256", work_dir=str(tmp_path / "c"),
                       tls_cert=certs.cert, tls_key=certs.key, tls_ca=certs.ca)
    ct.start()
    try:
        yield ct
    finally:
        ct.stop()


class OneTask(Scheduler):
    def __init__(self) -> None:
        self.states: list[str] = []
        self.done = asyncio.Event()
        self.sent = False

    async def offers(self, driver, offers):
        if not self.sent:
            self.sent = True
            await driver.launch([offers[0].id], [command_task(offers[0], "echo over-tls", cpus=0.1, mem=16)])
        else:
            await driver.decline([o.id for o in offers])

    def update(self, driver, status):
        self.states.append(status.state)
        if m.is_terminal(status.state):
            self.done.set()


def test_master_two_agents_sdk_cli_and_notebook_over_tls(cluster, certs, home):
    url = cluster.master_url
    assert url.startswith("https://")
    # the agents registered over wss:// (LocalCluster waits for both)
    state = MasterClient(url).state()  # CA and credentials found through the discovery file
    assert sum(1 for s in state.slaves if s.active) == 2

    async def sdk() -> list[str]:
        sched = OneTask()
        d = SchedulerDriver(sched, m.FrameworkInfo(user="", name="tls-sdk"), url, ca_file=certs.ca)
        await d.start()
        await asyncio.wait_for(sched.done.wait(), 30)
        await d.stop()
        return sched.states

    assert asyncio.run(sdk())[-1] == "TASK_FINISHED"

    # the CLI, in another process: the CA by flag, the credentials from the discovery file
    r = run_cli("--master", url, "--ca-file", certs.ca, "agents", env=cli_env(HOME=str(home)))
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in r.stdout.splitlines() if "127.0.0.1" in ln]) == 2
    r = run_cli("--master", url, "status", env=cli_env(HOME=str(home), LIBPROCESS_SSL_CA_FILE=certs.ca))
    assert r.returncode == 0 and "agents" in r.stdout, r.stderr

    # %mesos connect
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "mesos_nb")
    try:
        c = ip.run_line_magic("mesos", f"connect {url}")
        assert c.master_url == url and c.agents == 2 and c.framework_id
    finally:
        mm = ip._mesos_nb_magics
        if mm is not None and mm.framework is not None:
            mm.disconnect("")
        ip.run_line_magic("unload_ext", "mesos_nb")


def test_plain_client_to_tls_port_gets_a_sentence(cluster, certs, home):
    plain = cluster.master_url.replace("https://", "http://")
    with pytest.raises(MesosClientError) as e:
        MasterClient(plain).state()
    assert "https://" in str(e.value)
    r = run_cli("--master", cluster.master_address, "status", env=cli_env(HOME=str(home)))
    assert r.returncode == 2 and "https://" in r.stderr and "Traceback" not in r.stderr

    async def sdk() -> str:
        d = SchedulerDriver(Scheduler(), m.FrameworkInfo(user="", name="x"), plain, start_timeout=3)
        with pytest.raises(ConnectionError) as e:
            await d.start()
        return str(e.value)

    assert "https://" in asyncio.run(sdk())
    # a client that does not trust the CA is told so
    r = run_cli("--master", cluster.master_url, "status", env=cli_env(HOME=str(home / "elsewhere")))
    assert r.returncode == 2 and "not trusted" in r.stderr, r.stderr


def test_https_client_to_a_plain_master_gets_a_sentence(local_cluster, home):
    with pytest.raises(MesosClientError) as e:
        MasterClient(local_cluster.master_url.replace("http://", "https://"), HttpClient(timeout=2)).state()
    assert "use http://" in str(e.value)


def test_libprocess_ssl_environment(certs, monkeypatch):
    monkeypatch.setenv("LIBPROCESS_SSL_ENABLED", "true")
    monkeypatch.setenv("LIBPROCESS_SSL_CERT_FILE", certs.cert)
    monkeypatch.setenv("LIBPROCESS_SSL_KEY_FILE", certs.key)
    s = server_settings()
    assert s.enabled and isinstance(server_context(s), ssl.SSLContext)
    monkeypatch.delenv("LIBPROCESS_SSL_KEY_FILE")
    with pytest.raises(TLSConfigError):
        server_settings()
    monkeypatch.setenv("LIBPROCESS_SSL_ENABLED", "maybe")
    with pytest.raises(TLSConfigError):
        server_settings()


def test_master_cli_serves_tls_from_libprocess_environment(certs, tmp_path):
    import subprocess
    import urllib.request

    from conftest import wait_for

    port = free_port()
    env = cli_env(LIBPROCESS_SSL_ENABLED="1", LIBPROCESS_SSL_CERT_FILE=certs.cert,
                  LIBPROCESS_SSL_KEY_FILE=certs.key)
    p = subprocess.Popen([sys.executable, "-m", "mesos_nb", "master", "--port", str(port)], env=env,
                         cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cafile=certs.ca)

        def healthy() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=ctx, timeout=2) as r:
                return r.status == 200

        wait_for(healthy, 20)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/version", context=ctx, timeout=2) as r:
            assert "version" in json.load(r)
    finally:
        p.terminate()
        p.wait(10)


def test_bad_tls_flags_are_one_sentence(tmp_path: Path):
    r = run_cli("master", "--port", "0", "--tls-cert", str(tmp_path / "missing.pem"),
                "--tls-key", str(tmp_path / "missing.key"))
    assert r.returncode == 2 and "cannot load the TLS" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("master", "--port", "0", "--tls-cert", str(tmp_path / "x.pem"))
    assert r.returncode == 2 and "together" in r.stderr
