"""One allocation cycle over candidate agents (see the allocator module's doc for the rules).

Why a module of its own: the cycle is the hot path of a big cluster (50,000 agents: 50,000
offers in one call), so it comes in two shapes that decide alike:

* :func:`walk_roles`, the general one: per agent, roles in hierarchical DRF order, inside
  the first role that can use the agent's leftover its frameworks in DRF order; with quota
  (a :class:`~.quota.QuotaCycle`) in two stages, each offer cut to the role's limits;
* :func:`one_role`, when exactly one role is active (every framework in ``*``, or in one
  role; with or without quota): the role order cannot change during the cycle, so the role
  tree is not re-keyed after every offer; the role's allocation grows once, at the end, by
  the sum of the offers (the same integers, so the same shares afterwards). Each agent gets
  at most one offer, as in the general walk (a role that got an offer is not looked at again
  on that agent).

Both leave GC-tracked objects behind only where they must (the :class:`Allocation` records
and what the frameworks hold); temporaries die by reference counting.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable
from random import Random
from typing import Any

from mesos_nb.protocol.resources import Resources

from .filters import OfferFilter
from .quota import QuotaCycle
from .records import EMPTY, Allocation
from .roletree import RoleTree
from .sorter import DRFSorter

__all__ = ["CycleRun", "enough_test", "first_fit", "one_role", "sum_offers", "walk_roles"]

_FOREVER = float("inf")

# hold(framework, role, agent, offer): the framework's record of what it holds where
Hold = Callable[[Any, str, Any, Resources], None]


def sum_offers(taken: list[dict[str, int]]) -> dict[str, int]:
    """The sum of thousandths maps; most offers of a cluster share a few cached maps
    (``Resources.millis``), so they are counted by identity first."""
    by_id = {id(m): m for m in taken}
    total: dict[str, int] = {}
    for key, times in Counter(map(id, taken)).items():
        for n, v in by_id[key].items():
            total[n] = total.get(n, 0) + v * times
    return total


def enough_test(mins: tuple[dict[str, int], ...]) -> Callable[[dict[str, int]], bool]:
    """Whether an offer's thousandths pass ``min_allocatable`` (any one of ``mins`` fully
    met), made once per allocator: asked for every agent a cycle looks at, and the usual
    minimums (``cpus:0.01 | mem:32``) are one name each, a loop over two pairs."""
    if not mins:
        return lambda m: True
    if all(len(req) == 1 for req in mins):
        pairs = tuple(next(iter(req.items())) for req in mins)

        def enough(m: dict[str, int]) -> bool:
            for n, v in pairs:
                if m.get(n, 0) >= v:
                    return True
            return False
        return enough

    def enough_all(m: dict[str, int]) -> bool:
        return any(all(m.get(n, 0) >= v for n, v in req.items()) for req in mins)
    return enough_all


def first_fit(fs: DRFSorter, fws: dict, role: str, agent: Any, offer: Resources, now: float,
              gpu_only: bool) -> Any | None:
    """The first framework in ``fs``'s order (a role's framework sorter: active, subscribed and
    unsuppressed ones, in DRF order) that may be offered ``offer`` on ``agent``: GPU-capable
    if ``gpu_only``, and no live filter of its covering the offer.

    Why not ask each framework: an agent that 200 frameworks refused cost 200 method calls
    through each framework's table and 200 ``Resources.contains``. The agent's own table of
    who refused it (``agent.refused``, :mod:`.filters`) answers with one look-up per framework;
    one live filter is decided here, most by identity (frameworks that declined the same
    leftover hold the same bag); several filters, or expired ones to drop, by ``is_filtered``.
    And when every framework refused the agent, that is remembered (``agent.memo``) for as long
    as it must hold: the same bag offered, no framework activated or reopened in the role
    (``fs.epoch``), none of those filters expired. A full cycle over agents refused by all
    then costs a look-up each."""
    order = fs.order()
    refused = agent.refused
    on_agent = refused.get(role) if refused is not None else None
    if on_agent is None:  # nobody refuses the agent in this role
        for _, fid in order:
            fw = fws[fid]
            if not gpu_only or fw.gpu_aware:
                return fw
        return None
    memo = agent.memo
    if memo is not None and memo[0] is offer and memo[1] is fs and memo[2] == fs.epoch and now < memo[3]:
        return None
    covers = offer  # the last refused bag found to cover the offer (the offer covers itself)
    until = _FOREVER  # when the first of the refusals met expires
    plain = True  # every refusal met was one live filter (a memo can say until when)
    for _, fid in order:
        if gpu_only and not fws[fid].gpu_aware:
            continue
        f = on_agent.get(fid)
        if f is None:
            return fws[fid]
        if type(f) is OfferFilter and now < f.expires:
            r = f.resources
            if r is not covers:
                if not r.contains(offer):
                    return fws[fid]
                covers = r
            if f.expires < until:
                until = f.expires
            continue
        if not fws[fid].filters.is_filtered(role, agent, offer, now):
            return fws[fid]
        plain = False
    if plain:
        agent.memo = (offer, fs, fs.epoch, until)
    return None


def one_role(
    cands: list,
    now: float,
    role: str,
    fs: DRFSorter,
    fws: dict,
    hold: Hold,
    enough: Callable[[dict[str, int]], bool],
    filter_gpu: bool,
    out: list[Allocation],
    cyc: QuotaCycle | None = None,
) -> list[dict[str, int]]:
    """The cycle when ``role`` is the only active role: appends the offers to ``out`` and
    answers their thousandths, which the caller adds to the role tree. With quota (``cyc``)
    each offer is cut and charged as in the general walk; its two stages collapse into one
    here, as the second would look at the same role with the same cut."""
    order = fs.order()  # live: re-keyed in place by add_allocation (we stop walking before)
    add = fs.add_allocation
    taken: list[dict[str, int]] = []
    ok: dict[int, bool] = {}  # enough(m) by id(m) (most offers share a few cached maps)
    seen: list[dict[str, int]] = []  # ... each kept alive here, so that no id is reused
    for agent in cands:
        avail = agent.available
        if agent.reserved:
            offer = avail.allocatable_to(role)
            if not offer:
                continue
        else:
            offer = avail
        m = offer.millis()
        if cyc is not None:
            capped = cyc.cap(role, offer, m, agent.reserved)
            if capped is not offer:
                if not capped:
                    continue
                offer = capped
                m = offer.millis()
        big = ok.get(id(m))
        if big is None:
            big = ok[id(m)] = enough(m)
            seen.append(m)
        if not big:
            continue
        if agent.refused is not None or agent.gpu or not order:
            fw = first_fit(fs, fws, role, agent, offer, now, agent.gpu and filter_gpu)
            if fw is None:
                continue
        else:  # never refused, no GPU: the first framework in DRF order (first_fit's first case)
            fw = fws[order[0][1]]
        aid = agent.id
        fid = fw.id
        held = fw.alloc
        if aid in held:
            hold(fw, role, agent, offer)
        else:  # (FrameworkEntry.hold inlined: nothing held there yet, the usual case)
            held[aid] = offer
            fw.alloc_role[aid] = role
            agent.frameworks[fid] = None
        add(fid, m)
        if cyc is not None:
            cyc.charge(role, offer, m, agent.reserved)
        taken.append(m)
        agent.available = EMPTY if offer is avail else avail - offer
        out.append(Allocation(fid, role, aid, offer))
    return taken


def walk_roles(
    cands: list,
    now: float,
    roles: RoleTree,
    fsorters: dict[str, DRFSorter],
    fws: dict,
    hold: Hold,
    enough: Callable[[dict[str, int]], bool],
    filter_gpu: bool,
    cyc: QuotaCycle | None,
    out: list[Allocation],
) -> None:
    """The general cycle: several active roles (re-sorted after every offer) and/or quota."""
    order = roles.order
    add_role = roles.add_allocation
    unmet = cyc.unmet if cyc is not None else None
    both_stages = (True, False)
    stage2_only = (False,)

    for agent in cands:
        avail = agent.available
        aid = agent.id
        reserved = agent.reserved
        gpu_only = agent.gpu and filter_gpu
        done: set[str] | None = None
        again = True
        while again:  # (a candidate has something free)
            again = False
            for stage1 in both_stages if unmet else stage2_only:
                made = False
                for _, role in order():
                    if done is not None and role in done:
                        continue
                    if stage1 and not cyc.in_stage1(role):  # type: ignore[union-attr]
                        continue
                    offer = avail.allocatable_to(role) if reserved else avail
                    if not offer:
                        continue
                    m = offer.millis()
                    if cyc is not None:
                        capped = cyc.cap(role, offer, m, reserved)
                        if capped is not offer:
                            if not capped:
                                continue
                            offer = capped
                            m = offer.millis()
                    if not enough(m):
                        continue
                    chosen = first_fit(fsorters[role], fws, role, agent, offer, now, gpu_only)
                    if chosen is None:
                        continue
                    hold(chosen, role, agent, offer)
                    add_role(role, m)
                    fsorters[role].add_allocation(chosen.id, m)
                    if cyc is not None:
                        cyc.charge(role, offer, m, reserved)
                    avail = EMPTY if offer is avail else avail - offer
                    agent.available = avail
                    out.append(Allocation(chosen.id, role, aid, offer))
                    if done is None:
                        done = set()
                    done.add(role)
                    made = True
                    break  # orders changed: start the role walk again
                if made:
                    again = bool(avail)
                    break


class CycleRun:
    """A cycle begun and run in steps (:meth:`HierarchicalDRFAllocator.begin` / ``step``): the
    candidates chosen once, shuffled with the same draws as a one-step cycle (the shuffle
    itself in pieces: 50,000 swaps are ~15 ms), then handed out in order. Run to the end
    with nothing happening in between, it makes the very offers of a one-step cycle."""

    __slots__ = ("now", "cands", "epoch", "closed", "quota", "quota_version", "_i", "_pos", "_rng")

    def __init__(self, now: float, cands: array, rng: Random, epoch: int) -> None:
        self.now = now
        self.cands = cands  # the agents' slots (entries.AgentSlots)
        self.closed = not cands  # (the allocator counts the runs under way)
        self.quota: QuotaCycle | None = None  # kept between steps while nothing it read moved
        self.quota_version = -1
        self.epoch = epoch  # the allocator's agent epoch when the candidates were chosen
        self._rng = rng
        self._i = len(cands) - 1  # the next position the shuffle settles
        self._pos = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self.cands)

    def shuffle(self, swaps: int | None = None) -> bool:
        """Settle up to ``swaps`` more positions (None: all); True once shuffled."""
        x = self.cands
        i = self._i
        stop = 0 if swaps is None else max(0, i - swaps)
        getrandbits = self._rng.getrandbits
        while i > stop:  # (random.shuffle's loop and draws, without a method call per swap:
            # a third of its time at 50,000 agents)
            n = i + 1
            k = n.bit_length()
            j = getrandbits(k)
            while j >= n:
                j = getrandbits(k)
            x[i], x[j] = x[j], x[i]
            i -= 1
        self._i = i
        return i <= 0

    def take(self, limit: int | None) -> array:
        """The slots of the next ``limit`` candidates (None: all the rest), once shuffled."""
        start = self._pos
        end = len(self.cands) if limit is None else min(len(self.cands), start + limit)
        self._pos = end
        return self.cands if start == 0 and end == len(self.cands) else self.cands[start:end]
