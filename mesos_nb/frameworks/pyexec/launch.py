"""The warm executor's ``ExecutorInfo`` (kernel side): how the agent starts it.

``python -u -m mesos_nb.frameworks.pyexec`` with everything it needs in
``command.environment``: the agent gives an executor a clean environment (only ``MESOS_*``
and these variables), so the interpreter's module path is passed explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    DurationInfo,
    Environment,
    EnvironmentVariable,
    ExecutorInfo,
    Resource,
)

EXECUTOR_MODULE = "mesos_nb.frameworks.pyexec"


def executor_info(executor_id: str, framework_id: str | None, *, python: str, pythonpath: Sequence[str],
                  preload: Sequence[str], idle_timeout: float, resources: list[Resource],
                  name: str = "mesos-nb warm python") -> ExecutorInfo:
    """The warm executor: ``python -m mesos_nb.frameworks.pyexec`` with its settings in the
    environment (nothing is inherited from the agent's). ``resources`` are the executor's own
    (the warm interpreter), taken from the offer that starts it."""
    env = {
        "PYTHONPATH": ":".join(p for p in pythonpath if p),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MESOS_NB_PRELOAD": ",".join(preload),
        "MESOS_NB_IDLE_TIMEOUT": f"{idle_timeout:g}",
    }
    cmd = CommandInfo(value=python, shell=False, arguments=[python, "-u", "-m", EXECUTOR_MODULE],
                      environment=Environment(variables=[EnvironmentVariable(name=k, value=v)
                                                         for k, v in env.items()]))
    return ExecutorInfo(executor_id=ID(value=executor_id),
                        framework_id=ID(value=framework_id) if framework_id else None,
                        command=cmd, resources=resources, name=name, source="mesos-nb",
                        shutdown_grace_period=DurationInfo(nanoseconds=2_000_000_000))


__all__ = ["EXECUTOR_MODULE", "executor_info"]
