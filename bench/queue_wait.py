"""CPU per item of a stream's wait for its queue's next item with a timeout: the old
``asyncio.wait_for(q.get(), 15)`` against ``protocol.queue_reader.QueueReader.get(15)``, both
when the item is already queued and when the consumer is waiting as it arrives.

    python bench/queue_wait.py [--items 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mesos_nb.protocol.queue_reader import QueueReader  # noqa: E402


async def per_item(n: int, reader: bool, waiting: bool) -> float:
    """CPU µs per item (this thread: producer and consumer together)."""
    q: asyncio.Queue[int] = asyncio.Queue()
    want = asyncio.Event()

    async def produce() -> None:
        for i in range(n):
            if waiting:
                await want.wait()
                want.clear()
                await asyncio.sleep(0)  # the consumer is blocked in its get by now
            q.put_nowait(i)
            await asyncio.sleep(0)

    producer = asyncio.get_running_loop().create_task(produce())
    r = QueueReader(q)
    t0 = time.thread_time()
    for _ in range(n):
        want.set()
        if reader:
            await r.get(15.0)
        else:
            await asyncio.wait_for(q.get(), 15.0)
    dt = time.thread_time() - t0
    await r.close()
    await producer
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    out: dict[str, list[float]] = {}
    for waiting in (False, True):
        for _ in range(a.rounds):  # A/B alternated
            for name, reader in (("wait_for", False), ("QueueReader", True)):
                key = f"{name} ({'consumer waits' if waiting else 'item queued'})"
                out.setdefault(key, []).append(round(asyncio.run(per_item(a.items, reader, waiting)), 2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
