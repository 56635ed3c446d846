"""What a task or executor process is given: its environment (the ``MESOS_*`` variables
Mesos sets, ports, GPUs, the command's own variables), its argv and its resource limits.

Pure functions of their arguments (no agent state, no I/O), called on every launch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mesos_nb.protocol.messages import CommandInfo
from mesos_nb.protocol.resources import Resources

from .config import AgentConfig
from .containerizer import LaunchError
from .isolation import Limits
from .isolator import IoLimits

MAX_PORT_ENV = 1000  # PORT0..PORTn are set only for tasks with at most this many ports
_INHERITED_ONLY_WHEN_SET = ("MESOS_CHECKPOINT", "MESOS_RECOVERY_TIMEOUT", "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                            "MESOS_TASK_ID")


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
) -> dict[str, str]:
    """The environment of one container. ``task_id`` is set for the command executor only;
    ``gpus`` is None on a machine without GPUs (then CUDA_VISIBLE_DEVICES is left alone)."""
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
    for k in _INHERITED_ONLY_WHEN_SET:
        env.pop(k, None)
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
    if command is not None and command.environment is not None:
        for var in command.environment.variables:
            if (var.type in (None, "VALUE")) and var.value is not None:
                env[var.name] = var.value
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


__all__ = ["build_environment", "command_argv", "limits_for", "MAX_PORT_ENV"]
