"""``%mesos dask | spark | ipyparallel``: the subcommands ``MesosMagics`` hands over to the
launchers of :mod:`mesos_nb.frameworks` (``run_subcommand``), and what ``%mesos disconnect`` stops
(``stop_all``). They use the master the notebook is connected to (connecting first, as any
``%mesos`` subcommand does)."""

from __future__ import annotations

import contextlib
import shlex
from typing import Any

from .errors import MagicParser, MesosNotebookError, constraints, role_arg

USAGE = """  dask [--workers N --cpus C --mem M --adapt MIN:MAX --name NAME --attr K=V --role R]
                              Dask workers as tasks; returns a distributed.Client
  spark [--executors N --cpus C --mem M --role R]
                              Spark standalone master + workers as tasks; returns a SparkSession
  ipyparallel [--engines N --cpus C --mem M --role R]
                              ipyparallel controller + engines as tasks; %px then works"""


def _started(magics: Any) -> list[tuple[str, Any]]:
    if not hasattr(magics, "_frameworks_started"):
        magics._frameworks_started = []
    return magics._frameworks_started


def _sized(sub: str, count: str, n: int, mem: float, rest: str) -> Any:
    """``--<count> N --cpus C --mem M`` for ``%mesos <sub>``."""
    p = MagicParser(prog=f"%mesos {sub}", add_help=False)
    p.add_argument(count, type=int, default=n)
    p.add_argument("--cpus", type=float, default=1.0)
    p.add_argument("--mem", type=float, default=mem)
    p.add_argument("--role", type=role_arg)
    return p.parse_args(shlex.split(rest))


def dask(magics: Any, rest: str) -> Any:
    p = MagicParser(prog="%mesos dask", add_help=False)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cpus", type=float, default=1.0)
    p.add_argument("--mem", type=float, default=1024.0)
    p.add_argument("--adapt")
    p.add_argument("--name")
    p.add_argument("--attr", action="append", default=[])
    p.add_argument("--image")
    p.add_argument("--volume", action="append", default=[])
    p.add_argument("--role", type=role_arg)
    a = p.parse_args(shlex.split(rest))
    if a.volume and not a.image:
        raise MesosNotebookError("--volume is for workers in an image: give --image too")
    volumes = [(v.split(":", 1)[0], v.split(":", 1)[-1]) for v in a.volume]
    if any(not h.startswith("/") or not c.startswith("/") for h, c in volumes):
        raise MesosNotebookError("--volume takes absolute paths: HOST_PATH[:CONTAINER_PATH]")
    adapt = None
    if a.adapt:
        lo, sep, hi = a.adapt.partition(":")
        try:
            adapt = (int(lo), int(hi))
        except ValueError:
            raise MesosNotebookError(f"bad --adapt {a.adapt!r}: expected MIN:MAX, e.g. 1:4") from None
        if not sep or adapt[0] > adapt[1] or adapt[0] < 0:
            raise MesosNotebookError(f"bad --adapt {a.adapt!r}: expected MIN:MAX with 0 <= MIN <= MAX")
    try:
        from mesos_nb.frameworks.dask import start_dask
    except ImportError:
        raise MesosNotebookError("%mesos dask needs the dask extra: pip install 'mesos-nb[dask]'") from None
    client = start_dask(magics._master_url(), workers=a.workers, cpus=a.cpus, mem=a.mem, adapt=adapt,
                        name=a.name, constraints=constraints(a.attr), image=a.image, volumes=volumes or None,
                        role=a.role or magics.role)
    _started(magics).append(("dask", client))
    return client


def spark(magics: Any, rest: str) -> Any:
    a = _sized("spark", "--executors", 2, 1024.0, rest)
    from mesos_nb.frameworks.spark import SparkUnavailable, start_spark

    try:
        session = start_spark(magics._master_url(), executors=a.executors, cpus=a.cpus, mem=a.mem,
                              role=a.role or magics.role)
    except (SparkUnavailable, ValueError) as e:
        raise MesosNotebookError(str(e)) from None
    _started(magics).append(("spark", session))
    return session


def ipyparallel(magics: Any, rest: str) -> Any:
    a = _sized("ipyparallel", "--engines", 4, 256.0, rest)
    try:
        from mesos_nb.frameworks.ipyparallel import start_ipyparallel
    except ImportError:
        raise MesosNotebookError("%mesos ipyparallel needs the ipyparallel extra: pip install 'mesos-nb[ipyparallel]'") from None
    rc = start_ipyparallel(a.engines, master=magics._master_url(), cpus=a.cpus, mem=a.mem,
                           role=a.role or magics.role)
    _started(magics).append(("ipyparallel", rc))
    return rc


def run_subcommand(magics: Any, sub: str, rest: str) -> Any:
    return {"dask": dask, "spark": spark, "ipyparallel": ipyparallel}[sub](magics, rest)


def stop_all(magics: Any) -> int:
    """Stop what these subcommands started (``%mesos disconnect``); returns how many."""
    started = _started(magics)
    n = 0
    while started:
        kind, obj = started.pop()
        with contextlib.suppress(Exception):
            if kind == "dask":
                cluster = obj.cluster
                obj.close()
                cluster.close()
            elif kind == "spark":
                obj.mesos_cluster.stop()
            elif kind == "ipyparallel":
                cluster = obj.cluster
                obj.close()
                cluster.stop_cluster_sync()
            n += 1
    return n


__all__ = ["USAGE", "run_subcommand", "stop_all"]
