"""Socket-free pieces of the driver: event-stream decoding, heartbeat watchdog, backoff.

Kept apart from :mod:`driver` so that they are unit-tested deterministically (an injected
clock and random source, byte chunks split anywhere) without a master or a socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mesos_nb.protocol import recordio
from mesos_nb.protocol.backoff import Backoff
from mesos_nb.protocol.messages import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MASTER_PORT,
    ID,
    Event,
    InverseOffer,
    Offer,
    decode,
)


class EventStream:
    """Turns the SUBSCRIBE response body, fed in arbitrary chunks, into typed events.

    Raises :class:`recordio.RecordIOError` on bad framing and
    :class:`~mesos_nb.protocol.messages.ProtocolError` on a record that is not an Event.
    """

    def __init__(self) -> None:
        self._decoder = recordio.Decoder()

    def feed(self, chunk: bytes) -> list[Event]:
        return [decode(rec, Event) for rec in self._decoder.feed(chunk)]


@dataclass(eq=False)
class Watchdog:
    """Declares the subscription dead after ``misses`` heartbeat intervals without an event.

    The master sends HEARTBEAT every ``heartbeat_interval_seconds`` (15 s); Mesos advises
    treating about 5 missed heartbeats as a partition. The watch starts when it is made.
    """

    misses: int = 5
    interval: float = DEFAULT_HEARTBEAT_INTERVAL
    clock: Callable[[], float] = time.monotonic
    _last: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.misses < 1:
            raise ValueError("heartbeat_misses must be at least 1")
        self._last = self.clock()

    @property
    def window(self) -> float:
        return self.interval * self.misses

    def set_interval(self, interval: float | None) -> None:
        if interval and interval > 0:
            self.interval = float(interval)

    def beat(self) -> None:
        """An event arrived (any event counts, not only HEARTBEAT)."""
        self._last = self.clock()

    def remaining(self) -> float:
        return self._last + self.window - self.clock()

    def expired(self) -> bool:
        return self.remaining() <= 0


class StreamWatch:
    """Ends a silent event stream: a timer that sets ``lost(...)`` on ``content`` (anything with
    ``set_exception``, the aiohttp stream reader) once ``watchdog`` expires, re-armed for what
    is left while events come. One timer per heartbeat window instead of a timeout per read."""

    def __init__(self, watchdog: Watchdog, content: Any, misses: int, lost: type[Exception]) -> None:
        self.watchdog, self.content, self.misses, self.lost = watchdog, content, misses, lost
        self._loop = asyncio.get_running_loop()
        self._handle = self._arm()

    def _arm(self) -> asyncio.TimerHandle:
        return self._loop.call_later(max(0.0, self.watchdog.remaining()), self._check)

    def _check(self) -> None:
        remaining = self.watchdog.remaining()
        if remaining <= 0:
            self.content.set_exception(self.lost(
                f"no event from the master for {self.watchdog.window:g} s ({self.misses} missed heartbeats)"))
            return
        self._handle = self._arm()

    def rearm(self) -> None:
        """Check again at the watchdog's deadline now (its interval changed)."""
        self._handle.cancel()
        self._handle = self._arm()

    def cancel(self) -> None:
        self._handle.cancel()


def normalize_master(master: str) -> str:
    """``host:port`` / ``http://host:port[/]`` / ``//host:port`` -> ``http://host:port``.

    A ``zk://[user:pass@]h1:p1,h2:p2/path`` URL is checked and returned as given: the driver
    follows the leader it names (:class:`~mesos_nb.protocol.zk_detector.MasterDetector`)."""
    m = master.strip()
    if not m:
        raise ValueError("the master address is empty")
    if m.startswith("zk://"):
        from mesos_nb.protocol.zk_url import parse_zk_url

        parse_zk_url(m)  # ValueError naming what is wrong
        return m
    if m.startswith("//"):
        m = "http:" + m
    elif "://" not in m:
        m = "http://" + m
    scheme, rest = m.split("://", 1)
    hostport = rest.split("/", 1)[0]
    if not hostport:
        raise ValueError(f"no host in master address {master!r}")
    if ":" not in hostport.rsplit("]", 1)[-1]:
        hostport += f":{DEFAULT_MASTER_PORT}"
    return f"{scheme}://{hostport}"


def redirect_target(current: str, location: str) -> str:
    """The leader's base URL from a 307 ``Location`` (Mesos sends ``//host:port/path``)."""
    loc = location.strip()
    scheme = current.split("://", 1)[0] if "://" in current else "http"
    if loc.startswith("//"):
        loc = f"{scheme}:{loc}"
    elif "://" not in loc:
        loc = f"{scheme}://{loc}"
    return normalize_master(loc)


def describe_net_error(e: BaseException, master: str) -> str:
    """One sentence for a failed connection to the master."""
    import asyncio

    import aiohttp

    from mesos_nb.protocol.tls import describe_tls_mismatch

    tls = describe_tls_mismatch(master, e)
    if tls is not None:
        return tls
    if isinstance(e, asyncio.TimeoutError):
        return f"the master at {master} did not answer in time"
    if isinstance(e, aiohttp.ClientConnectorError):
        why = e.os_error.strerror if e.os_error is not None and e.os_error.strerror else str(e.os_error)
        return f"cannot connect to the master at {master} ({why})"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return f"the master at {master} closed the connection"
    return f"connection to the master at {master} failed ({e.__class__.__name__}: {e})"


def _id(x: Any) -> ID:
    if isinstance(x, ID):
        return x
    if isinstance(x, str):
        return ID(value=x)
    if isinstance(x, Offer | InverseOffer):
        return x.id
    if isinstance(x, dict) and "value" in x:
        return ID(value=str(x["value"]))
    raise TypeError(f"expected an id string or ID, got {type(x).__name__}")


def _ids(xs: Any) -> list[ID]:
    if isinstance(xs, (str, ID, Offer, InverseOffer, dict)):
        xs = [xs]
    return [_id(x) for x in xs]


def _first_line(text: str, limit: int = 300) -> str:
    text = (text or "").strip()
    line = text.splitlines()[0] if text else ""
    return line[:limit]


__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "Backoff",
    "EventStream",
    "StreamWatch",
    "Watchdog",
    "describe_net_error",
    "normalize_master",
    "redirect_target",
]
