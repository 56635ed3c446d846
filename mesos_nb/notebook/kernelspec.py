"""The ``mesos-nb`` kernelspecs: ipykernel with the extension loaded, on this machine
(``kernels/mesos-nb``) or as a task of the cluster (``kernels/mesos-nb-cluster-{small,large,gpu}``,
run by the ``mesos-provisioner`` kernel provisioner)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

KERNEL_NAME = "mesos-nb"
PROVISIONER = "mesos-provisioner"
#: The remote sizes: kernelspec name -> (label, provisioner config).
REMOTE_SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    "mesos-nb-cluster-small": ("small", {"cpus": 1, "mem": 512}),
    "mesos-nb-cluster-large": ("large", {"cpus": 4, "mem": 8192}),
    "mesos-nb-cluster-gpu": ("gpu", {"cpus": 2, "mem": 8192, "gpus": 1}),
}


def _argv(python: str | None) -> list[str]:
    return [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
            "--IPKernelApp.extensions=mesos_nb"]


def kernel_spec(python: str | None = None) -> dict[str, Any]:
    """The kernel.json contents; ``python`` (default ``sys.executable``) runs ipykernel."""
    return {
        "argv": _argv(python),
        "display_name": "Python 3 (mesos-nb)",
        "language": "python",
        "metadata": {"debugger": True},
    }


def remote_kernel_spec(name: str, python: str | None = None) -> dict[str, Any]:
    """A cluster kernel: the same ipykernel, started as a task by ``mesos-provisioner`` with
    the size's resources. ``python`` must exist on the agents (default: this interpreter, which
    is right for a single machine or identical hosts). Interrupts are messages: no signal
    has to reach the task."""
    label, config = REMOTE_SIZES[name]
    return {
        "argv": _argv(python),
        "display_name": f"Python 3 (mesos-nb cluster, {label})",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": True,
                     "kernel_provisioner": {"provisioner_name": PROVISIONER, "config": dict(config)}},
    }


def _install_one(spec: dict[str, Any], name: str, user: bool, prefix: str | None) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as d:
        spec_dir = os.path.join(d, name)
        os.makedirs(spec_dir)
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump(spec, f, indent=1)
        return KernelSpecManager().install_kernel_spec(spec_dir, kernel_name=name, user=user,
                                                       prefix=prefix)


def install(user: bool = False, prefix: str | None = None, name: str = KERNEL_NAME) -> str:
    """Install the kernelspec with jupyter_client's KernelSpecManager; returns where it went."""
    return _install_one(kernel_spec(), name, user, prefix)


def install_remote(user: bool = False, prefix: str | None = None,
                   python: str | None = None) -> list[str]:
    """Install the cluster kernelspecs (small, large, gpu); returns where they went."""
    return [_install_one(remote_kernel_spec(n, python), n, user, prefix) for n in REMOTE_SIZES]


__all__ = ["KERNEL_NAME", "PROVISIONER", "REMOTE_SIZES", "install", "install_remote",
           "kernel_spec", "remote_kernel_spec"]
