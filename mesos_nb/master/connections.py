"""The shell's per-connection records (a framework's subscription stream, an agent channel)
and the small request helpers they need (Basic principal, agent address).

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
from typing import Any

from aiohttp import web

from ..protocol import recordio
from ..protocol.bounded_stream import BoundedStream

log = logging.getLogger("mesos_nb.master")

MAX_BODY = 16 * 1024 * 1024  # the largest HTTP body and agent-channel frame the master reads
STREAM_LIMIT = 16 * 1024 * 1024  # unread bytes a scheduler stream may hold before it is dropped


class Stream(BoundedStream):
    """One framework's subscription: a RecordIO event stream on a chunked response.

    Bounded: a scheduler that stops reading is disconnected, not buffered without end."""

    __slots__ = ("framework_id", "stream_id")

    def __init__(self, framework_id: str, stream_id: str) -> None:
        super().__init__(STREAM_LIMIT)
        self.framework_id = framework_id
        self.stream_id = stream_id

    def push(self, record: bytes) -> bool:
        if super().push(recordio.encode(record)):
            return True
        if self.overflowed:
            log.warning("scheduler stream disconnected framework=%s: more than %d bytes unread",
                        self.framework_id, self.limit)
        return False


class Channel:
    """One agent process's WebSocket; carries many agents."""

    __slots__ = ("ws", "pending", "wake", "last_heard", "peer", "closed", "principal")

    def __init__(self, ws: web.WebSocketResponse, peer: str, principal: str | None = None) -> None:
        self.ws = ws
        self.principal = principal  # who authenticated this channel (None: the in-process secret / no auth)
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


def basic_principal(auth: str | None) -> str | None:
    if not auth or not auth.startswith("Basic "):
        return None
    try:
        user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
    except Exception:
        return None
    return user if user and user != "None" else None


def text_response(status: int, message: str) -> web.Response:
    """A plain-text answer (the v1 APIs' errors: Mesos sends the reason as the body)."""
    return web.Response(status=status, text=message)


__all__ = ["Channel", "Stream", "basic_principal", "ip_as_uint32", "text_response"]
