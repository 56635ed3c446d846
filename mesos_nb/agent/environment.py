"""What a task or executor process is given: its environment (the ``MESOS_*`` variables
Mesos sets, ports, GPUs, the command's own variables), its argv and its resource limits.

The environment is built from nothing, as Mesos does since 1.0: the agent's own environment
(which may hold its credential, ``MESOS_NB_*`` settings, cloud keys) never reaches a task.
A task gets ``LIBPROCESS_IP`` (if the agent has it), the operator's
``--executor-environment-variables``, the ``MESOS_*`` variables, ports/GPUs, its
``CommandInfo.environment`` (``Secret`` values of type VALUE decoded; REFERENCE refused, as
Mesos' default secret resolver does) and a default ``PATH`` when none was given.

Pure functions of their arguments (no agent state, no I/O), called on every launch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from mesos_nb.protocol.messages import CommandInfo
from mesos_nb.protocol.resources import Resources

from .config import AgentConfig
from .containerizer import LaunchError
from .isolation import Limits
from .isolator import IoLimits

MAX_PORT_ENV = 1000  # PORT0..PORTn are set only for tasks with at most this many ports
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Mesos' default
_SET_ONLY_WHEN_APPLICABLE = ("MESOS_CHECKPOINT", "MESOS_RECOVERY_TIMEOUT", "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                             "MESOS_TASK_ID", "MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
_INHERITED = ("LIBPROCESS_IP",)  # the one variable Mesos copies from the agent's environment


def parse_executor_environment(text: str | None) -> dict[str, str]:
    """``--executor-environment-variables``: a JSON object of strings (Mesos refuses to start
    on anything else). Raises ValueError with the sentence to show."""
    if text is None or text.strip() == "":
        return {}
    try:  # msgspec checks the JSON, the object and each value being a string in one pass
        obj = msgspec.json.decode(text, type=dict[str, str])
    except msgspec.DecodeError as e:
        raise ValueError(f"--executor-environment-variables must be a JSON object of strings: {e}") from None
    for k, v in obj.items():
        if not k or "=" in k or "\x00" in k or "\x00" in v:
            raise ValueError(f"--executor-environment-variables: '{k}' is not a valid variable")
    return obj


def base_environment(agent_env: Mapping[str, str], operator_env: Mapping[str, str]) -> dict[str, str]:
    """What every container starts from: ``LIBPROCESS_IP`` from the agent, then the operator's."""
    env = {k: agent_env[k] for k in _INHERITED if k in agent_env}
    env.update(operator_env)
    return env


def resolve_secret(name: str, secret: Any) -> str:
    """The value of a ``SECRET`` variable: VALUE secrets are base64 data; REFERENCE secrets
    need a resolver this agent does not have. Raises LaunchError naming the variable."""
    if not isinstance(secret, dict):
        raise LaunchError(f"Failed to launch container: environment variable '{name}' has no 'secret'")
    kind = secret.get("type")
    if kind == "REFERENCE" or (kind is None and "reference" in secret):
        raise LaunchError(f"Failed to launch container: secret references are not supported "
                          f"(environment variable '{name}'); give the value as a VALUE secret")
    value = secret.get("value")
    if kind not in (None, "VALUE") or not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise LaunchError(f"Failed to launch container: environment variable '{name}' has an invalid secret")
    try:
        return base64.b64decode(value["data"], validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise LaunchError(f"Failed to launch container: the secret of environment variable '{name}' "
                          "is not base64-encoded UTF-8 text") from None


def command_environment(command: CommandInfo | None) -> dict[str, str]:
    """A CommandInfo's own variables (VALUE and SECRET types)."""
    out: dict[str, str] = {}
    if command is None or command.environment is None:
        return out
    for var in command.environment.variables:
        if var.type == "SECRET":
            out[var.name] = resolve_secret(var.name, var.secret)
        elif var.type in (None, "VALUE"):
            if var.value is not None:
                out[var.name] = var.value
        else:
            raise LaunchError(f"Failed to launch container: environment variable '{var.name}' "
                              f"has an unknown type '{var.type}'")
    return out


def build_environment(
    base: Mapping[str, str],
    cfg: AgentConfig,
    *,
    agent_id: str,
    agent_pid: str,
    endpoint: str,
    framework_id: str,
    executor_id: str,
    container_id: str,
    directory: str,
    checkpoint: bool,
    task_id: str | None,
    port_sources: Iterable[Resources],
    gpus: list[int] | None,
    command: CommandInfo | None,
    token: str | None = None,
) -> dict[str, str]:
    """The environment of one container. ``base`` is :func:`base_environment`'s result (never
    the agent's ``os.environ``); ``task_id`` is set for the command executor only; ``gpus`` is
    None on a machine without GPUs; ``token`` is the executor's authentication token."""
    env = dict(base)
    env.update({
        "MESOS_FRAMEWORK_ID": framework_id,
        "MESOS_EXECUTOR_ID": executor_id,
        "MESOS_DIRECTORY": directory,
        "MESOS_SANDBOX": directory,
        "MESOS_SLAVE_ID": agent_id,
        "MESOS_AGENT_ID": agent_id,
        "MESOS_SLAVE_PID": agent_pid,
        "MESOS_AGENT_ENDPOINT": endpoint,
        "MESOS_HTTP_COMMAND_EXECUTOR": "0",
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{cfg.executor_shutdown_grace_period:g}secs",
        "MESOS_CONTAINER_ID": container_id,
        "LIBPROCESS_PORT": "0",
    })
    for k in _SET_ONLY_WHEN_APPLICABLE:
        env.pop(k, None)
    if token is not None:
        env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"] = token
    if checkpoint:
        # pymesos treats any non-empty MESOS_CHECKPOINT as true: set it only when checkpointing.
        env["MESOS_CHECKPOINT"] = "1"
        env["MESOS_RECOVERY_TIMEOUT"] = f"{cfg.recovery_timeout:g}secs"
        env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = f"{cfg.executor_reregistration_timeout:g}secs"
    if task_id is not None:
        env["MESOS_TASK_ID"] = task_id
    ports: list[int] = []
    for r in port_sources:
        if "ports" in r.names():
            for b, e in r.ranges("ports"):
                if e - b < MAX_PORT_ENV:
                    ports.extend(range(b, e + 1))
    if ports and len(ports) <= MAX_PORT_ENV:
        for i, p in enumerate(ports):
            env[f"PORT{i}"] = str(p)
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(map(str, ports))
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    env.update(command_environment(command))
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def command_argv(cmd: CommandInfo) -> tuple[str | None, list[str]]:
    """(executable, argv) for a CommandInfo: ``sh -c value`` or Mesos' execvp(value, arguments)."""
    if cmd.value is None or cmd.value == "":
        raise LaunchError("Failed to launch container: the command has no 'value'")
    if cmd.shell:
        return None, ["/bin/sh", "-c", cmd.value]
    # Mesos: execvp(value, arguments) -- arguments[0] is argv[0].
    return cmd.value, list(cmd.arguments) if cmd.arguments else [cmd.value]


def limits_for(r: Resources, extra_mem: int = 0, *, io: IoLimits | None = None) -> Limits:
    """The isolator limits for ``r``; ``extra_mem`` is added only when memory is limited."""
    names = r.names()
    cpus = r.scalar("cpus") if "cpus" in names else 0.0
    mem = int(r.scalar("mem") * 1024 * 1024) if "mem" in names else 0
    disk = int(r.scalar("disk") * 1024 * 1024) if "disk" in names else 0
    return Limits(cpus=cpus, mem_bytes=mem + extra_mem if mem else 0, disk_bytes=disk, io=io)


__all__ = [
    "build_environment", "base_environment", "command_environment", "parse_executor_environment",
    "resolve_secret", "command_argv", "limits_for", "MAX_PORT_ENV", "DEFAULT_PATH",
]
