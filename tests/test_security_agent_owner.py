"""An agent id stays bound to the principal that registered it across a master restart.

The attack: with ``--authenticate-agents`` and two agent principals, agent A (alice) registers;
the master restarts from the same registry; before A is back, an impostor holding bob's valid
credential re-registers with A's id, to receive A's tasks and their secrets. The binding is
kept in the registry (``SaveAgentPrincipal``), so the impostor is refused and A is welcome,
also while A is unreachable.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

from conftest import async_wait_for
from test_security_agents import Rogue, register

from mesos_nb.master.effects import (
    MarkAgentGone,
    MarkAgentUnreachable,
    PruneAgents,
    RemoveAgent,
    SaveAgent,
    SaveAgentPrincipal,
)
from mesos_nb.master.registry import AgentRecord, MemoryRegistry
from mesos_nb.master.registry_sqlite import SqliteRegistry
from mesos_nb.master.security import SecurityConfig
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol.credentials import Credential, basic_header, write_credentials
from mesos_nb.protocol.resources import Resources

pytest_plugins = ["zk_fixture"]

ALICE = {"Authorization": basic_header("alice", "alice-secret")}
BOB = {"Authorization": basic_header("bob", "bob-secret")}


@contextlib.asynccontextmanager
async def master(tmp_path: Path, port: int = 0, **kw) -> AsyncIterator[MasterServer]:
    creds = tmp_path / "credentials.json"
    if not creds.exists():
        write_credentials(str(creds), [Credential("alice", "alice-secret"), Credential("bob", "bob-secret")])
    srv = MasterServer(MasterConfig(port=port, work_dir=str(tmp_path / "master"), security=SecurityConfig(
        credentials=str(creds), authenticate_agents=True), **kw))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def url_of(srv: MasterServer) -> SimpleNamespace:
    return SimpleNamespace(master_url=f"http://127.0.0.1:{srv.port}")


async def register_alice(srv: MasterServer) -> str:
    async with Rogue(url_of(srv), ALICE) as a:
        await a.send(register(key="a"))
        return (await a.wait(ch.AgentRegistered)).agent_id


async def impostor_refused_owner_welcome(srv: MasterServer, aid: str) -> None:
    async with Rogue(url_of(srv), BOB) as bob:
        await bob.send(register(key="b", agent_id=aid))
        refused = await bob.wait(ch.Refused)
        assert aid in refused.message and "another principal" in refused.message
    async with Rogue(url_of(srv), ALICE) as alice:
        await alice.send(register(key="a", agent_id=aid))
        assert (await alice.wait(ch.AgentRegistered)).agent_id == aid
        assert srv.core.agents[aid].connected


async def test_after_a_restart_an_impostor_cannot_claim_an_agents_id(tmp_path):
    async with master(tmp_path) as first:
        port = first.port
        aid = await register_alice(first)
    async with master(tmp_path, port=port) as second:
        assert aid in second.core.agents and not second.core.agents[aid].connected  # recovered, waiting
        await impostor_refused_owner_welcome(second, aid)


async def test_the_binding_holds_while_the_agent_is_unreachable(tmp_path):
    async with master(tmp_path) as first:
        port = first.port
        aid = await register_alice(first)
    # A does not come back in time after the restart: it is marked unreachable
    async with master(tmp_path, port=port, agent_reregister_timeout=0.2) as second:
        await async_wait_for(lambda: aid in second.core.unreachable, 10)
        await impostor_refused_owner_welcome(second, aid)


def _agent(aid: str) -> AgentRecord:
    return AgentRecord(aid, "h", 5051, Resources.parse("cpus:1;mem:64").to_proto(), [], 1.0)


def _check_backend(reg) -> None:
    reg.apply([SaveAgent(_agent(a)) for a in "ABCDE"]
              + [SaveAgentPrincipal(a, p) for a, p in zip("ABCDE", ("alice", None, "bob", "carol", "dave"),
                                                           strict=True)])
    reg.apply([MarkAgentUnreachable("A", 5.0), MarkAgentUnreachable("D", 5.0), RemoveAgent("C"),
               MarkAgentGone("E", 6.0)])
    reg.apply([PruneAgents(unreachable=["D"], gone=[])])
    # kept: admitted (B, bound to "no principal") and unreachable (A); dropped: removed, gone, pruned
    assert reg.recover().agent_principals == {"A": "alice", "B": None}


def test_every_registry_keeps_the_binding(tmp_path, zk_server):
    from mesos_nb.master.registry_zk import ZkRegistry

    _check_backend(MemoryRegistry())
    sql = SqliteRegistry(str(tmp_path / "registry.sqlite"))
    try:
        _check_backend(sql)
    finally:
        sql.close()
    zk = ZkRegistry(zk_server.unique_url(), session_timeout=2.0).start()
    try:
        zk.recover("master-1", now=1.0)
        _check_backend(zk)
        assert zk.recover("master-2", now=2.0).agent_principals == {"A": "alice", "B": None}
    finally:
        zk.close()
