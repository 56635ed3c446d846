"""The agent's launcher helper: plain containers are forked by a small helper process (not the
agent), already inside their cgroups, and their exits reach the agent through the helper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import pytest
from conftest import async_wait_for
from test_isolation import NO_CGROUPS

from mesos_nb.agent.containerizer import (
    LaunchError,
    LaunchSpec,
    PosixContainerizer,
    describe_status,
)
from mesos_nb.agent.isolation import make_isolator
from mesos_nb.agent.isolator import Limits
from mesos_nb.agent.launcher import Launcher


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _spec(tmp_path, cid: str, argv: list[str], **kw) -> LaunchSpec:
    box = tmp_path / cid
    box.mkdir()
    return LaunchSpec(container_id=cid, argv=argv, env={"PATH": os.environ["PATH"], "X": "y"}, cwd=str(box),
                      stdout_path=str(box / "stdout"), stderr_path=str(box / "stderr"), **kw)


async def test_helper_forks_the_child_and_reports_its_exit(tmp_path):
    launcher = Launcher()
    try:
        pid, exit_fut = await launcher.launch(
            argv=["sh", "-c", 'echo "$X $(pwd)"; exec sleep 30'], executable=None, env={"PATH": os.environ["PATH"], "X": "hi"},
            cwd=str(tmp_path), stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"), join=[])
        assert _ppid(pid) == launcher.pid  # the helper's child, not ours
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # its own session: the container
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        await async_wait_for(lambda: (tmp_path / "out").read_text() == f"hi {tmp_path}\n", 10, message="output")
        os.kill(pid, signal.SIGTERM)
        status = await exit_fut
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        pid, exit_fut = await launcher.launch(argv=["/bin/sh", "-c", "exit 3"], executable=None, env={},
                                              cwd=str(tmp_path), stdout=os.devnull, stderr=os.devnull, join=[])
        assert describe_status(await exit_fut) == (False, "Command exited with status 3")
    finally:
        launcher.close()


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_exec_failure_fails_the_launch_with_the_reason(tmp_path):
    c = PosixContainerizer(make_isolator("cgroups"))
    try:
        with pytest.raises(LaunchError, match="Failed to launch container: .*No such file or directory"):
            await c.launch(_spec(tmp_path, "missing", ["/nonexistent/binary"]))
        ok = await c.launch(_spec(tmp_path, "ok", ["true"]))  # the helper is still serving
        assert describe_status(await ok.wait()) == (True, "Command exited with status 0")
    finally:
        c.close()


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_helper_death_falls_back_to_the_agent_and_keeps_watching(tmp_path):
    c = PosixContainerizer(make_isolator("cgroups"))
    try:
        running = await c.launch(_spec(tmp_path, "a", ["sleep", "30"]))
        helper = c._launcher.pid
        assert _ppid(running.pid) == helper
        os.kill(helper, signal.SIGKILL)
        await async_wait_for(lambda: c._launcher._broken, 10, message="the agent notices")
        later = await c.launch(_spec(tmp_path, "b", [sys.executable, "-c", "import sys; sys.exit(4)"]))
        assert _ppid(later.pid) == os.getpid() or later.exited  # the fallback: forked by the agent
        assert describe_status(await later.wait()) == (False, "Command exited with status 4")
        os.kill(running.pid, signal.SIGKILL)
        await running.wait()  # still learnt, through a pidfd (the status itself is lost with the helper)
    finally:
        c.close()


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_child_is_inside_its_cgroups_before_it_execs(tmp_path):
    c = PosixContainerizer(make_isolator("cgroups"))
    try:
        # The command reads its own cgroups: what it sees is where it was at exec.
        ct = await c.launch(_spec(tmp_path, "cg1", ["cat", "/proc/self/cgroup"],
                                  limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
        assert describe_status(await ct.wait())[0]
        lines = (tmp_path / "cg1" / "stdout").read_text()
        mine = [line for line in lines.splitlines() if line.endswith("/mesos_nb/cg1")]
        assert mine, lines  # every controller the isolator manages names the container's cgroup
        assert (c.isolator.name == "cgroups/v2") or {"memory", "cpu"} <= {
            ctrl for line in mine for ctrl in line.split(":")[1].split(",")}
    finally:
        c.close()


async def test_posix_containers_are_started_by_the_helper_not_the_agent(tmp_path):
    """posix (no cgroups to join): the helper vforks the child, so the agent's event loop never
    waits for an exec; the child is still in its own session, and its exit comes back."""
    c = PosixContainerizer()
    try:
        ct = await c.launch(_spec(tmp_path, "p", ["sleep", "30"]))
        assert c._launcher.pid is not None and _ppid(ct.pid) == c._launcher.pid
        assert os.getsid(ct.pid) == ct.pid
        assert c.isolator.pids("p")[:1] == [ct.pid]  # the isolator watches it (memory limit)
        await c.destroy(ct, 0)
        bad = await c.launch(_spec(tmp_path, "q", [sys.executable, "-c", "import sys; sys.exit(5)"]))
        assert describe_status(await bad.wait()) == (False, "Command exited with status 5")
        with pytest.raises(LaunchError, match="No such file or directory"):
            await c.launch(_spec(tmp_path, "r", ["/nonexistent/binary"]))
    finally:
        c.close()


def _helper_call(sock, req: dict) -> list[dict]:
    """Send one request to a helper on ``sock``; the replies until the child's exit."""
    import json
    import struct

    data = json.dumps(req).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)
    buf, out = b"", []
    while not any("exit" in r or "error" in r for r in out):
        buf += sock.recv(65536)
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            out.append(json.loads(buf[4:4 + n]))
            buf = buf[4 + n:]
    return out


def _cgroups_of(pid: int) -> dict[str, str]:
    """controller list -> cgroup path, from /proc/<pid>/cgroup (the main thread's: v1 is per thread)."""
    with open(f"/proc/{pid}/task/{pid}/cgroup") as f:
        return {line.split(":")[1]: line.rstrip("\n").split(":", 2)[2] for line in f}


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
def test_v1_child_is_spawned_by_the_helper_inside_its_cgroups_which_it_then_leaves(tmp_path):
    import socket
    import subprocess

    from mesos_nb.agent.launcher import HELPER

    iso = make_isolator("cgroups")
    if iso.name != "cgroups/v1":
        pytest.skip("cgroups v2 keeps a process's threads together: the child is forked there")
    ours, theirs = socket.socketpair()
    helper = subprocess.Popen([sys.executable, "-S", HELPER, str(theirs.fileno())], pass_fds=(theirs.fileno(),))
    theirs.close()
    try:
        home = _cgroups_of(helper.pid)
        for i in range(5):
            cid = f"vfork-{os.getpid()}-{i}"
            iso.prepare(cid, Limits(cpus=0.5, mem_bytes=64 << 20))
            out = tmp_path / f"out{i}"
            argv = ["sh", "-c", "cat /proc/self/cgroup; grep SigIgn /proc/self/status"] if i != 2 else ["/nonexistent/x"]
            if i == 3:  # a cgroup gone behind its back: the move fails halfway (after cpuacct)
                os.rmdir(os.path.dirname(iso.preexec(cid).files[1]))
            replies = _helper_call(ours, {"id": i, "argv": argv, "env": {"PATH": os.environ["PATH"]},
                                          "cwd": str(tmp_path), "stdout": str(out), "stderr": os.devnull,
                                          "join": iso.preexec(cid).files})
            # The helper is back in its own cgroups after every launch, a failed one too.
            assert _cgroups_of(helper.pid) == home
            if i in (2, 3):
                assert replies == [{"id": i, "error": replies[0]["error"]}]
                assert "No such file or directory" in replies[0]["error"]
                assert ("/nonexistent/x" if i == 2 else f"/{cid}/tasks") in replies[0]["error"]
                assert iso.cleanup(cid)
                continue
            assert replies[0] == {"id": i, "pid": replies[0]["pid"], "how": "vfork"}
            assert replies[1] == {"exit": replies[0]["pid"], "status": 0}
            lines = out.read_text().splitlines()
            assert {"memory", "cpu"} <= {line.split(":")[1] for line in lines
                                        if line.endswith(f"/mesos_nb/{cid}")}  # born inside them
            # It keeps no disposition of the helper's (its ^C handler is not an ignored SIGINT).
            ignored = int(next(x for x in lines if x.startswith("SigIgn")).split()[1], 16)
            assert not ignored & (1 << (signal.SIGINT - 1))
            # Removed at once: the helper is no longer there to be killed with them.
            assert iso.cleanup(cid)
            assert helper.poll() is None
    finally:
        ours.close()
        helper.wait(10)


def test_helper_resolves_bare_names_in_the_task_path_and_reports_unopenable_files(tmp_path):
    """``posix_spawn`` has no PATH of the task's own: the helper searches the task
    environment's ``PATH`` (not its own), and a stdout it cannot open is named in the error."""
    import socket
    import subprocess

    from mesos_nb.agent.launcher import HELPER

    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "only-here"
    tool.write_text("#!/bin/sh\necho \"ran in $(pwd)\"\n")
    tool.chmod(0o755)
    box = tmp_path / "box"
    box.mkdir()
    ours, theirs = socket.socketpair()
    helper = subprocess.Popen([sys.executable, "-S", HELPER, str(theirs.fileno())], pass_fds=(theirs.fileno(),))
    theirs.close()
    try:
        env = {"PATH": f"/nonexistent:{bindir}:/usr/bin:/bin"}
        replies = _helper_call(ours, {"id": 1, "argv": ["only-here"], "env": env, "cwd": str(box),
                                      "stdout": str(box / "out"), "stderr": str(box / "err"), "join": []})
        assert replies[1]["status"] == 0
        assert (box / "out").read_text() == f"ran in {box}\n"  # in its cwd, its stdout redirected
        replies = _helper_call(ours, {"id": 2, "argv": ["only-here"], "env": {"PATH": "/usr/bin:/bin"}, "cwd": str(box),
                                      "stdout": str(box / "out"), "stderr": str(box / "err"), "join": []})
        assert "No such file or directory" in replies[0]["error"] and "only-here" in replies[0]["error"]
        replies = _helper_call(ours, {"id": 3, "argv": ["/bin/true"], "env": env, "cwd": str(box),
                                      "stdout": str(tmp_path / "gone" / "out"), "stderr": os.devnull, "join": []})
        assert str(tmp_path / "gone" / "out") in replies[0]["error"]
        replies = _helper_call(ours, {"id": 4, "argv": ["/bin/true"], "env": env, "cwd": str(tmp_path / "gone"),
                                      "stdout": os.devnull, "stderr": os.devnull, "join": []})
        assert str(tmp_path / "gone") in replies[0]["error"]
        assert helper.poll() is None  # still serving
    finally:
        ours.close()
        helper.wait(10)


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_cgroups_are_set_up_by_the_helper_in_the_launch_round(tmp_path, monkeypatch):
    """cgroups v1: the agent does not make the container's cgroups itself (no worker thread,
    no second round): the helper carries out the isolator's plan (mkdir, limits) and spawns.
    A setup that fails is a launch failure naming the isolator, and the helper keeps serving."""
    root = f"launch-setup-{os.getpid()}"
    iso = make_isolator("cgroups", root)
    if iso.name != "cgroups/v1":
        pytest.skip("cgroups v2 prepares in the agent")
    c = PosixContainerizer(iso)

    def not_here(*_a, **_k):
        raise AssertionError("prepared in the agent")

    monkeypatch.setattr(iso, "prepare", not_here)
    try:
        ct = await c.launch(_spec(tmp_path, "s1", ["sh", "-c", "cat /proc/self/cgroup; sleep 30"],
                                  limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
        await async_wait_for(lambda: "memory" in (tmp_path / "s1" / "stdout").read_text(), 10, message="output")
        lines = (tmp_path / "s1" / "stdout").read_text().splitlines()
        assert {"memory", "cpu"} <= {ln.split(":")[1] for ln in lines if ln.endswith(f"/{root}/s1")}
        def read(ctrl: str, name: str) -> int:
            with open(os.path.join(iso._dir(ctrl, "s1"), name)) as f:
                return int(f.read())

        assert read("cpu", "cpu.cfs_quota_us") == 50_000 and read("cpu", "cpu.shares") == 512
        assert read("memory", "memory.limit_in_bytes") == 64 << 20
        await c.destroy(ct, 0)
        await async_wait_for(lambda: iso.cleanup("s1"), 10, message="s1 removed")
        iso.drain_pool()  # (s1's cgroups may have been kept for a later container)
        for ctrl in iso.CONTROLLERS:  # the parents vanish behind the agent's back: mkdir fails
            os.rmdir(os.path.join(iso.root, ctrl, root))
        with pytest.raises(LaunchError, match=r"Failed to prepare isolation \(cgroups/v1\): .*No such file"):
            await c.launch(_spec(tmp_path, "s2", ["true"], limits=Limits(cpus=0.5)))
        iso._parents_ready = False
        ok = await c.launch(_spec(tmp_path, "s3", ["true"], limits=Limits(cpus=0.5)))
        assert describe_status(await ok.wait()) == (True, "Command exited with status 0")
        assert c._launcher is not None and not c._launcher._broken  # the same helper served all three
        await async_wait_for(lambda: iso.cleanup("s3"), 10, message="s3 removed")
    finally:
        c.close()
        for ctrl in iso.CONTROLLERS:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(iso.root, ctrl, root))


def _v1_isolator(name: str):
    iso = make_isolator("cgroups", name)
    if iso.name != "cgroups/v1":
        pytest.skip("the helper removes cgroups v1 only (v2 removes in a worker thread)")
    return iso


def _rmdir_parents(iso) -> None:
    for ctrl in iso.CONTROLLERS:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(iso.root, ctrl, iso.nested))


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_ended_containers_cgroups_are_removed_by_the_helper(tmp_path, monkeypatch):
    """cgroups v1: an ended container's cgroups are removed by the launcher helper (a batch in
    one message), not by the agent; a process the task left behind in its cgroup (its own
    session, so the group kill missed it) is killed and the removal retried."""
    iso = _v1_isolator(f"launch-rm-{os.getpid()}")
    c = PosixContainerizer(iso)

    def not_here(*_a, **_k):
        raise AssertionError("removed in the agent")

    monkeypatch.setattr(iso, "cleanup", not_here)
    try:
        plain = await c.launch(_spec(tmp_path, "r1", ["true"], limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
        left = await c.launch(_spec(tmp_path, "r2", ["sh", "-c", "setsid sh -c 'echo $$ > s.tmp; mv s.tmp straggler; exec sleep 60' & "
                                                  "while [ ! -s straggler ]; do :; done"],
                                    limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
        await plain.wait()
        await left.wait()
        straggler = int((tmp_path / "r2" / "straggler").read_text())
        assert os.getpgid(straggler) != left.pid  # out of the container's process group
        dirs = iso.removal_dirs("r1") + iso.removal_dirs("r2")
        await async_wait_for(lambda: not any(os.path.exists(d) for d in dirs), 15, message="cgroups removed")
        assert not c._removal.pending and "r1" not in iso._limits and "r2" not in iso._limits
        with pytest.raises(ProcessLookupError):
            for _ in range(500):  # killed by the helper's removal; a zombie until init reaps it
                os.kill(straggler, 0)
                with open(f"/proc/{straggler}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        raise ProcessLookupError
        assert c._launcher is not None and not c._launcher._broken
    finally:
        c.close()
        _rmdir_parents(iso)


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_the_helper_goes_home_through_fds_kept_open(tmp_path):
    """The helper's way back out of a container's v1 cgroups is one ``write`` per hierarchy to
    a ``tasks`` file it opened once (not an open/write/close each launch), and a container's
    memory.swappiness 0 comes from its parent (no write of its own in the setup plan)."""
    iso = _v1_isolator(f"launch-home-{os.getpid()}")
    c = PosixContainerizer(iso)
    try:
        for i in range(3):
            ct = await c.launch(_spec(tmp_path, f"h{i}", ["true"], limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
            assert describe_status(await ct.wait()) == (True, "Command exited with status 0")
        assert c._launcher is not None
        fd_dir = f"/proc/{c._launcher.pid}/fd"

        def link(fd: str) -> str:  # the helper may close an fd meanwhile (it recycles ended cgroups)
            try:
                return os.readlink(f"{fd_dir}/{fd}")
            except FileNotFoundError:
                return ""

        tasks = sorted(t for t in map(link, os.listdir(fd_dir)) if t.endswith("/tasks"))
        assert len(tasks) == len(iso.CONTROLLERS)  # one per hierarchy, kept open
        assert not any(f"/{iso.nested}/" in t for t in tasks)  # its own cgroups, not a container's
        plan = iso.prepare_plan("h9", Limits(cpus=0.5, mem_bytes=64 << 20))
        assert not any(str(step[1]).endswith("memory.swappiness") for step in plan)
        live = await c.launch(_spec(tmp_path, "h9", ["sleep", "30"], limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
        with open(os.path.join(iso._dir("memory", "h9"), "memory.swappiness")) as f:
            assert f.read().strip() == "0"
        await c.destroy(live, 0)
    finally:
        c.close()
        _rmdir_parents(iso)


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
async def test_a_removal_batch_in_flight_at_close_is_still_removed(tmp_path):
    """The agent stops while a batch of ended containers is on its way to the helper (no reply
    will come): closing removes that batch too, and nobody is left waiting for the reply."""
    iso = _v1_isolator(f"launch-close-{os.getpid()}")
    c = PosixContainerizer(iso)
    try:
        ct = await c.launch(_spec(tmp_path, "q1", ["true"], limits=Limits(cpus=0.5, mem_bytes=64 << 20)))
        await ct.wait()
        await async_wait_for(lambda: "q1" in c._removal.pending, 5, message="queued")
        c._removal._start()  # the batch leaves now (its timer would fire later)
        task = c._removal._task
        c.close()
        assert not any(os.path.exists(d) for d in iso.removal_dirs("q1"))
        assert task is not None
        await asyncio.wait_for(task, 10)  # the in-flight removal ended (no reply pending forever)
    finally:
        c.close()
        _rmdir_parents(iso)
