"""The master's functional core: :class:`MasterCore`, the state plus its entry points.

Every input (a scheduler call, a channel message, a timer tick) is a synchronous method taking
``now``; every output is appended to :attr:`MasterCore.out` as an effect
(:mod:`mesos_nb.master.effects`): messages for frameworks and agents, and registry writes. The
shell (:mod:`mesos_nb.master.server`) carries them out. No sockets, no files, no clock, no
random ids here (fresh ids come from an injected :class:`IdSource`), so the whole master is
unit-tested and benchmarked in-process (see :mod:`mesos_nb.master.harness`).

The transitions live in one module per concern, as functions over the one state object:
:mod:`.frameworks`, :mod:`.offers`, :mod:`.tasks`, :mod:`.agents`; checks in :mod:`.validation`.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any

from ..protocol import channel as ch
from ..protocol import messages as m
from . import agents as _agents
from . import downtime as _downtime
from . import framework_update as _framework_update
from . import frameworks as _frameworks
from . import offers as _offers
from . import quota as _quota
from . import reachability as _reachability
from . import reservations as _reservations
from . import tasks as _tasks
from . import volumes as _volumes
from .effects import EndStream, RegistryState, SaveWeights, ToAgent, ToChannel, ToFramework
from .model import Agent, Framework, Task
from .state import HEARTBEAT_INTERVAL, CallError, IdSource, MasterState
from .validation import validate_id, validate_role

log = logging.getLogger("mesos_nb.master")


class MasterCore(MasterState):
    """The state (built by :class:`MasterState`'s constructor) plus every entry point; a
    restarted master is handed what its registry kept through :meth:`recover`."""

    # ------------------------------------------------------------------ recovery
    def recover(self, recovered: RegistryState, now: float) -> None:
        """Take back what the registry kept after a master (re)start (read by the shell)."""
        _frameworks.recover(self, recovered.frameworks, recovered.removed_framework_ids, now)
        _agents.recover(self, recovered.agents, now)
        self.unreachable.update(recovered.unreachable)
        self.gone.update(recovered.gone)
        self.agent_principals.update(recovered.agent_principals)
        _quota.recover_quotas(self, recovered.quotas)
        if recovered.weights:
            self.allocator.update_weights(recovered.weights)
        _downtime.recover(self, recovered.maintenance)
        self.metrics["master/slaves_unreachable"] = len(self.unreachable)
        if self.frameworks or self.agents:
            self.version += 1
            log.info("registry recovered frameworks=%d agents=%d", len(self.frameworks), len(self.agents))

    # ------------------------------------------------------------------ quota, weights
    def update_quota(self, quota_configs: Any, force: bool = False, authorize: Any = None) -> None:
        """UPDATE_QUOTA (all or nothing); CallError 400 with ``Invalid QuotaConfig: …``."""
        _quota.update_quota(self, _quota.parse_configs(quota_configs), force, authorize)

    def quota_status(self) -> dict[str, Any]:
        return _quota.get_quota_status(self)

    def update_weights(self, weights: dict[str, float]) -> None:
        for _ in self.update_weights_steps(weights):
            pass

    def update_weights_steps(self, weights: dict[str, float]) -> Iterator[None]:
        """Validated weights: applied and stored at once, then every offer rescinded (as
        Mesos), in steps; one made meanwhile follows the new weights."""
        self.allocator.update_weights(weights)
        self.out.append(SaveWeights(dict(weights)))
        self.version += 1
        self.wants_allocation = True
        yield from _offers.rescind_steps(self, list(self.offers), 0.0)

    # ------------------------------------------------------------------ frameworks
    def subscribe(self, sub: m.Subscribe, stream_id: str, now: float, principal: str | None = None) -> Framework:
        return _frameworks.subscribe(self, sub, stream_id, now, principal)

    def subscribe_steps(self, sub: m.Subscribe, stream_id: str, now: float,
                        principal: str | None = None) -> tuple[Framework, Generator[None, None, None]]:
        """SUBSCRIBE now, and what a failover leaves to do as steps (see
        :func:`.frameworks.subscribe_steps`)."""
        return _frameworks.subscribe_steps(self, sub, stream_id, now, principal)

    def disconnect(self, framework_id: str, stream_id: str, now: float) -> None:
        _frameworks.disconnect(self, framework_id, stream_id, now)

    def disconnect_steps(self, framework_id: str, stream_id: str, now: float) -> Iterator[None]:
        """The stream broke, as resumable steps (its offers; with failover timeout 0 its removal)."""
        return _frameworks.disconnect_steps(self, framework_id, stream_id, now)

    def teardown(self, framework_id: str, now: float) -> None:
        _frameworks.teardown(self, self.framework(framework_id), now)

    def teardown_steps(self, framework_id: str, now: float) -> Iterator[None]:
        """TEARDOWN as resumable steps (see :func:`.frameworks.remove_framework_steps`);
        raises at once for an unknown framework."""
        return _frameworks.teardown_steps(self, self.framework(framework_id), now)

    def update_framework(self, framework_id: str, payload: Any, now: float) -> bool:
        """UPDATE_FRAMEWORK (``payload``: the call's JSON object); True when something changed."""
        return _framework_update.update_framework(self, framework_id, payload, now)

    def remove_framework(self, framework_id: str, now: float, reason: str) -> None:
        _frameworks.remove_framework(self, framework_id, now, reason)

    # ------------------------------------------------------------------ offers
    def allocate(self, now: float, full: bool = True, agent_ids: list[str] | None = None) -> None:
        _offers.allocate(self, now, full, agent_ids)
        if self.maintenance.modes or self.maintenance.inverse:
            _downtime.send_inverse_offers(self, now)

    def accept(self, framework_id: str, accept: m.Accept, now: float) -> None:
        """ACCEPT in one go (tests, the harness): every step of :meth:`accept_steps`."""
        for _ in self.accept_steps(framework_id, accept, now):
            pass

    def accept_steps(self, framework_id: str, accept: m.Accept, now: float) -> Iterator[None]:
        """ACCEPT as resumable steps (see :func:`.offers.accept_steps`); raises at once for an
        unknown framework."""
        return _offers.accept_steps(self, self.framework(framework_id), accept, now)

    def decline(self, framework_id: str, decline: m.Decline, now: float) -> None:
        _offers.decline(self, self.framework(framework_id), decline, now)

    def revive(self, framework_id: str, roles: list[str] | None) -> None:
        _offers.revive(self, self.framework(framework_id), roles)

    def suppress(self, framework_id: str, roles: list[str] | None) -> None:
        _offers.suppress(self, self.framework(framework_id), roles)

    # ------------------------------------------------------------------ tasks
    def find_task(self, task_id: str, framework_id: str | None = None) -> Task | None:
        return _tasks.find_task(self, task_id, framework_id)

    def kill(self, framework_id: str, kill: m.Kill, now: float) -> None:
        _tasks.kill_task(self, self.framework(framework_id), kill.task_id.value, kill.kill_policy, now)

    def operator_kill(self, task_id: str, now: float) -> Task | None:
        return _tasks.operator_kill(self, task_id, now)

    def shutdown_executor(self, framework_id: str, call: m.Shutdown) -> None:
        _tasks.shutdown_executor(self, self.framework(framework_id), call)

    def acknowledge(self, framework_id: str, ack: m.Acknowledge, now: float) -> None:
        fw = self.framework(framework_id)
        if len(ack.uuid) != 16:
            raise CallError(400, "Not a valid UUID: 'uuid' must be 16 bytes")
        _tasks.acknowledge(self, fw, ack)

    def reconcile(self, framework_id: str, rec: m.Reconcile, now: float) -> None:
        for _ in self.reconcile_steps(framework_id, rec, now):
            pass

    def reconcile_steps(self, framework_id: str, rec: m.Reconcile, now: float) -> Iterator[None]:
        """RECONCILE as resumable steps (see :func:`.tasks.reconcile_steps`)."""
        return _tasks.reconcile_steps(self, self.framework(framework_id), rec, now)

    def framework_message(self, framework_id: str, msg: m.Message) -> None:
        _tasks.framework_message(self, self.framework(framework_id), msg)

    def status_update(self, upd: ch.StatusUpdate, now: float) -> None:
        if self.maintenance.drains:
            fw = self.frameworks.get(upd.framework_id)
            if fw is not None:
                _downtime.rewrite_drain_update(self, upd.agent_id, fw, upd.status)
        _tasks.status_update(self, upd, now)

    def executor_exited(self, msg: ch.ExecutorExited) -> None:
        _tasks.executor_exited(self, msg)

    def executor_message(self, msg: ch.ExecutorToFramework) -> None:
        _tasks.executor_message(self, msg)

    # ------------------------------------------------------------------ agents
    def register_agent(self, reg: ch.RegisterAgent, channel: Any, now: float,
                       principal: str | None = None) -> Agent | None:
        refusal = self.maintenance.refusal(reg.hostname)
        if refusal is not None:  # its machine is DOWN (Mesos sends ShutdownMessage)
            log.warning("agent refused: machine down hostname=%s agent=%s", reg.hostname, reg.agent_id)
            self.out.append(ToChannel(channel, ch.Refused(key=reg.key, message=refusal)))
            return None
        agent = _agents.register_agent(self, reg, channel, now, principal)
        if agent is not None:
            _downtime.on_registered(self, agent)
        return agent

    def channel_lost(self, channel: Any, now: float) -> None:
        _agents.channel_lost(self, channel, now)

    def disconnect_agent(self, agent: Agent, now: float) -> None:
        """One agent of a broken channel (the shell does a big channel's agents in slices)."""
        _agents.disconnect(self, agent, now)

    def remove_agent(self, agent_id: str, now: float, reason: str, message: str) -> None:
        _agents.remove_agent(self, agent_id, now, reason, message)

    def remove_agent_steps(self, agent_id: str, now: float, reason: str, message: str) -> Iterator[None]:
        """:meth:`remove_agent` as resumable steps (an agent running 10,000 tasks)."""
        return _agents.remove_agent_steps(self, agent_id, now, reason, message)

    def mark_unreachable(self, agent_id: str, now: float, why: str = "health check timed out") -> None:
        """The agent missed ``max_agent_ping_timeouts`` pings (or its window passed)."""
        _reachability.mark_unreachable(self, agent_id, now, why)

    def mark_unreachable_steps(self, agent_id: str, now: float, why: str) -> Iterator[None]:
        """:meth:`mark_unreachable` as resumable steps (an agent running 10,000 tasks)."""
        return _reachability.mark_unreachable_steps(self, agent_id, now, why)

    def reserve_operation(self, kind: str, payload: object, now: float) -> None:
        """Operator RESERVE_RESOURCES / UNRESERVE_RESOURCES (reservations.py)."""
        _reservations.operator_operation(self, kind, payload, now, _offers.rescind)

    def volume_operation(self, kind: str, payload: object, now: float) -> None:
        """Operator CREATE_VOLUMES / DESTROY_VOLUMES / GROW_VOLUME / SHRINK_VOLUME (volumes.py)."""
        _volumes.operator_operation(self, kind, payload, now, _offers.rescind)

    def get_operations(self) -> list[dict]:
        return _reservations.get_operations(self)

    def mark_agent_gone(self, agent_id: str, now: float) -> None:
        """MARK_AGENT_GONE; raises CallError(404) for an agent neither admitted nor unreachable."""
        _reachability.mark_gone(self, agent_id, now)

    def mark_agent_gone_steps(self, agent_id: str, now: float) -> Iterator[None]:
        """:meth:`mark_agent_gone` as resumable steps (CallError(404) at the first)."""
        return _reachability.mark_gone_steps(self, agent_id, now)

    # ------------------------------------------------------------------ maintenance, draining
    def maintenance_call(self, call: str, payload: Any, now: float) -> None:
        """UPDATE_MAINTENANCE_SCHEDULE, START/STOP_MAINTENANCE, DRAIN/DEACTIVATE/REACTIVATE_AGENT
        (``payload``: the call's JSON object); CallError 400/409 names the broken rule."""
        _downtime.operator_call(self, call, payload, now)

    def maintenance_status(self) -> dict[str, Any]:
        return self.maintenance.status_json()

    def maintenance_schedule(self) -> dict[str, Any]:
        return self.maintenance.schedule_json()

    def answer_inverse_offers(self, framework_id: str, payload: Any, accept: bool, now: float) -> None:
        _downtime.answer_inverse_offers(self, self.framework(framework_id), payload, accept, now)

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Every step of :meth:`tick_steps` at once (tests, the harness)."""
        for _ in self.tick_steps(now):
            pass

    def tick_steps(self, now: float) -> Iterator[None]:
        """Expire framework failover deadlines and agents that did not come back (each in
        steps: a framework's 100,000 tasks, a broken channel's 10,000 agents all due at once);
        then prune the registry's lists and finish drains."""
        yield from _frameworks.expire_steps(self, now)
        yield from _agents.expire_steps(self, now)
        _reachability.prune(self, now)
        if self.maintenance.drains:
            _downtime.check_drains(self, now)


__all__ = [
    "HEARTBEAT_INTERVAL", "CallError", "EndStream", "IdSource", "MasterCore", "ToAgent", "ToChannel", "ToFramework",
    "validate_id", "validate_role",
]
