"""The /files symlink-swap race, performed for real.

A task swaps a directory ``x`` of its sandbox with a symlink ``y -> /etc`` in a tight loop
(``renameat2(RENAME_EXCHANGE)``) while a client reads ``…/runs/latest/x/passwd`` 3,000 times,
through the agent's ``/files/read`` and through the master's ``/master/files/read`` proxy.
Before the fix the host's ``/etc/passwd`` came back in tens of reads and hundreds were 500s;
now: no host byte, no 5xx, and both outcomes of the race (the sandbox file; a 403/404) occur.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import pytest
from agent_security_support import cluster

from mesos_nb.agent import safe_path

READS = 3000
HOST_MARK = "root:"  # the first line of every /etc/passwd
SANDBOX_MARK = "SANDBOX-PASSWD"

EXCHANGER = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("x")
with open("x/passwd", "w") as f:
    f.write("SANDBOX-PASSWD\n")
os.symlink("/etc", "y")
AT_FDCWD, RENAME_EXCHANGE = -100, 2
swap = getattr(libc, "renameat2", None)
if swap is None:
    def swap(a, b, c, d, e, _s=libc.syscall):
        return _s(316, a, b, c, d, e)  # x86_64 renameat2
assert swap(AT_FDCWD, b"x", AT_FDCWD, b"y", RENAME_EXCHANGE) == 0, ctypes.get_errno()
open("ready", "w").close()
while True:
    swap(AT_FDCWD, b"x", AT_FDCWD, b"y", RENAME_EXCHANGE)
"""


async def _hammer(get, n: int, concurrency: int = 8) -> Counter:
    seen: Counter = Counter()
    left = [n]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            status, body = await get()
            if status >= 500:
                seen["5xx"] += 1
            elif status == 200:
                text = body if isinstance(body, str) else str(body)
                seen["host" if HOST_MARK in text else "sandbox" if SANDBOX_MARK in text else "other200"] += 1
            else:
                seen["refused"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seen


async def _start_exchanger(c) -> str:
    c.fw.launch("swapper", {"value": sys.executable, "shell": False, "arguments": [sys.executable, "-c", EXCHANGER]})
    await c.fw.wait_state("swapper", {"TASK_RUNNING"})
    sandbox = c.sandbox("swapper")

    async def ready() -> bool:
        return (await c.read(sandbox + "/ready"))[0] == 200

    for _ in range(1000):
        if await ready():
            return sandbox
        await asyncio.sleep(0.02)
    raise AssertionError(f"the exchange loop did not start: {c.fw.states('swapper')}")


def _assert_refused_safely(seen: Counter, where: str) -> None:
    assert seen["host"] == 0, f"{where}: host /etc/passwd served {seen['host']} times: {seen}"
    assert seen["5xx"] == 0, f"{where}: server errors: {seen}"
    assert seen["other200"] == 0, seen
    assert seen["sandbox"] + seen["refused"] == READS
    # The race really ran: both sides of the swap were observed.
    assert seen["sandbox"] > 0 and seen["refused"] > 0, f"{where}: the swap did not race: {seen}"


@pytest.mark.parametrize("resolver", ["openat2", "walk"])
async def test_symlink_swap_never_serves_host_files(tmp_path, monkeypatch, resolver):
    if resolver == "openat2" and not safe_path.openat2_available():
        pytest.skip("this kernel has no openat2; the walk variant covers the fallback")
    if resolver == "walk":
        monkeypatch.setattr(safe_path, "_openat2_works", False)
    async with cluster(str(tmp_path / "agent")) as c:
        sandbox = await _start_exchanger(c)
        target = sandbox + "/x/passwd"
        seen = await _hammer(lambda: c.read(target), READS)
        _assert_refused_safely(seen, f"agent /files/read ({resolver})")

        # browse and download go through the same resolution.
        async def browse():
            async with c.s.get(c.agent.url + "/files/browse", params={"path": sandbox + "/x"}) as r:
                body = await r.json() if r.status == 200 else await r.text()
                if r.status == 200:
                    names = {e["path"].rsplit("/", 1)[-1] for e in body}
                    return 200, SANDBOX_MARK if names == {"passwd"} else f"{HOST_MARK} {sorted(names)[:5]}"
                return r.status, body

        async def download():
            async with c.s.get(c.agent.url + "/files/download", params={"path": target}) as r:
                return r.status, (await r.read()).decode(errors="replace")

        for name, get in (("browse", browse), ("download", download)):
            seen = await _hammer(get, READS // 3)
            assert seen["host"] == 0 and seen["5xx"] == 0 and seen["other200"] == 0, (name, seen)
            assert seen["sandbox"] > 0, (name, seen)


async def test_symlink_swap_through_the_master_proxy(tmp_path):
    async with cluster(str(tmp_path / "agent")) as c:
        sandbox = await _start_exchanger(c)
        params = {"agent_id": c.agent.agent_id, "path": sandbox + "/x/passwd"}

        async def via_master():
            async with c.s.get(c.master_url + "/master/files/read", params=params) as r:
                return r.status, await r.text()

        seen = await _hammer(via_master, READS)
        _assert_refused_safely(seen, "master /master/files/read")
