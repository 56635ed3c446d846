"""``mesos-nb run -- CMD``: one command as a task of a short-lived framework; its stdout and
stderr stream to ours; the exit code is the task's.

The task is a :class:`~mesos_nb.scheduler.pool.TaskSpec` run by the SDK's
:class:`~mesos_nb.scheduler.pool.TaskPool` (the one offer handling of mesos-nb, on its own
thread); this module is the shell around it: the never-fits check, why the task waits, its
output followed through :mod:`mesos_nb.client` (the sandbox lookup chain), the timeout and
Ctrl-C (both kill the task), and the exit code.
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
from mesos_nb.scheduler.pool import PENDING, TaskHandle, TaskPool, TaskSpec, image_container
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


class _RunTask(TaskHandle):
    """The one task of ``mesos-nb run``. The pool changes it on its own thread; every change
    wakes the CLI's event loop (``started``: the agent knows the task, ``ended``: terminal)
    and, with ``--verbose``, is said on stderr."""

    def __init__(self, spec: TaskSpec, loop: asyncio.AbstractEventLoop, verbose: bool) -> None:
        super().__init__(spec.task_id or new_task_id(spec.name), spec)
        self.loop = loop
        self.verbose = verbose
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self._said: tuple[str, str | None] = (PENDING, None)

    @property
    def launched(self) -> bool:
        return self.agent_id is not None

    def _changed(self) -> None:
        state, message = self.state, self.message
        if self.verbose and (state, message) != self._said and state != PENDING:
            if self._said[0] == PENDING and state == "TASK_STAGING":
                text = f"launching {self.id} on {self.hostname} ({self.agent_id})"
            else:
                text = f"{state}{': ' + message if message else ''}"
            print(f"mesos-nb run: {text}", file=sys.stderr, flush=True)
        self._said = (state, message)
        wake = [self.ended] if self.done else []
        if state != PENDING and (self.phase != "launching" or state == "TASK_STARTING"):
            wake.append(self.started)
        for ev in wake:
            with contextlib.suppress(RuntimeError):  # the CLI's loop is gone (exiting)
                self.loop.call_soon_threadsafe(ev.set)


class _RunPool(TaskPool):
    """The one-task framework of ``mesos-nb run``: a pool given its own handle."""

    def run(self, task: _RunTask) -> None:
        self.tasks[task.id] = task
        self._soon(lambda: self._enqueue(task))

    def ended_by_master(self, task: TaskHandle) -> str | None:
        """The master's ERROR when it, not the agent, ended ``task`` (the framework is gone)."""
        why = self.error if isinstance(self.error, str) else None
        return why if why and task.message == f"the master ended the framework: {why}" else None


async def _follow_task(task: _RunTask, client: MasterClient) -> None:
    """Stream the task's stdout/stderr until it is terminal (then drain what is left)."""
    await task.started.wait()
    box = None
    while box is None:
        try:
            box = await asyncio.to_thread(locate, client, task.id, agent_id=task.agent_id or "")
        except MesosClientError:
            if task.ended.is_set():
                return
            await asyncio.sleep(0.1)
    followers: list[FileFollower] = [box.follower("stdout", sys.stdout), box.follower("stderr", sys.stderr)]
    while not task.ended.is_set():
        for f in followers:
            await asyncio.to_thread(f.poll)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task.ended.wait(), 0.2)
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


async def _say_why_it_waits(task: _RunTask, client: MasterClient, role: str, spec: TaskSpec,
                            note: list[str]) -> None:
    """While the task waits for an offer, say once (per reason) when its role is why: a quota
    limit used up, or free resources reserved or held back for other roles."""
    from mesos_nb.client.roles import role_wait_reason, roles_and_free

    await asyncio.sleep(2.0)
    while not task.launched:
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
    from mesos_nb.scheduler import MesosError

    spec = _spec(args)
    client = MasterClient(args.master)
    await asyncio.to_thread(client.health)  # fail fast, one sentence
    why = never_fits(await asyncio.to_thread(client.state), spec)
    if why:
        raise CLIError(why)

    loop = asyncio.get_running_loop()
    task = _RunTask(spec, loop, args.verbose)
    pool = _RunPool(client.url, f"mesos-nb run {spec.name}", role=args.role or "*", start_timeout=10.0,
                    gpus=bool(args.gpus))
    try:
        await asyncio.to_thread(pool.start)
    except (ConnectionError, TimeoutError) as e:
        raise CLIError(str(e) or f"could not subscribe to the Mesos master at {client.url}") from None
    except MesosError as e:
        raise CLIError(f"the master refused the framework ({e})") from None

    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.set)
    pool.run(task)
    follower = asyncio.create_task(_follow_task(task, client))
    reasons: list[str] = []
    explainer = asyncio.create_task(_say_why_it_waits(task, client, args.role or "*", spec, reasons))
    deadline = time.monotonic() + args.timeout if args.timeout else None
    code = 1
    try:
        while not task.ended.is_set():
            waits = [asyncio.ensure_future(task.ended.wait()), asyncio.ensure_future(interrupted.wait())]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            timed_out = deadline is not None and time.monotonic() >= deadline and not task.ended.is_set()
            if interrupted.is_set() or timed_out:
                why = "interrupted" if interrupted.is_set() else f"timed out after {num(args.timeout)} s"
                if not task.launched:  # the pool's TEARDOWN (below) kills one launched meanwhile
                    if timed_out:
                        raise _no_offer(spec, args.timeout, pool.offers_seen, reasons[-1] if reasons else None)
                    print(f"mesos-nb run: {why} before the task was launched", file=sys.stderr)
                    return 130
                print(f"mesos-nb run: {why}; killing task {task.id}", file=sys.stderr, flush=True)
                pool.kill(task.id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(task.ended.wait(), 15)
                code = 130 if interrupted.is_set() else 124
                break
        with contextlib.suppress(asyncio.TimeoutError, MesosClientError):
            await asyncio.wait_for(follower, 10)
        ended = pool.ended_by_master(task)
        if ended:
            raise CLIError(f"the master ended the framework: {ended}")
        if task.done:
            if code not in (124, 130):
                code = exit_code_for(task.state, task.message)
            if task.state != "TASK_FINISHED":
                msg = f": {task.message}" if task.message else ""
                reason = f" ({task.reason})" if task.reason else ""
                print(f"task {task.id} {task.state}{reason}{msg}", file=sys.stderr)
        return code
    finally:
        for t in (follower, explainer):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await asyncio.to_thread(pool.stop)


def cmd_run(args: argparse.Namespace) -> int:
    from mesos_nb import logs

    logs.setup("info" if args.verbose else "error")
    return asyncio.run(_run_async(args))


__all__ = ["cmd_run", "exit_code_for"]
