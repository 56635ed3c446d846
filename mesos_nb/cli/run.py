"""``mesos-nb run -- CMD``: one command as a task of a short-lived framework; its stdout and
stderr stream to ours; the exit code is the task's.

The task is a :class:`~mesos_nb.scheduler.pool.TaskSpec` placed by the SDK's one offer
matcher; its output is followed through :mod:`mesos_nb.client` (the sandbox lookup chain).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from typing import Any

from mesos_nb.client import FileFollower, MasterClient, MesosClientError, drain, locate
from mesos_nb.client.fits import never_fits as no_fit
from mesos_nb.client.tables import num
from mesos_nb.protocol.messages import Offer
from mesos_nb.scheduler.pool import (
    TaskHandle,
    TaskSpec,
    framework_info,
    image_container,
    match_offer,
    ports_of,
)
from mesos_nb.scheduler.tasks import new_task_id, parse_constraints

from .errors import CLIError

_EXIT_RE = re.compile(r"exited with status (\d+)")


def exit_code_for(state: str, message: str | None) -> int:
    if state == "TASK_FINISHED":
        return 0
    m = _EXIT_RE.search(message or "")
    if state == "TASK_FAILED" and m:
        code = int(m.group(1))
        return code if code else 1
    return 1


class _RunScheduler:
    """The one-task framework: launch on the first fitting offer, decline the rest."""

    def __init__(self, spec: TaskSpec, verbose: bool) -> None:
        self.spec = spec
        self.verbose = verbose
        self.task = TaskHandle(spec.task_id or new_task_id(spec.name), spec)
        self.started = asyncio.Event()
        self.done = asyncio.Event()
        self.final: Any = None
        self.offers_seen = 0
        self.error: str | None = None

    @property
    def launched(self) -> bool:
        return self.task.agent_id is not None

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"mesos-nb run: {text}", file=sys.stderr, flush=True)

    async def offers(self, driver: Any, offers: list[Offer]) -> None:
        rest = []
        for offer in offers:
            self.offers_seen += 1
            launches = [] if self.launched else match_offer(offer, [self.task])
            if not launches:
                rest.append(offer.id)
                continue
            self.task.launching(offer, ports_of(launches[0][0]))
            self._say(f"launching {self.task.id} on {offer.hostname} ({offer.agent_id.value})")
            await driver.launch([offer.id], [launches[0][0]])
        if rest:
            await driver.decline(rest, refuse_seconds=3600 if self.launched else 1)

    async def update(self, driver: Any, status: Any) -> None:
        if status.task_id.value != self.task.id:
            return
        self._say(f"{status.state}{': ' + status.message if status.message else ''}")
        self.task._set(status.state, status.message, status.reason)
        if self.task.phase != "launching" or status.state == "TASK_STARTING":
            self.started.set()
        if self.task.done:
            self.final = status
            self.done.set()

    async def error(self, driver: Any, message: str) -> None:
        self.error = message
        self.done.set()


async def _follow_task(sched: _RunScheduler, client: MasterClient) -> None:
    """Stream the task's stdout/stderr until it is terminal (then drain what is left)."""
    await sched.started.wait()
    box = None
    while box is None:
        try:
            box = await asyncio.to_thread(locate, client, sched.task.id, agent_id=sched.task.agent_id or "")
        except MesosClientError:
            if sched.done.is_set():
                return
            await asyncio.sleep(0.1)
    followers: list[FileFollower] = [box.follower("stdout", sys.stdout), box.follower("stderr", sys.stderr)]
    while not sched.done.is_set():
        for f in followers:
            await asyncio.to_thread(f.poll)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sched.done.wait(), 0.2)
    await asyncio.to_thread(drain, followers)


def _spec(args: argparse.Namespace) -> TaskSpec:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CLIError("no command given: use 'mesos-nb run [OPTIONS] -- CMD ...'")
    try:
        constraints = parse_constraints(args.attr)
    except ValueError as e:
        raise CLIError(str(e)) from None
    spec = TaskSpec(cmd=cmd if len(cmd) > 1 else cmd[0], cpus=args.cpus, mem=args.mem, gpus=args.gpus,
                    disk=args.disk, name=args.name or os.path.basename(cmd[0]) or "task",
                    constraints=constraints,
                    container=image_container(args.image) if args.image else None)
    if not spec.amounts:
        raise CLIError("a task needs some resources: give --cpus or --mem")
    return spec


def _no_offer(spec: TaskSpec, timeout: float, seen: int, why: str | None = None) -> CLIError:
    want = ", ".join(f"{k} {num(v)}" for k, v in spec.amounts.items())
    where = " and " + ", ".join(f"{k}={v}" for k, v in spec.constraints.items()) if spec.constraints else ""
    because = f": {why}" if why else ""
    return CLIError(f"no offer with {want}{where} arrived within {num(timeout)} s "
                    f"({seen} offers did not fit){because}")


async def _say_why_it_waits(sched: Any, client: MasterClient, role: str, spec: TaskSpec,
                            note: list[str]) -> None:
    """While the task waits for an offer, say once (per reason) when its role is why: a quota
    limit used up, or free resources reserved or held back for other roles."""
    from mesos_nb.client.roles import role_wait_reason, roles_and_free

    await asyncio.sleep(2.0)
    while not sched.launched:
        with contextlib.suppress(MesosClientError, ValueError, KeyError):
            roles, free = await asyncio.to_thread(roles_and_free, client)
            why = role_wait_reason(role, dict(spec.amounts), roles, free)
            if why and (not note or note[-1] != why):
                note.append(why)
                print(f"mesos-nb run: waiting: {why}", file=sys.stderr, flush=True)
        await asyncio.sleep(2.0)


def never_fits(state: Any, spec: TaskSpec) -> str | None:
    """Why no agent of the cluster could ever hold the task (its totals are too small or no
    agent has the attributes), or None. Waiting for an offer would then wait forever."""
    gap = no_fit(state.slaves, spec.amounts, spec.constraints)
    if gap is None:
        return None
    if gap.reason == "no_agents":
        return "the master has no agents: start one (mesos-nb agent --master ...)"
    if gap.reason == "attributes":
        return "no agent has the attributes " + ", ".join(f"{k}={v}" for k, v in spec.constraints.items())
    big = gap.biggest
    assert big is not None
    want = ", ".join(f"{k} {num(v)}" for k, v in spec.amounts.items())
    has = ", ".join(f"{k} {num(big.scalar(k))}" for k in spec.amounts)
    return (f"no agent can ever fit {want}: the largest of {gap.candidates} agent(s) "
            f"({big.hostname}) has {has} in total")


async def _run_async(args: argparse.Namespace) -> int:
    from mesos_nb.scheduler import MesosError, SchedulerDriver

    spec = _spec(args)
    client = MasterClient(args.master)
    await asyncio.to_thread(client.health)  # fail fast, one sentence
    why = never_fits(await asyncio.to_thread(client.state), spec)
    if why:
        raise CLIError(why)

    sched = _RunScheduler(spec, args.verbose)
    task = sched.task
    fw = framework_info(f"mesos-nb run {spec.name}", args.role or "*", 0.0, None, gpus=bool(args.gpus))
    driver = SchedulerDriver(sched, fw, client.url, start_timeout=10.0)
    try:
        await driver.start()
    except ConnectionError as e:
        raise CLIError(str(e)) from None
    except MesosError as e:
        raise CLIError(f"the master refused the framework ({e})") from None

    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.set)
    follower = asyncio.create_task(_follow_task(sched, client))
    reasons: list[str] = []
    explainer = asyncio.create_task(_say_why_it_waits(sched, client, args.role or "*", spec, reasons))
    deadline = time.monotonic() + args.timeout if args.timeout else None
    code = 1
    try:
        while not sched.done.is_set():
            waits = [asyncio.ensure_future(sched.done.wait()), asyncio.ensure_future(interrupted.wait())]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            timed_out = deadline is not None and time.monotonic() >= deadline and not sched.done.is_set()
            if interrupted.is_set() or timed_out:
                why = "interrupted" if interrupted.is_set() else f"timed out after {num(args.timeout)} s"
                if not sched.launched:
                    if timed_out:
                        raise _no_offer(spec, args.timeout, sched.offers_seen, reasons[-1] if reasons else None)
                    print(f"mesos-nb run: {why} before the task was launched", file=sys.stderr)
                    return 130
                print(f"mesos-nb run: {why}; killing task {task.id}", file=sys.stderr, flush=True)
                with contextlib.suppress(MesosError, ConnectionError):
                    await driver.kill(task.id, task.agent_id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sched.done.wait(), 15)
                code = 130 if interrupted.is_set() else 124
                break
        with contextlib.suppress(asyncio.TimeoutError, MesosClientError):
            await asyncio.wait_for(follower, 10)
        if sched.error and sched.final is None:
            raise CLIError(f"the master ended the framework: {sched.error}")
        st = sched.final
        if st is not None:
            if code not in (124, 130):
                code = exit_code_for(st.state, st.message)
            if st.state != "TASK_FINISHED":
                msg = f": {st.message}" if st.message else ""
                reason = f" ({st.reason})" if st.reason else ""
                print(f"task {task.id} {st.state}{reason}{msg}", file=sys.stderr)
        return code
    finally:
        for t in (follower, explainer):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await driver.stop()


def cmd_run(args: argparse.Namespace) -> int:
    from mesos_nb import logs

    logs.setup("info" if args.verbose else "error")
    return asyncio.run(_run_async(args))


__all__ = ["cmd_run", "exit_code_for"]
