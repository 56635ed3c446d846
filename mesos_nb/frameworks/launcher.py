"""The engine under the Dask, Spark and ipyparallel launchers: the SDK's
:class:`~mesos_nb.scheduler.pool.TaskPool` (one framework keeping a set of command tasks
running, see that module for phases and matching) plus what a launcher also needs from the
operator side — a task's sandbox files after it died — and this machine's address as the
agents see it.
"""

from __future__ import annotations

import contextlib
import socket

from mesos_nb.client import MasterClient, MesosClientError, locate, master_url
from mesos_nb.scheduler.pool import LAUNCHING, TaskHandle, TaskSpec, image_container
from mesos_nb.scheduler.pool import TaskPool as _SdkPool
from mesos_nb.scheduler.stream import normalize_master


class TaskPool(_SdkPool):
    def logs(self, task_id: str, files: tuple[str, ...] = ("stdout", "stderr")) -> dict[str, str]:
        """The task's sandbox files (also after it died); ``{"error": ...}`` when unreadable."""
        task = self.tasks.get(task_id)
        try:
            box = locate(MasterClient(self.master), task_id, framework_id=self.framework_id,
                         agent_id=task.agent_id if task and task.agent_id else None)
            return {name: box.read(name) for name in files}
        except MesosClientError as e:
            if "has no sandbox" in str(e):
                return {}
            return {"error": str(e)}


def local_ip_for(master: str) -> str:
    """The address of this machine as seen from the master (the interface routing to it); for a
    ``zk://`` master, as seen from the master leading now."""
    url = normalize_master(master)
    if url.startswith("zk://"):
        try:
            url = master_url(url)
        except MesosClientError:
            return "127.0.0.1"
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port or 5050)))
        return s.getsockname()[0]
    return "127.0.0.1"


__all__ = ["LAUNCHING", "TaskHandle", "TaskPool", "TaskSpec", "image_container", "local_ip_for"]
