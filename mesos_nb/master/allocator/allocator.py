"""Hierarchical weighted-DRF allocator (the Mesos default allocator, re-made).

Pure and synchronous: no I/O, no timers, no clock. The master feeds it events (agents,
frameworks, recovered resources, suppress/revive) and calls :meth:`allocate` with the
current time; it answers with :class:`Allocation` records that the master turns into
offers. Offered resources count as allocated to the framework (so DRF shares move at
once) until the master hands them back with :meth:`recover`.

One cycle, as in Mesos ``__generateOffers`` stage 2 (no quota):

* candidate agents: active ones with unallocated resources, shuffled (seeded RNG);
* for each agent, roles in ascending ``dominant share / weight``; for the first role that
  can use something on the agent (unreserved, or reserved for the role or an ancestor)
  and whose leftover passes ``min_allocatable``, frameworks in that role in ascending
  dominant share; the first framework that is active, subscribed to and not suppressed
  in the role, GPU-compatible and not holding a refusal filter covering the offer gets
  *all* of it; then the next role gets a look at whatever is left (reservations).

Roles are sorted as a tree (:mod:`.roletree`): ``eng/ml/alice`` competes inside ``eng/ml``,
which competes inside ``eng``, which competes with the other top-level roles, each node by the
weighted share of its whole subtree. A reservation for ``eng`` may be offered to ``eng/ml``.

With quota (:mod:`.quota`) the same cycle runs in two stages (roles under an unmet guarantee
first) and each offer's unreserved part is cut to the role's limits and headroom.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterable, Iterator, Sequence

from mesos_nb.protocol.resources import Resources

from .changes import ChangedAgents
from .cycle import CycleRun, enough_test, one_role, sum_offers, walk_roles
from .entries import AgentEntry as _Agent
from .entries import AgentSlots
from .entries import FrameworkEntry as _Framework
from .filters import drop_agent as drop_filters
from .filters import refuse_timeout
from .quota import QuotaBook, QuotaCycle, RoleQuota, consumption
from .records import EMPTY, Allocation
from .roletree import RoleTree
from .sorter import DRFSorter, Totals, dominant_share

__all__ = ["Allocation", "CycleRun", "HierarchicalDRFAllocator"]

_EMPTY = EMPTY
_DEFAULT_MIN = ({"cpus": 10}, {"mem": 32_000})  # cpus:0.01 | mem:32, in thousandths


class HierarchicalDRFAllocator:
    def __init__(
        self,
        *,
        min_allocatable: list[Resources] | None = None,
        fairness_excluded: frozenset[str] = frozenset({"gpus"}),
        filter_gpu_resources: bool = True,
        seed: int | None = None,
    ) -> None:
        if min_allocatable is None:
            self._min: tuple[dict[str, int], ...] = _DEFAULT_MIN
        else:
            self._min = tuple(r.scalar_millis() for r in min_allocatable)
        self._enough = enough_test(self._min)
        self._excluded = frozenset(fairness_excluded)
        self._filter_gpu = filter_gpu_resources
        self._rng = random.Random(seed)
        self._agents: dict[str, _Agent] = {}
        self._slots = AgentSlots()  # the same agents, as ints for a cycle's candidates
        self._reserved: dict[str, _Agent] = {}  # the agents with reservations (what quota reads)
        self._fws: dict[str, _Framework] = {}
        self._totals = Totals()
        self._roles = RoleTree(self._totals)
        self._fsorters: dict[str, DRFSorter] = {}
        self._weights: dict[str, float] = {}
        self._quota = QuotaBook()
        self._runs = 0
        self._made = 0
        self._changed = ChangedAgents()  # what an event cycle looks at (changes.py)
        self._epoch = 0  # moves when an agent is removed or deactivated (a begun cycle re-checks)

    # ================================================================== agents
    def _fair(self, r: Resources) -> dict[str, int]:
        return {n: m for n, m in r.scalar_millis().items() if n not in self._excluded}

    def add_agent(
        self,
        agent_id: str,
        total: Resources,
        *,
        hostname: str = "",
        attributes: dict[str, str] | None = None,
    ) -> None:
        if agent_id in self._agents:
            self.update_agent(agent_id, total)
            return
        self._agents[agent_id] = agent = _Agent(agent_id, total, hostname, attributes)
        self._slots.add(agent)
        if agent.reserved:
            self._reserved[agent_id] = agent
        self._totals.add(self._fair(total))
        self._changed.touch(agent_id)
        self._quota.add_total(total.scalar_millis())

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        self._epoch += 1
        self._slots.remove(agent)
        self._reserved.pop(agent_id, None)
        for fid in list(agent.frameworks):
            fw = self._fws.get(fid)
            if fw is None:
                continue
            for role, res in fw.drop(agent_id).items():
                self._unaccount(fw, role, res)
        drop_filters(agent, self._fws)
        self._totals.add(self._fair(agent.total), -1)
        self._quota.add_total(agent.total.scalar_millis(), -1)

    def update_agent(self, agent_id: str, total: Resources) -> None:
        agent = self._agents[agent_id]
        self._totals.add(self._fair(agent.total), -1)
        self._totals.add(self._fair(total))
        self._quota.add_total(agent.total.scalar_millis(), -1)
        self._quota.add_total(total.scalar_millis())
        agent.set_total(total)
        if agent.reserved:
            self._reserved[agent_id] = agent
        else:
            self._reserved.pop(agent_id, None)
        used = _EMPTY
        for fid in agent.frameworks:
            for res in self._fws[fid].held(agent_id).values():
                used = used + res
        agent.available = total - used
        self._changed.touch(agent_id)

    def deactivate_agent(self, agent_id: str) -> None:
        self._agents[agent_id].active = False
        self._epoch += 1

    def activate_agent(self, agent_id: str) -> None:
        self._agents[agent_id].active = True
        self._changed.touch(agent_id)

    def available(self, agent_id: str) -> Resources:
        return self._agents[agent_id].available

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    # ================================================================== roles
    def _join(self, fw: _Framework, role: str) -> None:
        """Make ``fw`` a client of ``role``'s framework sorter (creating the role)."""
        fs = self._fsorters.get(role)
        if fs is None:
            fs = self._fsorters[role] = DRFSorter(self._totals)
            self._roles.add(role, self._weights.get(role, 1.0), active=False)
        if fw.id not in fs:
            fs.add(fw.id, active=False)
            fw.sorter_roles.add(role)
        self._refresh(fw, role)

    def _refresh(self, fw: _Framework, role: str) -> None:
        """Sorter activity follows eligibility: an inactive framework, or one suppressed or
        no longer subscribed in the role, is skipped by the sorter (and so costs nothing
        per agent in a cycle); a role with no active framework is skipped too."""
        fs = self._fsorters.get(role)
        if fs is None or fw.id not in fs:
            return
        if fw.active and role in fw.roles and role not in fw.suppressed:
            fs.activate(fw.id)
        else:
            fs.deactivate(fw.id)
        if fs.active_count():
            self._roles.activate(role)
        else:
            self._roles.deactivate(role)

    def _reopen(self, roles: Iterable[str]) -> None:
        """Refusals in ``roles`` were withdrawn (or a framework gained GPUs): an agent every
        framework there refused may not be refused any more (``cycle.first_fit``'s memo)."""
        for role in roles:
            fs = self._fsorters.get(role)
            if fs is not None:
                fs.reopen()

    def _refresh_all(self, fw: _Framework) -> None:
        for role in list(fw.sorter_roles):
            self._refresh(fw, role)

    def _maybe_drop_client(self, fw: _Framework, role: str) -> None:
        """Leave role's framework sorter when neither subscribed nor holding anything."""
        if role in fw.roles:
            return
        if any(r == role for _, r, _ in fw.holdings()):
            return
        fs = self._fsorters.get(role)
        if fs is None:
            return
        fs.remove(fw.id)
        fw.sorter_roles.discard(role)
        if not len(fs):
            del self._fsorters[role]
            self._roles.remove(role)
        elif not fs.active_count():
            self._roles.deactivate(role)

    def update_weights(self, weights: dict[str, float]) -> None:
        for role, w in weights.items():
            w = float(w)
            if not w > 0:
                raise ValueError(f"weight for role '{role}' must be positive, got {w}")
            self._weights[role] = w
            self._roles.set_weight(role, w)  # also for a parent no framework uses directly
        self._changed.touch_all()

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def update_quota(self, role: str, quota: RoleQuota | None) -> None:
        """Set (or, with ``None`` / empty maps, clear) a top-level role's guarantees and limits."""
        self._quota.set(role, quota)
        self._changed.touch_all()  # guarantees and limits change who may take which agent

    def quotas(self) -> dict[str, RoleQuota]:
        return dict(self._quota.quotas)

    def consumed(self) -> dict[str, dict[str, int]]:
        """Quota consumption (thousandths) of every role with quota: allocations (offers
        included) plus reservations not allocated yet, of the role's whole subtree."""
        return consumption(self._quota, self._roles, list(self._reserved.values()))[0]

    def role_allocation(self, role: str) -> dict[str, int]:
        """The role's own allocation (thousandths), without its children's."""
        return self._roles.allocation(role) if role in self._roles else {}

    def subtree_allocation(self, role: str) -> dict[str, int]:
        """The allocation of ``role`` and every role below it: what a parent's quota bounds."""
        return self._roles.subtree_allocation(role)

    def role_share(self, role: str) -> float:
        """Unweighted dominant share of the role's subtree (0 for a role nobody uses)."""
        return self._roles.share(role)

    def role_nodes(self) -> list[str]:
        """Every role the allocator knows, with the ancestors of nested ones (``eng`` for ``eng/ml``)."""
        return self._roles.nodes()

    def total(self) -> dict[str, int]:
        """The cluster's scalars (thousandths), every name included."""
        return dict(self._quota.total)

    # ================================================================== frameworks
    def add_framework(
        self,
        framework_id: str,
        roles: Sequence[str],
        *,
        suppressed_roles: Sequence[str] = (),
        gpu_aware: bool = False,
        active: bool | None = True,
    ) -> None:
        """Add a framework (or refresh one that already exists, e.g. a placeholder made by
        :meth:`add_allocation` for tasks reported before the framework re-subscribed).
        ``active=None`` keeps an existing framework's activity (UPDATE_FRAMEWORK)."""
        fw = self._fws.get(framework_id)
        if fw is None:
            fw = self._fws[framework_id] = _Framework(framework_id)
        if active is not None:
            fw.active = active
        self._set_roles(fw, roles, suppressed_roles, gpu_aware)
        self._changed.touch_all()

    def update_framework(self, framework_id: str, roles: Sequence[str], **options: object) -> None:
        """New roles, suppressed roles or GPU capability for a known framework (KeyError if
        unknown); its activity and allocations stay (as :meth:`add_framework` with ``active=None``)."""
        self._fws[framework_id]  # noqa: B018 - only a known framework may be updated
        self.add_framework(framework_id, roles, active=None, **options)  # type: ignore[arg-type]

    def _set_roles(self, fw: _Framework, roles, suppressed_roles, gpu_aware: bool) -> None:
        new = set(roles)
        old = fw.roles
        fw.roles = new
        fw.suppressed = set(suppressed_roles) & new
        if gpu_aware and not fw.gpu_aware:  # it may now take GPU agents it was passed over for
            self._reopen(fw.sorter_roles)
        fw.gpu_aware = gpu_aware
        for role in new:
            self._join(fw, role)
        gone = old - new
        if gone:
            fw.filters.clear(gone)
            for role in gone:
                self._maybe_drop_client(fw, role)
        self._refresh_all(fw)

    def remove_framework(self, framework_id: str) -> None:
        for _ in self.remove_framework_steps(framework_id, 1 << 62):
            pass

    def remove_framework_steps(self, framework_id: str, per_step: int) -> Iterator[None]:
        """Forget a framework, handing back what it holds on ``per_step`` agents per step (an
        allocation on each of 50,000 agents: 1 s in one step). Meanwhile it stays known,
        inactive (offered nothing), holding the rest: every step leaves the books balanced,
        and an agent removed meanwhile takes its part with it."""
        fw = self._fws.get(framework_id)
        if fw is None:
            return
        if fw.active:
            self.deactivate_framework(framework_id)
        held = list(fw.alloc)
        for i in range(0, len(held), per_step):
            if i:
                yield
                if self._fws.get(framework_id) is not fw:
                    return
            for agent_id in held[i:i + per_step]:
                if agent_id not in fw.alloc:
                    continue  # its agent was removed meanwhile
                agent = self._agents.get(agent_id)
                for role, res in fw.drop(agent_id).items():
                    self._unaccount(fw, role, res)
                    if agent is not None:
                        agent.available = agent.available + res
                if agent is not None:
                    agent.frameworks.pop(framework_id, None)
                    self._changed.touch(agent_id)
        del self._fws[framework_id]
        fw.filters.clear()  # (an inactive framework may have refused since its deactivation)
        fw.roles = set()
        for role in list(fw.sorter_roles):
            self._maybe_drop_client(fw, role)

    def activate_framework(self, framework_id: str) -> None:
        fw = self._fws[framework_id]
        fw.active = True
        self._refresh_all(fw)
        self._changed.touch_all()

    def deactivate_framework(self, framework_id: str) -> None:
        fw = self._fws[framework_id]
        fw.active = False
        fw.filters.clear()  # as Mesos: filters do not survive deactivation
        self._refresh_all(fw)

    def framework_ids(self) -> list[str]:
        return list(self._fws)

    def suppress(self, framework_id: str, roles: Sequence[str] | None = None) -> None:
        fw = self._fws[framework_id]
        fw.suppressed |= fw.roles if roles is None else (set(roles) & fw.roles)
        self._refresh_all(fw)

    def revive(self, framework_id: str, roles: Sequence[str] | None = None) -> None:
        fw = self._fws[framework_id]
        if roles is None:
            fw.filters.clear()
            fw.suppressed.clear()
        else:
            fw.filters.clear(roles)
            fw.suppressed -= set(roles)
        self._reopen(fw.sorter_roles if roles is None else roles)  # its refusals withdrawn
        self._refresh_all(fw)
        self._changed.touch_all()

    def suppressed_roles(self, framework_id: str) -> set[str]:
        return set(self._fws[framework_id].suppressed)

    def has_filters(
        self,
        framework_id: str,
        role: str | None = None,
        agent_id: str | None = None,
        now: float | None = None,
    ) -> bool:
        fw = self._fws.get(framework_id)
        return bool(fw and fw.filters.has(role, agent_id, now))

    # ================================================================== allocations
    @staticmethod
    def _hold(fw: _Framework, role: str, agent: _Agent, res: Resources) -> None:
        """What ``fw`` holds on ``agent`` in ``role`` grows by ``res`` (no sorter moves)."""
        if fw.hold(agent.id, role, res):
            agent.frameworks[fw.id] = None

    def _account(self, fw: _Framework, role: str, agent: _Agent, res: Resources) -> None:
        self._quota.version += 1
        self._hold(fw, role, agent, res)
        m = res.millis()
        self._roles.add_allocation(role, m)
        self._fsorters[role].add_allocation(fw.id, m)

    def _unaccount(self, fw: _Framework, role: str, res: Resources) -> None:
        self._quota.version += 1
        m = res.millis()
        self._roles.remove_allocation(role, m)
        fs = self._fsorters.get(role)
        if fs is not None:
            fs.remove_allocation(fw.id, m)

    def add_allocation(
        self, framework_id: str, role: str, agent_id: str, resources: Resources
    ) -> None:
        """Record resources already in use (tasks found on a re-registering agent). An
        unknown framework gets an inactive placeholder until :meth:`add_framework`."""
        agent = self._agents[agent_id]
        fw = self._fws.get(framework_id)
        if fw is None:
            fw = self._fws[framework_id] = _Framework(framework_id)
        self._join(fw, role)
        self._account(fw, role, agent, resources)
        agent.available = agent.available - resources

    def recover(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        *,
        refuse_seconds: float | None = None,
        now: float = 0.0,
        role: str | None = None,
    ) -> None:
        """Take back resources from a framework; optionally install a refusal filter.

        ``role`` names the allocation role when the caller knows it; otherwise the
        resources are taken from the framework's roles on that agent in turn. Resources
        the framework does not hold there are ignored.
        """
        fw = self._fws.get(framework_id)
        agent = self._agents.get(agent_id)
        if fw is None or agent is None:
            return
        if agent_id not in fw.alloc or not resources:
            return
        per = fw.held(agent_id)
        timeout = refuse_timeout(refuse_seconds)
        remaining = resources
        gone = False
        for r in [role] if role is not None else list(per):
            cur = per.get(r)
            if cur is None:
                continue
            whole = cur is remaining or cur == remaining  # the usual decline: all of it back
            part = cur if whole else cur.intersection(remaining)
            if not part:
                continue
            left = _EMPTY if whole else cur - part
            gone = fw.set_held(agent_id, r, left)
            self._unaccount(fw, r, part)
            agent.available = agent.available + part
            self._changed.touch(agent_id)
            if timeout > 0:
                fw.filters.add(r, agent, part, now + timeout)
            if not left:
                self._maybe_drop_client(fw, r)
            remaining = _EMPTY if whole else remaining - part
            if not remaining:
                break
        if gone:
            agent.frameworks.pop(framework_id, None)

    def allocated(self, framework_id: str) -> dict[str, Resources]:
        fw = self._fws.get(framework_id)
        if fw is None:
            return {}
        out: dict[str, Resources] = {}
        for agent_id, _, res in fw.holdings():
            out[agent_id] = out.get(agent_id, _EMPTY) + res
        return out

    def allocated_by_role(self, framework_id: str) -> dict[str, dict[str, Resources]]:
        """agent_id -> role -> resources."""
        fw = self._fws.get(framework_id)
        return {} if fw is None else {a: fw.held(a) for a in fw.alloc}

    # ================================================================== the cycle
    def take_changed(self) -> list[str] | None:
        """What an event cycle would look at (None: all), forgotten: for a caller that runs
        the cycle itself in slices (:meth:`allocate` with ``agent_ids``)."""
        return self._changed.take()

    def changed_count(self) -> int | None:
        return self._changed.count()

    def allocate_changed(self, now: float) -> list[Allocation]:
        """A cycle over the agents touched since the last cycle (:mod:`.changes`), as Mesos
        allocates the agents an event concerns; merely expired filters wait for a full cycle."""
        ids = self._changed.take()
        if ids is None:
            return self.allocate(now)
        return self.allocate(now, ids) if ids else []

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Allocation]:
        """One cycle over every active agent with something free (or over ``agent_ids``)."""
        return self.step(self.begin(now, agent_ids))

    def begin(self, now: float, agent_ids: Iterable[str] | None = None) -> CycleRun:
        """Start a cycle to run in steps (:meth:`step`): the master's event loop must not hold
        a 50,000-agent cycle in one step. Between steps anything may happen: an agent removed
        or deactivated meanwhile is skipped, frameworks and shares are read as they are."""
        self._runs += 1
        agents = self._agents
        if not self._fsorters:
            cands = array("l")
        elif agent_ids is None:
            self._changed.take()  # every agent is looked at
            cands = array("l", [a.slot for a in agents.values() if a.active and a.available])
        else:
            got = [agents.get(aid) for aid in dict.fromkeys(agent_ids)]
            cands = array("l", [a.slot for a in got if a is not None and a.active and a.available])
        if cands:
            self._slots.open_runs += 1
        return CycleRun(now, cands, self._rng, self._epoch)

    def step(self, run: CycleRun, limit: int | None = None) -> list[Allocation]:
        """The next ``limit`` candidates of ``run`` (None: all the rest); a step may only
        shuffle (a few ``limit`` s of swaps) and answer nothing while ``run.done`` is False."""
        if not run.shuffle(None if limit is None else 8 * limit):
            return []
        entries = self._slots.entries
        cands = [entries[i] for i in run.take(limit)]
        if run.done and not run.closed:
            run.closed = True
            self._slots.open_runs -= 1
        if run.epoch != self._epoch:  # agents removed or deactivated since the cycle began
            cands = [a for a in cands if a is not None and a.active]
        out: list[Allocation] = []
        order = self._roles.order()
        if cands and self._fsorters and order:
            cyc = None
            if self._quota:  # one QuotaCycle for a run's steps unless something moved in between
                cyc = run.quota if run.quota_version == self._quota.version else None
                if cyc is None:
                    cyc = QuotaCycle(self._quota, self._roles, list(self._reserved.values()))
            if len(order) == 1:
                role = order[0][1]
                taken = one_role(cands, run.now, role, self._fsorters[role], self._fws, self._hold,
                                 self._enough, self._filter_gpu, out, cyc)
                if taken:
                    self._roles.add_allocation(role, sum_offers(taken))
            else:
                walk_roles(cands, run.now, self._roles, self._fsorters, self._fws, self._hold, self._enough,
                           self._filter_gpu, cyc, out)
            if out and cyc is not None:
                self._quota.version += 1  # (another run's QuotaCycle did not see these offers)
            run.quota, run.quota_version = cyc, self._quota.version
        self._made += len(out)
        return out

    # ================================================================== reporting
    def shares(self) -> dict:
        totals = self._totals.values
        roles = {r: self._roles.share(r) for r in self._roles.nodes()}  # a parent: its subtree
        frameworks = {}
        for fid, fw in self._fws.items():
            m: dict[str, int] = {}
            for _, _, res in fw.holdings():
                for n, v in res.millis().items():
                    m[n] = m.get(n, 0) + v
            frameworks[fid] = dominant_share(m, totals)
        return {"roles": roles, "frameworks": frameworks}

    def role_order(self) -> list[str]:
        return self._roles.sorted()

    def metrics(self) -> dict[str, float]:
        return {
            "allocator/agents": len(self._agents),
            "allocator/frameworks": len(self._fws),
            "allocator/active_frameworks": sum(1 for f in self._fws.values() if f.active),
            "allocator/roles": len(self._fsorters),
            "allocator/offer_filters": sum(f.filters.count() for f in self._fws.values()),
            "allocator/allocation_runs": self._runs,
            "allocator/allocations_made": self._made,
        }
