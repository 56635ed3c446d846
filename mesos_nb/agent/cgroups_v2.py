"""``cgroups/v2`` isolation: one cgroup per container under ``<unified>/<--cgroups-root>/<container_id>``
(``cpu.weight``, ``cpu.max``, ``memory.max``, ``memory.swap.max``, ``io.*``); usage from
``cpu.stat`` / ``memory.current`` / ``memory.peak``; an OOM kill shows in ``memory.events``;
a container is killed whole with ``cgroup.kill`` (else frozen, SIGKILLed and thawed).

The unified hierarchy is found in ``/proc/self/mounts`` (``/sys/fs/cgroup`` on a v2-only
machine, ``/sys/fs/cgroup/unified`` on a "hybrid" one). A controller is only in a child's
``cgroup.controllers`` once its parent enabled it in ``cgroup.subtree_control``, and a cgroup
other than the root may do that only while it holds no process ("no internal processes"):
the agent enables each controller it wants that the hierarchy offers, one at a time, in the
hierarchy's root and in its ``--cgroups-root`` cgroup (which never holds a process), and
keeps the set that reached the containers. A limit whose controller is not among them is
refused with a sentence naming the controller (:func:`unenforceable`), never left unwritten
(one the operator did not ask for by name, as memory under ``--isolation cgroups/cpu`` alone,
is not limited, as in Mesos, and the log says so once);
a hierarchy that cannot give the controllers an isolation needs refuses the agent at start
(``isolation.py``, :func:`unavailable`). Controllers still bound to a v1 hierarchy (a hybrid
machine) are not in the unified one's ``cgroup.controllers``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import psutil

from . import io_control
from .cgroupfs import apply_plan, parse_kv, read_int, read_text, write_text
from .isolator import CFS_PERIOD_US, CGROUP_ROOT, NESTED, CgroupIsolator, Limits, keeps_memory

logger = logging.getLogger("mesos_nb.agent")

# The controller a Mesos isolator name needs (cgroups/blkio: ``io``, asked for by ``io=True``).
NEEDS = {"cgroups/cpu": "cpu", "cgroups/mem": "memory"}
KILL_WAIT = 0.2  # seconds a removal waits for a killed container's processes to be gone
FREEZE_WAIT = 0.1  # (no cgroup.kill) seconds to wait for a cgroup to be frozen before its SIGKILLs


# ---------------------------------------------------------------------- pure decisions
def unified_mount(mounts: str) -> str | None:
    """The cgroup2 mount point in ``/proc/self/mounts`` text (``/sys/fs/cgroup`` preferred,
    then ``/sys/fs/cgroup/unified``, then the first one); None without a cgroup2 mount."""
    points = [f[1].replace("\\040", " ") for f in (ln.split() for ln in mounts.splitlines())
              if len(f) > 2 and f[2] == "cgroup2"]
    for want in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "unified")):
        if want in points:
            return want
    return points[0] if points else None


def cgroup2_mount() -> str | None:
    """This machine's unified hierarchy (see :func:`unified_mount`)."""
    return unified_mount(read_text("/proc/self/mounts") or "")


def v1_bound(proc_cgroups: str) -> set[str]:
    """The controllers ``/proc/cgroups`` shows bound to a v1 hierarchy (hierarchy id not 0):
    the unified hierarchy cannot offer them."""
    out = set()
    for line in proc_cgroups.splitlines():
        f = line.split()
        if len(f) >= 2 and not line.startswith("#") and f[1] != "0":
            out.add(f[0])
    return out


def cpu_weight(cpus: float) -> int:
    """``cpu.weight`` for ``cpus``: 100 (the kernel's default, v1's 1024 shares) per CPU."""
    return max(1, min(10000, int(100 * cpus)))


def unenforceable(limits: Limits, controllers: Iterable[str], where: str) -> str | None:
    """A sentence naming each limit of ``limits`` that needs a controller missing from
    ``controllers`` (the ones the containers' parent cgroup at ``where`` gives them); None
    when every limit can be written."""
    have = set(controllers)
    missing = [f"{what} needs the {ctrl} controller" for what, ctrl, asked in (
        (f"cpus:{limits.cpus:g}", "cpu", limits.cpus > 0),
        (f"mem:{limits.mem_bytes // (1024 * 1024)}", "memory", limits.mem_bytes > 0),
        ("the I/O limits", "io", bool(limits.io))) if asked and ctrl not in have]
    if not missing:
        return None
    return (f"not supported: {'; '.join(missing)}, which cgroup2 at {where} does not offer "
            f"(it has: {', '.join(sorted(have)) or 'none'}; a controller bound to a cgroup v1 hierarchy is not "
            "in the unified one)")


def limit_steps(d: str, limits: Limits, controllers: Iterable[str] = ("cpu", "memory")) -> list[tuple[str, str]]:
    """The (file, value) writes that set ``limits`` on the container cgroup ``d`` (I/O aside),
    those of ``controllers`` only."""
    out: list[tuple[str, str]] = []
    if limits.cpus > 0:
        out += [(f"{d}/cpu.weight", str(cpu_weight(limits.cpus))),
                (f"{d}/cpu.max", f"{limits.cfs_quota_us()} {CFS_PERIOD_US}")]
    if limits.mem_bytes > 0:
        out.append((f"{d}/memory.max", str(limits.cgroup_memory())))
    have = set(controllers)
    return [(path, value) for path, value in out if os.path.basename(path).split(".")[0] in have]


def subtree_error(d: str, ctrl: str, err: OSError, procs: str | None) -> str:
    """Why ``+ctrl`` could not be written to ``d/cgroup.subtree_control``, as a sentence."""
    if err.errno == errno.EBUSY and (procs or "").split():
        return (f"cannot enable the {ctrl} controller in {d}: that cgroup holds processes "
                f"({', '.join((procs or '').split()[:5])}) and cgroup v2 lets a cgroup either hold processes or "
                "give controllers to its children; start the agent in a leaf cgroup (systemd: Delegate=yes) "
                "or choose another --cgroups-root")
    return f"cannot enable the {ctrl} controller in {d}: {err.strerror or err}"


# ---------------------------------------------------------------------- the agent's parent cgroup
def open_parent(root: str, nested: str, wanted: Iterable[str]) -> frozenset[str]:
    """Make ``root/nested`` and enable there (and in ``root``) each of ``wanted`` that the
    hierarchy offers, one controller at a time; the controllers the containers get. Raises
    OSError with a sentence (the hierarchy is not cgroup2, a ``subtree_control`` write refused)."""
    offered = read_text(os.path.join(root, "cgroup.controllers"))
    if offered is None:
        raise OSError(errno.ENOENT, f"{root} is not a cgroup2 mount (no cgroup.controllers)")
    parent = os.path.join(root, nested)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create the agent's cgroup {parent}: {e.strerror or e}") from None
    want = [c for c in wanted if c in offered.split()]
    for d in (root, parent):
        enabled = set((read_text(os.path.join(d, "cgroup.subtree_control")) or "").split())
        for ctrl in want:
            if ctrl in enabled:
                continue
            try:
                write_text(os.path.join(d, "cgroup.subtree_control"), f"+{ctrl}")
            except OSError as e:
                raise OSError(e.errno, subtree_error(d, ctrl, e, read_text(os.path.join(d, "cgroup.procs")))) \
                    from None
    return frozenset((read_text(os.path.join(parent, "cgroup.subtree_control")) or "").split())


def unavailable(root: str | None, nested: str, needs: Iterable[str]) -> str | None:
    """None when containers under ``root/nested`` get every controller of ``needs`` (and a
    container cgroup can be made there), else a sentence saying why not."""
    if root is None:
        return "this machine has no cgroup2 (unified) hierarchy mounted"
    needs = sorted(set(needs))
    offered = read_text(os.path.join(root, "cgroup.controllers"))
    if offered is None:
        return f"{root} is not a cgroup2 mount (no cgroup.controllers)"
    missing = [c for c in needs if c not in offered.split()]
    if not missing:  # offered: enabled down to the containers' parent?
        try:
            got = open_parent(root, nested, needs)
        except OSError as e:
            return e.strerror or str(e)
        missing = [c for c in needs if c not in got]
    if missing:
        v1 = [c for c in missing if c in v1_bound(read_text("/proc/cgroups") or "")]
        return (f"cgroup2 at {root} lacks the {', '.join(missing)} controller(s)"
                + (f" ({', '.join(v1)} bound to cgroup v1 hierarchies, see /proc/cgroups)" if v1 else ""))
    probe = os.path.join(root, nested, f"probe-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as e:
        return f"cannot create a cgroup under {os.path.join(root, nested)}: {e.strerror or e}"
    return None


# ---------------------------------------------------------------------- killing a cgroup
def kill_cgroup(d: str, *, use_kill_file: bool = True, wait: float = KILL_WAIT) -> bool:
    """SIGKILL every process in cgroup ``d``: one write to ``cgroup.kill`` (Linux 5.14), else
    freeze it (no fork can race the kill), SIGKILL each process, thaw. True when it is empty
    within ``wait`` seconds (killed processes take a moment to leave)."""
    if use_kill_file and os.path.exists(os.path.join(d, "cgroup.kill")):
        with contextlib.suppress(FileNotFoundError):
            write_text(os.path.join(d, "cgroup.kill"), "1")
    else:
        freeze = os.path.join(d, "cgroup.freeze")
        frozen = os.path.exists(freeze)
        if frozen:
            with contextlib.suppress(OSError):
                write_text(freeze, "1")
                _wait(lambda: "frozen 1" in (read_text(os.path.join(d, "cgroup.events")) or ""), FREEZE_WAIT)
        try:
            for _ in range(100):  # without a freezer a forking process may race: again until none is left
                pids = [pid for sub, _, _ in os.walk(d) for pid in _pids(sub)]  # (cgroups a root task made too)
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                if frozen or not pids:
                    break
        finally:
            if frozen:
                with contextlib.suppress(OSError):
                    write_text(freeze, "0")
    return _wait(lambda: not _populated(d), wait)


def _pids(d: str) -> list[int]:
    return [int(x) for x in (read_text(os.path.join(d, "cgroup.procs")) or "").split()]


def _populated(d: str) -> bool:
    events = parse_kv(read_text(os.path.join(d, "cgroup.events")))
    return bool(events.get("populated", 0)) if events else bool(_pids(d))


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ---------------------------------------------------------------------- the isolator
class CgroupsV2Isolator(CgroupIsolator):
    """``root``: the unified hierarchy's mount; ``controllers``: the ones the containers get
    (None: found when the parent is first set up; a plain directory standing in for a cgroup
    tree, as in unit tests, offers every one); ``required``: the controllers whose limits a
    task must get (default: all; ``--isolation cgroups/cpu`` alone asks for cpu only, and
    then, as in Mesos, memory is not limited where the hierarchy has no memory controller:
    said once in the log when the parent is set up)."""

    name = "cgroups/v2"

    def __init__(self, root: str = CGROUP_ROOT, *, io: bool = False, nested: str = NESTED,
                 controllers: Iterable[str] | None = None, required: Iterable[str] | None = None) -> None:
        super().__init__(root, io)
        self.nested = nested  # --cgroups-root: the parent of every container's cgroup
        if io:
            self.name = "cgroups/v2+io"
        self.wanted = ("cpu", "memory", "io") if io else ("cpu", "memory")
        self.controllers: frozenset[str] | None = None if controllers is None else frozenset(controllers)
        self.required = frozenset(self.wanted if required is None else required)
        self._parent_ready = False

    def _dir(self, container_id: str) -> str:
        return os.path.join(self.root, self.nested, container_id)

    def _ensure_parent(self) -> frozenset[str]:
        if not self._parent_ready:
            if self.controllers is None and os.path.exists(os.path.join(self.root, "cgroup.controllers")):
                self.controllers = open_parent(self.root, self.nested, self.wanted)
            else:  # given, or a stand-in tree
                os.makedirs(os.path.join(self.root, self.nested), exist_ok=True)
                if self.controllers is None:
                    self.controllers = frozenset(self.wanted)
            self._parent_ready = True
            if skipped := sorted(set(self.wanted) - self.controllers - self.required):
                logger.warning("cgroups/v2: no %s limits: cgroup2 at %s lacks the %s controller(s) and --isolation "
                               "does not ask for them", ", ".join(skipped), self.root, ", ".join(skipped))
        assert self.controllers is not None
        return self.controllers

    def _check(self, limits: Limits) -> None:
        """Raises OSError (ENOTSUP, a sentence) for a limit no controller here can enforce."""
        why = unenforceable(limits, self._ensure_parent() | (set(self.wanted) - self.required),
                            os.path.join(self.root, self.nested))
        if why is not None:
            raise OSError(errno.ENOTSUP, why)

    def prepare(self, container_id: str, limits: Limits) -> None:
        self._check(limits)
        apply_plan(self._plan(container_id, limits))
        if self.io and limits.io and "io" in self._ensure_parent():
            io_control.apply_v2(self._dir(container_id), limits.io)

    def prepare_plan(self, container_id: str, limits: Limits) -> list | None:
        """The mkdir and limit writes, carried out by the launcher helper in the spawn's round;
        None (``prepare`` then, here) for I/O limits (they name devices) and for a limit that
        is refused (``prepare`` raises the sentence)."""
        if self.io and limits.io:
            return None
        try:
            self._check(limits)
        except OSError:
            return None
        return self._plan(container_id, limits)

    def _plan(self, container_id: str, limits: Limits) -> list:
        have = self._ensure_parent()
        self._limits[container_id] = limits
        d = self._dir(container_id)
        plan: list = [["mkdir", d]]
        plan += [["write", path, value] for path, value in limit_steps(d, limits, have)]
        if limits.mem_bytes > 0 and "memory" in have:
            # The limit is memory, not memory + swap (as Mesos without --cgroups_limit_swap); an OOM
            # kill takes the whole container at once (it is destroyed for it anyway). "write?": no swap
            # accounting (swapaccount=0) / before Linux 4.19.
            plan += [["write?", f"{d}/memory.swap.max", "0"], ["write?", f"{d}/memory.oom.group", "1"]]
        return plan

    def _procs_files(self, container_id: str) -> list[str]:
        return [os.path.join(self._dir(container_id), "cgroup.procs")]

    def _write_limits(self, container_id: str, limits: Limits, old: Limits | None) -> Limits:
        """cpu.weight, cpu.max and memory.max (lowered from ``old`` only as far as
        ``memory.current`` allows: a lower memory.max would OOM-kill); the limits in force."""
        self._check(limits)
        d = self._dir(container_id)
        have = self._ensure_parent()
        steps = limit_steps(d, limits, have)
        if limits.mem_bytes > 0 and keeps_memory(limits.cgroup_memory(), old,
                                                 lambda: read_int(os.path.join(d, "memory.current"))):
            assert old is not None
            steps = [s for s in steps if not s[0].endswith("/memory.max")]
            limits = replace(limits, mem_bytes=old.mem_bytes)  # in use: keep the limit
        for path, value in steps:
            write_text(path, value)
        return limits

    def _oom_peak(self, container_id: str) -> int | None:
        d = self._dir(container_id)
        events = parse_kv(read_text(os.path.join(d, "memory.events")))
        if events.get("oom_kill", 0) > 0 or events.get("oom", 0) > 0:
            return int((read_text(os.path.join(d, "memory.peak")) or read_text(os.path.join(d, "memory.current")) or "0")
                       .strip() or 0)
        return None

    def pids(self, container_id: str) -> list[int]:
        return _pids(self._dir(container_id))

    def usage(self, container_id: str) -> dict[str, Any] | None:
        """``cpu.stat``'s times are kept for every cgroup; the throttling counts need the cpu
        controller, the memory figures the memory one (without it: the RSS of the cgroup's
        processes, so the figures are never a silent zero)."""
        d = self._dir(container_id)
        cpu = parse_kv(read_text(os.path.join(d, "cpu.stat")))
        if not cpu and not os.path.isdir(d):
            return None
        pids = self.pids(container_id)
        out: dict[str, Any] = {
            "cpus_user_time_secs": round(cpu.get("user_usec", 0) / 1e6, 3),
            "cpus_system_time_secs": round(cpu.get("system_usec", 0) / 1e6, 3),
            "processes": len(pids),
        }
        if "nr_periods" in cpu:
            out.update(cpus_nr_periods=cpu.get("nr_periods", 0), cpus_nr_throttled=cpu.get("nr_throttled", 0),
                       cpus_throttled_time_secs=cpu.get("throttled_usec", 0) / 1e6)
        if os.path.exists(os.path.join(d, "memory.current")):
            mstat = parse_kv(read_text(os.path.join(d, "memory.stat")))
            out.update(mem_total_bytes=read_int(os.path.join(d, "memory.current")), mem_rss_bytes=mstat.get("anon", 0),
                       mem_anon_bytes=mstat.get("anon", 0), mem_file_bytes=mstat.get("file", 0),
                       mem_cache_bytes=mstat.get("file", 0), mem_mapped_file_bytes=mstat.get("file_mapped", 0))
        else:
            rss = _rss(pids)
            out.update(mem_total_bytes=rss, mem_rss_bytes=rss)
        if limit := self._memory_limit(container_id):
            out["mem_limit_bytes"] = limit
        if self.io:
            blkio = io_control.stats_v2(d)
            out["blkio_statistics"] = blkio
            out.update(io_control.totals(blkio))
        return out

    def kill(self, container_id: str) -> None:
        """Every process of the container, whatever its session or process group."""
        with contextlib.suppress(OSError):  # (gone already)
            kill_cgroup(self._dir(container_id), wait=0)

    def cleanup(self, container_id: str) -> bool:
        """rmdir; a cgroup that still holds processes (a double fork, a daemon) is killed
        whole first, and removed once they are gone, with any cgroups a task running as root
        made inside it (False: still busy, asked again later)."""
        d = self._dir(container_id)
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            try:
                if not kill_cgroup(d):
                    return False
                remove_tree(d)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        self._forget(container_id)
        return True


def remove_tree(d: str) -> None:
    """rmdir cgroup ``d`` and the cgroups under it, deepest first (they hold no process)."""
    for sub, dirs, _ in os.walk(d, topdown=False):
        for name in dirs:
            os.rmdir(os.path.join(sub, name))
    os.rmdir(d)


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


__all__ = ["CgroupsV2Isolator", "NEEDS", "cgroup2_mount", "cpu_weight", "kill_cgroup", "limit_steps", "open_parent",
           "remove_tree", "subtree_error", "unavailable", "unenforceable", "unified_mount", "v1_bound"]
