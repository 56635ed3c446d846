"""Checks on what frameworks and agents send, with the messages Mesos gives.

Pure functions: each returns an error sentence (or raises :class:`CallError`) and changes
nothing, so the transition modules validate first and mutate after.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ..protocol import messages as m
from ..protocol.parsed_resources import task_resources
from ..protocol.resource_text import valid_role as validate_role  # one rule for every role name
from ..protocol.resources import ResourceParseError, Resources
from .model import Agent, Framework
from .state import DEFAULT_REFUSE_SECONDS, MAX_REFUSE_SECONDS, CallError

_enc = msgspec.json.Encoder()


def validate_id(value: str, what: str) -> str | None:
    """Mesos ``validateID``: ids become directory names on agents."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > 255:
        return f"{what} '{value[:32]}…' is longer than 255 characters"
    if value in (".", ".."):
        return f"{what} '{value}' is disallowed"
    if "/" in value or "\\" in value:
        return f"{what} '{value}' contains a slash"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} '{value!r}' contains a control character"
    return None


def check_framework_info(info: m.FrameworkInfo) -> None:
    """Raise :class:`CallError` (400) for a FrameworkInfo Mesos would refuse at SUBSCRIBE."""
    for role in info.all_roles():
        err = validate_role(role)
        if err:
            raise CallError(400, f"Invalid FrameworkInfo: {err}")
    if info.roles and info.role not in (None, "*") and not info.has_capability("MULTI_ROLE"):
        raise CallError(400, "Invalid FrameworkInfo: 'roles' requires the MULTI_ROLE capability")
    if info.failover_timeout < 0:
        raise CallError(400, "Invalid FrameworkInfo: 'failover_timeout' must not be negative")


def check_framework_id(fid: str) -> None:
    err = validate_id(fid, "framework id")
    if err:
        raise CallError(400, f"Invalid FrameworkInfo: {err}")


def refuse_seconds(filters: m.Filters | None) -> float:
    if filters is None:
        return DEFAULT_REFUSE_SECONDS
    s = filters.refuse_seconds
    if s != s or s < 0:  # NaN or negative: use the default
        return DEFAULT_REFUSE_SECONDS
    return min(s, MAX_REFUSE_SECONDS)


def executor_charge(fw: Framework, agent_id: str, task: m.TaskInfo, starting: Mapping[str, Resources]) -> Resources:
    """The executor's own resources when ``task`` starts it on this agent (it runs nowhere
    there yet, and no earlier task of this launch starts it: ``starting``), else none.
    Raises as ``Resources.from_proto`` does."""
    ex = task.executor
    if ex is None or not ex.resources:
        return Resources()
    ex_id = ex.executor_id.value
    if ex_id in fw.executors.get(agent_id, ()) or ex_id in starting:
        return Resources()
    return Resources.from_proto(ex.resources)


def validate_task(
    fw: Framework, agent: Agent, task: m.TaskInfo, available: Resources, batch: set[str],
    starting: Mapping[str, Resources] | None = None,
) -> tuple[Resources | None, str | None]:
    """The resources a task takes (with its executor's, the first time), or why it is invalid."""
    tid = task.task_id.value
    err = validate_id(tid, "task id")
    if err:
        return None, err
    if tid in fw.tasks or tid in batch:
        return None, f"Task ID '{tid}' is already in use"
    if task.agent_id.value != agent.id:
        return None, f"Task uses agent {task.agent_id.value} but the offer is for agent {agent.id}"
    if (task.command is None) == (task.executor is None):
        return None, "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
    if task.command is not None and task.command.shell and not task.command.value:
        return None, "Task's CommandInfo has no 'value' to run"
    try:
        res = task_resources(task.resources) + executor_charge(fw, agent.id, task, starting or {})
    except (ResourceParseError, ValueError) as e:
        return None, f"Task uses invalid resources: {e}"
    if not res:
        return None, "Task uses no resources"
    if not available.contains(res):
        return None, f"Task uses more resources ({res}) than available ({available})"
    return res, None
