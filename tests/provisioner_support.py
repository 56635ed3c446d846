"""Helpers for the kernel-provisioner tests: register ``mesos-provisioner`` and install the
cluster kernelspecs without touching the shared Python environment.

``jupyter_client`` finds provisioners through ``importlib.metadata`` entry points (group
``jupyter_client.kernel_provisioners``), which scans every ``*.dist-info`` on ``sys.path``.
A tiny dist-info holding only ``entry_points.txt`` in a temporary directory, put on
``sys.path`` (this process) and ``PYTHONPATH`` (the Jupyter server a test starts), registers
the worktree's provisioner exactly as an installed ``mesos-nb`` does from pyproject.toml.
"""

from __future__ import annotations

import sys
from pathlib import Path

ENTRY = "mesos-provisioner = mesos_nb.frameworks.provisioner:MesosProvisioner\n"


def register_provisioner(where: Path) -> Path:
    """Write ``mesos_nb_provisioner_tests-0.dist-info`` under ``where``; returns ``where``."""
    info = where / "mesos_nb_provisioner_tests-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mesos-nb-provisioner-tests\n"
                                   "Version: 0\n")
    (info / "entry_points.txt").write_text("[jupyter_client.kernel_provisioners]\n" + ENTRY)
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))
    return where


def install_kernels(prefix: Path) -> Path:
    """The cluster kernelspecs (this interpreter) under ``prefix``; returns the kernels dir."""
    from mesos_nb.notebook.kernelspec import install_remote

    install_remote(prefix=str(prefix), python=sys.executable)
    return prefix / "share" / "jupyter" / "kernels"
