"""Command tasks through a real local cluster vs. raw asyncio subprocess spawns.

    python bench/launch_throughput.py [-n 1000] [--concurrency 64] [--isolation auto|posix|cgroups]

Both halves run in this one invocation on the same machine: first N ``/bin/true`` processes
spawned with ``asyncio.create_subprocess_exec`` (at most ``--concurrency`` alive at once, the
physical limit), then N ``/bin/true`` command tasks through ``mesos-nb local --agents 2``
(a separate process: master + 2 agents) launched by a framework using the SDK in this
process, each task reaching TASK_FINISHED with its update acknowledged. Prints both rates and
the ratio (target: >= 0.5, DESIGN.md §5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver


async def raw_spawn(n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            p = await asyncio.create_subprocess_exec("/bin/true")
            await p.wait()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(code: str, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    if "ready" not in proc.stdout.readline().decode():
        raise SystemExit("a cluster process did not start")
    return proc


_SERVE = (
    "import asyncio,signal\n"
    "async def main():\n"
    "{body}"
    "    stop = asyncio.Event()\n"
    "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)\n"
    "    print('ready', flush=True)\n"
    "    await stop.wait()\n"
    "    await x.stop()\n"
    "asyncio.run(main())\n"
)


def start_cluster(work_dir: str, concurrency: int, split: bool,
                  isolation: str = "auto", task_cpus: float = 0.1) -> tuple[list[subprocess.Popen], str]:
    """``mesos-nb local --agents 2``; with ``split`` the two agents live in a second process
    (one agent process, as on a real machine), otherwise master and agents share one."""
    port = _free_port()
    per_agent = max(1, concurrency // 2)
    res = f"cpus:{per_agent * task_cpus:.2f};mem:{per_agent * 4}"
    env = dict(os.environ, MESOS_NB_LOG_LEVEL="warning")
    if not split:
        body = (
            "    from mesos_nb.local import LocalCluster\n"
            f"    x = LocalCluster(agents=2, port={port}, work_dir={work_dir!r}, agent_resources={res!r},"
            f" agent_options={{'isolation': {isolation!r}}})\n"
            "    await x.start()\n"
        )
        procs = [_spawn(_SERVE.format(body=body), env)]
    else:
        master = (
            "    from mesos_nb.master.server import MasterConfig, MasterServer\n"
            f"    x = MasterServer(MasterConfig(port={port}))\n"
            "    await x.start()\n"
        )
        agents = (
            "    from mesos_nb.agent.config import AgentConfig\n"
            "    from mesos_nb.agent.process import AgentProcess\n"
            f"    cfgs = [AgentConfig(master='127.0.0.1:{port}', port=0, resources={res!r} + f';ports:[{{31000 + i * 500}}-{{31499 + i * 500}}]',"
            f" work_dir={work_dir!r} + f'/agent{{i}}', isolation={isolation!r}) for i in range(2)]\n"
            f"    x = AgentProcess(cfgs, master='127.0.0.1:{port}')\n"
            "    await x.start()\n"
        )
        procs = [_spawn(_SERVE.format(body=master), env), _spawn(_SERVE.format(body=agents), env)]
    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
    return procs, f"127.0.0.1:{port}"


class Launcher(Scheduler):
    def __init__(self, n: int, task_cpus: float) -> None:
        self.n = n
        self.launched = 0
        self.finished = 0
        self.failed = 0
        self.done = asyncio.Event()
        self.first_launch: float | None = None
        self.task_res = Resources.parse(f"cpus:{task_cpus};mem:4")

    async def offers(self, driver, offers):
        for offer in offers:
            have = Resources.from_proto(offer.resources)
            tasks = []
            while self.launched < self.n and have.contains(self.task_res):
                tasks.append(_task(offer, self.launched, self.task_res))
                have = have - self.task_res
                self.launched += 1
            if self.first_launch is None and tasks:
                self.first_launch = time.perf_counter()
            if tasks:
                await driver.launch([offer.id], tasks, filters=None)
            else:
                await driver.decline([offer.id], refuse_seconds=0)

    async def update(self, driver, status):
        if status.state == "TASK_FINISHED":
            self.finished += 1
        elif status.state in ("TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED", "TASK_KILLED"):
            self.failed += 1
            print("task failed:", status.task_id.value, status.state, status.message, file=sys.stderr)
        if self.finished + self.failed >= self.n:
            self.done.set()


def _task(offer, i: int, res: Resources):
    from mesos_nb.protocol import messages as m

    return m.TaskInfo(
        name=f"b{i}",
        task_id=m.ID(value=f"b{i}"),
        agent_id=offer.agent_id,
        resources=res.to_proto(),
        command=m.CommandInfo(value="/bin/true", shell=False),
    )


async def through_cluster(n: int, concurrency: int, split: bool, base: str,
                          isolation: str = "auto", task_cpus: float = 0.1) -> tuple[float, int]:
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mesos-nb-bench-", dir=base) as wd:
        procs, master = start_cluster(wd, concurrency, split, isolation, task_cpus)
        try:
            sched = Launcher(n, task_cpus)
            driver = SchedulerDriver(sched, FrameworkInfo(user="bench", name="launch-throughput"), master)
            t0 = time.perf_counter()
            await driver.start()
            await asyncio.wait_for(sched.done.wait(), timeout=max(120, n / 5))
            t1 = time.perf_counter()
            await driver.stop()
            start = sched.first_launch or t0
            return t1 - start, sched.failed
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="tasks / processes (default 1000)")
    ap.add_argument("--concurrency", type=int, default=64, help="processes alive at once (default 64)")
    ap.add_argument(
        "--work-dir", default="/var/tmp",
        help="where the agents' sandboxes go (default /var/tmp; on some machines /tmp is much slower to create files in)",
    )
    ap.add_argument("--isolation", default="auto",
                    help="the agents' --isolation (auto | posix | cgroups | cgroups/v1 | cgroups/v2; default auto)")
    ap.add_argument("--task-cpus", type=float, default=0.1,
                    help="cpus per task (default 0.1; under cgroups this is a hard CFS quota, and 0.01 "
                         "leaves a process 1 ms of CPU per 100 ms period to start in)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    a = ap.parse_args(argv)
    await raw_spawn(min(50, a.n), a.concurrency)  # warm-up
    raw = await raw_spawn(a.n, a.concurrency)
    raw_rate = a.n / raw
    out = {"n": a.n, "isolation": a.isolation, "work_dir": a.work_dir, "raw_rate": raw_rate}
    say = (lambda *_: None) if a.json else print
    say(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}, n={a.n}, concurrency={a.concurrency}, work dir {a.work_dir}, isolation {a.isolation}, task cpus {a.task_cpus}")
    say(f"raw asyncio spawn            : {raw:7.3f} s = {raw_rate:8.1f} /s")
    for split, label in ((False, "master+agents in one process"), (True, "agents in their own process ")):
        clu, failed = await through_cluster(a.n, a.concurrency, split, a.work_dir, a.isolation, a.task_cpus)
        rate = a.n / clu
        key = "split" if split else "one_process"
        out[f"{key}_rate"], out[f"{key}_ratio"], out[f"{key}_failed"] = rate, rate / raw_rate, failed
        say(f"{label} : {clu:7.3f} s = {rate:8.1f} /s  ratio {rate / raw_rate:.2f} (target >= 0.50, failed {failed})")
    if a.json:
        import json

        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
