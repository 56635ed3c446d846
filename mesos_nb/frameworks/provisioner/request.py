"""What a remote kernel asks of the cluster, read from its kernelspec and ``KERNEL_*``
overrides, and the pure checks made before any offer is awaited.

Pure: no I/O except :func:`discover_master` (the environment and ``~/.mesos-nb/local.json``).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesos_nb.client.fits import never_fits as no_fit
from mesos_nb.protocol.state import AgentView
from mesos_nb.scheduler.tasks import parse_constraints

#: ``KERNEL_*`` environment variables of the Jupyter server (or of a start request) that
#: override the kernelspec's ``metadata.kernel_provisioner.config``.
OVERRIDES = {"KERNEL_CPUS": "cpus", "KERNEL_MEM": "mem", "KERNEL_GPUS": "gpus",
             "KERNEL_ROLE": "role", "KERNEL_ATTRIBUTES": "attributes",
             "KERNEL_LAUNCH_TIMEOUT": "launch_timeout"}
PORTS = 5


class KernelRequestError(ValueError):
    """A kernelspec or ``KERNEL_*`` value that cannot be used (one sentence)."""


@dataclass(frozen=True)
class KernelRequest:
    cpus: float = 1.0
    mem: float = 1024.0
    gpus: float = 0.0
    role: str = "*"
    attributes: Mapping[str, str] = field(default_factory=dict)
    launch_timeout: float = 120.0

    def describe(self) -> str:
        parts = [f"cpus:{self.cpus:g}", f"mem:{self.mem:g}"]
        if self.gpus:
            parts.append(f"gpus:{self.gpus:g}")
        parts.append(f"ports:{PORTS}")
        if self.attributes:
            parts.append("with " + ",".join(f"{k}={v}" for k, v in self.attributes.items()))
        if self.role not in ("", "*"):
            parts.append(f"in role {self.role}")
        return " ".join(parts)


def _number(name: str, value: Any, minimum: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise KernelRequestError(f"{name} must be a number, not {value!r}") from None
    if x < minimum or x != x:
        raise KernelRequestError(f"{name} must be at least {minimum:g}, not {value!r}")
    return x


def kernel_request(config: Mapping[str, Any], env: Mapping[str, str]) -> KernelRequest:
    """The kernelspec's provisioner ``config`` with the ``KERNEL_*`` overrides of ``env``."""
    merged: dict[str, Any] = dict(config)
    for var, key in OVERRIDES.items():
        if env.get(var, "").strip():
            merged[key] = env[var].strip()
    try:
        attrs = merged.get("attributes") or {}
        if not isinstance(attrs, Mapping):
            attrs = parse_constraints(attrs, "attribute constraint")
    except ValueError as e:
        raise KernelRequestError(str(e)) from None
    return KernelRequest(
        cpus=_number("cpus", merged.get("cpus", 1.0), 0.01),
        mem=_number("mem", merged.get("mem", 1024.0), 32),
        gpus=_number("gpus", merged.get("gpus", 0.0), 0),
        role=str(merged.get("role") or "*"),
        attributes={str(k): str(v) for k, v in attrs.items()},
        launch_timeout=_number("launch_timeout", merged.get("launch_timeout", 120.0), 1),
    )


def never_fits(agents: Sequence[AgentView], req: KernelRequest) -> str | None:
    """A sentence when agents are registered and none of them, even idle, could hold ``req``
    (``agents``: the ``/master/slaves`` views); else None: with no agent yet, one may still join."""
    need = {k: v for k, v in (("cpus", req.cpus), ("mem", req.mem), ("gpus", req.gpus)) if v}
    gap = no_fit(agents, need, req.attributes, PORTS)
    if gap is None or gap.reason == "no_agents":
        return None
    if gap.reason == "attributes":
        why = "none has " + ",".join(f"{k}={v}" for k, v in req.attributes.items())
    else:
        best = gap.biggest
        assert best is not None
        why = "the largest has " + " ".join(f"{k}:{best.scalar(k):g}" for k in need)
    return (f"no agent of the cluster can ever run this kernel: it needs {req.describe()}, "
            f"and of the {gap.agents} agent(s) {why}")


def discover_master(env: Mapping[str, str], configured: str = "") -> str:
    """``configured``, else ``$MESOS_NB_MASTER``, else the embedded cluster recorded in
    ``~/.mesos-nb/local.json`` (when its process is alive), else ``127.0.0.1:5050``."""
    if configured:
        return configured
    if env.get("MESOS_NB_MASTER"):
        return env["MESOS_NB_MASTER"]
    home = env.get("HOME") or os.path.expanduser("~")
    try:
        info = json.loads((Path(home) / ".mesos-nb" / "local.json").read_text())
        pid = int(info.get("pid") or 0)
        if info.get("url") and pid:
            os.kill(pid, 0)
            return str(info["url"])
    except (OSError, ValueError, TypeError):
        pass
    return "127.0.0.1:5050"


def task_command(kernel_argv: Sequence[str], ip: str, ports: Sequence[int]) -> str:
    """The task's shell command: the launcher (with the kernelspec's Python) that writes the
    connection file and execs the kernel. ``kernel_argv[0]`` is the remote Python."""
    python = kernel_argv[0]
    return "exec " + shlex.join(
        [python, "-m", "mesos_nb.frameworks.provisioner.launch", "--ip", ip,
         "--ports", ",".join(str(p) for p in ports), "--", *kernel_argv])


def task_environment(kernel_env: Mapping[str, str], server_env: Mapping[str, str],
                     master: str, key: str) -> dict[str, str]:
    """Everything the kernel task needs, explicitly (tasks get a clean environment): the
    kernelspec's ``env``, ``PYTHONPATH`` when the server has one, the master for ``%mesos``,
    and the session key (read and removed by the launcher)."""
    out = {k: str(v) for k, v in kernel_env.items()}
    if server_env.get("PYTHONPATH"):
        out.setdefault("PYTHONPATH", server_env["PYTHONPATH"])
    out["MESOS_NB_MASTER"] = master
    out["MESOS_NB_KERNEL_KEY"] = key
    return out


__all__ = ["OVERRIDES", "PORTS", "KernelRequest", "KernelRequestError", "discover_master",
           "kernel_request", "never_fits", "task_command", "task_environment"]
