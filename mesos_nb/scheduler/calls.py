"""The scheduler calls a framework makes (ACCEPT, DECLINE, KILL, …) as typed methods.

Kept apart from :mod:`driver` (the subscription, the event loop, the connection): each method
here only builds one v1 ``Call`` and hands it to ``_call``, which the driver provides (POST
with ``Mesos-Stream-Id``, 307 following, ``MesosError`` / ``ConnectionError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesos_nb.protocol.messages import (
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
)

from .stream import _id, _ids


class SchedulerCalls:
    """Every scheduler call; ids may be strings, ``ID`` structs, offers or inverse offers."""

    _stopping: bool  # the driver's: set once stop()/teardown() began

    async def _call(self, call: Call) -> None:  # pragma: no cover - the driver's
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


__all__ = ["SchedulerCalls"]
