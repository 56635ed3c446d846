"""The service commands (``master``, ``agent``, ``local``: run until SIGINT/SIGTERM) and the
notebook helpers (``demo``, ``kernel install``). Each imports its layer only when run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from .errors import CLIError
from .options import flag, opt, positive

log = logging.getLogger("mesos_nb.cli")


async def _serve_until_signal(lines: Iterable[str], stop: Callable[[], Awaitable[Any]]) -> None:
    """Print where the started service is (and log its event loop), run until SIGINT/SIGTERM,
    then ``stop`` it."""
    from mesos_nb.protocol.event_loop import running

    for line in lines:
        print(line, flush=True)
    log.info("event loop: %s", running())
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop()


def _run(main: Coroutine[Any, Any, None], choice: str) -> None:
    """Run a service's ``main`` on the ``--event-loop`` it was given."""
    from mesos_nb.protocol import event_loop

    event_loop.run(main, choice)


def _listen_error(what: str, host: str, port: int, e: OSError) -> CLIError:
    why = (e.strerror or str(e)).lower()
    return CLIError(f"the {what} cannot listen on {host}:{port} ({why})")


def _check_resources(text: str | None) -> None:
    """A bad ``--resources`` is one sentence before anything starts."""
    from mesos_nb.protocol.resources import ResourceParseError, Resources

    if text is not None:
        try:
            Resources.parse(text)
        except ResourceParseError as e:
            raise CLIError(f"bad --resources: {e}") from None


def tls_options(p: argparse.ArgumentParser) -> None:
    opt(p, "--tls-cert", help="PEM certificate: serve TLS (else $LIBPROCESS_SSL_CERT_FILE when "
                              "$LIBPROCESS_SSL_ENABLED=true)")
    opt(p, "--tls-key", help="PEM private key of --tls-cert [$LIBPROCESS_SSL_KEY_FILE]")
    opt(p, "--tls-ca", help="PEM CA bundle clients and agents are checked against [$LIBPROCESS_SSL_CA_FILE]")


def security_options(p: argparse.ArgumentParser) -> None:
    """The master's Mesos security flags (Mesos's spellings with dashes, and their aliases)."""
    opt(p, "--credentials", help='Mesos credentials file {"credentials":[{"principal":…,"secret":…}]}')
    for names, help_ in (
        (("--authenticate-frameworks", "--authenticate-http-frameworks", "--authenticate"),
         "frameworks must authenticate (HTTP Basic)"),
        (("--authenticate-agents",), "agents must authenticate with a credential"),
        (("--authenticate-http-readonly",), "read-only endpoints and the web UI need credentials"),
        (("--authenticate-http-readwrite", "--authenticate-http"), "the operator API needs credentials"),
    ):
        flag(p, names[0], help_)
        for alias in names[1:]:
            p.add_argument(alias, dest=names[0].lstrip("-").replace("-", "_"), action="store_true",
                           help=argparse.SUPPRESS)
    opt(p, "--acls", help="Mesos ACLs: JSON text or a file path")
    opt(p, "--agent-http-credential", help='FILE {"principal","secret"} the master presents to agents\' '
                                           "read endpoints (log viewer, utilization) when they authenticate")
    tls_options(p)


def _master_security(args: argparse.Namespace) -> dict:
    from mesos_nb.master.security import SecurityConfig

    sec = SecurityConfig(
        credentials=args.credentials, authenticate_frameworks=args.authenticate_frameworks,
        authenticate_agents=args.authenticate_agents, authenticate_http_readonly=args.authenticate_http_readonly,
        authenticate_http_readwrite=args.authenticate_http_readwrite, acls=args.acls)
    return dict(security=sec, tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
                agent_http_credential=args.agent_http_credential)


def cmd_master(args: argparse.Namespace) -> int:
    from mesos_nb import logs

    logs.setup(args.log_level)

    from mesos_nb.master.ha_flags import master_config_kwargs

    async def main() -> None:
        from mesos_nb.master import gcpolicy
        from mesos_nb.master.server import MasterConfig, MasterServer

        gcpolicy.install()  # no multi-second full collections at 50,000 agents
        cfg = MasterConfig(
            host=args.host, port=args.port, hostname=args.hostname, work_dir=args.work_dir,
            allocation_interval=args.allocation_interval, agent_ping_timeout=args.agent_ping_timeout,
            max_agent_ping_timeouts=args.max_agent_ping_timeouts, agent_secret=args.agent_secret,
            filter_gpu_resources=not args.no_filter_gpu_resources,
            **_master_security(args),
            **master_config_kwargs(args),
        )
        try:
            server = MasterServer(cfg)
        except ValueError as e:  # SecurityError, TLSConfigError: a bad flag or file
            raise CLIError(str(e)) from None
        try:
            await server.start()
        except OSError as e:
            raise _listen_error("master", args.host, args.port, e) from None
        except RuntimeError as e:  # --zk: ZooKeeper unreachable
            await server.stop()
            raise CLIError(str(e)) from None
        await _serve_until_signal([f"master: {server.url}", f"web UI: {server.url}/"], server.stop)

    _run(main(), args.event_loop)
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from mesos_nb import logs
    from mesos_nb.agent.attributes import parse_attributes
    from mesos_nb.protocol.resources import ResourceParseError

    logs.setup(args.log_level)
    _check_resources(args.resources)
    try:
        parse_attributes(args.attributes)
    except ValueError as e:
        raise CLIError(f"bad --attributes: {e}") from None

    if args.agent_secret:
        raise CLIError("the agent's secret is not taken on the command line (ps shows it): "
                       "put it in a file and give --credential FILE")
    from mesos_nb.agent.environment import parse_executor_environment
    try:
        executor_env = parse_executor_environment(args.executor_environment_variables)
    except ValueError as e:
        raise CLIError(str(e)) from None
    legacy_secret = os.environ.get("MESOS_NB_AGENT_SECRET") or None  # the environment, never argv

    async def main() -> None:
        from mesos_nb.agent.config import AgentConfig
        from mesos_nb.agent.process import AgentProcess

        cfg = AgentConfig(
            master=args.master, host=args.host, port=args.port, hostname=args.hostname,
            resources=args.resources, attributes=args.attributes, work_dir=args.work_dir,
            isolation=args.isolation, cgroups_root=args.cgroups_root, agent_secret=legacy_secret,
            credential=args.credential,
            switch_user=args.switch_user, executor_environment_variables=executor_env,
            http_credentials=args.http_credentials,
            authenticate_http_readonly=args.authenticate_http_readonly,
            authenticate_http_readwrite=args.authenticate_http_readwrite,
            authenticate_http_executors=args.authenticate_http_executors,
            tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
            docker_registry=args.docker_registry, docker_store_dir=args.docker_store_dir,
            image_store_max_bytes=args.image_store_max_bytes,
            enforce_container_disk_quota=args.enforce_container_disk_quota,
            container_disk_watch_interval=args.container_disk_watch_interval,
        )
        try:
            proc = AgentProcess([cfg], master=args.master, secret=legacy_secret,
                                zk_session_timeout=args.zk_session_timeout,
                                master_ping_timeout=args.master_ping_timeout)
        except ValueError as e:  # a bad --master; credential, TLS, authentication or --isolation settings
            msg = str(e)
            raise CLIError(msg if any(w in msg.lower() for w in ("isolat", "credential", "tls", "auth", "secret"))
                           else f"bad --master: {msg}") from None
        try:
            await proc.start()
        except ConnectionError as e:
            raise CLIError(str(e) or f"cannot reach the master at {args.master}") from None
        except ResourceParseError as e:
            raise CLIError(f"bad --resources: {e}") from None
        except OSError as e:
            raise _listen_error("agent", args.host, args.port, e) from None
        await _serve_until_signal([f"agent: {ag.url} id={ag.agent_id} master={args.master}" for ag in proc.agents],
                                  proc.stop)

    _run(main(), args.event_loop)
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from mesos_nb import logs
    from mesos_nb.local import LocalCluster

    logs.setup(args.log_level)
    if args.agents < 0:
        raise CLIError("--agents cannot be negative")
    _check_resources(args.resources)

    async def main() -> None:
        cluster = LocalCluster(agents=args.agents, port=args.port, work_dir=args.work_dir,
                               agent_resources=args.resources, isolation=args.isolation,
                               agent_options={"cgroups_root": args.cgroups_root} if args.cgroups_root else None,
                               docker_registry=args.docker_registry, authenticate=not args.no_authenticate,
                               tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca)
        try:
            await cluster.start()
        except ValueError as e:  # an --isolation this machine cannot provide; SecurityError, TLSConfigError
            raise CLIError(str(e)) from None
        except OSError as e:
            if isinstance(e, ConnectionError):
                raise CLIError(str(e)) from None
            raise _listen_error("master", "127.0.0.1", args.port, e) from None
        await _serve_until_signal(cluster.describe(), lambda: cluster.stop(kill_tasks=True))

    _run(main(), args.event_loop)
    return 0


def notebook_commands(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    d = cmd("demo", "start an embedded cluster and run the quickstart notebook headlessly", cmd_demo)
    d.add_argument("--output", "-o", help="executed notebook (default: quickstart.executed.ipynb in a new temporary folder)")
    d.add_argument("--notebook", help="notebook to run (default: notebooks/quickstart.ipynb)")
    opt(d, "--agents", type=int, default=2, help="agents of the embedded cluster")
    opt(d, "--resources", help="resources of each agent (default: the machine divided among them)")
    opt(d, "--cell-timeout", type=positive, default=180.0, help="seconds a cell may run")
    kn = cmd("kernel", "install the mesos-nb Jupyter kernelspec (ipykernel + the extension)", cmd_kernel)
    kn.add_argument("action", choices=["install"], help="install")
    kn.add_argument("--user", action="store_true", help="install for this user only")
    kn.add_argument("--prefix", help="install under this prefix (e.g. a virtualenv)")
    kn.add_argument("--remote", action="store_true",
                    help="install the cluster kernelspecs (small, large, gpu): kernels run as tasks")


def cmd_demo(args: argparse.Namespace) -> int:
    from mesos_nb import logs
    from mesos_nb.notebook.demo import run_demo
    from mesos_nb.notebook.errors import MesosNotebookError

    logs.setup("error")
    try:
        run_demo(args.output, args.notebook, agents=args.agents, resources=args.resources,
                 timeout=args.cell_timeout)
    except MesosNotebookError as e:
        raise CLIError(str(e)) from None
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    from mesos_nb.notebook.kernelspec import install, install_remote

    try:
        wheres = (install_remote(user=args.user, prefix=args.prefix) if args.remote
                  else [install(user=args.user, prefix=args.prefix)])
    except (OSError, ImportError) as e:
        raise CLIError(f"cannot install the kernelspec ({e})") from None
    for where in wheres:
        print(f"installed kernelspec {os.path.basename(where)} in {where}")
    return 0
