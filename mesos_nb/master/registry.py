"""The registry interface: what a restarted master must remember, behind one small protocol.

Mesos keeps frameworks in memory only, so after a master failover a framework that never
comes back leaves its tasks running forever (MESOS-4659). mesos-nb persists admitted
frameworks with their failover deadline, and admitted agents, so a restarted master waits
for both and still expires what does not return. Tasks are not stored: agents report them
when they re-register.

The core never touches a registry: it emits :class:`~mesos_nb.master.effects.RegistryEffect`
values and is handed a :class:`~mesos_nb.master.effects.RegistryState` at recovery. The shell
calls :meth:`Registry.apply` in effect order. A backend (SQLite in
:mod:`mesos_nb.master.registry_sqlite`, a replicated one later) implements three methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from . import effects as fx
from .effects import AgentRecord, FrameworkRecord, RegistryEffect, RegistryState


class Registry(Protocol):
    def recover(self) -> RegistryState:
        """Everything stored, read once at master start."""
        ...

    def apply(self, effects: Sequence[RegistryEffect]) -> None:
        """Make the writes durable, all or none; raise on failure (the shell retries)."""
        ...

    def close(self) -> None: ...


class NullRegistry:
    """Keeps nothing: a master without ``--work-dir`` forgets everything when it stops."""

    def recover(self) -> RegistryState:
        return RegistryState()

    def apply(self, effects: Sequence[RegistryEffect]) -> None:
        return None

    def close(self) -> None:
        return None


class MemoryRegistry:
    """Keeps records in this process: for tests, the harness and embedded masters.

    Also the reference semantics every backend must match.
    """

    def __init__(self) -> None:
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.removed_framework_ids: dict[str, None] = {}  # oldest removal first
        self.agents: dict[str, AgentRecord] = {}
        self.unreachable: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self.quotas: dict[str, dict] = {}
        self.weights: dict[str, float] = {}
        self.maintenance: dict | None = None
        self.principals: dict[str, str | None] = {}  # agent id -> principal (SaveAgentPrincipal)

    def recover(self) -> RegistryState:
        return RegistryState(
            frameworks=list(self.frameworks.values()),
            removed_framework_ids=list(self.removed_framework_ids),
            agents=list(self.agents.values()),
            unreachable=dict(self.unreachable),
            gone=dict(self.gone),
            quotas=dict(self.quotas),
            weights=dict(self.weights),
            maintenance=self.maintenance,
            agent_principals=dict(self.principals),
        )

    def apply(self, effects: Sequence[RegistryEffect]) -> None:
        apply_to_memory(self, effects)

    def close(self) -> None:
        return None


def apply_to_memory(reg: MemoryRegistry, effects: Sequence[RegistryEffect]) -> None:
    for eff in effects:
        t = type(eff)
        if t is fx.SaveFramework:
            reg.frameworks[eff.id] = FrameworkRecord(eff.id, eff.info, eff.registered_time, eff.failover_deadline)  # type: ignore[attr-defined]
        elif t is fx.RemoveFramework:
            reg.frameworks.pop(eff.id, None)  # type: ignore[attr-defined]
            reg.removed_framework_ids[eff.id] = None  # type: ignore[attr-defined]
        elif t is fx.ForgetRemovedFrameworks:
            for fid in eff.ids:  # type: ignore[attr-defined]
                reg.removed_framework_ids.pop(fid, None)
        elif t is fx.SaveAgent:
            reg.agents[eff.record.id] = eff.record  # type: ignore[attr-defined]
            reg.unreachable.pop(eff.record.id, None)  # type: ignore[attr-defined]
        elif t is fx.RemoveAgent:
            reg.agents.pop(eff.id, None)  # type: ignore[attr-defined]
            reg.principals.pop(eff.id, None)  # type: ignore[attr-defined]
        elif t is fx.SaveAgentPrincipal:
            reg.principals[eff.id] = eff.principal  # type: ignore[attr-defined]
        elif t is fx.MarkAgentUnreachable:
            reg.agents.pop(eff.id, None)  # type: ignore[attr-defined]
            reg.unreachable[eff.id] = eff.timestamp  # type: ignore[attr-defined]
        elif t is fx.MarkAgentGone:
            reg.agents.pop(eff.id, None)  # type: ignore[attr-defined]
            reg.unreachable.pop(eff.id, None)  # type: ignore[attr-defined]
            reg.gone[eff.id] = eff.timestamp  # type: ignore[attr-defined]
            reg.principals.pop(eff.id, None)  # type: ignore[attr-defined]
        elif t is fx.PruneAgents:
            for aid in eff.unreachable:  # type: ignore[attr-defined]
                reg.unreachable.pop(aid, None)
                reg.principals.pop(aid, None)
            for aid in eff.gone:  # type: ignore[attr-defined]
                reg.gone.pop(aid, None)
        elif t is fx.SaveQuota:
            if eff.config is None:  # type: ignore[attr-defined]
                reg.quotas.pop(eff.role, None)  # type: ignore[attr-defined]
            else:
                reg.quotas[eff.role] = eff.config  # type: ignore[attr-defined]
        elif t is fx.SaveWeights:
            reg.weights.update(eff.weights)  # type: ignore[attr-defined]
        elif t is fx.SaveMaintenance:
            reg.maintenance = eff.doc  # type: ignore[attr-defined]
        else:
            raise TypeError(f"unknown registry effect {t.__name__}")


__all__ = ["AgentRecord", "FrameworkRecord", "MemoryRegistry", "NullRegistry", "Registry", "RegistryState"]
