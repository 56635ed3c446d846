"""The shell's effect executor: carries out the core's effects in order, surviving registry
failures.

Registry writes (:class:`~mesos_nb.master.effects.RegistryEffect`) that follow each other are
applied as one batch; messages are handed to ``deliver``. When a write fails (disk full,
ZooKeeper away) nothing after it goes out, because a framework must not be told SUBSCRIBED
before it is on disk: the rest waits in order and the write is retried after a
:class:`~mesos_nb.protocol.backoff.Backoff` delay the caller schedules. The core and its timers
keep running meanwhile (a framework whose failover timeout passes is still removed, and its
removal is written once the registry is back); ``error`` feeds ``/health``.

Synchronous and clock-free: the caller owns timers, so tests drive retries directly. A
registry whose writes block on the network (ZooKeeper) is given a ``submit`` function: the
batch is then written on a worker thread, nothing after it goes out until
:meth:`Outbox.write_done` reports the result on the caller's thread, and a failure classed as
``fatal`` (the registry was fenced or lost) goes to ``on_fatal`` instead of being retried.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..protocol.backoff import Backoff
from .effects import RegistryEffect
from .registry import Registry

log = logging.getLogger("mesos_nb.master")


Submit = Callable[[Callable[[], None], Callable[[BaseException | None], None]], None]


class Outbox:
    def __init__(self, registry: Registry, deliver: Callable[[Any], None], backoff: Backoff | None = None,
                 *, submit: Submit | None = None, fatal: tuple[type[BaseException], ...] = (),
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.registry = registry
        self.deliver = deliver
        self.submit = submit
        self.fatal = fatal
        self.on_fatal = on_fatal
        self.inflight: list[RegistryEffect] | None = None  # a batch being written by ``submit``
        self.backoff = backoff or Backoff(base=0.1, maximum=5.0)
        self.pending: deque[Any] = deque()
        self.error: str | None = None  # why the last registry write failed; None while writes succeed
        self.failed_writes = 0

    @property
    def healthy(self) -> bool:
        return self.error is None

    def run(self, effects: Iterable[Any]) -> float | None:
        """Queue ``effects`` behind anything held back and carry out what can go now.

        Returns the delay before :meth:`retry` should be called when a write has just failed;
        ``None`` when everything went out or a retry is already due (the registry is failing).
        """
        self.pending.extend(effects)
        if self.error is not None or self.inflight is not None:
            return None
        return self._drain()

    def retry(self) -> float | None:
        """Try the held-back write again; the next delay if it fails again, else ``None``."""
        if self.inflight is not None:
            return None
        return self._drain()

    def write_done(self, exc: BaseException | None) -> float | None:
        """The submitted batch was written (``exc`` None) or failed: go on, or hold and say when
        to retry. Called on the thread that owns the outbox."""
        batch, self.inflight = self.inflight, None
        if batch is None:
            return None
        if exc is None:
            for _ in batch:
                self.pending.popleft()
            self._written()
            return self._drain()
        if isinstance(exc, self.fatal) and self.on_fatal is not None:
            self.error = f"{type(exc).__name__}: {exc}"
            self.on_fatal(exc)
            return None
        return self._failed(exc)

    def _failed(self, e: BaseException) -> float:
        self.failed_writes += 1
        first = self.error is None
        self.error = f"{type(e).__name__}: {e}"
        delay = self.backoff.next()
        if first:
            log.error("registry write failed, holding %d effects: %s (retry in %.2fs)",
                      len(self.pending), self.error, delay)
        else:
            log.warning("registry write failed again: %s (retry in %.2fs)", self.error, delay)
        return delay

    def _written(self) -> None:
        if self.error is not None:
            log.info("registry writable again after %d failed writes", self.failed_writes)
            self.error = None
            self.backoff.reset()

    def _drain(self) -> float | None:
        pending = self.pending
        while pending:
            eff = pending[0]
            if not isinstance(eff, RegistryEffect):
                pending.popleft()
                try:
                    self.deliver(eff)
                except Exception:  # pragma: no cover - a delivery bug must not wedge the outbox
                    log.exception("effect delivery failed effect=%s", type(eff).__name__)
                continue
            batch: list[RegistryEffect] = []
            for e in pending:
                if not isinstance(e, RegistryEffect):
                    break
                batch.append(e)
            if self.submit is not None:
                self.inflight = batch
                self.submit(functools.partial(self.registry.apply, batch), self.write_done)
                return None
            try:
                self.registry.apply(batch)
            except Exception as e:
                if isinstance(e, self.fatal) and self.on_fatal is not None:
                    self.error = f"{type(e).__name__}: {e}"
                    self.on_fatal(e)
                    return None
                return self._failed(e)
            for _ in batch:
                pending.popleft()
            self._written()
        return None
