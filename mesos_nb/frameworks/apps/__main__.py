"""``python -m mesos_nb.frameworks.apps --master HOST:PORT|zk://… --state DIR [--zk zk://…]``.

Order of events: take leadership (a standby replica waits here): the ``flock`` on the state
directory, or with ``--zk`` kazoo's Lock recipe, then claim the ZooKeeper store's epoch (which
fences any earlier leader); open the store, start the REST API and the DNS server, subscribe to the master (failover
re-subscription with the stored framework id), then tick until SIGTERM/SIGINT, which leaves
the tasks running (the framework can be restarted and adopts them). ``<state>/endpoints.json``
names the API URL and DNS port once they listen (with ``--zk`` also ``<zk path>/endpoint``).
Under ``--zk`` a lost ZooKeeper session or a fenced write stops the process with exit status 3
(fail-stop, as a deposed Mesos master aborts); the tasks keep running for the next leader.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from mesos_nb.protocol import event_loop
from mesos_nb.protocol.credentials import CredentialsError, load_credentials
from mesos_nb.protocol.zk_url import ZkUrlError, parse_zk_url

ENV = "MESOS_NB_APPS_"


def parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The framework's options (also the parent of ``mesos-nb apps serve``'s)."""
    p = argparse.ArgumentParser(prog="python -m mesos_nb.frameworks.apps", add_help=add_help,
                                description="mesos-nb's built-in services (apps) and jobs framework")
    env = os.environ.get
    p.add_argument("--master", default=env("MESOS_NB_MASTER", "127.0.0.1:5050"), help="the master, HOST:PORT")
    p.add_argument("--state", default=env(ENV + "STATE"), help="state directory (SQLite store, leader lock, results)")
    p.add_argument("--zk", default=env(ENV + "ZK"),
                   help="zk://HOST:PORT,…/PATH: keep the state in ZooKeeper and elect a leader among replicas there")
    p.add_argument("--zk-session-timeout", type=float, default=float(env(ENV + "ZK_SESSION_TIMEOUT", "10")),
                   help="ZooKeeper session timeout in seconds (how soon a dead leader is replaced)")
    p.add_argument("--host", default=env(ENV + "HOST", "127.0.0.1"), help="address of the REST API and DNS server")
    p.add_argument("--port", type=int, default=int(env(ENV + "PORT", "8080")), help="REST API port (0: any)")
    p.add_argument("--advertise", default=env(ENV + "ADVERTISE"), help="host agents reach the API at (default --host)")
    p.add_argument("--dns-port", type=int, default=int(env(ENV + "DNS_PORT", "8053")),
                   help="UDP DNS port (0: any, -1: no DNS server)")
    p.add_argument("--dns-domain", default=env(ENV + "DNS_DOMAIN", "mesos-nb"))
    p.add_argument("--name", default=env(ENV + "NAME", "mesos-nb-apps"), help="framework name")
    p.add_argument("--roles", default=env(ENV + "ROLES", "*"), help="comma-separated roles to subscribe with")
    p.add_argument("--failover-timeout", type=float, default=float(env(ENV + "FAILOVER_TIMEOUT", 7 * 86400)))
    p.add_argument("--python", default=env(ENV + "PYTHON", sys.executable),
                   help="the Python that notebook tasks run papermill with")
    p.add_argument("--http-credentials", default=env(ENV + "HTTP_CREDENTIALS"),
                   help="credentials file (the master's format): the REST API and UI then require HTTP Basic")
    p.add_argument("--principal", default=env("MESOS_NB_PRINCIPAL"))
    p.add_argument("--secret-file", default=env("MESOS_NB_SECRET_FILE"), help="file holding the framework secret")
    return p


async def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import dns
    from .api import make_app
    from .framework import AppsFramework
    from .http_auth import ApiGuard
    from .store import FileLock, SQLiteStore, State

    log = logging.getLogger("mesos_nb.apps")
    os.makedirs(args.state, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    exit_code = 0

    def lost(why: str) -> None:  # from any thread: stop acting as leader at once
        def fail() -> None:
            nonlocal exit_code
            exit_code = 3
            log.error("event=stepping_down reason=%s", why)
            stop.set()
        loop.call_soon_threadsafe(fail)

    zk = zk_store = None
    if args.zk:
        from .zk_store import ZkLeadership, ZkStore, connect

        zk = await loop.run_in_executor(None, lambda: connect(args.zk, args.zk_session_timeout))
        base = parse_zk_url(args.zk).path
        lock: Any = ZkLeadership(zk, base, on_lost=lost)
        if lock.contenders():
            log.info("another replica leads (%s); standing by", lock.contenders()[0])
        await lock.acquire()
        zk_store = ZkStore(zk, base, on_lost=lost)
        await loop.run_in_executor(None, zk_store.claim, f"{socket.gethostname()} {os.getpid()}")
        store: Any = zk_store
    else:
        lock = FileLock(os.path.join(args.state, "leader.lock"))
        if not lock.try_acquire():
            log.info("another replica leads (lock %s held); standing by", lock.path)
            await lock.acquire()
        store = SQLiteStore(os.path.join(args.state, "state.sqlite"))
    log.info("leading pid=%d state=%s zk=%s", os.getpid(), args.state, parse_zk_url(args.zk) if args.zk else None)
    state = State(store)
    guard = ApiGuard(load_credentials(args.http_credentials) if args.http_credentials else None)
    secret = None
    if args.secret_file:
        with open(args.secret_file) as f:
            secret = f.read().strip()
    fw = AppsFramework(args.master, state, name=args.name, roles=tuple(r.strip() for r in args.roles.split(",")),
                       failover_timeout=args.failover_timeout, results_dir=os.path.join(args.state, "results"),
                       python=args.python, principal=args.principal, secret=secret)
    if guard.credentials is None and args.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("event=open_api host=%s reason=no --http-credentials: anyone who reaches this address "
                    "can launch commands on the cluster", args.host)
    runner = web.AppRunner(make_app(fw, guard), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fw.api_url = f"http://{args.advertise or args.host}:{port}"
    dns_port = None
    transport = None
    if args.dns_port >= 0:
        resolver = dns.Resolver(lambda: (list(fw.apps.values()), fw.app_instances), args.dns_domain)
        transport, dns_port = await dns.serve(resolver, args.host, args.dns_port)
    endpoints = {"api": fw.api_url, "dns_port": dns_port, "pid": os.getpid()}
    tmp = os.path.join(args.state, "endpoints.json.tmp")
    with open(tmp, "w") as f:
        json.dump(endpoints, f)
    os.replace(tmp, os.path.join(args.state, "endpoints.json"))
    if zk_store is not None:
        zk_store.set_endpoint(endpoints)
    log.info("listening api=%s dns_port=%s", fw.api_url, dns_port)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.ensure_future(fw.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # SIGTERM or lost leadership while subscribing
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            return exit_code
        try:
            fid = starting.result()
        except Exception as e:  # unreachable master, refused subscription: one sentence, exit 2
            stopping.cancel()
            print(f"cannot subscribe to the master at {args.master}: {e}", file=sys.stderr)
            exit_code = 2
            return exit_code
        log.info("subscribed framework=%s", fid)
        await stopping
    finally:
        await fw.stop(failover=True)
        if transport is not None:
            transport.close()
        await runner.cleanup()
        state.store.close()
        lock.release()
        if zk is not None:
            zk.stop()
            zk.close()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    return serve(parser().parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Check the options (one sentence, exit 2), then run until SIGTERM/SIGINT."""
    checks = (("--zk", args.zk, parse_zk_url), ("--http-credentials", args.http_credentials, load_credentials))
    for flag, value, check in checks:
        try:
            if value:
                check(value)
        except (ZkUrlError, CredentialsError) as e:
            print(f"{flag}: {e}", file=sys.stderr)
            return 2
    if not args.state:
        print("--state DIR is required (where the framework keeps its state)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from .zk_store import StoreError

    with contextlib.suppress(KeyboardInterrupt):
        try:
            return event_loop.run(run(args))
        except StoreError as e:  # ZooKeeper unreachable at start, or fenced while claiming
            print(f"--zk {parse_zk_url(args.zk)}: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
