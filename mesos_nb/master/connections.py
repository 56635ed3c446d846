"""The shell's per-connection records (a framework's subscription stream, an agent channel)
and the small request helpers they need (Accept header, Basic principal).

Kept out of :mod:`.server` so that the server module stays about routing and timers. Both
coalesce: whatever is queued during one event-loop turn goes out in one write.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import struct
import time
from collections import deque
from typing import Any

from aiohttp import web

from ..protocol import recordio

log = logging.getLogger("mesos_nb.master")

STREAM_LIMIT = 16 * 1024 * 1024  # unread bytes a scheduler stream may hold before it is dropped


class Stream:
    """One framework's subscription: a RecordIO event stream on a chunked response."""

    __slots__ = ("framework_id", "stream_id", "resp", "queue", "wake", "closed", "error", "queued", "transport")

    def __init__(self, framework_id: str, stream_id: str, resp: web.StreamResponse) -> None:
        self.framework_id = framework_id
        self.stream_id = stream_id
        self.resp = resp
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.error: str | None = None
        self.queued = 0  # bytes queued since the writer last wrote
        self.transport: Any = None  # the connection, recorded by the server's _subscribe

    def push(self, record: bytes) -> None:
        # Bounded: a scheduler that stops reading is disconnected, not buffered without end.
        data = recordio.encode(record)
        self.queued += len(data)
        if self.queued > STREAM_LIMIT and not self.closed:
            log.warning("scheduler stream disconnected framework=%s: %d bytes unread", self.framework_id, self.queued)
            self.closed, self.error = True, "the scheduler does not read its event stream"
            self.queue.clear()
            if self.transport is not None:
                self.transport.abort()
        if not self.closed:
            self.queue.append(data)
        self.wake.set()


class Channel:
    """One agent process's WebSocket; carries many agents."""

    __slots__ = ("ws", "pending", "wake", "last_heard", "peer", "closed")

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws = ws
        self.pending: list[Any] = []
        self.wake = asyncio.Event()
        self.last_heard = time.monotonic()
        self.peer = peer
        self.closed = False

    def send(self, msg: Any) -> None:
        self.pending.append(msg)
        self.wake.set()


def ip_as_uint32(ip: str) -> int:
    try:
        return struct.unpack("<I", socket.inet_aton(ip))[0]
    except OSError:
        return 0


def accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "*/*", "application/*"):
            return True
    return False


def basic_principal(auth: str | None) -> str | None:
    if not auth or not auth.startswith("Basic "):
        return None
    try:
        user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
    except Exception:
        return None
    return user if user and user != "None" else None


__all__ = ["Channel", "Stream", "accepts_json", "basic_principal", "ip_as_uint32"]
