"""GETs from an agent's read-only endpoints, as the master: the one way the web UI's sandbox log
proxy (``/master/files/read``) and the utilization feed (``/monitor/statistics``) reach agents.

Why one client: both must follow the agent's own security settings. The agent says at
registration whether its listener serves TLS (``RegisterAgent.scheme``); an ``https`` agent's
certificate is verified against the master's CA (``--tls-ca``, else ``$MESOS_NB_CA_FILE`` /
``$LIBPROCESS_SSL_CA_FILE``, else the system store), and the master presents its own
certificate when it has one (for agents that require client certificates). An agent started
with ``--authenticate-http-readonly`` answers only to a principal from its
``--http-credentials``: the master presents ``--agent-http-credential FILE`` as HTTP Basic,
to https agents only: over plain HTTP it would travel in clear, and any holder of an agent
credential could register an ``http`` agent just to collect it.

A failure that is the master's to explain (cannot connect, TLS refused, the agent wants a
credential the master lacks or rejects it) is an :class:`AgentReadError` with one sentence;
any other answer of the agent (a missing file's 404, …) is handed back as it is.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ..protocol.credentials import Credential, CredentialsError, basic_header, load_credential
from ..protocol.tls import TLSConfigError, client_context


class AgentAddress(Protocol):
    """What the client needs of an agent record (:class:`~mesos_nb.master.model.Agent`)."""

    id: str
    hostname: str
    port: int
    scheme: str


class AgentReadError(Exception):
    """The agent could not be read; ``str(e)`` says why, for an operator."""


@dataclass(slots=True)
class AgentReply:
    status: int
    body: bytes
    content_type: str


class AgentReader:
    """One pooled HTTP(S) session to every agent; ``close()`` when the master stops."""

    def __init__(self, credential: Credential | None = None, ca: str | None = None,
                 cert: str | None = None, key: str | None = None) -> None:
        self.credential = credential
        self._tls = (ca, cert, key)
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_flags(cls, credential_file: str | None, ca: str | None = None, cert: str | None = None,
                   key: str | None = None) -> AgentReader:
        """The master's reader; a bad ``--agent-http-credential`` is a ValueError with one sentence."""
        try:
            credential = load_credential(credential_file) if credential_file else None
        except CredentialsError as e:
            raise ValueError(f"bad --agent-http-credential: {e}") from None
        return cls(credential, ca, cert, key)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                self._ssl = client_context(*self._tls)
            except TLSConfigError as e:
                raise AgentReadError(f"the master cannot verify https agents: {e}") from None
        return self._ssl

    async def get(self, agent: AgentAddress, path: str, params: dict[str, str] | None = None,
                  timeout: float = 10.0) -> AgentReply:
        scheme = "https" if agent.scheme == "https" else "http"
        base = f"{scheme}://{agent.hostname}:{agent.port}"
        headers = {"Authorization": basic_header(self.credential.principal, self.credential.secret)} \
            if self.credential is not None and scheme == "https" else {}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        kw: dict[str, Any] = {"ssl": self._ssl_context()} if scheme == "https" else {}
        try:
            async with self._session.get(base + path, params=params, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout), **kw) as resp:
                body = await resp.read()
                status, ctype = resp.status, resp.content_type
        except aiohttp.ClientSSLError as e:
            raise AgentReadError(f"Agent {agent.id} at {base}: TLS failed ({e}); the master verifies https "
                                 "agents against its --tls-ca") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise AgentReadError(f"Agent {agent.id} at {base} did not answer: {e!r}") from None
        if status == 401:
            if self.credential is not None and scheme == "http":
                raise AgentReadError(f"Agent {agent.id} at {base} requires HTTP authentication for {path}, but it "
                                     "serves plain HTTP and the master presents --agent-http-credential only over "
                                     "https; start the agent with --tls-cert/--tls-key")
            if self.credential is None:
                raise AgentReadError(f"Agent {agent.id} at {base} requires HTTP authentication for {path}; "
                                     "start the master with --agent-http-credential FILE naming a principal "
                                     "from the agent's --http-credentials")
            raise AgentReadError(f"Agent {agent.id} at {base} refused the master's credential (principal "
                                 f"'{self.credential.principal}', --agent-http-credential) for {path}")
        return AgentReply(status, body, ctype or "application/json")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["AgentAddress", "AgentReadError", "AgentReader", "AgentReply"]
