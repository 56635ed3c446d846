"""Following the leading master of a ``zk://`` URL from asyncio (the driver's ``--zk`` side).

Why a module: the detector is a kazoo (thread) object; this wraps its blocking start/stop in
an executor and delivers leader changes on the event loop, so the driver only sees
``on_leader("host:port")`` calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class LeaderFollower:
    def __init__(self, zk_url: str, session_timeout: float, on_leader: Callable[[str | None], None]) -> None:
        self.zk_url = zk_url
        self.session_timeout = session_timeout
        self.on_leader = on_leader
        self._detector: Any = None

    @property
    def leader(self) -> str | None:
        return self._detector.leader if self._detector is not None else None

    async def start(self) -> None:
        """Connect to ZooKeeper (DetectorError if it cannot) and report the current leader."""
        from mesos_nb.protocol.zk_detector import MasterDetector

        loop = asyncio.get_running_loop()
        det = MasterDetector(self.zk_url, session_timeout=self.session_timeout, on_change=self.on_leader, loop=loop)
        await loop.run_in_executor(None, det.start)
        self._detector = det
        if det.leader is not None:
            self.on_leader(det.leader)

    async def stop(self) -> None:
        det, self._detector = self._detector, None
        if det is not None:
            await asyncio.get_running_loop().run_in_executor(None, det.stop)


__all__ = ["LeaderFollower"]
