"""The scheduler calls a framework makes (ACCEPT, DECLINE, KILL, …) as typed methods, and how
they travel.

Kept apart from :mod:`driver` (the subscription, the event loop): each method here builds one
v1 ``Call`` and hands it to ``_call``: POSTed at once through the driver's
:class:`~.sender.CallSender` (aiohttp, a few kept-alive connections, ``Mesos-Stream-Id`` on
each), 307 followed, non-2xx raised as :class:`MesosError`, network failures as
``ConnectionError``. Implicit acknowledgements go the same way, queued on the sender's ack
workers rather than a task each (``_implicit_ack``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

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

from .sender import API_PATH, CallSender
from .stream import _first_line, _id, _ids, redirect_target

log = logging.getLogger("mesos_nb.scheduler")

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
    _sender: CallSender | None
    call_timeout: float

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
    def _encode(self, call: Call) -> bytes:
        """``call`` as the POST body, with the framework id; refused when not subscribed."""
        if not self._framework_id or not self._stream_id or self._sender is None:
            raise MesosError(403, "Framework is not subscribed (the driver is not connected)")
        call.framework_id = ID(value=self._framework_id)
        return encode(call)

    async def _call(self, call: Call) -> None:
        await self._post(self._encode(call))

    async def _post(self, body: bytes) -> None:
        """POST ``body``: 2xx done; a 307 followed to the leader it names (rare: a call to a
        master that stopped leading); otherwise :class:`MesosError` with the answer's first
        line; network failures and timeouts as ``ConnectionError``."""
        master, stream_id, sender = self._master, self._stream_id or "", self._sender
        assert sender is not None
        for _ in range(MAX_REDIRECTS + 1):
            answer = await sender.post(master, body, stream_id)
            if 200 <= answer.status < 300:
                return
            if answer.status == 307 and answer.location:
                master = redirect_target(master, answer.location)
                continue
            raise MesosError(answer.status, _first_line(answer.body.decode("utf-8", "replace")))
        raise MesosError(307, "too many redirects")

    def _implicit_ack(self, status: TaskStatus) -> None:
        """ACKNOWLEDGE ``status`` without a task: queued on the sender's ack workers, so the
        next event need not wait for this round trip (the agent sends a task's next update
        only after this one is acknowledged, so per-task order holds)."""
        ack = Acknowledge(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid)
        try:
            body = self._encode(Call(type="ACKNOWLEDGE", acknowledge=ack))
        except MesosError as e:
            self._ack_failed(status, e)
            return
        assert self._sender is not None
        self._sender.submit(self._ack(status, body))

    async def _ack(self, status: TaskStatus, body: bytes) -> None:
        try:
            await self._post(body)
        except (MesosError, ConnectionError) as e:
            self._ack_failed(status, e)

    def _ack_failed(self, status: TaskStatus, e: Exception) -> None:
        if not self._stopping:
            log.warning("acknowledging %s %s failed: %s", status.task_id.value, status.state, e)


__all__ = ["API_PATH", "MesosError", "SchedulerCalls"]
