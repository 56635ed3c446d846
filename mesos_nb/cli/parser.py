"""``mesos-nb``'s argument parser: one sub-command per job (services, operator views, run)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from mesos_nb.master.ha_flags import add_agent_flags, add_master_flags
from mesos_nb.protocol.version import VERSION

from . import apps, maintenance, operator, roles, run, services
from .options import (
    DEFAULT_MASTER,
    ENV_PREFIX,
    Parser,
    event_loop_option,
    flag,
    log_level,
    opt,
    port,
    positive,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="mesos-nb", description="Apache Mesos re-made in Python, notebook first.")
    p.add_argument("--version", action="version", version=f"mesos-nb {VERSION}")
    master_default = os.environ.get(ENV_PREFIX + "MASTER") or DEFAULT_MASTER
    p.add_argument("--master", default=master_default,
                   help="the master, HOST:PORT [$MESOS_NB_MASTER, else 127.0.0.1:5050]")
    p.add_argument("--credential", default=os.environ.get(ENV_PREFIX + "CREDENTIAL"),
                   help="Mesos credential file (principal and secret) for an authenticating master "
                        "[$MESOS_NB_CREDENTIAL; else $MESOS_NB_PRINCIPAL/$MESOS_NB_SECRET, else a local "
                        "cluster's own]")
    p.add_argument("--ca-file", default=os.environ.get(ENV_PREFIX + "CA_FILE"),
                   help="CA that signed the master's TLS certificate [$MESOS_NB_CA_FILE, $LIBPROCESS_SSL_CA_FILE]")
    p.add_argument("--debug", action="store_true", default=bool(os.environ.get(ENV_PREFIX + "DEBUG")),
                   help="show tracebacks on errors [$MESOS_NB_DEBUG]")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def cmd(name: str, help: str, func: Callable[[argparse.Namespace], int],
            master: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        if master:  # not for the commands that *are* the master (master, local)
            # accepted after the command too; SUPPRESS keeps the top-level value when absent
            sp.add_argument("--master", default=argparse.SUPPRESS,
                            help=f"the master, HOST:PORT or zk://H:P,…/PATH (default: {master_default})")
        return sp

    m = cmd("master", "run a master", services.cmd_master, master=False)
    opt(m, "--host", default="127.0.0.1", help="address to listen on")
    opt(m, "--port", type=port, default=5050, help="port to listen on (0: any free port)")
    opt(m, "--hostname", help="hostname to advertise")
    opt(m, "--work-dir", help="directory for the registry")
    opt(m, "--allocation-interval", type=positive, default=1.0, help="seconds between allocation cycles")
    opt(m, "--agent-ping-timeout", type=positive, default=15.0, help="seconds between agent pings")
    opt(m, "--max-agent-ping-timeouts", type=int, default=5, help="missed pings before an agent is lost")
    opt(m, "--agent-secret", help="shared secret agents must present")
    flag(m, "--no-filter-gpu-resources",
         "offer GPU agents to every framework, not only to those that declare GPU_RESOURCES")
    services.security_options(m)
    opt(m, "--log-level", type=log_level, default="info", help="debug, info, warning, error")
    event_loop_option(m)
    add_master_flags(m)

    a = cmd("agent", "run an agent", services.cmd_agent)
    opt(a, "--host", default="127.0.0.1", help="address to listen on")
    opt(a, "--port", type=port, default=5051, help="port to listen on (0: any free port)")
    opt(a, "--hostname", help="hostname to advertise")
    opt(a, "--resources", help='e.g. "cpus:4;mem:8192;ports:[31000-32000]" (default: detected)')
    opt(a, "--attributes", help='e.g. "rack:a;zone:1"')
    opt(a, "--work-dir", default="/tmp/mesos-nb/agent", help="sandboxes and checkpoints")
    opt(a, "--isolation", default="auto",
        help="auto (the best this machine allows), cgroups, cgroups/v1, cgroups/v2, posix, or Mesos names: "
             "cgroups/cpu,cgroups/mem,cgroups/blkio,disk/du,filesystem/linux,namespaces/pid")
    opt(a, "--cgroups-root", default="mesos_nb",
        help="the cgroup under each hierarchy that holds this agent's containers (Mesos --cgroups_root)")
    opt(a, "--docker-registry", help="container images: a directory of `docker save` tarballs or a registry URL "
                                     "(default: Docker Hub)")
    opt(a, "--docker-store-dir", help="image layer store (default: <work-dir>/store/docker)")
    opt(a, "--image-store-max-bytes", type=int, default=0, help="bound of the image layer store (0: unbounded)")
    a.add_argument("--enforce-container-disk-quota", action="store_true",
                   help="disk/du: kill a task that uses more disk than its `disk` resource")
    opt(a, "--container-disk-watch-interval", type=positive, default=15.0,
        help="disk/du: seconds between measurements")
    # The top-level --credential, also accepted after "agent": the FILE the agent presents to the master.
    a.add_argument("--credential", default=argparse.SUPPRESS,
                   help='FILE with {"principal": …, "secret": …} presented to the master [$MESOS_NB_CREDENTIAL]')
    a.add_argument("--agent-secret", help=argparse.SUPPRESS)  # refused: argv shows in ps
    a.add_argument("--switch-user", action=argparse.BooleanOptionalAction,
                   default=os.environ.get(ENV_PREFIX + "SWITCH_USER", "1").lower() not in ("0", "false", "no", "off"),
                   help="run tasks as their user (CommandInfo.user, else FrameworkInfo.user) when root "
                        "[$MESOS_NB_SWITCH_USER, default on]")
    opt(a, "--executor-environment-variables", help="JSON object of variables every task gets")
    opt(a, "--http-credentials", help='FILE {"credentials": [{"principal", "secret"}]} for the endpoints')
    flag(a, "--authenticate-http-readonly", "require Basic auth on /state, /files, /monitor, /metrics")
    flag(a, "--authenticate-http-readwrite", "require Basic auth on the operator API")
    flag(a, "--authenticate-http-executors", "executors must present their MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
    opt(a, "--tls-cert", help="PEM certificate: serve https and use wss:// to the master")
    opt(a, "--tls-key", help="PEM private key of --tls-cert")
    opt(a, "--tls-ca", help="PEM CA bundle to verify the master")
    opt(a, "--log-level", type=log_level, default="info", help="debug, info, warning, error")
    event_loop_option(a)
    add_agent_flags(a)

    lo = cmd("local", "run a master and N agents in one process", services.cmd_local, master=False)
    opt(lo, "--agents", type=int, default=2, help="number of agents")
    opt(lo, "--port", type=port, default=5050, help="master port (0: any free port)")
    opt(lo, "--work-dir", help="work directory (default: a temporary one)")
    opt(lo, "--resources", help="resources of each agent (default: the machine divided among them)")
    opt(lo, "--isolation", help="isolation of each agent (as for 'mesos-nb agent'; default: auto)")
    opt(lo, "--cgroups-root", help="the cgroup holding the agents' containers (as for 'mesos-nb agent'; "
                                   "default: mesos_nb)")
    opt(lo, "--docker-registry", help="container images of each agent: a directory of `docker save` "
                                      "tarballs or a registry URL")
    opt(lo, "--log-level", type=log_level, default="warning", help="debug, info, warning, error")
    flag(lo, "--no-authenticate", "turn authentication off (default: generate credentials and require them)")
    event_loop_option(lo)
    services.tls_options(lo)

    cmd("status", "summary of the cluster", operator.cmd_status)
    cmd("agents", "list agents", operator.cmd_agents)
    fr = cmd("frameworks", "list frameworks", operator.cmd_frameworks)
    fr.add_argument("--all", action="store_true", help="include completed frameworks")
    t = cmd("tasks", "list tasks", operator.cmd_tasks)
    t.add_argument("--all", action="store_true", help="include completed tasks")
    cmd("roles", "list roles: weight, frameworks, allocated, DRF share", roles.cmd_roles)
    cmd("quota", "list quota: guarantee, limit, allocated, headroom per role", roles.cmd_quota)

    r = cmd("run", "run one command as a task; stream its output; exit with its exit code", run.cmd_run)
    opt(r, "--cpus", type=positive, default=1.0, help="CPUs")
    opt(r, "--mem", type=positive, default=256.0, help="memory (MB)")
    opt(r, "--gpus", type=positive, default=0.0, help="GPUs")
    opt(r, "--disk", type=positive, default=0.0, help="disk (MB)")
    opt(r, "--role", help="role to run as")
    r.add_argument("--attr", action="append", default=[], metavar="K=V",
                   help="only run on agents with this attribute (repeatable)")
    opt(r, "--name", help="task name")
    opt(r, "--image", help="run in this Docker image (the agents need filesystem/linux isolation)")
    opt(r, "--timeout", type=positive, help="give up after this many seconds")
    flag(r, "--verbose", "print status updates on stderr")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")

    lg = cmd("logs", "print a task's stdout (or stderr)", operator.cmd_logs)
    lg.add_argument("task", metavar="TASK", help="task id (or a unique prefix)")
    lg.add_argument("-f", "--follow", action="store_true", help="follow until the task ends")
    lg.add_argument("--stderr", action="store_true", help="stderr instead of stdout")

    k = cmd("kill", "kill a task", operator.cmd_kill)
    k.add_argument("task", metavar="TASK", help="task id (or a unique prefix)")
    services.notebook_commands(cmd)
    apps.add_commands(cmd)
    maintenance.add_commands(cmd)
    return p


