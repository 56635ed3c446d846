"""Where the milliseconds of one launch go: ACCEPT → TASK_RUNNING, hop by hop.

    python -m bench.launch_trace [-n 30] [--isolation posix] [--work-dir /dev/shm] [--split]

The cluster of :mod:`bench.launch_latency` (a master process and an agent process, or with
``--one-process`` both in one), with trace hooks wrapped around the functions of the launch
path in each process (debug only: nothing in ``mesos_nb`` knows about them). Every hook
records ``time.monotonic_ns()`` (one clock for all processes of a machine) and a label; at
exit each process writes its events to a file, and this process merges them with the
framework's own (ACCEPT sent, TASK_RUNNING received). One task is in flight at a time, so
the events between two ACCEPTs belong to one task. Printed: per hop, the median time from
the previous hop, over all tasks but the first three.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from .harness import run_loop

EVENTS: list[tuple[int, str]] = []


def _mark(label: str) -> None:
    EVENTS.append((time.monotonic_ns(), label))


def _wrap(modname: str, attr: str, label: str, *, enter: bool = True, leave: bool = True,
          describe: Any = None) -> None:
    mod = importlib.import_module(modname)
    owner_name, _, fn_name = attr.rpartition(".")
    owner = getattr(mod, owner_name) if owner_name else mod
    fn = getattr(owner, fn_name)
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapped(*a: Any, **kw: Any) -> Any:
            if enter:
                _mark(f"{label}>")
            r = await fn(*a, **kw)
            if leave:
                _mark(f"{label}<")
            return r
        setattr(owner, fn_name, awrapped)
        return

    @functools.wraps(fn)
    def wrapped(*a: Any, **kw: Any) -> Any:
        extra = describe(a, kw) if describe is not None else ""
        if extra is None:
            return fn(*a, **kw)
        if enter:
            _mark(f"{label}{extra}>")
        r = fn(*a, **kw)
        if leave:
            extra2 = describe(a, kw, r) if describe is not None and getattr(describe, "after", False) else extra
            _mark(f"{label}{extra2}<")
        return r
    setattr(owner, fn_name, wrapped)


def _kinds(msgs: Any) -> str:
    return ":" + ",".join(sorted({type(x).__name__ for x in msgs}))


def _frame_kinds(a: tuple, kw: dict, r: Any = None) -> str | None:
    if r is None:
        return ""
    return _kinds(r)


_frame_kinds.after = True  # type: ignore[attr-defined]


def _batch(a: tuple, kw: dict, r: Any = None) -> str | None:
    kinds = {type(x).__name__ for x in a[0]}
    if kinds <= {"Ping", "Pong"}:
        return None
    return ":" + ",".join(sorted(kinds))


def _state(a: tuple, kw: dict) -> str:
    return f":{a[2]}"


def install(role: str) -> None:
    """Wrap the launch path's functions in this process; events written at exit."""
    if role == "master":
        _wrap("mesos_nb.master.big_calls", "decode_call", "m.decode")
        _wrap("mesos_nb.master.core", "MasterCore.accept_steps", "m.accept_core", leave=False)
        _wrap("mesos_nb.master.server", "MasterServer.flush", "m.flush", enter=False)
        _wrap("mesos_nb.protocol.channel", "decode_to_master", "m.frame_in", enter=False, describe=_frame_kinds)
        _wrap("mesos_nb.master.core", "MasterCore.status_update", "m.status_update")
        _wrap("mesos_nb.master.connections", "Stream.push", "m.stream_push", enter=False)
    if role == "agent":
        _wrap("mesos_nb.agent.process", "decode_to_agent", "a.frame_in", enter=False, describe=_frame_kinds)
        _wrap("mesos_nb.agent.agent", "Agent._launch_command_task", "a.run_task")
        _wrap("mesos_nb.agent.sandbox", "create_sandbox", "a.sandbox")
        _wrap("mesos_nb.agent.agent", "Agent._checkpoint_launch", "a.ckpt_launch")
        _wrap("mesos_nb.agent.agent", "Agent._update", "a.update", describe=_state)
        _wrap("mesos_nb.agent.agent", "Agent._container_launch", "a.container_spec")
        _wrap("mesos_nb.agent.agent", "Agent._prepare_sandbox", "a.prepare_sandbox")
        _wrap("mesos_nb.agent.agent", "Agent._environment", "a.environment")
        _wrap("mesos_nb.agent.containerizer", "PosixContainerizer.launch", "a.containerizer")
        _wrap("mesos_nb.agent.launcher", "Launcher.launch", "a.helper")
        _wrap("mesos_nb.agent.agent", "Agent._checkpoint_container", "a.ckpt_container")
        _wrap("subprocess", "Popen.__init__", "a.popen")
        _wrap("mesos_nb.agent.containerizer", "_open_out", "a.open_out")
    for modname in ("mesos_nb.protocol.channel", "mesos_nb.agent.process"):
        mod = importlib.import_module(modname)
        enc = mod.encode_frames

        def encode_frames(batch: Any, *a: Any, _enc: Any = enc, **kw: Any) -> Any:
            extra = _batch((batch,), kw)
            if extra is not None:
                _mark(f"{role[0]}.frame_out{extra}")
            return _enc(batch, *a, **kw)
        mod.encode_frames = encode_frames
    from .launch_hops import dump_at_exit

    dump_at_exit(EVENTS, "LAUNCH_TRACE_DIR", role)


_HOOK = "    import bench.launch_trace as _T\n    _T.install({role!r})\n"


async def run(n: int, work_dir: str, isolation: str) -> list[list[tuple[int, str]]]:
    from bench import launch_throughput as lt
    from bench.launch_latency import _OneAtATime, drive

    tdir = tempfile.mkdtemp(prefix="launch-trace-")
    os.environ["LAUNCH_TRACE_DIR"] = tdir
    orig_serve = lt._SERVE

    def serve(body: str) -> str:
        role = "agent" if "AgentProcess" in body else "master"
        return orig_serve.format(body=_HOOK.format(role=role) + body)

    lt._SERVE = type("S", (), {"format": staticmethod(lambda body: serve(body))})()  # type: ignore[assignment]

    class Traced(_OneAtATime):
        async def offers(self, driver: Any, offers: list[Any]) -> None:
            orig = driver.launch

            async def launch(*a: Any, **kw: Any) -> Any:
                _mark("f.accept_send")
                r = await orig(*a, **kw)
                _mark("f.accept_202")
                return r
            driver.launch = launch
            try:
                await super().offers(driver, offers)
            finally:
                driver.launch = orig

        async def update(self, driver: Any, status: Any) -> None:
            _mark(f"f.update:{status.state}")
            await super().update(driver, status)

    await drive(Traced(n + 3), work_dir, isolation, "launch-trace")
    events = list(EVENTS)
    for name in os.listdir(tdir):
        with open(os.path.join(tdir, name)) as f:
            events += [tuple(e) for e in json.load(f)]
    events.sort()
    tasks: list[list[tuple[int, str]]] = []
    for t, label in events:
        if label == "f.accept_send":
            tasks.append([])
        if tasks:
            tasks[-1].append((t, label))
    return tasks[3:]


def summarize(tasks: list[list[tuple[int, str]]]) -> list[tuple[str, float, float]]:
    """Per label (its k-th occurrence in a task labelled ``#k``, up to TASK_RUNNING at the framework): median
    time since ACCEPT was sent and median time since the previous label, in ms."""
    since: dict[str, list[float]] = {}
    step: dict[str, list[float]] = {}
    order: dict[str, float] = {}
    for ev in tasks:
        t0 = ev[0][0]
        prev = t0
        seen: dict[str, int] = {}
        for t, label in ev:
            k = seen[label] = seen.get(label, 0) + 1
            if k > 1:  # a repeated hop (the second status update's frames): numbered
                label = f"{label}#{k}"
            since.setdefault(label, []).append((t - t0) / 1e6)
            step.setdefault(label, []).append((t - prev) / 1e6)
            prev = t
            if label == "f.update:TASK_RUNNING":
                break
    for label, xs in since.items():
        order[label] = statistics.median(xs)
    return [(label, order[label], statistics.median(step[label])) for label in sorted(order, key=order.get)]


def durations(tasks: list[list[tuple[int, str]]]) -> dict[str, float]:
    """Median time inside each wrapped call (``X>`` to the next ``X<``), in ms."""
    out: dict[str, list[float]] = {}
    for ev in tasks:
        opened: dict[str, int] = {}
        for t, label in ev:
            if label.endswith(">"):
                opened.setdefault(label[:-1], t)
            elif label.endswith("<") and label[:-1] in opened:
                out.setdefault(label[:-1], []).append((t - opened.pop(label[:-1])) / 1e6)
    return {k: statistics.median(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--work-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else "/var/tmp")
    ap.add_argument("--isolation", default="posix")
    a = ap.parse_args(argv)
    tasks = run_loop(run(a.n, a.work_dir, a.isolation))
    print(f"{len(tasks)} tasks, isolation {a.isolation}, work dir {a.work_dir}, load {os.getloadavg()[0]:.1f}")
    print(f"{'hop':42s} {'since ACCEPT':>12s} {'step':>8s}  (median ms)")
    for label, t, s in summarize(tasks):
        print(f"{label:42s} {t:12.3f} {s:8.3f}")
    print("inside each call (median ms):")
    for label, d in sorted(durations(tasks).items(), key=lambda x: -x[1]):
        print(f"  {label:40s} {d:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
