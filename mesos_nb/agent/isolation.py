"""Isolation: limit and account a container's CPU and memory.

One small interface (:class:`Isolator`) with three implementations, picked by
``--isolation`` (``auto`` = the best this machine allows, see :func:`detect_isolation`):

* ``cgroups/v2`` -- one cgroup per container under ``<unified>/mesos_nb/<container_id>``:
  ``cpu.weight`` (from ``cpus``), ``cpu.max`` (CFS quota = ``cpus`` x period),
  ``memory.max``; usage from ``cpu.stat`` / ``memory.current`` / ``memory.peak``; an OOM kill
  shows in ``memory.events`` (``oom_kill``).
* ``cgroups/v1`` -- one cgroup per container in each of the ``cpu``, ``cpuacct`` and
  ``memory`` hierarchies: ``cpu.shares`` (1024 per cpu), ``cpu.cfs_quota_us``,
  ``memory.limit_in_bytes``; usage from ``cpuacct.stat`` / ``memory.usage_in_bytes`` /
  ``memory.max_usage_in_bytes``; OOM from ``memory.oom_control`` (``oom_kill``) or ``failcnt``.
* ``posix`` -- no kernel enforcement: the process tree is found with psutil and its RSS is
  polled; a container over its memory limit is reported as a memory limitation (and then
  destroyed by the containerizer). CPU is accounted, not limited.

The child joins its cgroups itself, before it execs (``preexec`` writes ``0`` to each
``cgroup.procs``), so not even its first fork escapes. Each container's cgroups are removed
when it ends (after its processes are gone).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

logger = logging.getLogger("mesos_nb.agent")

CGROUP_ROOT = "/sys/fs/cgroup"
NESTED = "mesos_nb"
CFS_PERIOD_US = 100_000
MIN_CPU_SHARES = 2
MIN_MEMORY_BYTES = 32 * 1024 * 1024  # Mesos' MIN_MEMORY


@dataclass
class Limits:
    cpus: float = 0.0  # 0 = unlimited
    mem_bytes: int = 0  # 0 = unlimited


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f}MB"


def memory_message(limit: int, used: int) -> str:
    """Mesos' wording for a memory limitation."""
    return f"Memory limit exceeded: Requested: {_mb(limit)} Maximum Used: {_mb(used)}"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int:
    """Resident bytes of one process from /proc/<pid>/statm (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _ppid_map() -> dict[int, int]:
    """pid -> parent pid for every process, from /proc (psutil's process_iter elsewhere)."""
    out: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        names = None
    if names is None:
        for p in psutil.process_iter(["ppid"]):
            out[p.pid] = p.info["ppid"] or 0
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            out[int(name)] = int(data[data.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree_stats(pid: int) -> dict[str, float] | None:
    """CPU times, RSS, process and thread counts of ``pid`` and its descendants (psutil)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    user = system = 0.0
    rss = threads = 0
    for p in procs:
        try:
            with p.oneshot():
                ct = p.cpu_times()
                user += ct.user + ct.children_user
                system += ct.system + ct.children_system
                rss += p.memory_info().rss
                threads += p.num_threads()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return {"cpus_user_time_secs": round(user, 3), "cpus_system_time_secs": round(system, 3),
            "mem_rss_bytes": rss, "processes": len(procs), "threads": threads}


def _joiner(procs_files: list[str]) -> Callable[[], None]:
    """The child's pre-exec step: join each cgroup (writing "0" means "this process"), so not
    one instruction of the task runs outside its limits. Only os calls: it runs after fork."""

    def join() -> None:
        for p in procs_files:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    return join


class Isolator:
    """Interface. ``prepare`` before launch, ``preexec`` runs in the child, ``isolate`` after
    launch (and after recovery), ``limitation`` is polled and asked once more at exit,
    ``usage`` feeds ``/monitor/statistics``, ``cleanup`` when the container is gone."""

    name = "posix"

    def prepare(self, container_id: str, limits: Limits) -> None:
        pass

    def preexec(self, container_id: str) -> Callable[[], None] | None:
        return None

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        pass

    def limitation(self, container_id: str) -> str | None:
        """A message when the container broke its memory limit, else None."""
        return None

    def usage(self, container_id: str) -> dict[str, float] | None:
        return None

    def limitations(self, container_ids: list[str]) -> dict[str, str]:
        """``limitation`` for many containers in one pass (the poller asks for all at once)."""
        out = {}
        for cid in container_ids:
            try:
                msg = self.limitation(cid)
            except OSError:
                msg = None
            if msg is not None:
                out[cid] = msg
        return out

    def pids(self, container_id: str) -> list[int]:
        return []

    def cleanup(self, container_id: str) -> bool:
        """Remove the container's isolation state; False = try again later (still busy)."""
        return True


class PosixIsolator(Isolator):
    name = "posix"

    def __init__(self) -> None:
        self._pids: dict[str, tuple[int, Limits]] = {}
        self._peak: dict[str, int] = {}

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        self._pids[container_id] = (pid, limits)

    def usage(self, container_id: str) -> dict[str, float] | None:
        entry = self._pids.get(container_id)
        if entry is None:
            return None
        stats = tree_stats(entry[0])
        if stats is not None:
            self._peak[container_id] = max(self._peak.get(container_id, 0), int(stats["mem_rss_bytes"]))
        return stats

    def pids(self, container_id: str) -> list[int]:
        entry = self._pids.get(container_id)
        if entry is None:
            return []
        try:
            root = psutil.Process(entry[0])
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def limitation(self, container_id: str) -> str | None:
        entry = self._pids.get(container_id)
        if entry is None or entry[1].mem_bytes <= 0:
            return None
        stats = self.usage(container_id)
        used = int(stats["mem_rss_bytes"]) if stats else 0
        if used > entry[1].mem_bytes:
            return memory_message(entry[1].mem_bytes, used)
        return None

    def limitations(self, container_ids: list[str]) -> dict[str, str]:
        """One scan of the process table per poll, not one per container: with many live
        tasks a per-container ``children(recursive=True)`` walk is quadratic."""
        watched = [(cid, self._pids[cid]) for cid in container_ids
                   if cid in self._pids and self._pids[cid][1].mem_bytes > 0]
        if not watched:
            return {}
        parent_of = _ppid_map()
        children: dict[int, list[int]] = {}
        for pid, ppid in parent_of.items():
            children.setdefault(ppid, []).append(pid)
        out = {}
        for cid, (root, limits) in watched:
            if root not in parent_of:
                continue
            rss, stack = 0, [root]
            while stack:
                pid = stack.pop()
                rss += _rss(pid)
                stack.extend(children.get(pid, ()))
            if rss > self._peak.get(cid, 0):
                self._peak[cid] = rss
            if rss > limits.mem_bytes:
                out[cid] = memory_message(limits.mem_bytes, rss)
        return out

    def cleanup(self, container_id: str) -> bool:
        self._pids.pop(container_id, None)
        self._peak.pop(container_id, None)
        return True


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass


class CgroupsV1Isolator(Isolator):
    """Per container: one ``mkdir`` per hierarchy and a few writes (``prepare``); the child
    joins before it execs (``preexec``, cpu last, so only the exec itself runs under the CPU
    quota); removal is batched off the task's exit path by the containerizer."""

    name = "cgroups/v1"
    # Joined in this order: cpuacct and memory first, cpu (the quota) last.
    CONTROLLERS = ("cpuacct", "memory", "cpu")

    def __init__(self, root: str = CGROUP_ROOT) -> None:
        self.root = root
        self._limits: dict[str, Limits] = {}
        self._joined: set[str] = set()  # containers whose child joined its cgroups itself
        self._parents_ready = False

    def _dir(self, ctrl: str, container_id: str) -> str:
        return os.path.join(self.root, ctrl, NESTED, container_id)

    def prepare(self, container_id: str, limits: Limits) -> None:
        if not self._parents_ready:
            for ctrl in self.CONTROLLERS:
                os.makedirs(os.path.join(self.root, ctrl, NESTED), exist_ok=True)
            self._parents_ready = True
        self._limits[container_id] = limits
        for ctrl in self.CONTROLLERS:
            _mkdir(self._dir(ctrl, container_id))
        cpu = self._dir("cpu", container_id)
        if limits.cpus > 0:
            # A new cgroup's cpu.cfs_period_us is already CFS_PERIOD_US (the kernel default).
            _write(os.path.join(cpu, "cpu.shares"), str(max(MIN_CPU_SHARES, int(1024 * limits.cpus))))
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(max(1000, int(CFS_PERIOD_US * limits.cpus))))
        if limits.mem_bytes > 0:
            mem = self._dir("memory", container_id)
            with contextlib.suppress(OSError):  # no swap accounting: fine
                _write(os.path.join(mem, "memory.swappiness"), "0")
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(max(MIN_MEMORY_BYTES, limits.mem_bytes)))

    def preexec(self, container_id: str) -> Callable[[], None] | None:
        self._joined.add(container_id)
        return _joiner([os.path.join(self._dir(c, container_id), "cgroup.procs") for c in self.CONTROLLERS])

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        self._limits.setdefault(container_id, limits)
        if container_id in self._joined:
            return  # the child joined before exec (a failed join fails the launch)
        for ctrl in self.CONTROLLERS:
            d = self._dir(ctrl, container_id)
            if os.path.isdir(d):
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "cgroup.procs"), str(pid))

    def limitation(self, container_id: str) -> str | None:
        limits = self._limits.get(container_id)
        if limits is None or limits.mem_bytes <= 0:
            return None
        mem = self._dir("memory", container_id)
        oom = _kv(_read(os.path.join(mem, "memory.oom_control")))
        failcnt = int((_read(os.path.join(mem, "memory.failcnt")) or "0").strip() or 0)
        if oom.get("oom_kill", 0) > 0 or (oom.get("under_oom", 0) > 0) or \
                ("oom_kill" not in oom and failcnt > 0):
            peak = int((_read(os.path.join(mem, "memory.max_usage_in_bytes")) or "0").strip() or 0)
            return memory_message(max(MIN_MEMORY_BYTES, limits.mem_bytes), peak)
        return None

    def pids(self, container_id: str) -> list[int]:
        text = _read(os.path.join(self._dir("memory", container_id), "cgroup.procs")) or ""
        return [int(x) for x in text.split()]

    def usage(self, container_id: str) -> dict[str, float] | None:
        acct = _kv(_read(os.path.join(self._dir("cpuacct", container_id), "cpuacct.stat")))
        if not acct and not os.path.isdir(self._dir("cpuacct", container_id)):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        mem = self._dir("memory", container_id)
        mstat = _kv(_read(os.path.join(mem, "memory.stat")))
        cstat = _kv(_read(os.path.join(self._dir("cpu", container_id), "cpu.stat")))
        limits = self._limits.get(container_id, Limits())
        pids = self.pids(container_id)
        out: dict[str, float] = {
            "cpus_user_time_secs": round(acct.get("user", 0) / tick, 3),
            "cpus_system_time_secs": round(acct.get("system", 0) / tick, 3),
            "cpus_nr_periods": cstat.get("nr_periods", 0),
            "cpus_nr_throttled": cstat.get("nr_throttled", 0),
            "cpus_throttled_time_secs": cstat.get("throttled_time", 0) / 1e9,
            "mem_total_bytes": int((_read(os.path.join(mem, "memory.usage_in_bytes")) or "0").strip() or 0),
            "mem_rss_bytes": mstat.get("total_rss", mstat.get("rss", 0)),
            "mem_cache_bytes": mstat.get("total_cache", mstat.get("cache", 0)),
            "mem_anon_bytes": mstat.get("total_rss", 0),
            "mem_file_bytes": mstat.get("total_cache", 0),
            "mem_mapped_file_bytes": mstat.get("total_mapped_file", 0),
            "processes": len(pids),
        }
        if limits.mem_bytes > 0:
            out["mem_limit_bytes"] = max(MIN_MEMORY_BYTES, limits.mem_bytes)
        return out

    def cleanup(self, container_id: str) -> bool:
        done = True
        for ctrl in self.CONTROLLERS:
            d = self._dir(ctrl, container_id)
            if not os.path.isdir(d):
                continue
            for pid in (_read(os.path.join(d, "cgroup.procs")) or "").split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), 9)
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        if done:
            self._limits.pop(container_id, None)
            self._joined.discard(container_id)
        return done


class CgroupsV2Isolator(Isolator):
    name = "cgroups/v2"

    def __init__(self, root: str = CGROUP_ROOT) -> None:
        self.root = root
        self._limits: dict[str, Limits] = {}
        self._joined: set[str] = set()
        self._parent_ready = False

    def _dir(self, container_id: str) -> str:
        return os.path.join(self.root, NESTED, container_id)

    def _ensure_parent(self) -> None:
        if self._parent_ready:
            return
        parent = os.path.join(self.root, NESTED)
        os.makedirs(parent, exist_ok=True)
        for d in (self.root, parent):
            with contextlib.suppress(OSError):
                _write(os.path.join(d, "cgroup.subtree_control"), "+cpu +memory")
        self._parent_ready = True

    def prepare(self, container_id: str, limits: Limits) -> None:
        self._ensure_parent()
        self._limits[container_id] = limits
        d = self._dir(container_id)
        _mkdir(d)
        if limits.cpus > 0:
            _write(os.path.join(d, "cpu.weight"), str(max(1, min(10000, int(100 * limits.cpus)))))
            _write(os.path.join(d, "cpu.max"), f"{max(1000, int(CFS_PERIOD_US * limits.cpus))} {CFS_PERIOD_US}")
        if limits.mem_bytes > 0:
            _write(os.path.join(d, "memory.max"), str(max(MIN_MEMORY_BYTES, limits.mem_bytes)))
            with contextlib.suppress(OSError):
                _write(os.path.join(d, "memory.swap.max"), "0")

    def preexec(self, container_id: str) -> Callable[[], None] | None:
        self._joined.add(container_id)
        return _joiner([os.path.join(self._dir(container_id), "cgroup.procs")])

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        self._limits.setdefault(container_id, limits)
        if container_id in self._joined:
            return  # the child joined before exec
        with contextlib.suppress(OSError):
            _write(os.path.join(self._dir(container_id), "cgroup.procs"), str(pid))

    def limitation(self, container_id: str) -> str | None:
        limits = self._limits.get(container_id)
        if limits is None or limits.mem_bytes <= 0:
            return None
        d = self._dir(container_id)
        events = _kv(_read(os.path.join(d, "memory.events")))
        if events.get("oom_kill", 0) > 0 or events.get("oom", 0) > 0:
            peak = int((_read(os.path.join(d, "memory.peak")) or _read(os.path.join(d, "memory.current")) or "0")
                       .strip() or 0)
            return memory_message(max(MIN_MEMORY_BYTES, limits.mem_bytes), peak)
        return None

    def pids(self, container_id: str) -> list[int]:
        return [int(x) for x in (_read(os.path.join(self._dir(container_id), "cgroup.procs")) or "").split()]

    def usage(self, container_id: str) -> dict[str, float] | None:
        d = self._dir(container_id)
        cpu = _kv(_read(os.path.join(d, "cpu.stat")))
        if not cpu and not os.path.isdir(d):
            return None
        mstat = _kv(_read(os.path.join(d, "memory.stat")))
        limits = self._limits.get(container_id, Limits())
        out: dict[str, float] = {
            "cpus_user_time_secs": round(cpu.get("user_usec", 0) / 1e6, 3),
            "cpus_system_time_secs": round(cpu.get("system_usec", 0) / 1e6, 3),
            "cpus_nr_periods": cpu.get("nr_periods", 0),
            "cpus_nr_throttled": cpu.get("nr_throttled", 0),
            "cpus_throttled_time_secs": cpu.get("throttled_usec", 0) / 1e6,
            "mem_total_bytes": int((_read(os.path.join(d, "memory.current")) or "0").strip() or 0),
            "mem_rss_bytes": mstat.get("anon", 0),
            "mem_anon_bytes": mstat.get("anon", 0),
            "mem_file_bytes": mstat.get("file", 0),
            "mem_cache_bytes": mstat.get("file", 0),
            "mem_mapped_file_bytes": mstat.get("file_mapped", 0),
            "processes": len(self.pids(container_id)),
        }
        if limits.mem_bytes > 0:
            out["mem_limit_bytes"] = max(MIN_MEMORY_BYTES, limits.mem_bytes)
        return out

    def cleanup(self, container_id: str) -> bool:
        d = self._dir(container_id)
        if not os.path.isdir(d):
            self._limits.pop(container_id, None)
            self._joined.discard(container_id)
            return True
        with contextlib.suppress(OSError):
            _write(os.path.join(d, "cgroup.kill"), "1")
        for pid in self.pids(container_id):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        self._limits.pop(container_id, None)
        self._joined.discard(container_id)
        return True


# ---------------------------------------------------------------------- detection
def _try_cgroup(path: str, files: list[str]) -> str | None:
    """None when a child cgroup can be made at ``path`` with ``files`` writable, else why not."""
    probe = os.path.join(path, NESTED, f"probe-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.makedirs(probe)
    except OSError as e:
        return f"cannot create a cgroup under {path}: {e.strerror or e}"
    try:
        for f in files:
            if not os.access(os.path.join(probe, f), os.W_OK):
                return f"{os.path.join(path, f)} is missing or not writable"
        return None
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


def cgroups_v2_unavailable(root: str = CGROUP_ROOT) -> str | None:
    """None when cgroups v2 with cpu+memory can be used here, else a sentence saying why not."""
    controllers = _read(os.path.join(root, "cgroup.controllers"))
    if controllers is None:
        return f"{root} is not a cgroup2 mount (no cgroup.controllers)"
    missing = {"cpu", "memory"} - set(controllers.split())
    if missing:
        return f"cgroup2 at {root} lacks the {', '.join(sorted(missing))} controller(s)"
    parent = os.path.join(root, NESTED)
    try:
        os.makedirs(parent, exist_ok=True)
        for d in (root, parent):
            with contextlib.suppress(OSError):
                _write(os.path.join(d, "cgroup.subtree_control"), "+cpu +memory")
    except OSError as e:
        return f"cannot create {parent}: {e.strerror or e}"
    return _try_cgroup(root, ["cpu.max", "memory.max"])


def cgroups_v1_unavailable(root: str = CGROUP_ROOT) -> str | None:
    """None when cgroups v1 cpu, cpuacct and memory hierarchies can be used, else why not."""
    for ctrl, files in (("cpu", ["cpu.shares", "cpu.cfs_quota_us"]), ("cpuacct", ["cgroup.procs"]),
                        ("memory", ["memory.limit_in_bytes"])):
        path = os.path.join(root, ctrl)
        if not os.path.isfile(os.path.join(path, "cgroup.procs")):
            return f"no cgroups v1 '{ctrl}' hierarchy at {path}"
        why = _try_cgroup(path, files)
        if why:
            return why
    return None


def detect_isolation(root: str = CGROUP_ROOT) -> tuple[str, dict[str, str]]:
    """('cgroups/v2' | 'cgroups/v1' | 'posix', {kind: why it is unavailable})."""
    why: dict[str, str] = {}
    if os.geteuid() != 0:
        why["cgroups"] = "the agent is not running as root"
        return "posix", why
    w2 = cgroups_v2_unavailable(root)
    if w2 is None:
        return "cgroups/v2", why
    why["cgroups/v2"] = w2
    w1 = cgroups_v1_unavailable(root)
    if w1 is None:
        return "cgroups/v1", why
    why["cgroups/v1"] = w1
    return "posix", why


def make_isolator(isolation: str) -> Isolator:
    """``auto`` | ``posix`` (+ ``posix/*``) | ``cgroups`` (best version) | ``cgroups/v1`` | ``cgroups/v2``."""
    kinds = {k.strip() for k in (isolation or "auto").split(",") if k.strip()} or {"auto"}
    posix_names = {"posix", "posix/cpu", "posix/mem", "posix/disk", "filesystem/posix"}
    cgroup_names = {"cgroups", "cgroups/v1", "cgroups/v2", "cgroups/cpu", "cgroups/mem"}
    unknown = kinds - posix_names - cgroup_names - {"auto"}
    if unknown:
        raise ValueError(
            f"Unsupported isolation '{', '.join(sorted(unknown))}': use 'auto', 'posix', 'cgroups', "
            "'cgroups/v1' or 'cgroups/v2'."
        )
    if kinds & cgroup_names or "auto" in kinds:
        best, why = detect_isolation()
        wanted = "cgroups/v1" if "cgroups/v1" in kinds else "cgroups/v2" if "cgroups/v2" in kinds else None
        if wanted is not None and best != wanted:
            if wanted == "cgroups/v1" and cgroups_v1_unavailable() is None:
                best = wanted
            else:
                reason = why.get(wanted) or why.get("cgroups") or f"{wanted} unavailable"
                logger.warning("%s isolation unavailable (%s); using %s", wanted, reason, best)
        if best == "posix" and "auto" not in kinds:
            logger.warning("cgroups isolation unavailable (%s); using posix",
                           "; ".join(f"{k}: {v}" for k, v in why.items()))
        if best == "cgroups/v2":
            return CgroupsV2Isolator()
        if best == "cgroups/v1":
            return CgroupsV1Isolator()
        return PosixIsolator()
    return PosixIsolator()


__all__ = [
    "Isolator", "PosixIsolator", "CgroupsV1Isolator", "CgroupsV2Isolator", "Limits",
    "detect_isolation", "make_isolator", "memory_message", "tree_stats",
    "cgroups_v1_unavailable", "cgroups_v2_unavailable",
]
