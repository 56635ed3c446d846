"""Reliable task status updates (Mesos' task status update manager, reference §6.3).

Each task has a FIFO *stream*. Only its head is in flight: it is sent, then resent after
``retry_min`` seconds, doubling up to ``retry_max``, until the master forwards the
framework's ACK with the head's uuid; then the next update goes out. After the channel
reconnects every head is resent at once (``resend_all``). An update whose uuid the stream
already holds (or already acknowledged) is a duplicate and dropped. The head carries the
stream's newest state (``latest_state``) when newer updates wait behind it, so the master
frees a finished task's resources without waiting for the framework's acks.

Retries fall due on a grid of ``RETRY_GRAIN`` seconds (a tenth of ``retry_min`` when that
is finer): the streams whose retry falls in one slot of the grid share one timer, so an
update acknowledged before its retry (nearly all of them) costs a dict insert and delete, not
a timer armed and cancelled (a timer per update was 3 % of the agent's CPU in
``bench.launch_throughput``). A retry is late by at most one grain.

Pure logic: the clock and timers are injected (``clock() -> seconds`` and
``call_later(delay, fn) -> handle`` with ``.cancel()``), sending is a callback.
Checkpointing is the ``store`` seam: ``append`` is called before an update is forwarded and
``acknowledge`` when it is popped; the default store does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mesos_nb.protocol.channel import StatusUpdate
from mesos_nb.protocol.messages import TERMINAL_STATES

logger = logging.getLogger("mesos_nb.agent")

RETRY_GRAIN = 0.5  # seconds: the grid retries fall due on (one timer per slot in use), at most
# a tenth of retry_min


class UpdateStore:
    """Checkpoint seam (no-op); ``checkpoint.DiskUpdateStore`` writes ``task.updates``."""

    def append(self, update: StatusUpdate) -> None:
        pass

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes) -> None:
        pass

    def remove_stream(self, framework_id: str, task_id: str) -> None:
        pass


class _Stream:
    __slots__ = ("framework_id", "task_id", "pending", "seen", "interval", "slot", "terminated")

    def __init__(self, framework_id: str, task_id: str) -> None:
        self.framework_id = framework_id
        self.task_id = task_id
        self.pending: deque[StatusUpdate] = deque()
        self.seen: set[bytes] = set()
        self.interval = 0.0
        self.slot: int | None = None  # the retry grid slot it waits in (None: no retry armed)
        self.terminated = False  # a terminal update was acknowledged


class StatusUpdateManager:
    def __init__(
        self,
        send: Callable[[StatusUpdate], None],
        *,
        retry_min: float = 10.0,
        retry_max: float = 600.0,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: UpdateStore | None = None,
    ) -> None:
        self._send = send
        self.retry_min = retry_min
        self.retry_max = max(retry_max, retry_min)
        self._call_later = call_later
        self._clock = clock
        self._grain = max(min(RETRY_GRAIN, self.retry_min / 10), 1e-3)
        self._slots: dict[int, dict[_Stream, None]] = {}  # grid slot -> streams due then, in arm order
        self._slot_timers: dict[int, Any] = {}
        self.store = store or UpdateStore()
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.paused = False  # while disconnected: queue, do not send or retry

    # ------------------------------------------------------------------ public
    def update(self, update: StatusUpdate, *, checkpoint: bool = True) -> bool:
        """Queue an update; returns False for a duplicate or one after a terminal ack.
        ``checkpoint=False``: the update is already in the store (recovery)."""
        status = update.status
        uuid = status.uuid
        if uuid is None:
            raise ValueError("a reliable status update needs a uuid")
        key = (update.framework_id, status.task_id.value)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(*key)
        if uuid in stream.seen:
            logger.debug("duplicate status update dropped framework=%s task=%s", *key)
            return False
        if stream.terminated:
            logger.warning(
                "status update after a terminal one dropped framework=%s task=%s state=%s",
                key[0], key[1], status.state,
            )
            return False
        stream.seen.add(uuid)
        if checkpoint:
            self.store.append(update)
        stream.pending.append(update)
        if len(stream.pending) == 1:
            self._forward(stream, reset=True)
        return True

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes) -> bool:
        """Pop the head if ``uuid`` matches it; send the next one. False if it does not match."""
        stream = self._streams.get((framework_id, task_id))
        if stream is None or not stream.pending or stream.pending[0].status.uuid != uuid:
            logger.debug("unexpected ack framework=%s task=%s", framework_id, task_id)
            return False
        head = stream.pending.popleft()
        self._cancel(stream)
        self.store.acknowledge(framework_id, task_id, uuid)
        if head.status.state in TERMINAL_STATES:
            stream.terminated = True
        if stream.pending:
            self._forward(stream, reset=True)
        elif stream.terminated:
            del self._streams[(framework_id, task_id)]
            self.store.remove_stream(framework_id, task_id)
        return True

    def resend_all(self) -> None:
        """After (re)registration: send every head now, restarting its backoff."""
        self.paused = False
        for stream in list(self._streams.values()):
            if stream.pending:
                self._cancel(stream)
                self._forward(stream, reset=True)

    def pause(self) -> None:
        """The channel is down: stop retrying until :meth:`resend_all`."""
        self.paused = True
        self.close()

    def cleanup_framework(self, framework_id: str) -> None:
        """Forget every stream of a framework (it was shut down: no one will ack)."""
        for key in [k for k in self._streams if k[0] == framework_id]:
            self._cancel(self._streams.pop(key))
            self.store.remove_stream(*key)

    def pending(self, framework_id: str | None = None) -> list[StatusUpdate]:
        out = []
        for (fw, _), stream in self._streams.items():
            if framework_id is None or fw == framework_id:
                out.extend(stream.pending)
        return out

    def heads(self) -> list[StatusUpdate]:
        return [s.pending[0] for s in self._streams.values() if s.pending]

    def latest_state(self, framework_id: str, task_id: str) -> str | None:
        stream = self._streams.get((framework_id, task_id))
        if stream and stream.pending:
            return stream.pending[-1].status.state
        return None

    def close(self) -> None:
        """Cancel every retry."""
        for handle in self._slot_timers.values():
            handle.cancel()
        self._slot_timers.clear()
        self._slots.clear()
        for stream in self._streams.values():
            stream.slot = None

    def __len__(self) -> int:
        return len(self._streams)

    # ------------------------------------------------------------------ internals
    def _forward(self, stream: _Stream, *, reset: bool) -> None:
        if reset:
            stream.interval = self.retry_min
        if self.paused:
            return
        self._send(self._head(stream))
        self._arm(stream)

    def _arm(self, stream: _Stream) -> None:
        """Put ``stream`` in the grid slot its retry falls due in; a slot's first stream arms
        the slot's one timer."""
        now = self._clock()
        slot = math.ceil((now + stream.interval) / self._grain)
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = {}
            call_later = self._call_later or asyncio.get_running_loop().call_later
            self._slot_timers[slot] = call_later(slot * self._grain - now, lambda: self._due(slot))
        waiting[stream] = None
        stream.slot = slot

    def _due(self, slot: int) -> None:
        self._slot_timers.pop(slot, None)
        for stream in self._slots.pop(slot, {}):
            stream.slot = None
            self._retry(stream)

    def _retry(self, stream: _Stream) -> None:
        if self.paused or not stream.pending:
            return
        if self._streams.get((stream.framework_id, stream.task_id)) is not stream:
            return
        head = self._head(stream)
        logger.info(
            "resending status update framework=%s task=%s state=%s after %.1fs",
            stream.framework_id, stream.task_id, head.status.state, stream.interval,
        )
        stream.interval = min(stream.interval * 2, self.retry_max)
        self._send(head)
        self._arm(stream)

    @staticmethod
    def _head(stream: _Stream) -> StatusUpdate:
        """The head, carrying the stream's newest state when newer updates wait behind it."""
        head = stream.pending[0]
        head.latest_state = stream.pending[-1].status.state if len(stream.pending) > 1 else None
        return head

    def _cancel(self, stream: _Stream) -> None:
        """Take ``stream`` off the grid (an empty slot's timer is left to fire on nothing)."""
        if stream.slot is not None:
            waiting = self._slots.get(stream.slot)
            if waiting is not None:
                waiting.pop(stream, None)
            stream.slot = None


__all__ = ["StatusUpdateManager", "UpdateStore"]
