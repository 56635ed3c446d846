"""The decisions of the cgroups v2 isolator, on any machine: where the unified hierarchy is,
which controllers a task's limits need, the files and values its resources become, and the
sentences of its refusals. (What the kernel then does with them, with real processes: see
test_cgroups_v2.py.)"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mesos_nb.agent.cgroups_v2 import (
    CgroupsV2Isolator,
    cpu_weight,
    limit_steps,
    subtree_error,
    unenforceable,
    unified_mount,
    v1_bound,
)
from mesos_nb.agent.isolator import IoLimits, Limits

MB = 1024 * 1024

HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
UNIFIED = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t196\t1
memory\t4\t1784\t1
net_cls\t0\t1\t1
hugetlb\t0\t1\t1
"""


def test_the_unified_hierarchy_is_found_where_it_is_mounted():
    assert unified_mount(UNIFIED) == "/sys/fs/cgroup"
    assert unified_mount(HYBRID) == "/sys/fs/cgroup/unified"
    assert unified_mount("cgroup2 /tmp/cg\\0402 cgroup2 rw 0 0\n") == "/tmp/cg 2"
    assert unified_mount(HYBRID.replace("cgroup2", "cgroup")) is None


def test_controllers_bound_to_v1_are_read_from_proc_cgroups():
    assert v1_bound(PROC_CGROUPS) == {"cpuset", "cpu", "memory"}


@pytest.mark.parametrize(("cpus", "mem", "weight", "cpu_max", "memory_max"), [
    (1.5, 100 * MB, "150", "150000 100000", str(100 * MB)),
    (0.001, 10 * MB, "1", "1000 100000", str(32 * MB)),  # the kernel's 1 ms minimum; Mesos' 32 MB floor
    (200.0, 0, "10000", "20000000 100000", None),  # weight capped at 10000; no memory limit asked
])
def test_a_tasks_resources_become_these_files(cpus, mem, weight, cpu_max, memory_max):
    steps = dict(limit_steps("/cg/c1", Limits(cpus=cpus, mem_bytes=mem)))
    assert steps.pop("/cg/c1/cpu.weight") == weight == str(cpu_weight(cpus))
    assert steps.pop("/cg/c1/cpu.max") == cpu_max
    assert steps.pop("/cg/c1/memory.max", None) == memory_max
    assert steps == {}
    assert limit_steps("/cg/c1", Limits()) == []


def test_each_limit_without_its_controller_is_named():
    limits = Limits(cpus=0.5, mem_bytes=64 * MB, io=IoLimits(device="8:0", write_bps=1 << 20))
    assert unenforceable(limits, {"cpu", "memory", "io"}, "/u/r") is None
    msg = unenforceable(limits, set(), "/u/r")
    assert msg.startswith("not supported: cpus:0.5 needs the cpu controller; mem:64 needs the memory "
                          "controller; the I/O limits need")
    assert "cgroup2 at /u/r does not offer" in msg and "it has: none" in msg
    only_mem = unenforceable(limits, {"cpu", "io", "pids"}, "/u/r")
    assert "memory" in only_mem and "cpus" not in only_mem and "it has: cpu, io, pids" in only_mem
    assert unenforceable(Limits(), set(), "/u/r") is None  # nothing asked: nothing refused


def test_a_busy_parent_is_explained_by_the_no_internal_processes_rule():
    msg = subtree_error("/sys/fs/cgroup", "cpu", OSError(errno.EBUSY, "Device or resource busy"), "1\n57\n")
    assert msg.startswith("cannot enable the cpu controller in /sys/fs/cgroup: that cgroup holds processes (1, 57)")
    assert "either hold processes or give controllers" in msg
    other = subtree_error("/x", "io", OSError(errno.ENOENT, "No such file or directory"), "")
    assert other == "cannot enable the io controller in /x: No such file or directory"


def test_a_limit_is_refused_before_anything_is_made(tmp_path: Path):
    iso = CgroupsV2Isolator(str(tmp_path), controllers={"cpu"})
    with pytest.raises(OSError) as err:
        iso.prepare("c1", Limits(cpus=1.0, mem_bytes=64 * MB))
    assert err.value.errno == errno.ENOTSUP and "needs the memory controller" in str(err.value)
    assert not (tmp_path / "mesos_nb" / "c1").exists() and "c1" not in iso._limits
    iso.prepare("c2", Limits(cpus=1.0))
    assert (tmp_path / "mesos_nb" / "c2" / "cpu.max").read_text() == "100000 100000"


def test_usage_without_the_memory_controller_is_the_rss_of_the_cgroups_processes(tmp_path: Path):
    iso = CgroupsV2Isolator(str(tmp_path), controllers=set())
    iso.prepare("c1", Limits())
    d = tmp_path / "mesos_nb" / "c1"
    (d / "cgroup.procs").write_text(f"{os.getpid()}\n")
    (d / "cpu.stat").write_text("usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n")
    stats = iso.usage("c1")
    assert stats["cpus_user_time_secs"] == 2.0 and stats["cpus_system_time_secs"] == 1.0
    assert "cpus_nr_throttled" not in stats  # no cpu controller: no throttling counts, not zeros
    assert stats["mem_rss_bytes"] > 10 * MB and stats["processes"] == 1


def test_a_controller_not_asked_for_by_name_is_skipped_and_said_so(tmp_path: Path, caplog):
    """``--isolation cgroups/cpu`` (no cgroups/mem) where the hierarchy has no memory
    controller: as in Mesos, memory is not limited; the log says so once, at setup."""
    iso = CgroupsV2Isolator(str(tmp_path), controllers={"cpu"}, required={"cpu"})
    with caplog.at_level("WARNING", logger="mesos_nb.agent"):
        iso.prepare("c1", Limits(cpus=1.0, mem_bytes=64 * MB))
        iso.prepare("c2", Limits(cpus=1.0, mem_bytes=64 * MB))
    d = tmp_path / "mesos_nb" / "c1"
    assert (d / "cpu.max").read_text() == "100000 100000"
    assert not (d / "memory.max").exists() and not (d / "memory.swap.max").exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"cgroups/v2: no memory limits: cgroup2 at {tmp_path} lacks the memory controller(s) and --isolation "
        "does not ask for them"]
    with pytest.raises(OSError, match="cpus:2 needs the cpu controller"):
        CgroupsV2Isolator(str(tmp_path), controllers=set(), required={"cpu"}).prepare("c3", Limits(cpus=2.0))


def test_why_v2_is_unavailable_names_the_place(tmp_path: Path):
    from mesos_nb.agent.cgroups_v2 import unavailable

    assert unavailable(None, "r", ["cpu"]) == "this machine has no cgroup2 (unified) hierarchy mounted"
    assert unavailable(str(tmp_path), "r", ["cpu"]) == f"{tmp_path} is not a cgroup2 mount (no cgroup.controllers)"
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    assert unavailable(str(tmp_path), "r", ["cpu", "memory"]).startswith(
        f"cgroup2 at {tmp_path} lacks the memory controller(s)")
    (tmp_path / "r").write_text("")  # not a directory: the agent's cgroup cannot be made
    assert unavailable(str(tmp_path), "r", ["cpu"]) == \
        f"cannot create the agent's cgroup {tmp_path / 'r'}: File exists"
