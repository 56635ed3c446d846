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


def apply_plan(ops: list) -> None:
    """Carry out an isolator's setup plan: ``["mkdir", dir]`` (an existing one is fine),
    ``["write", file, text]``, ``["write?", file, text]`` (a failure is ignored). One list of
    plain values, so the launcher helper (stdlib only; it imports this file) can carry it out
    in the same round as the spawn. Raises OSError."""
    for op in ops:
        if op[0] == "mkdir":
            mkdir_once(op[1])
        elif op[0] == "write":
            write_text(op[1], op[2])
        elif op[0] == "write?":
            try:
                write_text(op[1], op[2])
            except OSError:
                pass
        else:
            raise ValueError(f"unknown setup step {op[0]!r}")


__all__ = ["apply_plan", "mkdir_once", "parse_kv", "read_int", "read_text", "remove_cgroups", "write_text"]
