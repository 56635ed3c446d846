"""Command tasks through a real local cluster vs. raw asyncio subprocess spawns.

    python -m bench.launch_throughput [-n 1000] [--concurrency 64] [--isolation auto|posix|cgroups]
                                      [--image busybox] [--auth] [--tls]

Both halves run in this one invocation on the same machine: first N ``/bin/true`` processes
spawned with ``asyncio.create_subprocess_exec`` (at most ``--concurrency`` alive at once, the
physical limit), then N ``/bin/true`` command tasks through ``mesos-nb local --agents 2``
(a separate process: master + 2 agents) launched by a framework using the SDK in this
process, each task reaching TASK_FINISHED with its update acknowledged. Prints both rates and
the ratio (target: >= 0.5).

With ``--image busybox`` the same N tasks then run again in a Docker image with the Mesos
containerizer (``filesystem/linux`` added to the isolation; the image is the busybox-static
test image of tests/images_support.py, served from a directory of ``docker save`` tarballs),
so image and plain launch rates are printed side by side. Mesos 1.7's anchor: 1,000
containers in 30.7 s on one agent.

``--auth`` and/or ``--tls`` run each cluster a second time with authentication on (credentials
file, every realm, Basic on every call, the agents' secret on the channel) and/or TLS on the
master's listener and the agent channel (a CA and certificate made with the openssl CLI), and
print the cost against the plain run (target: within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver

from .harness import RUN_LOOP, run_loop


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
    "import asyncio,os,signal\n"
    "async def main():\n"
    "{body}"
    "    stop = asyncio.Event()\n"
    "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)\n"
    "    prof = None\n"
    "    if os.environ.get('BENCH_PROFILE_DIR'):\n"  # --profile: cProfile from ready to SIGTERM
    "        import cProfile\n"
    "        import time\n"
    "        prof = cProfile.Profile(time.process_time)\n"  # CPU time, not a loaded box's waits
    "        prof.enable()\n"
    "    print('ready', flush=True)\n"
    "    await stop.wait()\n"
    "    if prof is not None:\n"
    "        prof.disable()\n"
    "        prof.dump_stats(os.path.join(os.environ['BENCH_PROFILE_DIR'], f'{{type(x).__name__}}-{{os.getpid()}}.prof'))\n"
    "    await x.stop()\n"
    + RUN_LOOP.replace("{", "{{").replace("}", "}}") +
    "run_loop(main())\n"
)


class Secure:
    """Credentials and/or TLS material for a secured run (files under ``d``)."""

    def __init__(self, d: str, auth: bool, tls: bool) -> None:
        self.auth, self.tls = auth, tls
        self.principal, self.secret, self.agent_secret = "bench", "bench-secret", "bench-agent-secret"
        self.creds = os.path.join(d, "credentials.json")
        with open(self.creds, "w") as f:
            json.dump({"credentials": [{"principal": self.principal, "secret": self.secret}]}, f)
        os.chmod(self.creds, 0o600)
        self.ca = self.cert = self.key = None
        if tls:
            def run(*args: str) -> None:
                subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

            run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bench CA",
                "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE")
            run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "s.key", "-out", "s.csr")
            with open(os.path.join(d, "ext.cnf"), "w") as f:
                f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
            run("x509", "-req", "-in", "s.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
                "-out", "s.pem", "-extfile", "ext.cnf")
            self.ca, self.cert, self.key = (os.path.join(d, x) for x in ("ca.pem", "s.pem", "s.key"))

    def master_kwargs(self) -> str:
        kw = f"tls_cert={self.cert!r}, tls_key={self.key!r}, tls_ca={self.ca!r}"
        if self.auth:
            kw += (f", agent_secret={self.agent_secret!r}, security=SecurityConfig(credentials={self.creds!r}, "
                   "authenticate_frameworks=True, authenticate_agents=True, authenticate_http_readonly=True, "
                   "authenticate_http_readwrite=True)")
        return kw


def start_cluster(work_dir: str, concurrency: int, split: bool,
                  isolation: str = "auto", task_cpus: float = 0.1,
                  registry: str | None = None, launcher: bool = True,
                  secure: Secure | None = None) -> tuple[list[subprocess.Popen], str]:
    """``mesos-nb local --agents 2``; with ``split`` the two agents live in a second process
    (one agent process, as on a real machine), otherwise master and agents share one."""
    port = _free_port()
    scheme = "https" if secure is not None and secure.tls else "http"
    imports = ("    from mesos_nb.master.security import SecurityConfig\n"
               "    from mesos_nb.protocol.tls import client_context\n")
    mkw = secure.master_kwargs() if secure is not None else ""
    akw = ""
    if secure is not None:
        akw = (f", secret={secure.agent_secret!r}" if secure.auth else "") + (
            f", ssl_context=client_context({secure.ca!r})" if secure.tls else "")
    per_agent = max(1, concurrency // 2)
    res = f"cpus:{per_agent * task_cpus:.2f};mem:{per_agent * 4}"
    env = dict(os.environ, MESOS_NB_LOG_LEVEL="warning")
    if not launcher:
        env["MESOS_NB_AGENT_LAUNCHER"] = "0"  # the agents fork their tasks themselves (the fallback path)
    opts = {"isolation": isolation, **({"docker_registry": registry} if registry else {})}
    if not split:
        body = (
            "    from mesos_nb.local import LocalCluster\n" + imports +
            f"    x = LocalCluster(agents=2, port={port}, work_dir={work_dir!r}, agent_resources={res!r},"
            f" agent_options={opts!r}, master_options=dict({mkw}),"
            f" tls_cert={secure.cert if secure else None!r}, tls_key={secure.key if secure else None!r},"
            f" tls_ca={secure.ca if secure else None!r})\n"
            "    await x.start()\n"
        )
        procs = [_spawn(_SERVE.format(body=body), env)]
    else:
        master = (
            "    from mesos_nb.master.server import MasterConfig, MasterServer\n" + imports +
            f"    x = MasterServer(MasterConfig(port={port}, {mkw}))\n"
            "    await x.start()\n"
        )
        agents = (
            "    from mesos_nb.agent.config import AgentConfig\n" + imports +
            "    from mesos_nb.agent.process import AgentProcess\n"
            f"    cfgs = [AgentConfig(master='127.0.0.1:{port}', port=0, resources={res!r} + f';ports:[{{31000 + i * 500}}-{{31499 + i * 500}}]',"
            f" work_dir={work_dir!r} + f'/agent{{i}}', **{opts!r}) for i in range(2)]\n"
            f"    x = AgentProcess(cfgs, master='{scheme}://127.0.0.1:{port}'{akw})\n"
            "    await x.start()\n"
        )
        procs = [_spawn(_SERVE.format(body=master), env), _spawn(_SERVE.format(body=agents), env)]
    ctx = ssl.create_default_context(cafile=secure.ca) if secure is not None and secure.tls else None
    urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=5, context=ctx).read()
    return procs, f"{scheme}://127.0.0.1:{port}"


class Launcher(Scheduler):
    def __init__(self, n: int, task_cpus: float, image: str | None = None) -> None:
        self.n = n
        self.image = image
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
                tasks.append(_task(offer, self.launched, self.task_res, self.image))
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


class OneAtATime(Scheduler):
    """ACCEPT → TASK_RUNNING on an idle cluster: one task in flight at a time, ``n`` in all."""

    def __init__(self, n: int, task_cpus: float) -> None:
        self.n = n
        self.launched = 0
        self.busy = False
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.task_res = Resources.parse(f"cpus:{task_cpus};mem:4")

    async def offers(self, driver, offers):
        for offer in offers:
            if self.busy or self.launched >= self.n:
                await driver.decline([offer.id], refuse_seconds=60)  # REVIVEd after each task: no churn
                continue
            self.busy = True
            task = _task(offer, self.launched, self.task_res)
            self.launched += 1
            self.sent[task.task_id.value] = time.perf_counter()
            await driver.launch([offer.id], [task], filters=None)

    async def update(self, driver, status):
        tid = status.task_id.value
        if status.state == "TASK_RUNNING" and tid in self.sent:
            self.latencies.append(time.perf_counter() - self.sent.pop(tid))
        elif status.state in ("TASK_FINISHED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_KILLED"):
            self.busy = False
            if self.launched >= self.n and not self.sent:
                self.done.set()
            else:
                await driver.revive()


async def accept_to_running(n: int, base: str, isolation: str, task_cpus: float, launcher: bool) -> list[float]:
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mesos-nb-bench-", dir=base) as wd:
        procs, master = start_cluster(wd, 2, False, isolation, task_cpus, None, launcher)
        try:
            sched = OneAtATime(n, task_cpus)
            driver = SchedulerDriver(sched, FrameworkInfo(user="bench", name="accept-to-running"), master)
            await driver.start()
            await asyncio.wait_for(sched.done.wait(), timeout=max(120, n))
            await driver.stop()
            return sorted(sched.latencies)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


CHECKPOINT = False  # --checkpoint: the framework checkpoints (each task runs under its supervisor,
# each status update and acknowledgement is made durable before the update is sent on)
LAST_CPU: dict[str, float] = {}  # CPU per task of each process of the last through_cluster run


def _cpu_parts(proc: subprocess.Popen) -> tuple[float, float, float]:
    """CPU seconds of a cluster process: its own, its live children's own (the agents'
    launcher helpers), and what they reaped (the tasks; a helper's reaped children, or the
    process's own)."""
    import psutil

    me = psutil.Process(proc.pid)
    own = kids = reaped = 0.0
    for p in (me, *me.children()):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        if p is me:
            own += t.user + t.system
        else:
            kids += t.user + t.system
        reaped += t.children_user + t.children_system
    return own, kids, reaped


def _cpu(proc: subprocess.Popen) -> float:
    """CPU seconds of a cluster process and its children, reaped (the tasks) or not (the
    agents' launcher helpers, with the tasks they reaped)."""
    return sum(_cpu_parts(proc))


def _task(offer, i: int, res: Resources, image: str | None = None):
    from mesos_nb.protocol import messages as m

    container = None
    if image:
        container = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}}
    return m.TaskInfo(
        name=f"b{i}",
        task_id=m.ID(value=f"b{i}"),
        agent_id=offer.agent_id,
        resources=res.to_proto(),
        command=m.CommandInfo(value="/bin/true", shell=False),
        container=container,
    )


def build_busybox_tarballs(directory: str, name: str) -> str:
    """A directory holding ``<name>.tar`` (the busybox-static test image, ``/bin/true`` included)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from pathlib import Path

    import images_support as imgs

    if imgs.busybox_path() is None:
        raise SystemExit("--image needs busybox-static (apt-get install busybox-static)")
    imgs.save_manifest_tar(imgs.make_image(repo=name), Path(directory) / f"{name}.tar")
    return directory


async def through_cluster(n: int, concurrency: int, split: bool, base: str,
                          isolation: str = "auto", task_cpus: float = 0.1,
                          image: str | None = None, launcher: bool = True,
                          auth: bool = False, tls: bool = False) -> tuple[float, int]:
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mesos-nb-bench-", dir=base) as wd:
        registry = build_busybox_tarballs(os.path.join(wd, "images"), image) if image else None
        secure = Secure(wd, auth, tls) if auth or tls else None
        procs, master = start_cluster(wd, concurrency, split, isolation, task_cpus, registry, launcher, secure)
        cpu0 = [_cpu_parts(p) for p in procs]
        own0 = time.process_time()
        try:
            sched = Launcher(n, task_cpus, image)
            kw = {}
            if secure is not None:
                kw = dict(ca_file=secure.ca)
                if auth:
                    kw.update(principal=secure.principal, secret=secure.secret)
            fw = FrameworkInfo(user="bench", name="launch-throughput", checkpoint=CHECKPOINT)
            driver = SchedulerDriver(sched, fw, master, **kw)
            t0 = time.perf_counter()
            await driver.start()
            await asyncio.wait_for(sched.done.wait(), timeout=max(120, n / 5))
            t1 = time.perf_counter()
            own = time.process_time() - own0
            parts = [[a - b for a, b in zip(_cpu_parts(p), c, strict=True)] for p, c in zip(procs, cpu0, strict=True)]
            cpu = [sum(x) for x in parts]
            await driver.stop()
            start = sched.first_launch or t0
            names = ["master+agents"] if not split else ["master", "agents"]
            LAST_CPU.clear()
            LAST_CPU.update({f"{k}_cpu_ms_per_task": 1e3 * c / n for k, c in zip(names, cpu, strict=True)})
            LAST_CPU["framework_cpu_ms_per_task"] = 1e3 * own / n
            if split:  # the agents' process tree split: the agent (Python), its helpers, the tasks
                for k, c in zip(("agent", "helpers", "tasks"), parts[1], strict=True):
                    LAST_CPU[f"agents_{k}_cpu_ms_per_task"] = 1e3 * c / n
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
    ap.add_argument("--auth", action="store_true", help="also run with authentication on and print its cost")
    ap.add_argument("--tls", action="store_true", help="also run with TLS on and print its cost")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--no-launcher", action="store_true",
                    help="agents fork tasks themselves instead of through their launcher helper (for comparison)")
    ap.add_argument("--profile", metavar="DIR",
                    help="cProfile each cluster process while the tasks run; one .prof file per process in DIR")
    ap.add_argument("--image", help="also run the tasks in this (built) busybox image, e.g. busybox")
    ap.add_argument("--targets", action="store_true",
                    help="issue 14's pair in one run: the default isolation on --work-dir (target >= 0.6 of "
                         "raw) and posix on tmpfs (/dev/shm, target >= 0.8), against one raw baseline")
    ap.add_argument("--latency", type=int, metavar="K",
                    help="instead: K tasks one at a time on an idle cluster, ACCEPT → TASK_RUNNING p50/p90")
    ap.add_argument("--checkpoint", action="store_true",
                    help="the framework checkpoints (FrameworkInfo.checkpoint): durable status updates")
    a = ap.parse_args(argv)
    global CHECKPOINT
    CHECKPOINT = a.checkpoint
    if a.profile:
        os.makedirs(a.profile, exist_ok=True)
        os.environ["BENCH_PROFILE_DIR"] = os.path.abspath(a.profile)
    if a.latency:
        lat = await accept_to_running(a.latency, a.work_dir, a.isolation, a.task_cpus, not a.no_launcher)
        res = {"n": len(lat), "isolation": a.isolation, "launcher": not a.no_launcher, "loadavg": os.getloadavg()[0],
               "p50_ms": lat[len(lat) // 2] * 1e3, "p90_ms": lat[int(len(lat) * 0.9)] * 1e3, "min_ms": lat[0] * 1e3}
        if a.json:
            print(json.dumps(res))
        else:
            print(f"ACCEPT → TASK_RUNNING over {res['n']} tasks: p50 {res['p50_ms']:.2f} ms, "
                  f"p90 {res['p90_ms']:.2f} ms, min {res['min_ms']:.2f} ms (target p50 <= 3 ms)")
        return
    # The baseline spawns on the stdlib loop, whatever loop this process runs on: uvloop's
    # spawn forks (libuv) where the stdlib's vforks, 4x the CPU a process, not the physical limit.
    await asyncio.to_thread(asyncio.run, raw_spawn(min(50, a.n), a.concurrency))  # warm-up
    t0 = os.times()
    raw = await asyncio.to_thread(asyncio.run, raw_spawn(a.n, a.concurrency))
    t1 = os.times()
    raw_rate = a.n / raw
    raw_cpu = sum(t1[:4]) - sum(t0[:4])  # this process and its reaped children
    out = {"n": a.n, "isolation": a.isolation, "work_dir": a.work_dir, "launcher": not a.no_launcher,
           "raw_rate": raw_rate, "raw_cpu_ms_per_spawn": 1e3 * raw_cpu / a.n, "loadavg": os.getloadavg()[0]}
    say = (lambda *_: None) if a.json else print
    say(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}, n={a.n}, concurrency={a.concurrency}, work dir {a.work_dir}, isolation {a.isolation}, task cpus {a.task_cpus}")
    say(f"raw asyncio spawn            : {raw:7.3f} s = {raw_rate:8.1f} /s  (CPU {1e3 * raw_cpu / a.n:.2f} ms each)")
    if a.targets:
        await _targets(a, raw_rate, out, say)
        if a.json:
            print(json.dumps(out))
        return
    for split, label in ((False, "master+agents in one process"), (True, "agents in their own process ")):
        clu, failed = await through_cluster(a.n, a.concurrency, split, a.work_dir, a.isolation, a.task_cpus,
                                            launcher=not a.no_launcher)
        rate = a.n / clu
        key = "split" if split else "one_process"
        out[f"{key}_rate"], out[f"{key}_ratio"], out[f"{key}_failed"] = rate, rate / raw_rate, failed
        out.update({f"{key}_{k}": v for k, v in LAST_CPU.items()})
        say(f"{label} : {clu:7.3f} s = {rate:8.1f} /s  ratio {rate / raw_rate:.2f} (target >= 0.50, failed {failed})")
        say("    CPU per task: " + ", ".join(f"{k.replace('_cpu_ms_per_task', '')} {v:.2f} ms" for k, v in LAST_CPU.items()))
        if a.auth or a.tls:
            what = "+".join(x for x, on in (("auth", a.auth), ("tls", a.tls)) if on)
            sec, failed = await through_cluster(a.n, a.concurrency, split, a.work_dir, a.isolation, a.task_cpus,
                                                auth=a.auth, tls=a.tls)
            srate = a.n / sec
            out[f"{key}_{what}_rate"], out[f"{key}_{what}_cost"] = srate, 1 - srate / rate
            say(f"{label} with {what}: {sec:7.3f} s = {srate:8.1f} /s  cost {100 * (1 - srate / rate):+.1f} % "
                f"of the plain run (target within 10 %, failed {failed})")
    if a.image:
        iso = a.isolation if "filesystem/linux" in a.isolation else f"{a.isolation},filesystem/linux"
        for split, label in ((False, "image, one process           "), (True, "image, agents own process    ")):
            clu, failed = await through_cluster(a.n, a.concurrency, split, a.work_dir, iso, a.task_cpus, a.image)
            rate = a.n / clu
            out[f"image_{'split' if split else 'one_process'}_rate"] = rate
            say(f"{label} : {clu:7.3f} s = {rate:8.1f} /s  ({a.image}, isolation {iso}; Mesos 1.7: "
                f"1000 in 30.7 s = 32.6 /s; failed {failed})")
    if a.json:
        print(json.dumps(out))


async def _targets(a: argparse.Namespace, raw_rate: float, out: dict, say) -> None:
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else a.work_dir
    for name, iso, wd, target in (("default", "auto", a.work_dir, 0.6), ("posix_tmpfs", "posix", tmpfs, 0.8)):
        for split, label in ((False, "one process"), (True, "agents own process")):
            clu, failed = await through_cluster(a.n, a.concurrency, split, wd, iso, a.task_cpus,
                                                launcher=not a.no_launcher)
            rate = a.n / clu
            key = f"{name}_{'split' if split else 'one_process'}"
            out[f"{key}_rate"], out[f"{key}_ratio"], out[f"{key}_failed"] = rate, rate / raw_rate, failed
            out.update({f"{key}_{k}": v for k, v in LAST_CPU.items()})
            say(f"{iso:5s} on {wd:9s} {label:18s}: {rate:7.1f} /s  ratio {rate / raw_rate:.2f} "
                f"(target >= {target}, failed {failed}); CPU per task: "
                + ", ".join(f"{k.replace('_cpu_ms_per_task', '')} {v:.2f} ms" for k, v in LAST_CPU.items()))


if __name__ == "__main__":
    run_loop(main())
