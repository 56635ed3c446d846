"""The warm executor's HTTP/1.1 to its agent: h11 over asyncio streams.

Not aiohttp: importing it was most of the executor's start (about 250 ms of CPU before the
executor could subscribe, which the notebook's first cell waits for) and half of the resident
set every cell's process is forked from. The executor needs two things: POSTs of calls on one
keep-alive connection (one at a time), and the SUBSCRIBE response read as it streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h11

CHUNK = 65536
CONNECT_TIMEOUT = 10.0


class AgentHttpError(Exception):
    """The connection to the agent failed or broke; ``str()`` says how."""


class AgentConnection:
    """One HTTP/1.1 connection to ``host:port`` for POSTs to ``path``, reopened when it breaks."""

    def __init__(self, host: str, port: int, path: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.headers = [("Host", f"{host}:{port}"), *(headers or [])]
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn: h11.Connection | None = None

    @property
    def _reusable(self) -> bool:
        """An idle kept-alive connection the agent has not closed (aiohttp closes idle ones after
        75 s: a notebook often waits longer than that between two cells)."""
        return (self._conn is not None and self._conn.our_state is h11.IDLE and self._conn.their_state is h11.IDLE
                and self._reader is not None and not self._reader.at_eof())

    async def _open(self) -> h11.Connection:
        if self._reusable:
            assert self._conn is not None
            return self._conn
        self.close()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            raise AgentHttpError(f"cannot connect to the agent at {self.host}:{self.port}: {e}") from None
        self._conn = h11.Connection(our_role=h11.CLIENT)
        return self._conn

    async def _send(self, conn: h11.Connection, *events: h11.Event) -> None:
        assert self._writer is not None
        for ev in events:
            data = conn.send(ev)
            if data:
                self._writer.write(data)
        await self._writer.drain()

    async def _event(self, conn: h11.Connection) -> h11.Event:
        assert self._reader is not None
        while True:
            ev = conn.next_event()
            if ev is not h11.NEED_DATA:
                return ev  # type: ignore[return-value]
            conn.receive_data(await self._reader.read(CHUNK))  # b"": the agent closed it

    async def _start(self, body: bytes, extra: list[tuple[str, str]]) -> tuple[h11.Connection, h11.Response]:
        conn = await self._open()
        headers = [*self.headers, *extra, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        await self._send(conn, h11.Request(method="POST", target=self.path, headers=headers), h11.Data(data=body),
                         h11.EndOfMessage())
        while True:
            ev = await self._event(conn)
            if isinstance(ev, h11.Response):
                return conn, ev
            if not isinstance(ev, h11.InformationalResponse):
                raise AgentHttpError(f"the agent answered with {type(ev).__name__} instead of a response")

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` (JSON); the status and the whole response body. A kept-alive connection
        that turns out closed is replaced at once, without the sender's back-off (should the
        call have reached the agent after all, a repeat is harmless: an update carries its uuid,
        an output message its offset)."""
        if self._reusable:
            try:
                return await self._post(body)
            except AgentHttpError:
                pass  # closed under us between two calls: once more on a new connection
        return await self._post(body)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        try:
            conn, resp = await self._start(body, [])
            out = [data async for data in self._body(conn)]
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()  # keep the connection for the next call
            else:
                self.close()
            return resp.status_code, b"".join(out)
        except (OSError, h11.ProtocolError) as e:
            self.close()
            raise AgentHttpError(f"the call to the agent failed: {type(e).__name__}: {e}") from None

    async def stream(self, body: bytes) -> tuple[int, AsyncIterator[bytes]]:
        """POST ``body`` and return the status and the response body as it arrives (SUBSCRIBE);
        the connection is this stream's alone."""
        try:
            conn, resp = await self._start(body, [("Accept", "application/json")])
        except (OSError, h11.ProtocolError) as e:
            self.close()
            raise AgentHttpError(f"the subscription to the agent failed: {type(e).__name__}: {e}") from None
        return resp.status_code, self._guarded(conn)

    async def _body(self, conn: h11.Connection) -> AsyncIterator[bytes]:
        while True:
            ev = await self._event(conn)
            if isinstance(ev, h11.Data):
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                return

    async def _guarded(self, conn: h11.Connection) -> AsyncIterator[bytes]:
        try:
            async for data in self._body(conn):
                yield data
        except (OSError, h11.ProtocolError) as e:
            raise AgentHttpError(f"the stream from the agent broke: {type(e).__name__}: {e}") from None
        finally:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._conn = None


__all__ = ["AgentConnection", "AgentHttpError"]
