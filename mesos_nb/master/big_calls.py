"""Work too big for one step of the master's event loop: big scheduler calls, and the
allocation cycle of a big cluster (:func:`allocate_in_slices`: the allocator's cycle run in
steps of ``ALLOC_CHUNK`` agents, the loop let run every ``ALLOC_STEP_S`` or
``ALLOC_STEP_OFFERS`` offers; 10,000 agents in one cycle took 0.1-1 s).

An ACCEPT may carry 10,000 tasks (3 MB of JSON). Decoding it in one go (~50 ms on a quiet
box, several times that on a busy one) and launching it in one go (~0.2 s) would hold the
loop: no ``/health``, heartbeat, ping or offer meanwhile. Here both happen in slices with the
loop running between them:

* :func:`decode_call` decodes a big body's outline first (the task lists left as raw JSON,
  which only checks the syntax) and then the tasks ``SLICE`` at a time; the call is acted on
  only once all of it decoded, so a malformed task still refuses the whole call (400);
* :func:`run_steps` runs a call's steps (:meth:`MasterCore.accept_steps`,
  :meth:`MasterCore.reconcile_steps`), flushing the effects after each step.

RECONCILE is treated the same way: 100,000 tasks decoded and answered in slices; so is a
DECLINE of many offers (:func:`decline_steps`: 10,000 offers declined in one step took
~80 ms), and the agents of an agent channel that went silent or broke
(:func:`lost_channel_steps`: one process may carry 10,000 emulated agents) and, when their
re-registration deadline passes, their expiry (:meth:`MasterCore.tick_steps`); so is the
removal of a framework (TEARDOWN, failover timeout, a stream broken with failover timeout 0:
:meth:`MasterCore.teardown_steps`, :meth:`MasterCore.disconnect_steps`). Slice sizes:
:mod:`.slices`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol

import msgspec

from ..protocol import messages as m
from . import agents, offers
from .model import Agent
from .slices import DECLINE_SLICE, slices


class MasterServer(Protocol):
    """What sliced work needs of the HTTP shell (server.py imports this module, so the shell is
    named through this seam, never imported back)."""

    core: Any

    def flush(self) -> None: ...

BIG_BODY = 1024 * 1024  # smaller bodies are decoded in one go, as before
SLICE = 250
ALLOC_SLICE = 128  # a cycle over more agents than this runs over several loop steps (512 at 50,000 agents x 200 frameworks: 53 ms)
ALLOC_CHUNK = 32  # agents per allocator step of such a cycle (0.1-0.3 ms each at 50,000 x 200)
ALLOC_STEP_S = 0.01  # allocator steps (and their offers' events) run in one loop step until this much time ...
ALLOC_STEP_OFFERS = 512  # ... or they made this many offers (then turned into OFFERS events)
OFFER_EVENT_S = 2e-5  # what turning one offer into its event costs, until a loop step measured it
log = logging.getLogger("mesos_nb.master")


class _LazyLaunch(msgspec.Struct):
    task_infos: list[msgspec.Raw] = []


class _OpHead(msgspec.Struct):
    type: str | None = None
    id: Any = None
    launch: _LazyLaunch | None = None


class _LazyAccept(msgspec.Struct):
    offer_ids: list[m.ID] = []
    operations: list[msgspec.Raw] = []
    filters: m.Filters | None = None


class _LazyReconcile(msgspec.Struct):
    tasks: list[msgspec.Raw] = []


class _LazyCall(msgspec.Struct):
    type: str | None = None
    framework_id: m.ID | None = None
    accept: _LazyAccept | None = None
    reconcile: _LazyReconcile | None = None


_task_dec = msgspec.json.Decoder(m.TaskInfo)
_rec_dec = msgspec.json.Decoder(m.ReconcileTask)
_op_dec = msgspec.json.Decoder(m.Operation)


async def decode_call(body: bytes) -> m.Call:
    """``m.decode(body, m.Call)``, yielding to the loop while decoding a big ACCEPT's tasks."""
    if len(body) < BIG_BODY:
        return m.decode(body, m.Call)
    try:
        lazy = msgspec.json.decode(body, type=_LazyCall)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return m.decode(body, m.Call)  # the usual error sentence
    if lazy.type == "RECONCILE" and lazy.reconcile is not None:
        return await _reconcile(lazy, lazy.reconcile)
    if lazy.type != "ACCEPT" or lazy.accept is None:
        return m.decode(body, m.Call)
    ops: list[m.Operation] = []
    done = 0
    try:
        for raw in lazy.accept.operations:
            head = msgspec.json.decode(raw, type=_OpHead)
            if head.type != "LAUNCH" or head.launch is None:
                ops.append(_op_dec.decode(raw))
                continue
            infos: list[m.TaskInfo] = []
            for r in head.launch.task_infos:
                infos.append(_task_dec.decode(r))
                done += 1
                if not done % SLICE:
                    await asyncio.sleep(0)
            ops.append(m.Operation(type="LAUNCH", id=head.id, launch=m.Launch(task_infos=infos)))
    except msgspec.ValidationError as e:
        raise m.ProtocolError(f"Failed to validate: {e} (in an operation of 'accept')") from None
    except msgspec.DecodeError as e:
        raise m.ProtocolError(f"Failed to parse JSON: {e}") from None
    accept = m.Accept(offer_ids=lazy.accept.offer_ids, operations=ops, filters=lazy.accept.filters)
    return m.Call(type="ACCEPT", framework_id=lazy.framework_id, accept=accept)


async def run_steps(server: MasterServer, steps: Iterator[None]) -> None:
    """A call's steps, the loop running between them; a client gone meanwhile finishes them
    at once (an ACCEPT's offers are taken: the rest must launch or go back)."""
    try:
        for _ in steps:
            server.flush()
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        for _ in steps:
            pass
        raise


async def paced_steps(server: MasterServer, stream: Any, steps: Generator[None, None, None]) -> None:
    """Steps that push a burst onto one framework's ``stream`` (a failover's re-sent updates),
    each waiting until the stream's writer has taken what the last one queued: the burst goes
    at the reader's pace instead of past the stream's bound. Cancelled (the stream ended), the
    rest is dropped: the stream's end does what is left (offers rescinded, updates kept for
    the next subscription)."""
    try:
        for _ in steps:
            server.flush()
            await stream.taken()
    finally:
        steps.close()


def decline_steps(core: Any, framework_id: str, decline: m.Decline, now: float) -> Iterator[None]:
    """DECLINE as steps of ``DECLINE_SLICE`` offers, each as the whole call would decline them
    (same filter); a framework removed between steps has no offers left to decline."""
    for i, part in enumerate(slices(decline.offer_ids, DECLINE_SLICE)):
        if i and framework_id not in core.frameworks:
            return
        core.decline(framework_id, m.Decline(offer_ids=list(part), filters=decline.filters), now)
        yield


def lost_channel_steps(core: Any, channel: Any, lose: Callable[[Agent], Iterator[None] | None]) -> Iterator[None]:
    """``lose`` (mark unreachable, or disconnect) each agent of ``channel`` in steps
    (:func:`.agents.lose_steps`); an agent that re-registered meanwhile (on another channel)
    or is gone already is left alone. (Channel None: the channel broke meanwhile and the agent
    was disconnected; it is still this channel's to lose.)"""
    return agents.lose_steps(core, [a for a in core.agents.values() if a.channel is channel],
                             lambda a: a.channel is channel or a.channel is None, lose)


async def _reconcile(lazy: _LazyCall, rec: _LazyReconcile) -> m.Call:
    tasks = []
    try:
        for i, raw in enumerate(rec.tasks):
            if i and not i % (4 * SLICE):
                await asyncio.sleep(0)
            tasks.append(_rec_dec.decode(raw))
    except msgspec.ValidationError as e:
        raise m.ProtocolError(f"Failed to validate: {e} (in a task of 'reconcile')") from None
    return m.Call(type="RECONCILE", framework_id=lazy.framework_id, reconcile=m.Reconcile(tasks=tasks))


def sliced_allocation(server: MasterServer, full: bool) -> bool:
    """Start the cycle in slices if it would look at more than ``ALLOC_SLICE`` agents (a
    full cycle of a big cluster; an event cycle after a framework subscribed or revived).
    True: taken care of (or one in slices already runs; it picks the changes up)."""
    core = server.core
    if len(core.agents) <= ALLOC_SLICE:
        return False
    running = getattr(server, "_alloc_slices", None)
    if running is not None and not running.done():
        core.wants_allocation = True  # run again after it: what changed meanwhile
        return True
    if full:
        ids = None
    else:
        n = core.allocator.changed_count()
        if n is not None and n <= ALLOC_SLICE:
            return False
        ids = core.allocator.take_changed()
    server._alloc_slices = asyncio.get_running_loop().create_task(allocate_in_slices(server, ids))  # type: ignore[attr-defined]
    return True


async def allocate_in_slices(
    server: MasterServer, ids: list[str] | None = None, clock: Callable[[], float] = time.perf_counter,
    budget: float | None = None,
) -> None:
    """A cycle over ``ids`` (None: every agent) run by the allocator in steps of
    ``ALLOC_CHUNK`` agents (:meth:`~.allocator.HierarchicalDRFAllocator.step`, the same offers
    as one step) until ``budget`` seconds of ``clock`` have passed in this loop step (default
    ``ALLOC_STEP_S``; the offers' events count, at what one took in the last loop step) or
    ``ALLOC_STEP_OFFERS`` offers were made; those become OFFERS events (one per framework:
    each is a call back from it), flushed; then the loop runs other work and the cycle goes on. A slice's cost follows what its agents get (a slice of a full
    cluster is nearly free, one of a fresh cluster makes an offer per agent), so the clock and
    the offers bound it, not a count of agents."""
    core = server.core
    budget = ALLOC_STEP_S if budget is None else budget
    core.metrics["allocator/mesos/allocation_runs"] += 1
    run = core.allocator.begin(time.time(), ids)
    per_offer = OFFER_EVENT_S  # what turning one offer into an OFFERS event took in the last loop step
    while True:
        start = last = clock()
        made: list = []
        try:
            # the budget covers the offers' events too (512 offers were ~10 ms after 10 ms of
            # allocator steps: a 20 ms loop step), estimated from the last loop step's
            while not run.done and len(made) < ALLOC_STEP_OFFERS:
                made += core.allocator.step(run, ALLOC_CHUNK)
                last = clock()
                if last - start + per_offer * len(made) >= budget:
                    break
            core.wants_allocation = False  # (what changes meanwhile: the check at the end)
            offers.make_offers(core, made)
            if made:
                per_offer = (clock() - last) / len(made)
        except Exception:  # pragma: no cover - a bug must not kill the master
            log.exception("allocation failed")
            break
        finally:
            server.flush()
        if run.done:
            break
        await asyncio.sleep(0)
    if core.allocator.changed_count() != 0:
        core.wants_allocation = True  # what changed while the slices ran: an event cycle
        server.flush()
