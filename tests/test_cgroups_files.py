"""What the cgroup isolators write and read, on a directory tree laid out like ``/sys/fs/cgroup``
(v1 and v2): the limits each version writes, the OOM it reads back as Mesos' message, and the
pids it moves in. Real cgroups are exercised in test_isolation.py (on whichever version the
machine has); this covers both versions' files on any machine."""

from __future__ import annotations

import os
from pathlib import Path

from mesos_nb.agent.cgroups_v1 import CgroupsV1Isolator
from mesos_nb.agent.cgroups_v2 import CgroupsV2Isolator
from mesos_nb.agent.isolator import MIN_MEMORY_BYTES, Limits

MB = 1024 * 1024


def test_v2_writes_cpu_max_and_memory_max_and_reads_an_oom(tmp_path: Path):
    iso = CgroupsV2Isolator(str(tmp_path))
    iso.prepare("c1", Limits(cpus=0.5, mem_bytes=10 * MB))  # under Mesos' 32 MB floor
    d = tmp_path / "mesos_nb" / "c1"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "memory.max").read_text() == str(MIN_MEMORY_BYTES)
    assert iso.limitation("c1") is None
    (d / "memory.events").write_text("oom 0\noom_kill 1\n")
    (d / "memory.peak").write_text(f"{40 * MB}\n")
    assert iso.limitation("c1") == "Memory limit exceeded: Requested: 32MB Maximum Used: 40MB"
    (d / "cpu.stat").write_text("user_usec 1500000\n")
    assert iso.usage("c1")["mem_limit_bytes"] == MIN_MEMORY_BYTES
    iso.isolate("c1", 4242, Limits())  # a recovered task: its pid is moved in
    assert iso.pids("c1") == [4242]


def test_v1_writes_each_hierarchy_and_joins_cpu_last(tmp_path: Path):
    iso = CgroupsV1Isolator(str(tmp_path))
    iso.prepare("c1", Limits(cpus=2.0, mem_bytes=64 * MB))
    cpu, mem = tmp_path / "cpu" / "mesos_nb" / "c1", tmp_path / "memory" / "mesos_nb" / "c1"
    assert (cpu / "cpu.shares").read_text() == "2048" and (cpu / "cpu.cfs_quota_us").read_text() == "200000"
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 * MB)
    join = iso.preexec("c1")
    assert [Path(f).parent.parent.parent.name for f in join.files] == ["cpuacct", "memory", "cpu"]
    iso.isolate("c1", 4242, Limits())  # joined before exec: nothing is written after
    assert not (mem / "cgroup.procs").exists()
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (mem / "memory.failcnt").write_text("3\n")
    (mem / "memory.max_usage_in_bytes").write_text(f"{64 * MB}\n")
    assert iso.limitation("c1") == "Memory limit exceeded: Requested: 64MB Maximum Used: 64MB"


def test_no_memory_limit_is_never_a_limitation(tmp_path: Path):
    iso = CgroupsV2Isolator(str(tmp_path))
    iso.prepare("c1", Limits(cpus=0.1))
    d = tmp_path / "mesos_nb" / "c1"
    (d / "memory.events").write_text("oom_kill 1\n")
    assert iso.limitation("c1") is None and not (d / "memory.max").exists()


def test_v1_container_swappiness_comes_from_the_parent_when_it_can(tmp_path: Path):
    """A new v1 memory cgroup starts with its parent's swappiness: the parent gets 0 once and a
    container's plan has no swappiness write; a parent whose swappiness cannot be set keeps it."""
    iso = CgroupsV1Isolator(str(tmp_path))
    plan = iso.prepare_plan("c1", Limits(cpus=1.0, mem_bytes=64 * MB))
    assert (tmp_path / "memory" / "mesos_nb" / "memory.swappiness").read_text() == "0"
    assert not [op for op in plan if op[1].endswith("memory.swappiness")]
    other = tmp_path / "other"
    (other / "memory" / "mesos_nb" / "memory.swappiness").mkdir(parents=True)  # unwritable
    iso = CgroupsV1Isolator(str(other))
    plan = iso.prepare_plan("c1", Limits(cpus=1.0, mem_bytes=64 * MB))
    assert ["write?", f"{other}/memory/mesos_nb/c1/memory.swappiness", "0"] in plan


def test_v1_co_mounted_cpu_and_cpuacct_are_one_cgroup(tmp_path: Path):
    """``cpu`` and ``cpuacct`` mounted together (``cpu,cpuacct``, the two names links to it): a
    container gets one cgroup there, not the same one made, joined and removed twice; its CPU
    usage is still read from ``cpuacct.stat``."""
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")
    iso = CgroupsV1Isolator(str(tmp_path))
    plan = iso.prepare_plan("c1", Limits(cpus=0.5, mem_bytes=64 * MB))
    assert [op[1] for op in plan if op[0] == "mkdir"] == [f"{tmp_path}/memory/mesos_nb/c1", f"{tmp_path}/cpu/mesos_nb/c1"]
    assert [Path(f).parent.parent.parent.name for f in iso.preexec("c1").files] == ["memory", "cpu"]  # cpu last
    assert iso.removal_dirs("c1") == [f"{tmp_path}/memory/mesos_nb/c1", f"{tmp_path}/cpu/mesos_nb/c1"]
    iso.prepare("c1", Limits(cpus=0.5, mem_bytes=64 * MB))
    (tmp_path / "cpu,cpuacct" / "mesos_nb" / "c1" / "cpuacct.stat").write_text("user 250\nsystem 50\n")
    assert iso.usage("c1")["cpus_user_time_secs"] == round(250 / os.sysconf("SC_CLK_TCK"), 3)
    assert CgroupsV1Isolator(str(tmp_path / "apart")).CONTROLLERS == ("cpuacct", "memory", "cpu")
