"""Jupyter kernels as cluster tasks: the ``mesos-provisioner`` kernel provisioner.

``request`` (pure: kernelspec config + ``KERNEL_*`` → what to ask for, never-fits check),
``pools`` (one framework per Jupyter server), ``provisioner`` (``MesosProvisioner``) and
``launch`` (the first process of a kernel task, standard library only). ``MesosProvisioner``
is resolved lazily, so that ``launch`` starts without importing ``jupyter_client``.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "MesosProvisioner":
        from .provisioner import MesosProvisioner

        return MesosProvisioner
    raise AttributeError(name)


__all__ = ["MesosProvisioner"]
