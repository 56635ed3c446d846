"""The scheduler calls a framework makes (ACCEPT, DECLINE, KILL, …) as typed methods, and how
they travel.

Kept apart from :mod:`driver` (the subscription, the event loop): each method here builds one
v1 ``Call`` and hands it to ``_call``: written at once on the driver's pipelined connection
(:class:`~.callpipe.CallPipe`, ``Mesos-Stream-Id`` on each), 307 followed, non-2xx raised as
:class:`MesosError`, network failures as ``ConnectionError``. Implicit acknowledgements are
written the same way without a task (``_implicit_ack``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from mesos_nb.protocol.messages import (
    ID,
    Accept,
    Acknowledge,
    Call,
    Decline,
    Filters,
    InverseOfferAnswer,
    Kill,
    Launch,
    Message,
    Operation,
    Reconcile,
    ReconcileTask,
    Roles,
    Shutdown,
    TaskInfo,
    TaskStatus,
    encode,
)

from .callpipe import Answer, CallPipe
from .stream import _first_line, _id, _ids, describe_net_error, redirect_target

log = logging.getLogger("mesos_nb.scheduler")

API_PATH = "/api/v1/scheduler"
MAX_REDIRECTS = 5


class MesosError(Exception):
    """The master answered a call with a non-2xx status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = (message or "").strip()
        super().__init__(f"{status}: {self.message}" if self.message else str(status))


class SchedulerCalls:
    """Every scheduler call; ids may be strings, ``ID`` structs, offers or inverse offers."""

    # the driver's state these read
    _stopping: bool  # set once stop()/teardown() began
    _framework_id: str | None
    _stream_id: str | None
    _master: str
    _session: aiohttp.ClientSession | None
    _pipe: CallPipe | None
    _auth: dict[str, str] | None
    _ssl: Any
    call_timeout: float

    def _headers(self, *, stream: bool = False) -> dict[str, str]:  # pragma: no cover - the driver's
        raise NotImplementedError

    def _spawn(self, coro: Any) -> None:  # pragma: no cover - the driver's
        raise NotImplementedError

    async def _shutdown_loop(self) -> None:  # pragma: no cover - the driver's
        raise NotImplementedError

    async def accept(
        self,
        offer_ids: Any,
        operations: Iterable[Operation],
        filters: Filters | None = None,
    ) -> None:
        await self._call(
            Call(
                type="ACCEPT",
                accept=Accept(offer_ids=_ids(offer_ids), operations=list(operations), filters=filters),
            )
        )

    async def launch(self, offer_ids: Any, tasks: Iterable[TaskInfo], filters: Filters | None = None) -> None:
        op = Operation(type="LAUNCH", launch=Launch(task_infos=list(tasks)))
        await self.accept(offer_ids, [op], filters)

    async def decline(self, offer_ids: Any, refuse_seconds: float | None = None) -> None:
        filters = Filters(refuse_seconds=refuse_seconds) if refuse_seconds is not None else None
        await self._call(Call(type="DECLINE", decline=Decline(offer_ids=_ids(offer_ids), filters=filters)))

    async def accept_inverse_offers(self, inverse_offer_ids: Any, filters: Filters | None = None) -> None:
        """Tell the master the framework agrees to give the agents back for their windows
        (advisory: shown by GET_MAINTENANCE_STATUS; the agent is not asked again for
        ``filters.refuse_seconds``, default 5 s)."""
        answer = InverseOfferAnswer(inverse_offer_ids=_ids(inverse_offer_ids), filters=filters)
        await self._call(Call(type="ACCEPT_INVERSE_OFFERS", accept_inverse_offers=answer))

    async def decline_inverse_offers(self, inverse_offer_ids: Any, filters: Filters | None = None) -> None:
        """The framework cannot give the agents back now (advisory, as for accepting)."""
        answer = InverseOfferAnswer(inverse_offer_ids=_ids(inverse_offer_ids), filters=filters)
        await self._call(Call(type="DECLINE_INVERSE_OFFERS", decline_inverse_offers=answer))

    async def revive(self, roles: Iterable[str] | None = None) -> None:
        await self._call(Call(type="REVIVE", revive=Roles(roles=list(roles or []))))

    async def suppress(self, roles: Iterable[str] | None = None) -> None:
        await self._call(Call(type="SUPPRESS", suppress=Roles(roles=list(roles or []))))

    async def kill(self, task_id: Any, agent_id: Any = None) -> None:
        kill = Kill(task_id=_id(task_id), agent_id=_id(agent_id) if agent_id is not None else None)
        await self._call(Call(type="KILL", kill=kill))

    async def shutdown(self, executor_id: Any, agent_id: Any) -> None:
        await self._call(
            Call(type="SHUTDOWN", shutdown=Shutdown(executor_id=_id(executor_id), agent_id=_id(agent_id)))
        )

    async def acknowledge(self, status: TaskStatus) -> None:
        if status.uuid is None or status.agent_id is None:
            raise ValueError("only updates carrying a uuid and an agent_id can be acknowledged")
        ack = Acknowledge(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid)
        await self._call(Call(type="ACKNOWLEDGE", acknowledge=ack))

    async def reconcile(self, tasks: Iterable[Any] | None = None) -> None:
        """Explicit reconciliation of ``tasks`` (ids, ``(task_id, agent_id)`` pairs or
        TaskStatus), or implicit (all tasks the master knows) when empty/None."""
        items: list[ReconcileTask] = []
        for t in tasks or []:
            if isinstance(t, TaskStatus):
                items.append(ReconcileTask(task_id=t.task_id, agent_id=t.agent_id))
            elif isinstance(t, tuple):
                tid, aid = t
                items.append(ReconcileTask(task_id=_id(tid), agent_id=_id(aid) if aid else None))
            else:
                items.append(ReconcileTask(task_id=_id(t)))
        await self._call(Call(type="RECONCILE", reconcile=Reconcile(tasks=items)))

    async def message(self, agent_id: Any, executor_id: Any, data: bytes) -> None:
        msg = Message(agent_id=_id(agent_id), executor_id=_id(executor_id), data=bytes(data))
        await self._call(Call(type="MESSAGE", message=msg))

    async def teardown(self) -> None:
        """TEARDOWN the framework (the master kills its tasks) and stop the driver."""
        self._stopping = True  # calls refused from now on are expected (see the driver's _callback)
        try:
            await self._call(Call(type="TEARDOWN"))
        finally:
            await self._shutdown_loop()

    # ------------------------------------------------------------------ calls
    def _send(self, call: Call) -> tuple[asyncio.Future, bytes]:
        """Write ``call`` now on the pipelined connection: the future of its answer, its body."""
        if not self._framework_id or not self._stream_id or self._session is None:
            raise MesosError(403, "Framework is not subscribed (the driver is not connected)")
        call.framework_id = ID(value=self._framework_id)
        pipe = self._pipe
        if pipe is None or pipe.base != self._master:
            if pipe is not None:
                pipe.close()  # calls in flight to a master that is no longer the one we use
            pipe = self._pipe = CallPipe(self._master, self._auth, self._ssl, self.call_timeout)
        body = encode(call)
        return pipe.send(API_PATH, body, {"Mesos-Stream-Id": self._stream_id}), body

    async def _call(self, call: Call) -> None:
        master = self._master
        fut, body = self._send(call)
        try:
            answer = await fut
        except OSError as e:  # ConnectionError, the pipe's own included; TimeoutError
            raise ConnectionError(describe_net_error(e, master)) from None
        await self._answered(answer, body, master)

    async def _answered(self, answer: Answer, body: bytes, master: str) -> None:
        """2xx: done; a 307 is followed (rare: a call to a master that stopped leading);
        otherwise :class:`MesosError` with the answer's first line."""
        if 200 <= answer.status < 300:
            return
        location = answer.headers.get("location")
        if answer.status == 307 and location:
            await self._call_redirected(redirect_target(master, location), body)
            return
        raise MesosError(answer.status, _first_line(answer.body.decode("utf-8", "replace")))

    async def _call_redirected(self, master: str, body: bytes) -> None:
        timeout = aiohttp.ClientTimeout(total=self.call_timeout)
        assert self._session is not None
        try:
            for _ in range(MAX_REDIRECTS):
                async with self._session.post(
                    master + API_PATH,
                    data=body,
                    headers=self._headers(),
                    allow_redirects=False,
                    timeout=timeout,
                ) as resp:
                    if resp.status == 307 and resp.headers.get("Location"):
                        master = redirect_target(master, resp.headers["Location"])
                        continue
                    if 200 <= resp.status < 300:
                        return
                    raise MesosError(resp.status, _first_line(await resp.text()))
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise ConnectionError(describe_net_error(e, master)) from None
        raise MesosError(307, "too many redirects")

    def _implicit_ack(self, status: TaskStatus) -> None:
        """ACKNOWLEDGE ``status`` without a task or an await: the call is written now and its
        answer only checked (a 307 or a failure is then handled off the event path)."""
        ack = Acknowledge(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid)
        master = self._master
        try:
            fut, body = self._send(Call(type="ACKNOWLEDGE", acknowledge=ack))
        except MesosError as e:
            self._ack_failed(status, e)
            return

        def answered(f: asyncio.Future) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                self._ack_failed(status, ConnectionError(describe_net_error(exc, master)))
            elif not 200 <= f.result().status < 300:
                self._spawn(self._ack_answered(status, f.result(), body, master))

        fut.add_done_callback(answered)

    async def _ack_answered(self, status: TaskStatus, answer: Answer, body: bytes, master: str) -> None:
        try:
            await self._answered(answer, body, master)
        except (MesosError, ConnectionError) as e:
            self._ack_failed(status, e)

    def _ack_failed(self, status: TaskStatus, e: Exception) -> None:
        if not self._stopping:
            log.warning("acknowledging %s %s failed: %s", status.task_id.value, status.state, e)


__all__ = ["API_PATH", "MesosError", "SchedulerCalls"]
