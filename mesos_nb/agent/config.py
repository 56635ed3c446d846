"""Agent configuration (the ``mesos-nb agent`` flags)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class AgentConfig:
    master: str = "127.0.0.1:5050"
    host: str = "127.0.0.1"
    port: int = 5051  # 0 = pick a free port
    hostname: str | None = None  # None = derived from ``host`` (or the machine name for 0.0.0.0)
    resources: str | None = None  # Mesos text; None = detect. Explicit names override detection.
    attributes: str | None = None  # "rack:a;zone:1"
    work_dir: str = "/tmp/mesos-nb/agent"
    # auto | posix | cgroups | cgroups/v1 | cgroups/v2, or a Mesos list such as
    # "cgroups/cpu,cgroups/mem,cgroups/blkio,disk/du,filesystem/linux,namespaces/pid"
    isolation: str = "auto"
    cgroups_root: str = "mesos_nb"  # the cgroup holding the containers in each hierarchy (Mesos --cgroups_root)
    docker_registry: str | None = None  # a directory of `docker save` tarballs or a registry URL (Docker Hub)
    docker_store_dir: str | None = None  # image layer store; None = <work_dir>/store/docker
    image_store_max_bytes: int = 0  # LRU bound of the layer store (0 = unbounded)
    enforce_container_disk_quota: bool = False  # disk/du: kill a container over its `disk`
    container_disk_watch_interval: float = 15.0  # disk/du: seconds between measurements
    agent_secret: str | None = None  # legacy shared secret (Bearer); in-process use only, never argv
    credential: str | None = None  # FILE: {"principal": …, "secret": …} presented to the master (Basic)
    switch_user: bool = False  # run tasks as their user when root (the CLI's --switch-user is on)
    executor_environment_variables: dict[str, str] = field(default_factory=dict)
    http_credentials: str | None = None  # FILE: {"credentials": [{principal, secret}, …]}
    authenticate_http_readonly: bool = False  # /state, /files/*, /monitor/statistics, /metrics
    authenticate_http_readwrite: bool = False  # the agent operator API (/api/v1)
    authenticate_http_executors: bool = False  # /api/v1/executor needs the container's token
    tls_cert: str | None = None  # PEM; with tls_key: the agent serves https
    tls_key: str | None = None
    tls_ca: str | None = None  # trust store for the master's certificate (wss://)
    executor_shutdown_grace_period: float = 5.0
    status_update_retry_min: float = 10.0
    status_update_retry_max: float = 600.0
    detect_gpus: bool = True  # run ``nvidia-smi`` when present
    executor_registration_timeout: float = 60.0
    executor_reregistration_timeout: float = 15.0  # after an agent restart (Mesos max: 15 s)
    recovery_timeout: float = 15 * 60.0
    recover: bool = True  # re-attach to checkpointed executors at start
    fetcher_cache_size: int = 2 * 1024 * 1024 * 1024  # bytes
    health_check_poll: float = 1.0  # lower bound of health-check intervals (tests shorten it)

    def resolved_hostname(self) -> str:
        if self.hostname:
            return self.hostname
        if self.host in ("", "0.0.0.0", "::"):
            return os.uname().nodename
        return self.host

    def resolved_store_dir(self) -> str:
        return self.docker_store_dir or os.path.join(self.work_dir, "store", "docker")


__all__ = ["AgentConfig"]
