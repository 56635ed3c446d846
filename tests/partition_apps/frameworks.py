"""Two SDK frameworks for the partition tests, run inside the master's network namespace.

usage: frameworks.py MASTER N PIDDIR RELEASE
A PARTITION_AWARE framework ("aware") and one that is not ("plain") each launch N tasks that
record their shell's pid in PIDDIR/<task id> and run until RELEASE exists. One JSON line per
update ({"fw", "task", "state", "reason"}); commands on stdin, one per line:
``reconcile`` (implicit, both frameworks), ``gone AGENT_ID`` (operator MARK_AGENT_GONE, answers
{"gone": status}), ``state`` (answers {"master_state": /master/state}).
"""

import asyncio
import json
import sys

import aiohttp

from mesos_nb.protocol.messages import Capability
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import command_task

MASTER, N, PIDDIR, RELEASE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def emit(**kw):
    print(json.dumps(kw), flush=True)


class Fw(Scheduler):
    def __init__(self, name):
        self.name = name
        self.launched = 0

    async def offers(self, driver, offers):
        for o in offers:
            k = N - self.launched
            if k <= 0:
                await driver.decline([o.id], refuse_seconds=3600)
                continue
            tasks = []
            for _ in range(k):
                tid = f"{self.name}-{self.launched}"
                self.launched += 1
                cmd = f"echo $$ >> {PIDDIR}/{tid}; while [ ! -e {RELEASE} ]; do sleep 1; done"
                tasks.append(command_task(o, cmd, cpus=0.1, mem=16, task_id=tid))
            await driver.launch([o.id], tasks)

    def update(self, driver, status):
        emit(fw=self.name, task=status.task_id.value, state=status.state, reason=status.reason)


async def main():
    drivers = []
    for name, caps in (("aware", [Capability(type="PARTITION_AWARE")]), ("plain", [])):
        info = FrameworkInfo(user="u", name=name, failover_timeout=3600, checkpoint=True, capabilities=caps)
        d = SchedulerDriver(Fw(name), info, MASTER, start_timeout=60)
        await d.start()
        drivers.append(d)
    emit(ready=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as s:
        while line := (await reader.readline()).decode().strip():
            cmd, _, arg = line.partition(" ")
            if cmd == "reconcile":
                for d in drivers:
                    await d.reconcile()
            elif cmd == "gone":
                body = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": arg}}}
                async with s.post(f"http://{MASTER}/api/v1", json=body) as r:
                    emit(gone=r.status)
            elif cmd == "state":
                async with s.get(f"http://{MASTER}/master/state") as r:
                    emit(master_state=await r.json())
    for d in drivers:
        await d.stop(failover=True)


asyncio.run(main())
