"""The small file helpers of the cgroup isolators (``cgroups_v1.py``, ``cgroups_v2.py``,
``io_control.py``): a cgroup's settings and statistics are one-line or ``key value`` files.
Stdlib only: the launcher helper (``launch_helper.py``, run as a script) imports it too."""

from __future__ import annotations

import os


# Plain fd calls, not ``open()``: a text file object costs more than the cgroup file's own
# read or write (a limit write was ≈ 30 µs through ``open``, ≈ 8 µs so).
def read_text(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def write_text(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def parse_kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out

def read_int(path: str) -> int:
    """A cgroup file holding one number (0 when it is missing or empty)."""
    return int((read_text(path) or "0").strip() or 0)


def mkdir_once(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass


def remove_cgroups(dirs: list[str]) -> bool:
    """Remove a container's cgroup directories (one per hierarchy); True when none is left.
    ``rmdir`` first: an ended container's cgroup is empty, so reading its ``cgroup.procs``
    beforehand is wasted (≈ 20 µs a hierarchy). A busy one (``EBUSY``: a process the exit
    left behind, or one still dying) gets its processes SIGKILLed and is left for a retry."""
    done = True
    for d in dirs:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            done = False
            for pid in (read_text(f"{d}/cgroup.procs") or "").split():
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
    return done


_MEM_BASE = (b"total_cache", b"total_rss", b"total_mapped_file", b"cache", b"rss")


def read_pairs(path: str) -> dict[bytes, bytes] | None:
    """A small ``key value`` cgroup file in one read (no text decode, no per-line checks:
    this runs at every container's exit), or None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        words = os.read(fd, 65536).split()
    except OSError:
        return None
    finally:
        os.close(fd)
    return dict(zip(words[::2], words[1::2], strict=False))


def _zero(path: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, b"0")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


CPU_USER_NS, CPU_SYS_NS = "cpuacct.usage_user", "cpuacct.usage_sys"  # ns, Linux 4.7+


def recycle_cgroups(dirs: list[str], spec: dict) -> dict[str, int] | None:
    """Keep an ended container's cgroups (``dirs``) for a later one (``cgroup_pool``): when each
    is empty, its memory cgroup never hit its limit and charges at most ``spec["max"]`` bytes,
    zero its memory peaks, read the CPU and memory counters as the baseline, rename each dir to
    ``spec["to"]`` (same order) and return the baseline; else None (nothing changed but what
    a half-done rename pooled, removed again): remove them as usual."""
    mem, cpu, acct = spec.get("mem"), spec.get("cpu"), spec.get("acct")
    for d in dirs:
        procs = read_text(f"{d}/cgroup.procs")
        if procs is None or procs.strip():  # gone, or busy
            return None
    base: dict[str, int] = {}
    if mem:
        oom = read_pairs(f"{mem}/memory.oom_control") or {}
        if oom.get(b"oom_kill", b"1") != b"0" or oom.get(b"under_oom", b"1") != b"0":
            return None
        base["usage_in_bytes"] = read_int(f"{mem}/memory.usage_in_bytes")
        if base["usage_in_bytes"] > spec["max"]:
            return None
        stat = read_pairs(f"{mem}/memory.stat") or {}
        for key in _MEM_BASE:
            base[key.decode()] = int(stat.get(key, 0))
        for name in ("memory.max_usage_in_bytes", "memory.failcnt") + (
                ("memory.memsw.max_usage_in_bytes", "memory.memsw.failcnt") if spec.get("memsw") else ()):
            if not _zero(f"{mem}/{name}"):
                return None
    # cpuacct.stat is cpuacct.usage split by cputime_adjust(), which never lets it go below what
    # it last showed: after a zeroed cpuacct.usage it stays at the ended container's total until
    # the next one has burnt more. Where the kernel has cpuacct.usage_user/_sys (4.7+: zeroed
    # with cpuacct.usage, not adjusted) the counters are zeroed and read instead, so the next
    # task sees only its own CPU, as in a fresh cgroup (not the earlier tenant's); on older
    # kernels cpuacct.stat is read as the baseline.
    if acct and os.path.exists(f"{acct}/{CPU_USER_NS}"):
        if not _zero(f"{acct}/cpuacct.usage"):
            return None
    elif acct:
        base.update((k.decode(), int(v)) for k, v in (read_pairs(f"{acct}/cpuacct.stat") or {}).items())
    if cpu:
        base.update((k.decode(), int(v)) for k, v in (read_pairs(f"{cpu}/cpu.stat") or {}).items())
    done: list[str] = []
    for old, new in zip(dirs, spec["to"], strict=True):
        try:
            os.rename(old, new)
        except OSError:
            for d in done:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            return None
        done.append(new)
    return base


def apply_plan(ops: list) -> None:
    """Carry out an isolator's setup plan: ``["mkdir", dir]`` (an existing one is fine),
    ``["rename", pooled dir, dir]`` (a recycled cgroup; made afresh if it is gone), ``["pool",
    container id, spec]`` (for the launcher helper: recycle the cgroups after the exit; nothing here),
    ``["write", file, text]``, ``["write?", file, text]`` (a failure is ignored). One list of
    plain values, so the launcher helper (stdlib only; it imports this file) can carry it out
    in the same round as the spawn. Raises OSError."""
    for op in ops:
        if op[0] == "mkdir":
            mkdir_once(op[1])
        elif op[0] == "rename":
            try:
                os.rename(op[1], op[2])
            except FileNotFoundError:
                mkdir_once(op[2])
        elif op[0] == "write":
            write_text(op[1], op[2])
        elif op[0] == "pool":
            pass  # the launcher helper's, at the child's exit (``recycle_cgroups``); none here
        elif op[0] == "write?":
            try:
                write_text(op[1], op[2])
            except OSError:
                pass
        else:
            raise ValueError(f"unknown setup step {op[0]!r}")


__all__ = ["apply_plan", "mkdir_once", "parse_kv", "read_int", "read_pairs", "read_text", "recycle_cgroups",
           "remove_cgroups", "write_text"]
