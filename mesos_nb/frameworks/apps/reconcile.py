"""The app reconciler: declared instances vs. running ones -> launches and kills.

Pure and deterministic (the clock is an argument). For each app, :func:`plan` looks at its
instances and its restart backoff and says how many instances of the current version to
launch now, which ones to kill, and why launches wait. Rolling deploys follow Marathon's
``TaskReplaceActor``: old-version instances are killed only while at least
``ceil(instances * minimumHealthCapacity)`` instances stay healthy, and no more than
``floor(instances * (1 + maximumOverCapacity))`` instances run at once. Suspending an app is
``instances = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from msgspec import Struct

from .constraints import Place
from .model import AppDef


class Instance(Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One task of an app, as the framework knows it (stored, so it survives a restart)."""

    task_id: str
    app_id: str
    version: str
    agent_id: str = ""
    hostname: str = ""
    host_ip: str = ""
    attributes: dict[str, str] = {}
    ports: list[int] = []
    state: str = "TASK_STAGING"
    healthy: bool | None = None
    launched_at: float = 0.0
    killing: bool = False  # a KILL was sent
    kill_sent_at: float = 0.0
    message: str | None = None

    @property
    def place(self) -> Place:
        return Place(self.hostname, self.attributes)

    @property
    def running(self) -> bool:
        return self.state == "TASK_RUNNING"


class Backoff(Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """Restart backoff of one app version: delay grows ``× backoffFactor`` per failure."""

    delay: float = 0.0
    next_launch_at: float = 0.0
    last_failure_at: float = 0.0


def is_healthy(app: AppDef, inst: Instance) -> bool:
    """Counts toward capacity: running, and passing its health checks if it has any."""
    if not inst.running or inst.killing:
        return False
    return inst.healthy is True if app.health_checks else True


def after_failure(app: AppDef, b: Backoff, now: float) -> Backoff:
    """The backoff after an instance failed or finished by itself (not after a kill)."""
    if b.last_failure_at and now - b.last_failure_at > b.delay + app.max_launch_delay_seconds:
        b = Backoff()  # quiet for long enough: start over
    delay = app.backoff_seconds if not b.delay else min(b.delay * app.backoff_factor,
                                                        app.max_launch_delay_seconds)
    delay = min(delay, app.max_launch_delay_seconds)
    return Backoff(delay=delay, next_launch_at=now + delay, last_failure_at=now)


@dataclass
class Plan:
    launch: int = 0
    kill: list[str] = field(default_factory=list)
    waiting: str | None = None  # why launches wait (backoff), None when they do not
    healthy: int = 0
    min_healthy: int = 0
    max_capacity: int = 0

    @property
    def idle(self) -> bool:
        return not self.launch and not self.kill


def _kill_order(app: AppDef, inst: Instance) -> tuple:
    """Unhealthy / not yet running first, then youngest first (Marathon ``YOUNGEST_FIRST``)."""
    return (is_healthy(app, inst), inst.running, -inst.launched_at, inst.task_id)


def plan(app: AppDef, instances: Sequence[Instance], backoff: Backoff, now: float) -> Plan:
    """What to do now for ``app`` given its known ``instances`` (terminal ones excluded)."""
    # an unreachable instance is replaced at once (Marathon's default unreachableStrategy);
    # if it comes back, the surplus is killed like any other
    live = [i for i in instances if not i.killing and i.state != "TASK_UNREACHABLE"]
    new = [i for i in live if i.version == app.version]
    old = [i for i in live if i.version != app.version]
    target = app.instances
    p = Plan()
    if backoff.next_launch_at > now:
        p.waiting = f"restart backoff: next launch in {backoff.next_launch_at - now:.1f} s"

    if not old:
        if len(new) > target:
            p.kill = [i.task_id for i in sorted(new, key=lambda i: _kill_order(app, i))[: len(new) - target]]
        elif len(new) < target and p.waiting is None:
            p.launch = target - len(new)
        p.healthy = sum(is_healthy(app, i) for i in new)
        return p

    us = app.upgrade_strategy
    min_healthy = math.ceil(target * us.minimum_health_capacity - 1e-9)
    max_capacity = math.floor(target * (1 + us.maximum_over_capacity) + 1e-9)
    healthy_new = sum(is_healthy(app, i) for i in new)
    healthy_old = sum(is_healthy(app, i) for i in old)
    healthy = healthy_new + healthy_old
    if min_healthy == max_capacity and max_capacity <= healthy:
        max_capacity += 1  # otherwise nothing could ever move
    p.min_healthy, p.max_capacity, p.healthy = min_healthy, max_capacity, healthy

    kills: list[str] = []
    # old instances that count for nothing (not healthy) may always go
    for i in sorted(old, key=lambda i: _kill_order(app, i)):
        if not is_healthy(app, i):
            kills.append(i.task_id)
    spare = max(0, healthy - min_healthy)
    # surplus new instances (scale-down during a deploy) go first
    if len(new) > target:
        extra = sorted(new, key=lambda i: _kill_order(app, i))[: len(new) - target]
        for i in extra:
            if is_healthy(app, i):
                if spare == 0:
                    continue
                spare -= 1
            kills.append(i.task_id)
    for i in sorted(old, key=lambda i: _kill_order(app, i)):
        if is_healthy(app, i) and spare > 0:
            kills.append(i.task_id)
            spare -= 1
    p.kill = kills
    remaining = len(live) - len(kills)
    new_left = len([i for i in new if i.task_id not in kills])
    if p.waiting is None:
        p.launch = max(0, min(target - new_left, max_capacity - remaining))
    return p


def deployment_done(app: AppDef, instances: Sequence[Instance]) -> bool:
    live = [i for i in instances if not i.killing]
    return (all(i.version == app.version for i in live) and len(live) == app.instances
            and all(is_healthy(app, i) for i in live))


def killed(inst: Instance, now: float) -> Instance:
    return replace_struct(inst, killing=True, kill_sent_at=now)


def replace_struct(inst: Instance, **kw: object) -> Instance:
    return msgspec.structs.replace(inst, **kw)


__all__ = ["Backoff", "Instance", "Plan", "after_failure", "deployment_done", "is_healthy", "killed", "plan"]
