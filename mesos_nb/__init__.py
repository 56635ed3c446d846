"""mesos-nb: Apache Mesos re-made in Python, notebook first."""

__all__ = ["__version__", "connect", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython):  # noqa: ANN001 - IPython's extension hook
    """``%load_ext mesos_nb``: add the ``%mesos`` magics (see mesos_nb/notebook)."""
    from mesos_nb.notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # noqa: ANN001
    from mesos_nb.notebook import unload_ipython_extension as unload

    unload(ipython)


def connect(master: str | None = None):  # noqa: ANN201 - returns mesos_nb.notebook.Cluster
    """Python twin of ``%mesos connect``: connect this process as a framework (starting an
    embedded local cluster when no master is given or reachable) and return the handle."""
    from mesos_nb.notebook import connect as _connect

    return _connect(master)


def __getattr__(name: str):  # lazy: importing mesos_nb must not import distributed
    if name == "__version__":  # read from package metadata: not paid by every subpackage's import
        from mesos_nb.protocol.version import VERSION

        return VERSION
    if name == "MesosCluster":
        from mesos_nb.frameworks.dask import MesosCluster

        return MesosCluster
    raise AttributeError(f"module 'mesos_nb' has no attribute {name!r}")
