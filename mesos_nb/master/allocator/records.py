"""What one allocation cycle hands out: shared by the DRF cycle and the quota stage, so that
neither module imports the other's internals."""

from __future__ import annotations

from dataclasses import dataclass

from mesos_nb.protocol.resources import Resources

EMPTY = Resources()


@dataclass(frozen=True, slots=True)
class Allocation:
    framework_id: str
    role: str
    agent_id: str
    resources: Resources


__all__ = ["EMPTY", "Allocation"]
