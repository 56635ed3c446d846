"""Is renaming a kept cgroup cheaper than removing it and making a new one? (cgroups v1, root)

    python bench/cgroup_rename.py [N]

Per container, N times: ``mkdir`` + ``rmdir`` in the memory hierarchy alone and in all three
(``memory``, ``cpu``, ``cpuacct``), against ``rename`` alone and ``rename`` + the counter resets
a recycled cgroup gets (``agent/cgroup_pool.py``). Printed: microseconds of wall and CPU time
per container. Empty cgroups: a container's charged pages make the real removal dearer still
(an offline memory cgroup lingers while they live).
"""

from __future__ import annotations

import os
import sys
import time

CTRLS = ("memory", "cpu", "cpuacct")


def _zero(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def _reset(ctrl: str, d: str) -> None:
    if ctrl == "memory":
        for name in ("memory.max_usage_in_bytes", "memory.failcnt", "memory.memsw.max_usage_in_bytes",
                     "memory.memsw.failcnt"):
            if os.path.exists(f"{d}/{name}"):
                _zero(f"{d}/{name}")
    elif ctrl == "cpuacct" and os.path.exists(f"{d}/cpuacct.usage_user"):
        _zero(f"{d}/cpuacct.usage")  # as recycle_cgroups does (the isolator reads usage_user/_sys)


def _timed(n: int, step) -> tuple[float, float]:  # noqa: ANN001 - step(i)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        step(i)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    base = {c: f"/sys/fs/cgroup/{c}/cgroup-rename-bench-{os.getpid()}" for c in CTRLS}
    for d in base.values():
        os.makedirs(d, exist_ok=True)
    try:
        for ctrls in (("memory",), CTRLS):
            def make_remove(i: int, ctrls: tuple = ctrls) -> None:
                for c in ctrls:
                    os.mkdir(f"{base[c]}/c{i}")
                for c in ctrls:
                    os.rmdir(f"{base[c]}/c{i}")

            print(f"{'+'.join(ctrls)}: mkdir+rmdir us (wall, cpu)", _timed(n, make_remove))
            for reset in (False, True):
                for c in ctrls:
                    os.mkdir(f"{base[c]}/p0")

                def rename(i: int, ctrls: tuple = ctrls, reset: bool = reset) -> None:
                    for c in ctrls:
                        os.rename(f"{base[c]}/p{i}", f"{base[c]}/p{i + 1}")
                        if reset:
                            _reset(c, f"{base[c]}/p{i + 1}")

                print(f"{'+'.join(ctrls)}: rename{' + resets' if reset else ''} us (wall, cpu)", _timed(n, rename))
                for c in ctrls:
                    os.rmdir(f"{base[c]}/p{n}")
    finally:
        for d in base.values():
            os.rmdir(d)


if __name__ == "__main__":
    main()
