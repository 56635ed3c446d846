"""Scheduler calls over one kept-alive, pipelined HTTP/1.1 connection to the master.

Why not ``aiohttp.ClientSession.post`` per call: a framework makes three ACKNOWLEDGE calls
per task (plus its share of ACCEPT), and through the session each cost about twice the
client CPU of a prebuilt write and a small parse (request and response objects, header
multidicts, payload, timer, connection pool: 0.15–0.26 vs 0.07–0.13 ms a call measured
against an aiohttp server in another process, one at a time and in bursts of 10), and every
burst of concurrent calls opened new TCP connections (the pool does not pipeline).
Here a call is one byte string written at once to a kept-alive connection: an idle one if
there is one, else a new one up to ``MAX_CONNECTIONS``, else pipelined behind the calls
already on the least busy one (HTTP/1.1 pipelining, RFC 9112 §9.3: answers come back in the
order the requests were sent, each resolving the oldest pending future of its connection).
Up to that bound a slow call (a held TEARDOWN) does not hold the next ones back. The wire is
unchanged: one v1 ``Call`` per POST, the headers every Mesos master expects; as with any
pool, calls in flight at once may be handled in any order.

Data flow: ``send()`` (synchronous: callers that do not need the answer, the implicit
acknowledgements, spend no task on it) → bytes written now, or when the connection is up →
``_Conn`` parses answers (``Content-Length``, ``chunked`` or read-to-close bodies) → the
oldest pending future gets an :class:`Answer`. A connection lost, an answer not arriving
within ``timeout`` seconds, or ``close()`` fails that connection's pending futures
(``ConnectionError`` / ``asyncio.TimeoutError``).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
import time
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

MAX_HEAD = 64 * 1024  # bytes of status line + headers an answer may have
IDLE_REOPEN = 30.0  # a connection idle this long is replaced before the next call (a silent close)
MAX_CONNECTIONS = 4  # calls in flight at once beyond this are pipelined


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class BadAnswer(ConnectionError):
    """The peer's bytes are not an HTTP/1.1 answer (the connection is dropped)."""


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, _, rest = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    if rest:
        for line in rest.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:
                raise BadAnswer(f"bad header line: {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), headers


class _Conn(asyncio.Protocol):
    """One connection: its requests in flight, in order, and the parse of their answers."""

    def __init__(self, pipe: CallPipe) -> None:
        self.pipe = pipe
        self.pending: deque[tuple[asyncio.Future, float]] = deque()
        self.out: list[bytes] = []  # written once connected
        self.transport: asyncio.Transport | None = None
        self.last = time.monotonic()  # when it last sent or was answered
        self.buf = bytearray()
        self.head: tuple[int, dict[str, str]] | None = None
        self.need = -1  # body bytes still to come; -1: read to close, -2: chunked
        self.chunks = bytearray()
        self.dead = False

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
        else:
            self.out.append(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.dead:  # failed (timed out, closed) while it was being opened
            self.transport.abort()
            return
        out, self.out = self.out, []
        if out:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            while self._step():
                pass
        except BadAnswer as e:
            self.fail(e)

    def eof_received(self) -> bool:
        if self.head is not None and self.need == -1:  # a read-to-close body is complete
            self._deliver(bytes(self.buf))
            self.buf.clear()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionResetError("the master closed the connection"))

    def fail(self, exc: BaseException) -> None:
        """End this connection; each call still pending on it fails with ``exc``."""
        self.dead = True
        self.pipe._forget(self)
        if self.transport is not None:
            self.transport.abort()
        pending, self.pending = self.pending, deque()
        self.out = []
        for fut, _ in pending:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: an implicit call's caller may not look

    def _step(self) -> bool:
        """One piece parsed from ``buf``; False when more bytes are needed."""
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise BadAnswer("answer head too long")
                return False
            status, headers = _parse_head(bytes(buf[:end]))
            del buf[: end + 4]
            if 100 <= status < 200:
                return True  # an interim answer (100 Continue): the real one follows
            self.head = (status, headers)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.need = -2
            elif "content-length" in headers:
                try:
                    self.need = int(headers["content-length"])
                except ValueError:
                    raise BadAnswer(f"bad Content-Length {headers['content-length']!r}") from None
            else:
                self.need = 0 if status in (204, 304) else -1
            return True
        if self.need >= 0:
            if len(buf) < self.need:
                return False
            body = bytes(buf[: self.need])
            del buf[: self.need]
            self._deliver(body)
            return True
        return self._chunk() if self.need == -2 else False  # read to close: eof_received delivers

    def _chunk(self) -> bool:
        buf = self.buf
        eol = buf.find(b"\r\n")
        if eol < 0:
            return False
        try:
            size = int(bytes(buf[:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadAnswer("bad chunk size") from None
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # after the trailers, usually none
            if end < 0:
                return False
            del buf[: end + 4]
            body, self.chunks = bytes(self.chunks), bytearray()
            self._deliver(body)
            return True
        if len(buf) < eol + 2 + size + 2:
            return False
        self.chunks += buf[eol + 2: eol + 2 + size]
        del buf[: eol + 2 + size + 2]
        return True

    def _deliver(self, body: bytes) -> None:
        assert self.head is not None
        status, headers = self.head
        self.head, self.need = None, -1
        self.last = time.monotonic()
        if self.pending:
            fut, _ = self.pending.popleft()
            if not fut.done():  # a caller that gave up (cancelled) is skipped, in order
                fut.set_result(Answer(status, headers, body))
        if headers.get("connection", "").lower() == "close":
            # what was sent after it was not handled: it fails (ConnectionError)
            self.fail(ConnectionResetError("the master closed the connection"))


class CallPipe:
    """Kept-alive connections to ``base`` (``http(s)://host:port``) carrying POSTs."""

    def __init__(self, base: str, headers: Mapping[str, str] | None = None,
                 ssl: ssl_mod.SSLContext | None = None, timeout: float = 30.0) -> None:
        scheme, rest = base.split("://", 1)
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self.base = base
        self.host = host.strip("[]")
        self.port = int(port)
        self.ssl = ssl if scheme == "https" else None
        self.timeout = timeout
        fixed = {"Host": hostport, "Content-Type": "application/json", "Accept": "application/json",
                 **(headers or {})}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._conns: list[_Conn] = []
        self._connecting: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.connections = 0  # how many connections this pipe opened (tests, benches)

    def send(self, path: str, body: bytes, extra: Mapping[str, str] | None = None) -> asyncio.Future:
        """POST ``body`` to ``path``; the future resolves to its :class:`Answer`."""
        loop = asyncio.get_running_loop()
        head = f"POST {path} HTTP/1.1\r\n{self._fixed}"
        if extra:
            head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        data = f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        now = time.monotonic()
        conn = self._pick(now)
        fut = loop.create_future()
        conn.pending.append((fut, now))
        conn.last = now
        conn.write(data)
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self.timeout, self._check_deadline)
        return fut

    def _pick(self, now: float) -> _Conn:
        """An idle connection, else a new one (up to the bound), else the least busy."""
        for conn in self._conns:
            if not conn.pending:
                if now - conn.last <= IDLE_REOPEN:
                    return conn
                conn.fail(ConnectionResetError("idle"))  # a middlebox may have dropped it silently
                break
        if len(self._conns) < MAX_CONNECTIONS:
            conn = _Conn(self)
            self._conns.append(conn)
            task = asyncio.get_running_loop().create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            return conn
        return min(self._conns, key=lambda c: len(c.pending))

    async def _connect(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, self.host, self.port, ssl=self.ssl,
                                       server_hostname=self.host if self.ssl else None),
                self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            conn.fail(e)
            return
        self.connections += 1

    def _forget(self, conn: _Conn) -> None:
        if conn in self._conns:
            self._conns.remove(conn)

    def _check_deadline(self) -> None:
        """Fail a connection whose oldest call waited past ``timeout`` (a pipelined answer
        cannot be skipped: the connection is stuck)."""
        self._timer = None
        now = time.monotonic()
        nxt = None
        for conn in list(self._conns):
            if not conn.pending:
                continue
            due = conn.pending[0][1] + self.timeout
            if due <= now:
                conn.fail(asyncio.TimeoutError())
            else:
                nxt = due if nxt is None else min(nxt, due)
        if nxt is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + nxt - now, self._check_deadline)

    def close(self) -> None:
        """Drop every connection; pending calls fail with ``ConnectionError``."""
        for task in list(self._connecting):
            task.cancel()
        for conn in list(self._conns):
            conn.fail(ConnectionResetError("the driver closed its connection to the master"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


__all__ = ["Answer", "BadAnswer", "CallPipe"]
