"""The first process of a kernel task: write the kernel's connection file, then become the kernel.

Runs inside the task (``python -m mesos_nb.frameworks.provisioner.launch --ip IP --ports
S,I,N,C,H -- KERNEL ARGV``). The HMAC key arrives in ``$MESOS_NB_KERNEL_KEY`` (the task's
environment, which ``ps`` does not show to other users and the master's state does not
list); it is removed from the environment and written, with the ports the provisioner took
from the offer, into a 0600 file in a private directory *outside* the sandbox (the sandbox
is readable through the agent's ``/files`` API). ``{connection_file}`` in the kernel argv is
replaced by that path, and the process ``exec``s the kernel, so the kernel is the task's
process (the agent's kill reaches it; ipykernel's interrupt signals its own group).
Standard library only: it runs before anything else is imported in the task.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile

KEY_ENV = "MESOS_NB_KERNEL_KEY"
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def bind_address(ip: str) -> str:
    """``ip`` when this machine can bind it, else every interface (the agent's advertised
    hostname may resolve, from the Jupyter server, to an address that is NATed here)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
        return ip
    except OSError:
        return "0.0.0.0"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mesos_nb.frameworks.provisioner.launch")
    p.add_argument("--ip", required=True)
    p.add_argument("--ports", required=True, help="shell,iopub,stdin,control,hb")
    p.add_argument("kernel", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    kernel = [a for a in args.kernel if a != "--"] if args.kernel[:1] == ["--"] else args.kernel
    ports = [int(x) for x in args.ports.split(",")]
    key = os.environ.pop(KEY_ENV, "")
    if len(ports) != len(PORT_NAMES) or not key or not kernel:
        print("launch: need --ports with 5 ports, $MESOS_NB_KERNEL_KEY and a kernel command",
              file=sys.stderr)
        return 2
    ip = bind_address(args.ip)
    info = {**dict(zip(PORT_NAMES, ports, strict=True)), "ip": ip, "key": key,
            "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": ""}
    private = tempfile.mkdtemp(prefix="mesos-nb-kernel-")  # 0700
    path = os.path.join(private, "kernel.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    cmd = [a.replace("{connection_file}", path) for a in kernel] + [f"--ip={ip}"]
    print(f"launch: kernel on {ip} ports {args.ports}; exec {cmd[0]}", flush=True)
    os.execvp(cmd[0], cmd)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
