"""cgroups v2 isolation on this machine's real unified hierarchy, with real processes.

Each test works under a cgroup of its own, ``<unified>/mesos-nb-test-<uuid>`` (the agent's
``--cgroups-root``), removed at the end; nothing is written above it. On a "hybrid" machine
(cgroup v1 controllers, a controller-less cgroup2 at ``/sys/fs/cgroup/unified``) the
containment, the kill, the removal, the recovery and the refusals are real; what needs the cpu or
memory controller (throttling, an OOM kill) is in test_cgroups_v2_core.py (the values written)
and runs here only where the hierarchy offers the controller."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import async_wait_for, wait_for

from mesos_nb.agent import cgroups_v2
from mesos_nb.agent.cgroups_v2 import CgroupsV2Isolator, cgroup2_mount, kill_cgroup, remove_tree
from mesos_nb.agent.containerizer import (
    LaunchError,
    LaunchSpec,
    PosixContainerizer,
    describe_status,
)
from mesos_nb.agent.isolation import make_isolator
from mesos_nb.agent.isolator import Limits
from mesos_nb.agent.users import resolve_user

MOUNT = cgroup2_mount()
NO_V2 = ("not root" if os.geteuid() != 0 else "no cgroup2 (unified) hierarchy mounted" if MOUNT is None
         else None)
pytestmark = pytest.mark.skipif(NO_V2 is not None, reason=f"cannot use cgroups v2 here: {NO_V2}")
OFFERED = set(((Path(MOUNT) / "cgroup.controllers").read_text().split()) if MOUNT else ())

# A shell with a child in its process group, and a double-forked daemon in a session of its own.
FAMILY = ["sh", "-c", "sleep 300 & setsid sh -c 'sleep 300 & exec sleep 301' & exec sleep 302"]


@pytest.fixture
def root():
    """The agent's ``--cgroups-root`` for one test: made fresh, emptied and removed after."""
    nested = f"mesos-nb-test-{uuid.uuid4().hex[:12]}"
    yield nested
    top = os.path.join(MOUNT, nested)
    if os.path.isdir(top):
        kill_cgroup(top)
        remove_tree(top)


def _spec(tmp_path: Path, cid: str, argv: list[str], **kw) -> LaunchSpec:
    box = tmp_path / cid
    box.mkdir()
    return LaunchSpec(container_id=cid, argv=argv, env={"PATH": os.environ["PATH"]}, cwd=str(box),
                      stdout_path=str(box / "stdout"), stderr_path=str(box / "stderr"), **kw)


def _cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


async def _gone(pids: list[int], root: str, cid: str) -> None:
    """Every one of ``pids`` is dead, then the container's cgroup is removed."""
    await async_wait_for(lambda: not _alive(pids), 10, message=lambda: f"alive: {_alive(pids)}")
    await async_wait_for(lambda: not os.path.exists(os.path.join(MOUNT, root, cid)), 10, message="cgroup removed")


async def _family(c: PosixContainerizer, cid: str, n: int = 4) -> list[int]:
    """The pids of a container once ``n`` (a FAMILY: four) are in its cgroup."""
    def all_there() -> list[int] | None:
        pids = c.isolator.pids(cid)
        return pids if len(pids) == n else None
    return await async_wait_for(all_there, 10, message=lambda: f"{n} processes: {c.isolator.pids(cid)}")


def _containerizer(nested: str, launcher: bool = True) -> PosixContainerizer:
    return PosixContainerizer(CgroupsV2Isolator(MOUNT, nested=nested), launcher=launcher)


@pytest.mark.parametrize("launcher", [True, False], ids=["helper", "agent"])
async def test_the_tasks_processes_are_in_a_cgroup_named_by_its_container_under_the_agents_root(
        tmp_path, root, launcher):
    c = _containerizer(root, launcher)
    try:
        ct = await c.launch(_spec(tmp_path, "c1", ["sh", "-c", "cat /proc/self/cgroup; exec sleep 300"]))
        d = os.path.join(MOUNT, root, "c1")
        assert _cgroup_of(ct.pid) == f"/{root}/c1"
        await async_wait_for(lambda: (tmp_path / "c1" / "stdout").read_text(), 10, message="output")
        # The child was inside before it exec'd: its first instruction ran there.
        assert f"0::/{root}/c1\n" in (tmp_path / "c1" / "stdout").read_text()
        assert c.isolator.pids("c1") == [ct.pid]
        assert os.stat(os.path.join(d, "cgroup.procs")).st_uid == 0
        await c.destroy(ct, 0.5)
        await async_wait_for(lambda: not os.path.exists(d), 10, message="cgroup removed")
    finally:
        c.close()


async def test_a_kill_takes_every_process_of_the_container_and_then_its_cgroup(tmp_path, root):
    c = _containerizer(root)
    try:
        ct = await c.launch(_spec(tmp_path, "fam", FAMILY))
        pids = await _family(c, "fam")
        # The daemon left the container's session (a process-group kill misses it) but not its cgroup.
        assert len({os.getsid(p) for p in pids}) == 2
        status = await c.destroy(ct, 0.2)
        assert not describe_status(status)[0]
        await _gone(pids, root, "fam")
    finally:
        c.close()


async def test_an_ended_tasks_leftover_daemon_is_killed_and_the_cgroup_removed(tmp_path, root):
    c = _containerizer(root)
    try:
        ct = await c.launch(_spec(tmp_path, "bye", ["sh", "-c", "setsid sleep 300 & echo $! > daemon; exit 0"]))
        assert describe_status(await ct.wait())[0]
        daemon = int((tmp_path / "bye" / "daemon").read_text())
        await async_wait_for(lambda: not _alive([daemon]), 10, message="the daemon killed")
        await async_wait_for(lambda: not os.path.exists(os.path.join(MOUNT, root, "bye")), 10,
                             message="cgroup removed")
    finally:
        c.close()


@pytest.mark.parametrize("kill_file", [True, False], ids=["cgroup.kill", "freeze"])
def test_kill_cgroup_empties_a_forking_cgroup(root, kill_file):
    """cgroup.kill, and without it (before Linux 5.14) freeze + SIGKILL + thaw: a shell that
    keeps forking cannot outrun either."""
    d = os.path.join(MOUNT, root, "forker")
    os.makedirs(d)
    fork_loop = "while :; do sleep 300 & done"
    proc = psutil.Popen(["sh", "-c", f"echo 0 > {d}/cgroup.procs && {fork_loop}"])
    try:
        wait_for(lambda: len(cgroups_v2._pids(d)) > 20, 10, message="forks")
        assert kill_cgroup(d, use_kill_file=kill_file)
        assert cgroups_v2._pids(d) == []
        proc.wait(10)
    finally:
        if proc.is_running():
            proc.kill()
            proc.wait()


async def test_a_non_root_task_cannot_leave_its_cgroup(tmp_path, root):
    """cgroup.procs files are root's: a task running as another user can neither move itself
    to its parent or the hierarchy's root nor make a cgroup of its own to move into."""
    c = _containerizer(root)
    try:
        os.chmod(tmp_path, 0o755)
        escape = ("for f in {parent}/cgroup.procs {top}/cgroup.procs {own}/cgroup.procs; do "
                  "echo $$ > $f 2>/dev/null && echo moved $f; done; mkdir {own}/sub 2>/dev/null && echo made; "
                  "cat /proc/self/cgroup; echo done").format(parent=os.path.join(MOUNT, root), top=MOUNT,
                                                              own=os.path.join(MOUNT, root, "esc"))
        spec = _spec(tmp_path, "esc", ["sh", "-c", escape], user=resolve_user("nobody"))
        os.chmod(spec.cwd, 0o777)
        ct = await c.launch(spec)
        assert describe_status(await ct.wait())[0]
        out = (tmp_path / "esc" / "stdout").read_text()
        assert "moved" not in out and "made" not in out, out
        assert f"0::/{root}/esc\n" in out and out.endswith("done\n"), out
    finally:
        c.close()


async def test_a_limit_no_controller_here_can_enforce_is_refused_naming_the_controller(tmp_path, root):
    c = _containerizer(root)
    try:
        for cid, limits, ctrl in (("cpu", Limits(cpus=0.5), "cpu"), ("mem", Limits(mem_bytes=64 << 20), "memory")):
            if ctrl in OFFERED:
                continue
            with pytest.raises(LaunchError) as err:
                await c.launch(_spec(tmp_path, cid, ["true"], limits=limits))
            msg = str(err.value)
            assert "not supported" in msg and f"needs the {ctrl} controller" in msg, msg
            assert not os.path.exists(os.path.join(MOUNT, root, cid))  # nothing was started nor made
    finally:
        c.close()


@pytest.mark.skipif({"cpu", "memory"} <= OFFERED, reason="this machine's cgroup2 has cpu and memory")
def test_asking_for_cgroups_v2_by_name_refuses_the_agent_when_its_controllers_are_elsewhere():
    """``--isolation cgroups/v2`` where the unified hierarchy lacks cpu/memory: a refusal at
    start naming them, not the v1 isolator instead (``cgroups`` / ``auto`` still pick v1)."""
    with pytest.raises(ValueError) as err:
        make_isolator("cgroups/v2")
    msg = str(err.value)
    assert msg.startswith("cgroups/v2 isolation is unavailable: cgroup2 at ")
    assert all(c in msg for c in {"cpu", "memory"} - OFFERED), msg


async def test_usage_is_measured_even_without_the_memory_controller(tmp_path, root):
    c = _containerizer(root)
    hog = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); print('ok', flush=True); " \
          "t = time.time()\nwhile time.time() - t < 0.3: pass\ntime.sleep(300)"
    try:
        ct = await c.launch(_spec(tmp_path, "hog", [sys.executable, "-c", hog]))
        await async_wait_for(lambda: (tmp_path / "hog" / "stdout").read_text() == "ok\n", 20, message="allocated")
        def busy() -> dict | None:
            stats = c.usage(ct)
            return stats if stats["cpus_user_time_secs"] > 0.1 else None
        stats = await async_wait_for(busy, 20, message=lambda: f"cpu time: {c.usage(ct)}")
        assert stats["processes"] == 1
        assert stats["mem_rss_bytes"] >= 64 << 20, stats
        assert stats["mem_total_bytes"] >= 64 << 20, stats
        await c.destroy(ct, 0)
    finally:
        c.close()


async def test_a_restarted_agent_adopts_its_container_and_kills_it_whole(tmp_path, root):
    """The first containerizer goes away (the agent died) leaving its container running; a new
    one, knowing nothing but the container id and pid, adopts it and a kill still takes the
    double-forked daemon, then the cgroup."""
    first = _containerizer(root)
    ct = await first.launch(_spec(tmp_path, "old", FAMILY))
    pids = await _family(first, "old")
    first.close()  # the agent is gone: its helper exits, the children keep running (reparented)
    second = _containerizer(root)
    try:
        adopted = second.recover("old", ct.pid, str(tmp_path / "old"))
        assert adopted is not None and _alive(pids) == pids
        await second.destroy(adopted, 0.2)
        await _gone(pids, root, "old")
    finally:
        second.close()


def test_the_parent_setup_enables_only_offered_controllers_under_its_own_root(root):
    """Nothing is written to the hierarchy's root for a controller it does not offer; the
    containers' parent is made and what reached it is what the isolator will use."""
    got = cgroups_v2.open_parent(MOUNT, root, ["cpu", "memory"])
    assert got == frozenset({"cpu", "memory"} & OFFERED)
    assert os.path.isdir(os.path.join(MOUNT, root))
    iso = CgroupsV2Isolator(MOUNT, nested=root)
    iso.prepare("p1", Limits())
    assert iso.controllers == got
    if "cpu" not in got:  # a running container cannot be given a limit it cannot have either
        with pytest.raises(OSError) as err:
            iso.update("p1", Limits(cpus=1.0))
        assert err.value.errno == errno.ENOTSUP and "needs the cpu controller" in str(err.value)
    assert iso.cleanup("p1")


async def test_a_restarted_agent_kills_what_a_dead_container_left_and_removes_its_cgroup(tmp_path, root):
    """The container's task ended while no agent watched, leaving a daemon in its cgroup: the
    restarted agent (recovery.py: a run it does not adopt) kills it and removes the cgroup."""
    first = _containerizer(root)
    ct = await first.launch(_spec(tmp_path, "gone", ["sh", "-c", "setsid sleep 300 & echo $! > daemon; exec sleep 300"]))
    await async_wait_for(lambda: (tmp_path / "gone" / "daemon").read_text().strip(), 10, message="daemon")
    daemon = int((tmp_path / "gone" / "daemon").read_text())
    first.close()  # the agent is gone; then the task's process group is killed
    os.killpg(ct.pid, 9)
    await async_wait_for(lambda: _alive([ct.pid]) == [], 10, message="leader gone")
    assert _alive([daemon]) == [daemon] and _cgroup_of(daemon) == f"/{root}/gone"
    second = _containerizer(root)
    try:
        second.remove_stale("gone")
        await async_wait_for(lambda: not _alive([daemon]), 10, message="the daemon killed")
        await async_wait_for(lambda: not os.path.exists(os.path.join(MOUNT, root, "gone")), 10,
                             message="cgroup removed")
    finally:
        second.close()


@pytest.mark.skipif("memory" not in OFFERED, reason="the unified hierarchy here has no memory controller (bound to v1)")
async def test_a_task_over_its_memory_max_is_oom_killed_and_reported(tmp_path, root):
    c = _containerizer(root)
    hog = "b = []\nwhile True: b.append(bytearray(8 << 20))"
    try:
        ct = await c.launch(_spec(tmp_path, "oom", [sys.executable, "-c", hog], limits=Limits(mem_bytes=64 << 20)))
        d = os.path.join(MOUNT, root, "oom")
        assert Path(d, "memory.max").read_text().strip() == str(64 << 20)
        assert Path(d, "memory.swap.max").read_text().strip() in ("0", "")
        assert Path(d, "memory.oom.group").read_text().strip() == "1"
        status = await ct.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
        await async_wait_for(lambda: ct.limitation, 10, message="the limitation")
        assert ct.limitation.startswith("Memory limit exceeded: Requested: 64MB Maximum Used: ")
    finally:
        c.close()


@pytest.mark.skipif("cpu" not in OFFERED, reason="the unified hierarchy here has no cpu controller (bound to v1)")
async def test_a_task_over_its_cpu_max_is_throttled(tmp_path, root):
    c = _containerizer(root)
    try:
        ct = await c.launch(_spec(tmp_path, "spin", [sys.executable, "-c", "while True: pass"],
                                  limits=Limits(cpus=0.2)))
        d = os.path.join(MOUNT, root, "spin")
        assert Path(d, "cpu.max").read_text().split() == ["20000", "100000"]
        assert Path(d, "cpu.weight").read_text().strip() == "20"
        await async_wait_for(lambda: c.usage(ct).get("cpus_nr_throttled", 0) > 3, 20, message="throttled")
        await c.destroy(ct, 0)
    finally:
        c.close()


async def test_through_the_agent_a_killed_task_takes_its_whole_cgroup(tmp_path, root, monkeypatch):
    """A real agent (in this process, on a fake master) whose containerizer is the v2 isolator
    on this machine's unified hierarchy: the task's processes are in ``<root>/<container id>``;
    KILL takes the double-forked daemon too; the cgroup is removed. (The task's cpus/mem are not
    limited here: the hierarchy has no cpu/memory controller and this isolator was not asked
    for them, as ``--isolation cgroups/cpu`` would not ask for memory; the log says so.)"""
    from test_agent_integration import FW, KillTask, agents_on_fake_masters, run_task

    from mesos_nb.agent import agent as agent_module
    from mesos_nb.agent.isolation import parse_isolation

    monkeypatch.setattr(agent_module, "make_containerizer", lambda *a, **kw: PosixContainerizer(
        CgroupsV2Isolator(MOUNT, nested=root, required=()), isolation=parse_isolation("cgroups/v2")))
    async with agents_on_fake_masters(tmp_path, "cpus:2;mem:1024") as make:
        master, agent = await make("cgroups/v2")
        assert agent.isolation == "cgroups/v2"
        await master.send(run_task(agent.agent_id, "fam", FAMILY[2].replace("exec sleep 302", "sleep 302; wait"),
                                   caps=["TASK_KILLING_STATE"]))
        await master.wait_state("fam", "TASK_RUNNING")
        ct = agent.frameworks[FW].executors["fam"].container

        def family() -> list[int] | None:  # the shell, its sleep, the daemon and its child, the last sleep
            pids = agent.containerizer.isolator.pids(ct.container_id)
            return pids if len(pids) == 5 else None
        pids = await async_wait_for(family, 10, message="the family in its cgroup")
        assert {_cgroup_of(p) for p in pids} == {f"/{root}/{ct.container_id}"}
        await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="fam"))
        await master.wait_state("fam", "TASK_KILLED")
        await _gone(pids, root, ct.container_id)


@pytest.mark.skipif({"cpu", "memory"} <= OFFERED, reason="this machine's cgroup2 has cpu and memory")
def test_the_agent_cli_refuses_cgroups_v2_by_name_with_one_sentence(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mesos_nb", "agent", "--master", "127.0.0.1:1", "--port", "0",
                          "--work-dir", str(tmp_path), "--isolation", "cgroups/v2", "--resources", "cpus:1;mem:100"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert out.returncode == 2, out
    assert out.stderr.startswith("mesos-nb: cgroups/v2 isolation is unavailable: cgroup2 at ") and \
        "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("kill_file", [True, False], ids=["cgroup.kill", "freeze"])
async def test_cgroups_a_root_task_made_inside_its_own_go_with_it(tmp_path, root, monkeypatch, kill_file):
    """A task running as root may make cgroups inside its own and move into them (a container
    engine in a task does): its kill reaches them and its removal removes them, deepest first."""
    if not kill_file:  # a kernel before 5.14: no cgroup.kill
        real = cgroups_v2.kill_cgroup
        monkeypatch.setattr(cgroups_v2, "kill_cgroup", lambda d, **kw: real(d, **{**kw, "use_kill_file": False}))
    c = _containerizer(root)
    own = os.path.join(MOUNT, root, "nest")
    try:
        ct = await c.launch(_spec(tmp_path, "nest", ["sh", "-c", f"mkdir -p {own}/a/b && setsid sh -c "
                                                     f"'echo $$ > {own}/a/b/cgroup.procs && exec sleep 300' & "
                                                     "exec sleep 300"]))
        inner = await async_wait_for(lambda: cgroups_v2._pids(f"{own}/a/b"), 10, message="a process in a/b")
        await c.destroy(ct, 0)
        await async_wait_for(lambda: not _alive(inner), 10, message="the nested cgroup's process killed")
        await async_wait_for(lambda: not os.path.exists(own), 10, message="the container's cgroups removed")
    finally:
        c.close()


async def test_a_pid_namespace_container_is_in_its_cgroup_and_goes_whole(tmp_path, root):
    """``namespaces/pid`` with v2: the namespace's init, the task and its daemon are in the
    container's cgroup (the host-side waiter, which records the exit status, stays out by
    design); a kill takes them all, then the cgroup."""
    from mesos_nb.agent.isolation import namespaces_unavailable, parse_isolation

    if (why := namespaces_unavailable()) is not None:
        pytest.skip(why)
    c = PosixContainerizer(CgroupsV2Isolator(MOUNT, nested=root), isolation=parse_isolation("cgroups/v2,namespaces/pid"))
    try:
        ct = await c.launch(_spec(tmp_path, "pidns", ["sh", "-c", "setsid sleep 300 & exec sleep 301"]))
        pids = await _family(c, "pidns", 3)  # the namespace's init, the task, its daemon
        assert ct.pid not in pids and {_cgroup_of(p) for p in pids} == {f"/{root}/pidns"}
        await c.destroy(ct, 0.2)
        await _gone(pids, root, "pidns")
    finally:
        c.close()
