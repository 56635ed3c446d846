"""``mesos-provisioner``: a ``jupyter_client`` kernel provisioner that runs each kernel as a
task of the cluster.

``launch_kernel`` takes an offer holding the kernelspec's cpus/mem/gpus (role, attribute
constraints, 5 ports) through the server's shared framework (:mod:`.pools`), runs
:mod:`.launch` there (which writes the connection file and execs ipykernel bound to the
agent's address), and returns the connection info once the kernel's ports answer. The key is
made here and travels only in the task's environment. ``poll``/``wait``/``kill``/``terminate``
map onto the task; interrupts are ``interrupt_request`` messages on the control channel (the
kernelspecs say ``interrupt_mode: message``; ``send_signal(SIGINT)`` sends the same message).
``get_provisioner_info``/``load_provisioner_info`` carry the master, framework and task ids
so that a restarted server re-attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import time
from typing import Any

from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Dict, Float, Unicode, Union

from mesos_nb.client import MasterClient, MesosClientError, master_url
from mesos_nb.scheduler.pool import PENDING, RUNNING, TaskHandle, TaskSpec

from . import pools
from .request import (
    PORTS,
    KernelRequest,
    KernelRequestError,
    discover_master,
    kernel_request,
    never_fits,
    task_command,
    task_environment,
)

PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def _resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def _heartbeat(ip: str, port: int, timeout: float) -> bool:
    """True when the kernel's heartbeat echoes a ping (ipykernel binds it after its other
    sockets, so the kernel is listening; another program on the port does not echo)."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.REQ)
    try:
        sock.linger = 0
        sock.connect(f"tcp://{ip}:{port}")
        sock.send(b"mesos-nb")
        return bool(sock.poll(int(timeout * 1000))) and sock.recv() == b"mesos-nb"
    finally:
        sock.close()


def exit_code(handle: TaskHandle) -> int | None:
    """None while the task lives; 0 finished, -9 killed, 1 any other end."""
    if not handle.done:
        return None
    return {"finished": 0, "killed": -signal.SIGKILL}.get(handle.phase, 1)


class MesosProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Kernels as mesos-nb tasks. The ``config`` of the kernelspec's
    ``metadata.kernel_provisioner`` sets these traits; ``KERNEL_CPUS``, ``KERNEL_MEM``,
    ``KERNEL_GPUS``, ``KERNEL_ROLE``, ``KERNEL_ATTRIBUTES`` (``k=v,k2=v2``) and
    ``KERNEL_LAUNCH_TIMEOUT`` in the kernel's environment override them."""

    cpus = Float(1.0, config=True, help="CPUs of the kernel task")
    mem = Float(1024.0, config=True, help="memory of the kernel task (MB)")
    gpus = Float(0.0, config=True, help="GPUs of the kernel task")
    role = Unicode("*", config=True, help="the role the framework takes offers in")
    attributes = Union([Dict(), Unicode()], default_value={}, config=True,
                       help="agent attribute constraints (KEY=VALUE)")
    launch_timeout = Float(120.0, config=True,
                           help="seconds to wait for an offer and for the kernel to answer")
    master = Unicode("", config=True,
                     help="the master; empty: $MESOS_NB_MASTER, else ~/.mesos-nb/local.json")
    failover_timeout = Float(600.0, config=True,
                             help="seconds the master keeps kernels after this server is gone")

    _handle: TaskHandle | None = None
    _pool: Any = None
    _request: KernelRequest | None = None
    _master: str = ""

    # ------------------------------------------------------------------ state
    @property
    def has_process(self) -> bool:
        return self._handle is not None

    @property
    def task_id(self) -> str | None:
        return self._handle.id if self._handle else None

    def _config(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "mem": self.mem, "gpus": self.gpus, "role": self.role,
                "attributes": self.attributes, "launch_timeout": self.launch_timeout}

    # ------------------------------------------------------------------ launch
    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        env = kwargs["env"]
        try:
            self._request = kernel_request(self._config(), env)
            self._master = master_url(discover_master(env, self.master))
        except (KernelRequestError, MesosClientError) as e:
            raise RuntimeError(f"cannot start kernel {self.kernel_spec.display_name!r}: {e}") from None
        extra = kwargs.pop("extra_arguments", [])
        kwargs["cmd"] = list(self.kernel_spec.argv) + list(extra)
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        req = self._request or kernel_request(self._config(), {})
        master = self._master or master_url(discover_master({}, self.master))
        try:
            agents = (await asyncio.to_thread(MasterClient(master).agents)).slaves
        except MesosClientError as e:
            raise RuntimeError(f"cannot start the kernel on the cluster: {e}") from None
        why = never_fits(agents, req)
        if why:
            raise RuntimeError(why)
        self._pool = await asyncio.to_thread(pools.get_pool, master, req.role, req.gpus > 0,
                                             self.failover_timeout)
        key = secrets.token_hex(32)
        where: dict[str, Any] = {}

        def command(hostname: str, ports: list[int]) -> str:
            where["ip"], where["ports"] = _resolve(hostname), ports
            return task_command(cmd, where["ip"], ports)

        spec = TaskSpec(cmd=command, cpus=req.cpus, mem=req.mem, gpus=req.gpus, ports=PORTS,
                        name=f"kernel-{(self.kernel_id or 'x')[:8]}", constraints=req.attributes,
                        env=task_environment(self._kernel_env(kwargs.get("env", {})),
                                             kwargs.get("env", {}), master, key))
        self._handle = handle = self._pool.submit(spec)
        self.log.info("kernel %s: task %s of framework %s requested (%s)", self.kernel_id,
                      handle.id, self._pool.framework_id, req.describe())
        try:
            await self._await_start(handle, req, where)
        except BaseException:
            self._pool.kill(handle.id)
            raise
        self.connection_info = {
            **dict(zip(PORT_NAMES, where["ports"], strict=True)), "ip": where["ip"],
            "key": key.encode(), "transport": "tcp", "signature_scheme": "hmac-sha256",
            "kernel_name": getattr(self.parent, "kernel_name", "") or ""}
        self.log.info("kernel %s: task %s of framework %s ready on %s (ports %s)", self.kernel_id,
                      handle.id, self._pool.framework_id, handle.hostname, where["ports"])
        return self.connection_info

    def _kernel_env(self, env: dict[str, str]) -> dict[str, str]:
        """The kernelspec's ``env`` (as ``pre_launch`` substituted it) and the notebook's
        session name; not the rest of the server's environment (another machine's)."""
        names = [*(self.kernel_spec.env or {}), "JPY_SESSION_NAME"]
        return {k: env[k] for k in names if k in env}

    async def _await_start(self, handle: TaskHandle, req: KernelRequest, where: dict) -> None:
        t0 = time.monotonic()
        deadline = t0 + req.launch_timeout

        def left() -> float:
            return deadline - time.monotonic()

        while handle.state == PENDING:
            if left() <= 0:
                why = self._pool.why_waiting or "no offer came"
                raise TimeoutError(f"the kernel waited {req.launch_timeout:g} s for an offer with "
                                   f"{req.describe()} and got none that fits ({why})")
            await asyncio.to_thread(handle.wait_for, {"TASK_STAGING", *RUNNING}, min(left(), 0.5))
        while handle.state not in RUNNING:
            self._raise_if_ended(handle)
            if left() <= 0:
                raise TimeoutError(f"the kernel task {handle.id} was launched on {handle.hostname} "
                                   f"but did not reach TASK_RUNNING within {req.launch_timeout:g} s "
                                   f"(it is {handle.state})")
            await asyncio.to_thread(handle.wait_for, RUNNING, min(left(), 0.5))
        hb = where["ports"][PORT_NAMES.index("hb_port")]
        while not await asyncio.to_thread(_heartbeat, where["ip"], hb, min(max(left(), 0.1), 1.0)):
            self._raise_if_ended(handle)
            if left() <= 0:
                raise TimeoutError(
                    f"the kernel task {handle.id} runs on {handle.hostname} but its heartbeat at "
                    f"{where['ip']}:{hb} did not answer within {req.launch_timeout:g} s")

    def _raise_if_ended(self, handle: TaskHandle) -> None:
        if not handle.done:
            return
        tail = ""
        with contextlib.suppress(Exception):
            err = self._pool.logs(handle.id).get("stderr", "")
            tail = "\n".join(err.strip().splitlines()[-15:])
        msg = f"the kernel task {handle.id} ended ({handle.state}: {handle.message or 'no message'})"
        raise RuntimeError(msg + (f"; the end of its stderr:\n{tail}" if tail else ""))

    # ------------------------------------------------------------------ lifecycle
    async def poll(self) -> int | None:
        return exit_code(self._handle) if self._handle else 0

    async def wait(self) -> int | None:
        h = self._handle
        while h is not None and not h.done:
            await asyncio.to_thread(h.wait_for, set(), 0.5)
        return exit_code(h) if h else 0

    async def send_signal(self, signum: int) -> None:
        if self._handle is None or signum == 0:
            return
        if signum == signal.SIGINT:
            await asyncio.to_thread(self._interrupt_message)
        elif signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGQUIT, signal.SIGHUP):
            self._kill_task()
        else:
            self.log.warning("kernel %s: signal %s is not supported for a cluster kernel (only "
                             "SIGINT as an interrupt message, and SIGTERM/SIGKILL)", self.kernel_id,
                             signum)

    def _interrupt_message(self) -> None:
        """``interrupt_request`` on the control channel: what ``interrupt_mode: message`` does."""
        import zmq
        from jupyter_client.session import Session

        info = self.connection_info
        session = Session(key=info["key"] if isinstance(info["key"], bytes) else info["key"].encode(),
                          signature_scheme=info.get("signature_scheme", "hmac-sha256"))
        sock = zmq.Context.instance().socket(zmq.DEALER)
        try:
            sock.linger = 1000
            sock.connect(f"tcp://{info['ip']}:{info['control_port']}")
            session.send(sock, session.msg("interrupt_request", content={}))
        finally:
            sock.close()

    def _kill_task(self) -> None:
        if self._handle is not None and self._pool is not None and not self._handle.done:
            self.log.info("kernel %s: killing task %s of framework %s", self.kernel_id,
                          self._handle.id, self._pool.framework_id)
            self._pool.kill(self._handle.id)

    async def kill(self, restart: bool = False) -> None:
        self._kill_task()

    async def terminate(self, restart: bool = False) -> None:
        self._kill_task()

    async def cleanup(self, restart: bool = False) -> None:
        self._handle = None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 10.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, 30.0)

    # ------------------------------------------------------------------ re-attach
    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        ci = dict(info.get("connection_info") or {})
        if isinstance(ci.get("key"), bytes):
            ci["key"] = ci["key"].decode()
        info["connection_info"] = ci
        req = self._request or kernel_request(self._config(), {})
        info.update(master=self._master, role=req.role, gpus=req.gpus,
                    framework_id=self._pool.framework_id if self._pool else None,
                    task_id=self.task_id)
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        await super().load_provisioner_info(provisioner_info)
        self._master = provisioner_info["master"]
        self._pool = await asyncio.to_thread(
            pools.get_pool, self._master, provisioner_info.get("role") or "*",
            float(provisioner_info.get("gpus") or 0) > 0, self.failover_timeout,
            provisioner_info.get("framework_id"))
        tid = provisioner_info.get("task_id")
        if tid:
            handle = self._pool.tasks.get(tid)
            if handle is None:  # reconciliation will tell its state
                handle = self._pool.tasks.setdefault(tid, TaskHandle(tid, None))
            self._handle = handle
            self._pool.reconcile()


__all__ = ["MesosProvisioner", "exit_code"]
