"""An embedded cluster: one master and N agents in this process (``mesos-nb local``).

The agents share one :class:`AgentProcess` (one channel to the master), each on its own
port and work dir. Unless ``agent_resources`` says otherwise, the machine's CPUs, memory and
disk are divided among the agents, each gets a disjoint slice of ``[31000-32000]`` ports (or of
the ``ports:[A-B]`` range given), and only the first agent detects GPUs (so a GPU is never
offered twice).

``authenticate=True`` (what ``mesos-nb local`` and the notebook's embedded cluster use) makes it
secure by default: a fresh principal and secret go to ``<work dir>/credentials.json`` (Mesos
format, mode 0600), the master requires them of frameworks, operators and read-only callers,
the in-process agents present a random in-memory secret, and a discovery file
(:mod:`mesos_nb.protocol.client_auth`) lets this user's clients find the credentials by
themselves. ``tls_cert``/``tls_key``/``tls_ca`` serve the master over TLS.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
import time
from typing import Any

import psutil

MB = 1024 * 1024
PORTS_BEGIN, PORTS_END = 31000, 32000


def _fmt(x: float) -> str:
    s = f"{x:.3f}".rstrip("0").rstrip(".")
    return s or "0"


def default_agent_resources(agents: int, work_dir: str) -> list[str]:
    """Per-agent resource text: the machine divided evenly, disjoint port ranges."""
    n = max(1, agents)
    cpus = psutil.cpu_count(logical=True) or 1
    total_mb = psutil.virtual_memory().total / MB
    mem_mb = total_mb - 1024 if total_mb >= 2048 else total_mb / 2
    probe = work_dir
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        free_mb = psutil.disk_usage(probe or "/").free / MB
    except OSError:
        free_mb = 0.0
    disk_mb = free_mb - 5 * 1024 if free_mb >= 10 * 1024 else free_mb / 2
    out = []
    for b, e in port_slices(n):
        out.append(
            f"cpus:{_fmt(cpus / n)};mem:{int(mem_mb // n)};disk:{int(max(disk_mb, 0) // n)};ports:[{b}-{e}]"
        )
    return out


def port_slices(n: int, begin: int = PORTS_BEGIN, end: int = PORTS_END) -> list[tuple[int, int]]:
    size = (end - begin + 1) // n
    return [(begin + i * size, begin + (i + 1) * size - 1) for i in range(n)]


def _share_ports(part: str, i: int, n: int) -> str:
    """Agent ``i``'s slice of a ``ports:[A-B]`` every agent was given: the agents share one host,
    so two of them must never offer the same port."""
    name, _, value = part.partition(":")
    m = re.fullmatch(r"\s*\[\s*(\d+)\s*-\s*(\d+)\s*\]\s*", value)
    if n < 2 or not m or int(m.group(2)) - int(m.group(1)) + 1 < n:
        return part
    b, e = port_slices(n, int(m.group(1)), int(m.group(2)))[i]
    return f"{name}:[{b}-{e}]"


def _with_ports(text: str, i: int, n: int, work_dir: str) -> str:
    """``text`` plus this agent's share of what it leaves to detection that agents would
    otherwise each claim whole (ports, disk); a ports range given to all is split among them."""
    if text.lstrip().startswith("["):
        return text
    parts = [p for p in text.split(";") if p.strip()]
    names = [p.split(":", 1)[0].split("(", 1)[0].strip() for p in parts]
    text = ";".join(_share_ports(p, i, n) if name == "ports" else p for p, name in zip(parts, names, strict=True))
    defaults = dict(part.split(":", 1) for part in default_agent_resources(n, work_dir)[i].split(";"))
    for name in ("disk", "ports"):
        if name not in names:
            text = f"{text};{name}:{defaults[name]}"
    return text


class LocalCluster:
    """A master and ``agents`` agents on 127.0.0.1. ``port=0`` picks a free master port.
    ``isolation`` and ``docker_registry`` are every agent's (as ``mesos-nb agent`` takes them)."""

    def __init__(
        self,
        agents: int = 2,
        port: int = 5050,
        work_dir: str | None = None,
        agent_resources: str | None = None,
        *,
        host: str = "127.0.0.1",
        attributes: str | list[str] | None = None,
        master_options: dict[str, Any] | None = None,
        agent_options: dict[str, Any] | None = None,
        isolation: str | None = None,
        docker_registry: str | None = None,
        authenticate: bool = False,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
    ) -> None:
        if agents < 0:
            raise ValueError("the number of agents cannot be negative")
        self.num_agents = agents
        self.port = port
        self.host = host
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="mesos-nb-local-")
        self.agent_resources = agent_resources
        self.attributes = attributes
        self.master_options = dict(master_options or {})
        self.agent_options = dict(agent_options or {})
        if isolation:
            self.agent_options["isolation"] = isolation
        if docker_registry:
            self.agent_options["docker_registry"] = docker_registry
        self.master: Any = None
        self.agent_process: Any = None
        self.started = False
        self.authenticate = authenticate
        self.tls = (tls_cert, tls_key, tls_ca)
        self.credentials_path: str | None = None
        self.principal: str | None = None
        self.secret: str | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def master_address(self) -> str:
        if self.master is None:
            raise RuntimeError("the cluster is not started")
        return f"{self.host}:{self.master.port}"

    @property
    def master_url(self) -> str:
        scheme = "https" if self.tls[0] else "http"
        return f"{scheme}://{self.master_address}"

    @property
    def agents(self) -> list[Any]:
        return list(self.agent_process.agents) if self.agent_process is not None else []

    # ------------------------------------------------------------------ lifecycle
    def _agent_configs(self) -> list[Any]:
        from mesos_nb.agent.config import AgentConfig

        n = self.num_agents
        if self.agent_resources:
            texts = [_with_ports(self.agent_resources, i, n, self.work_dir) for i in range(n)]
        else:
            texts = default_agent_resources(n, self.work_dir)
        attrs = self.attributes
        configs = []
        for i in range(n):
            a = attrs[i] if isinstance(attrs, list) else attrs
            kw = dict(
                master=self.master_address,
                host=self.host,
                port=0,
                resources=texts[i],
                attributes=a,
                work_dir=os.path.join(self.work_dir, f"agent-{i}"),
            )
            kw.update(self.agent_options)
            cfg = AgentConfig(**kw)
            if i > 0 and hasattr(cfg, "detect_gpus"):
                cfg.detect_gpus = False
            configs.append(cfg)
        return configs

    def _security(self) -> dict[str, Any]:
        """Master options for authentication and TLS; writes credentials.json when authenticating."""
        from mesos_nb.master.security import SecurityConfig
        from mesos_nb.protocol.credentials import Credential, write_credentials

        opts: dict[str, Any] = {"tls_cert": self.tls[0], "tls_key": self.tls[1], "tls_ca": self.tls[2]}
        if self.authenticate:
            self.principal = f"local-{secrets.token_hex(4)}"
            self.secret = secrets.token_urlsafe(24)
            self.credentials_path = os.path.join(self.work_dir, "credentials.json")
            write_credentials(self.credentials_path, [Credential(self.principal, self.secret)])
            opts["security"] = SecurityConfig(
                credentials=self.credentials_path, authenticate_frameworks=True, authenticate_agents=True,
                authenticate_http_readonly=True, authenticate_http_readwrite=True)
            opts["agent_secret"] = secrets.token_urlsafe(32)  # the in-process agents' own, never written
        return opts

    async def start(self, timeout: float = 10.0) -> LocalCluster:
        from mesos_nb.master.server import MasterConfig, MasterServer
        from mesos_nb.protocol.client_auth import write_discovery
        from mesos_nb.protocol.tls import client_context

        os.makedirs(self.work_dir, exist_ok=True)
        # One user's machine: a notebook's CPU tasks may use a GPU agent (on a workstation the
        # only agent is one), which a shared cluster's master refuses by default.
        mopts = dict(host=self.host, port=self.port, work_dir=os.path.join(self.work_dir, "master"),
                     filter_gpu_resources=False)
        mopts.update(self._security())
        mopts.update(self.master_options)
        self.master = MasterServer(MasterConfig(**mopts))
        await self.master.start()
        try:
            if self.authenticate or self.tls[0]:
                write_discovery(self.master_url, self.credentials_path, self.tls[2])
            if self.num_agents:
                from mesos_nb.agent.process import AgentProcess

                ctx = client_context(self.tls[2]) if self.tls[0] else None
                self.agent_process = AgentProcess(self._agent_configs(), master=self.master_url,
                                                  secret=self.master.config.agent_secret, ssl_context=ctx)
                await self.agent_process.start()
                await self._wait_registered(timeout)
        except BaseException:
            await self.stop()
            raise
        self.started = True
        return self

    async def _wait_registered(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            n = self._registered_count()
            if n >= self.num_agents:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {n} of {self.num_agents} agents registered with the master within {timeout:g} s"
                )
            await asyncio.sleep(0.02)

    def _registered_count(self) -> int:
        """Asked of the in-process master directly: no HTTP, so no credential needed."""
        return sum(1 for a in self.master.core.agents.values() if a.active and a.connected)

    async def stop(self, kill_tasks: bool = True) -> None:
        if self.agent_process is not None:
            try:
                await self.agent_process.stop(kill_tasks=kill_tasks)
            finally:
                self.agent_process = None
        if self.master is not None:
            from mesos_nb.protocol.client_auth import remove_discovery

            remove_discovery(self.master_url)
            try:
                await self.master.stop()
            finally:
                self.master = None
        self.started = False
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    async def __aenter__(self) -> LocalCluster:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def describe(self) -> list[str]:
        """Lines for the console: the master URL and one line per agent."""
        lines = [f"master: {self.master_url}", f"web UI: {self.master_url}/"]
        if self.credentials_path:
            lines.append(f"credentials: {self.credentials_path} (principal {self.principal}; "
                         "clients of this user find them by themselves)")
            lines.append(f"web UI login: user {self.principal}, password the secret in that file")
        for a in self.agents:
            aid = getattr(a, "agent_id", None) or "?"
            url = getattr(a, "url", None) or f"http://{self.host}:{getattr(a, 'port', '?')}"
            lines.append(f"agent:  {url}  id={aid}")
        return lines


__all__ = ["LocalCluster", "default_agent_resources", "port_slices"]
