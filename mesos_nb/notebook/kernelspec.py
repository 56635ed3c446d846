"""The ``mesos-nb`` kernelspec: ipykernel with the extension loaded (``kernels/mesos-nb``)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

KERNEL_NAME = "mesos-nb"


def kernel_spec(python: str | None = None) -> dict[str, Any]:
    """The kernel.json contents; ``python`` (default ``sys.executable``) runs ipykernel."""
    return {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.extensions=mesos_nb"],
        "display_name": "Python 3 (mesos-nb)",
        "language": "python",
        "metadata": {"debugger": True},
    }


def install(user: bool = False, prefix: str | None = None, name: str = KERNEL_NAME) -> str:
    """Install the kernelspec with jupyter_client's KernelSpecManager; returns where it went."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as d:
        spec_dir = os.path.join(d, name)
        os.makedirs(spec_dir)
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump(kernel_spec(), f, indent=1)
        return KernelSpecManager().install_kernel_spec(spec_dir, kernel_name=name, user=user,
                                                       prefix=prefix)


__all__ = ["KERNEL_NAME", "install", "kernel_spec"]
