"""What one allocation cycle hands out: shared by the DRF cycle and the quota stage, so that
neither module imports the other's internals."""

from __future__ import annotations

from typing import NamedTuple

from mesos_nb.protocol.resources import Resources

EMPTY = Resources()


class Allocation(NamedTuple):
    """One offer to make. A named tuple, not a frozen dataclass: a cycle of a 50,000-agent
    cluster makes 50,000 of them, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost 2.5x the time of building a tuple."""

    framework_id: str
    role: str
    agent_id: str
    resources: Resources


__all__ = ["EMPTY", "Allocation"]
