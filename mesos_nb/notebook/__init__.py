"""The IPython extension: ``%load_ext mesos_nb`` adds ``%mesos`` and ``%%mesos``.

See README.md in this folder for the job and the data flow.
"""

from __future__ import annotations

from typing import Any

from .errors import MesosNotebookError, RemoteTaskError


def load_ipython_extension(ipython: Any) -> None:
    from .magics import MesosMagics

    if getattr(ipython, "_mesos_nb_magics", None) is not None:
        return
    magics = MesosMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython._mesos_nb_magics = magics
    if getattr(ipython, "kernel", None) is not None:  # a notebook: have %mesos dashboard draw at once
        from ..dashboards import prewarm

        prewarm()


def unload_ipython_extension(ipython: Any) -> None:
    """Leave the framework for failover (its tasks keep running) and remove the magics."""
    magics = getattr(ipython, "_mesos_nb_magics", None)
    if magics is None:
        return
    for b in list(magics.browsers):
        b.close()
    if magics.framework is not None:
        magics.framework.close(teardown=False)
        magics.framework = None
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("mesos", None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    ipython._mesos_nb_magics = None


def magics(ipython: Any = None) -> Any:
    """The loaded :class:`MesosMagics` instance (loads the extension if needed)."""
    if ipython is None:
        from IPython import get_ipython

        ipython = get_ipython()
    if ipython is None:
        raise MesosNotebookError("not running inside IPython")
    load_ipython_extension(ipython)
    return ipython._mesos_nb_magics


def connect(master: str | None = None) -> Any:
    """Python API for ``%mesos connect [MASTER]``: returns the :class:`Cluster` handle."""
    return magics().connect(master or "")


__all__ = ["MesosNotebookError", "RemoteTaskError", "connect", "load_ipython_extension", "magics",
           "unload_ipython_extension"]
