"""A test harness for the master core: a whole master in a few lines, no sockets, no clock.

Like Nomad's scheduler harness, it ships in the package so that tests, benchmarks and
notebooks drive the real :class:`~mesos_nb.master.core.MasterCore` the same way::

    h = Harness.build(agents=3, frameworks=2, resources="cpus:4;mem:4096")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    h.launch(fw, offer, "t1")
    h.update("t1", "TASK_RUNNING")
    h.advance(60.0)                      # the fake clock; runs the core's timers
    h2 = h.restart()                     # a new master recovering from the same registry

Every effect the core emits goes through :meth:`Harness.drain`, which applies the registry
writes to a :class:`~mesos_nb.master.registry.MemoryRegistry` (as the shell would) and keeps
the rest in :attr:`Harness.log` for assertions. Ids come from the core's own
:class:`~mesos_nb.master.state.IdSource`; status-update uuids from a counter, so runs repeat.
"""

from __future__ import annotations

from typing import Any

from ..protocol import channel as ch
from ..protocol import messages as m
from ..protocol.resources import Resources
from .allocator import HierarchicalDRFAllocator
from .core import MasterCore
from .effects import RegistryEffect, ToAgent, ToFramework
from .model import Agent, Framework
from .registry import MemoryRegistry


def attributes(attrs: dict[str, str | float] | None) -> list[m.Attribute]:
    """``{"rack": "r1", "ssd": 1}`` as Mesos attributes (TEXT for strings, SCALAR for numbers)."""
    out: list[m.Attribute] = []
    for name, value in (attrs or {}).items():
        if isinstance(value, str):
            out.append(m.Attribute(name=name, type="TEXT", text=m.Text(value=value)))
        else:
            out.append(m.Attribute(name=name, type="SCALAR", scalar=m.Scalar(value=float(value))))
    return out


class Harness:
    def __init__(
        self,
        *,
        now: float = 100.0,
        master_id: str = "M",
        registry: MemoryRegistry | None = None,
        agent_reregister_timeout: float = 75.0,
        allocator: HierarchicalDRFAllocator | None = None,
    ) -> None:
        self.now = now
        self.registry = registry if registry is not None else MemoryRegistry()
        self.agent_reregister_timeout = agent_reregister_timeout
        self.core = MasterCore(
            master_id, allocator=allocator or HierarchicalDRFAllocator(seed=1),
            agent_reregister_timeout=agent_reregister_timeout,
        )
        self.core.recover(self.registry.recover(), now)
        self.log: list[Any] = []  # every non-registry effect drained, in order
        self.agents: list[Agent] = []
        self.frameworks: list[Framework] = []
        self.channel = object()  # one agent process carries every agent, as a real agent may
        self._uuid = 0
        self._streams = 0

    @classmethod
    def build(
        cls,
        agents: int = 1,
        frameworks: int = 1,
        *,
        resources: str = "cpus:2;mem:1024",
        attrs: dict[str, str | float] | None = None,
        roles: list[str] | None = None,
        failover_timeout: float = 10.0,
        **kw: Any,
    ) -> Harness:
        """N identical agents and M subscribed frameworks, effects drained."""
        h = cls(**kw)
        for _ in range(agents):
            h.add_agent(resources, attrs)
        for i in range(frameworks):
            h.subscribe(f"fw{i}", roles=roles, failover_timeout=failover_timeout)
        h.drain()
        return h

    # ------------------------------------------------------------------ effects
    def drain(self) -> list[Any]:
        """Take the core's effects: registry writes go to the registry, the rest is returned."""
        out, self.core.out = self.core.out, []
        writes = [e for e in out if isinstance(e, RegistryEffect)]
        if writes:
            self.registry.apply(writes)
        rest = [e for e in out if not isinstance(e, RegistryEffect)]
        self.log.extend(rest)
        return rest

    @staticmethod
    def events(out: list[Any], kind: str | None = None, framework_id: str | None = None) -> list[m.Event]:
        return [
            e.event for e in out
            if type(e) is ToFramework and (kind is None or e.event.type == kind)
            and (framework_id is None or e.framework_id == framework_id)
        ]

    @staticmethod
    def agent_msgs(out: list[Any], cls: type) -> list[Any]:
        return [e.msg for e in out if type(e) is ToAgent and isinstance(e.msg, cls)]

    # ------------------------------------------------------------------ inputs
    def add_agent(
        self, resources: str = "cpus:2;mem:1024", attrs: dict[str, str | float] | None = None,
        hostname: str | None = None, channel: Any = None,
    ) -> Agent:
        n = len(self.agents)
        reg = ch.RegisterAgent(
            key=f"k{n}", hostname=hostname or f"h{n}", port=5051 + n,
            resources=Resources.parse(resources).to_proto(), attributes=attributes(attrs),
        )
        agent = self.core.register_agent(reg, channel if channel is not None else self.channel, self.now)
        if agent is None:
            raise ValueError(f"agent refused: {self.drain()}")
        self.agents.append(agent)
        return agent

    def subscribe(
        self, name: str = "fw", *, roles: list[str] | None = None, failover_timeout: float = 10.0,
        framework_id: str | None = None, capabilities: tuple[str, ...] = (),
    ) -> Framework:
        caps = list(capabilities)
        if roles and "MULTI_ROLE" not in caps:
            caps.append("MULTI_ROLE")
        info = m.FrameworkInfo(
            user="u", name=name, failover_timeout=failover_timeout, roles=roles or [],
            id=m.ID(value=framework_id) if framework_id else None,
            capabilities=[m.Capability(type=c) for c in caps],
        )
        self._streams += 1
        fw = self.core.subscribe(m.Subscribe(framework_info=info), f"stream-{self._streams}", self.now)
        if fw not in self.frameworks:
            self.frameworks.append(fw)
        return fw

    def allocate(self) -> dict[str, list[m.Offer]]:
        """Run one allocation; the offers made, by framework id (effects drained)."""
        self.core.allocate(self.now)
        offers: dict[str, list[m.Offer]] = {}
        for e in self.drain():
            if type(e) is ToFramework and e.event.type == "OFFERS" and e.event.offers is not None:
                offers.setdefault(e.framework_id, []).extend(e.event.offers.offers)
        return offers

    def launch(
        self, fw: Framework, offer: m.Offer, task_id: str, resources: str = "cpus:1;mem:128",
        cmd: str = "true", refuse_seconds: float = 0.0,
    ) -> list[Any]:
        ti = m.TaskInfo(
            name=task_id, task_id=m.ID(value=task_id), agent_id=offer.agent_id,
            resources=Resources.parse(resources).to_proto(), command=m.CommandInfo(value=cmd),
        )
        accept = m.Accept(
            offer_ids=[offer.id], operations=[m.Operation(type="LAUNCH", launch=m.Launch(task_infos=[ti]))],
            filters=m.Filters(refuse_seconds=refuse_seconds),
        )
        self.core.accept(fw.id, accept, self.now)
        return self.drain()

    def decline(self, fw: Framework, offers: list[m.Offer], refuse_seconds: float = 5.0) -> list[Any]:
        decline = m.Decline(offer_ids=[o.id for o in offers], filters=m.Filters(refuse_seconds=refuse_seconds))
        self.core.decline(fw.id, decline, self.now)
        return self.drain()

    def update(self, task_id: str, state: str, *, uuid: bytes | None = None, message: str | None = None) -> list[Any]:
        """The agent running ``task_id`` reports ``state`` (a reliable update, fresh uuid)."""
        task = self.core.find_task(task_id)
        if task is None:
            raise KeyError(f"no active task {task_id!r}")
        if uuid is None:
            self._uuid += 1
            uuid = self._uuid.to_bytes(16, "big")
        status = m.TaskStatus(task_id=m.ID(value=task_id), state=state, uuid=uuid, message=message,  # type: ignore[arg-type]
                              source="SOURCE_EXECUTOR", timestamp=self.now)
        self.core.status_update(ch.StatusUpdate(agent_id=task.agent_id, framework_id=task.framework_id, status=status), self.now)
        return self.drain()

    def acknowledge(self, task_id: str) -> list[Any]:
        """The framework acknowledges the latest update of ``task_id``."""
        task = self.core.find_task(task_id)
        if task is None or task.unacked is None or task.unacked.uuid is None:
            raise KeyError(f"nothing to acknowledge for {task_id!r}")
        ack = m.Acknowledge(agent_id=m.ID(value=task.agent_id), task_id=m.ID(value=task_id), uuid=task.unacked.uuid)
        self.core.acknowledge(task.framework_id, ack, self.now)
        return self.drain()

    def disconnect(self, fw: Framework) -> list[Any]:
        """The framework's subscription stream breaks."""
        assert fw.stream_id is not None
        self.core.disconnect(fw.id, fw.stream_id, self.now)
        return self.drain()

    def lose_channel(self, channel: Any = None) -> list[Any]:
        """The agent process's channel breaks (its agents become disconnected)."""
        self.core.channel_lost(channel if channel is not None else self.channel, self.now)
        return self.drain()

    def advance(self, seconds: float) -> list[Any]:
        """Move the fake clock and run the core's timers."""
        self.now += seconds
        self.core.tick(self.now)
        return self.drain()

    def restart(self, master_id: str = "M2") -> Harness:
        """A new master on the same registry, at the same time (nothing has reconnected yet)."""
        self.drain()
        return Harness(now=self.now, master_id=master_id, registry=self.registry,
                       agent_reregister_timeout=self.agent_reregister_timeout)
