"""A task's resource list parsed once per distinct list, for the master (validating a
launch) and the agent (running it): a framework launches thousands of tasks alike, and a
:class:`~mesos_nb.protocol.resources.Resources` is an immutable value, so the tasks can share
one. Looking a list up (its JSON) costs a sixth of parsing and validating it again."""

from __future__ import annotations

import msgspec

from . import messages as m
from .resources import Resources

_enc = msgspec.json.Encoder()
_PARSED: dict[bytes, Resources] = {}
_PARSED_MAX = 4096


def task_resources(protos: list[m.Resource]) -> Resources:
    """``Resources.from_proto(protos)``, remembered by the protos' JSON. Raises as
    ``from_proto`` does; a list that fails is never remembered."""
    key = _enc.encode(protos)
    res = _PARSED.get(key)
    if res is None:
        res = Resources.from_proto(protos)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = res
    return res


__all__ = ["task_resources"]
