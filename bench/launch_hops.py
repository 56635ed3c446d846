"""One launch, hop by hop, across every process: ACCEPT → TASK_RUNNING as a chain of named steps.

    python -m bench.launch_hops [-n 60] [--isolation posix] [--work-dir /dev/shm] [--json]

The cluster and framework of :mod:`bench.launch_latency` (one ``/bin/true`` task at a time on
an idle cluster), with tracing hooks put around the launch path by this bench only (nothing in
``mesos_nb`` knows about them, so they cost nothing when the bench is not running): in the SDK
(this process), the master, the agent process and the agent's launcher helper (started from
``launch_hops_helper.py``, which wraps ``launch_helper.py``). Each hook records
``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for every process of the machine) and a
label; each process writes its events to a file when it exits and they are merged here. One
task is in flight at a time, so the events between two ACCEPTs belong to one task.

Printed: the median over all tasks (the first three are warm-up) of each hop of the two chains
that meet at the agent before TASK_RUNNING may leave — the launch itself (RUN_TASK → helper →
exec) and TASK_STARTING's acknowledgement (agent → master → SDK → master → agent: one update in
flight per task, so RUNNING waits for it) — then of the RUNNING relay to the SDK. ``waits``:
how often RUNNING's frame waited for the ack rather than for the exec.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .harness import run_loop

EVENTS: list[tuple[int, str]] = []
HELPER_WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_hops_helper.py")
_STATE = re.compile(rb'"state":"(TASK_[A-Z_]+)"')


def mark(label: str) -> None:
    EVENTS.append((time.monotonic_ns(), label))


def hook(owner: Any, name: str, before: Callable[..., str | None] | None = None,
         after: Callable[..., str | None] | None = None) -> None:
    """Replace ``owner.name`` with a wrapper that marks ``before(*args)`` on entry and
    ``after(result, *args)`` on return (an async function: when its awaited result is ready);
    a ``None`` label marks nothing."""
    fn = getattr(owner, name)

    def enter(a: tuple) -> None:
        if before is not None and (label := before(*a)) is not None:
            mark(label)

    def leave(r: Any, a: tuple) -> Any:
        if after is not None and (label := after(r, *a)) is not None:
            mark(label)
        return r

    if asyncio.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapped(*a: Any, **kw: Any) -> Any:
            enter(a)
            return leave(await fn(*a, **kw), a)
        setattr(owner, name, awrapped)
        return

    @functools.wraps(fn)
    def wrapped(*a: Any, **kw: Any) -> Any:
        enter(a)
        return leave(fn(*a, **kw), a)
    setattr(owner, name, wrapped)


def states(data: Any) -> str | None:
    """``TASK_X[+TASK_Y]`` for the task states a written frame or chunk carries, else None."""
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = bytes(data)
    found = [s.decode() for s in _STATE.findall(data)]
    return "+".join(dict.fromkeys(found)) if found else None


def _in(prefix: str, *tags: str) -> Callable[..., str | None]:
    """A ``before`` for a frame written: ``prefix:STATE`` for status updates, or ``prefix:TAG``."""
    def label(_self: Any, data: Any, *_: Any) -> str | None:
        s = states(data)
        if s is not None:
            return f"{prefix}:{s}"
        text = data if isinstance(data, str) else bytes(data).decode(errors="replace")
        for tag in tags:
            if f'"type":"{tag}"' in text:
                return f"{prefix}:{tag}"
        return None
    return label


def _msgs(prefix: str) -> Callable[..., str | None]:
    """An ``after`` for a decoded frame: ``prefix:KIND[:STATE]`` of its first interesting message."""
    def label(msgs: Any, *_: Any) -> str | None:
        for x in msgs:
            kind = type(x).__name__
            if kind in ("Ping", "Pong"):
                continue
            st = getattr(getattr(x, "status", None), "state", None)
            return f"{prefix}:{kind}" + (f":{st}" if st else "")
        return None
    return label


def install(role: str) -> None:
    """Hook the launch path of this process (``master`` or ``agent``); events written at exit."""
    from aiohttp import ClientWebSocketResponse, web

    if role == "master":
        from mesos_nb.master import big_calls, server

        hook(big_calls, "decode_call", after=lambda call, *_: f"m.call_in:{call.type}")
        hook(web.WebSocketResponse, "send_str", before=_in("m.frame_out", "RUN_TASK", "ACK"))
        hook(server.ch, "decode_to_master", after=_msgs("m.frame_in"))  # (the server calls ch.decode_to_master)
        hook(web.StreamResponse, "write", before=lambda _s, data, *_: (f"m.event_out:{s}" if (s := states(data)) else None))
    else:
        from mesos_nb.agent import command_executor, launcher, process
        from mesos_nb.agent.status_updates import StatusUpdateManager

        os.environ["LAUNCH_HOPS_HELPER_DIR"] = os.path.dirname(launcher.HELPER)  # what the wrapper imports
        launcher.HELPER = HELPER_WRAPPER
        hook(process, "decode_to_agent", after=_msgs("a.frame_in"))
        hook(command_executor.CommandExecutor, "_launch_command_task", after=lambda *_: "a.run_task_queued")
        hook(command_executor.CommandExecutor, "_run_command_task", before=lambda *_: "a.run_task")
        hook(StatusUpdateManager, "update", before=lambda _s, u, *_: f"a.update:{u.status.state}")
        hook(launcher.Launcher, "launch", before=lambda *_: "a.helper_ask")
        hook(launcher.Launcher, "_dispatch", before=lambda _s, msg: "a.helper_reply" if "pid" in msg else None)
        hook(ClientWebSocketResponse, "send_str", before=_in("a.frame_out"))
    dump_at_exit(EVENTS, "LAUNCH_HOPS_DIR", role)


def dump_at_exit(events: list, env: str, role: str) -> None:
    """At this process's exit, ``events`` as JSON to ``$env/ROLE-PID.json`` (if ``env`` is set)."""
    out = os.environ.get(env)
    if out:
        def dump() -> None:
            with open(os.path.join(out, f"{role}-{os.getpid()}.json"), "w") as f:
                json.dump(events, f)
        atexit.register(dump)


_HOOK = "    import bench.launch_hops as _H\n    _H.install({role!r})\n"

# (from, to): the launch chain, the STARTING acknowledgement's round trip, and RUNNING's relay
LAUNCH = ["f.accept_send", "m.call_in:ACCEPT", "m.frame_out:RUN_TASK", "a.frame_in:RunTask", "a.run_task_queued", "a.run_task", "a.helper_ask",
          "h.request_in", "h.setup_done", "h.spawn", "h.exec_done", "h.reply_out",
          "a.helper_reply", "a.update:TASK_RUNNING"]
ACK = ["a.frame_in:RunTask", "a.update:TASK_STARTING", "a.frame_out:TASK_STARTING", "m.frame_in:StatusUpdate:TASK_STARTING",
       "m.event_out:TASK_STARTING", "f.chunk_in:TASK_STARTING", "f.update:TASK_STARTING", "f.ack_post",
       "m.call_in:ACKNOWLEDGE", "m.frame_out:ACK", "a.frame_in:AckUpdate"]
RELAY = ["a.frame_out:TASK_RUNNING", "m.frame_in:StatusUpdate:TASK_RUNNING", "m.event_out:TASK_RUNNING",
         "f.chunk_in:TASK_RUNNING", "f.update:TASK_RUNNING"]


def _sdk_hooks() -> None:
    from mesos_nb.scheduler import calls, driver, sender

    hook(calls.SchedulerCalls, "launch", before=lambda *_: "f.accept_send")
    hook(driver.SchedulerDriver, "_callback",
         before=lambda _s, name, *a: f"f.update:{a[0].state}" if name == "update" else None)
    hook(driver, "_read_chunk", after=lambda chunk, *_: f"f.chunk_in:{s}" if (s := states(chunk)) else None)
    hook(sender.CallSender, "post", before=lambda _s, _m, body, *_: "f.ack_post" if b'"ACKNOWLEDGE"' in body else None)


async def run(n: int, work_dir: str, isolation: str) -> list[dict[str, int]]:
    """Per task (after 3 warm-up ones), each label's first time (ns) after its ACCEPT."""
    from bench import launch_throughput as lt
    from bench.launch_latency import _OneAtATime, drive

    tdir = tempfile.mkdtemp(prefix="launch-hops-")
    os.environ["LAUNCH_HOPS_DIR"] = tdir
    serve = lt._SERVE

    class _Serve:
        @staticmethod
        def format(body: str) -> str:
            role = "agent" if "AgentProcess" in body else "master"
            return serve.format(body=_HOOK.format(role=role) + body)

    lt._SERVE = _Serve()  # type: ignore[assignment]
    _sdk_hooks()

    try:
        await drive(_OneAtATime(n + 3), work_dir, isolation, "launch-hops")
    finally:
        lt._SERVE = serve
    events = list(EVENTS)
    for name in os.listdir(tdir):
        with open(os.path.join(tdir, name)) as f:
            events += [tuple(e) for e in json.load(f)]
        os.unlink(os.path.join(tdir, name))
    os.rmdir(tdir)
    events.sort()
    tasks: list[dict[str, int]] = []
    for t, label in events:
        if label == "f.accept_send":
            tasks.append({})
        if tasks:
            tasks[-1].setdefault(label, t)
    return tasks[3:]


def hops(tasks: list[dict[str, int]]) -> dict[str, Any]:
    """Median ms of each hop of each chain, the join at the agent, and the total."""
    def med(a: str, b: str) -> float | None:
        xs = [(t[b] - t[a]) / 1e6 for t in tasks if a in t and b in t]
        return round(statistics.median(xs), 3) if xs else None

    out: dict[str, Any] = {}
    for name, chain in (("launch", LAUNCH), ("ack", ACK), ("relay", RELAY)):
        out[name] = [(f"{a} -> {b}", med(a, b)) for a, b in zip(chain, chain[1:], strict=False)]
    # RUNNING's frame leaves after both the exec's reply and the ack: which came last, by how much
    acked_last = [t for t in tasks if "a.frame_in:AckUpdate" in t and "a.update:TASK_RUNNING" in t
                  and t["a.frame_in:AckUpdate"] > t["a.update:TASK_RUNNING"]]
    out["join"] = [("a.update:TASK_RUNNING -> a.frame_out:TASK_RUNNING", med("a.update:TASK_RUNNING", "a.frame_out:TASK_RUNNING")),
                   ("a.frame_in:AckUpdate -> a.frame_out:TASK_RUNNING", med("a.frame_in:AckUpdate", "a.frame_out:TASK_RUNNING"))]
    out["waits_for_ack"] = f"{len(acked_last)}/{len(tasks)}"
    out["since_accept"] = [(label, med("f.accept_send", label)) for label in
                           ("a.frame_in:RunTask", "h.exec_done", "a.update:TASK_RUNNING", "a.frame_in:AckUpdate",
                            "a.frame_out:TASK_RUNNING", "f.update:TASK_RUNNING")]
    return out


def main(argv: list[str] | None = None) -> int:
    from .launch_latency import options

    a = options(__doc__ or "", 60).parse_args(argv)
    load = os.getloadavg()[0]
    tasks = run_loop(run(a.n, a.work_dir, a.isolation))
    r = hops(tasks)
    if a.json:
        print(json.dumps({"n": len(tasks), "isolation": a.isolation, "load": load, **r}))
        return 0
    print(f"{len(tasks)} tasks, isolation {a.isolation}, work dir {a.work_dir}, load {load:.2f} (median ms)")
    for name in ("launch", "ack", "join", "relay", "since_accept"):
        print(f"{name}:")
        for label, v in r[name]:
            print(f"  {label:70s} {'-' if v is None else f'{v:7.3f}'}")
    print(f"RUNNING's frame waited for the ack (not the exec) in {r['waits_for_ack']} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
