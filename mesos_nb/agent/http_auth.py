"""HTTP Basic authentication of the agent's endpoints, by Mesos realm.

- ``mesos-agent-readonly`` (``--authenticate-http-readonly``): ``/state``, ``/files/*``,
  ``/monitor/statistics``, ``/metrics/snapshot`` and every other read endpoint;
- ``mesos-agent-readwrite`` (``--authenticate-http-readwrite``): the operator API ``/api/v1``;
- ``/api/v1/executor`` is the executor realm: its tokens are checked in executor_api.py;
- ``/health`` is never authenticated (as in Mesos).

A failure is a 401 with ``WWW-Authenticate: Basic realm="<realm>"``. Turning a realm on
without ``--http-credentials`` is refused at start (nothing could ever log in).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .auth import check_basic
from .config import AgentConfig

READONLY = "mesos-agent-readonly"
READWRITE = "mesos-agent-readwrite"
_OPEN = frozenset({"/health", "/slave(1)/health"})
_EXECUTOR = frozenset({"/api/v1/executor", "/slave(1)/api/v1/executor"})
_READWRITE = frozenset({"/api/v1", "/slave(1)/api/v1"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def realm_of(path: str) -> str | None:
    """The realm a path belongs to (None: not authenticated here)."""
    if path in _OPEN or path in _EXECUTOR:
        return None
    if path in _READWRITE:
        return READWRITE
    return READONLY


def check_config(cfg: AgentConfig, credentials: dict[str, str]) -> None:
    if (cfg.authenticate_http_readonly or cfg.authenticate_http_readwrite) and not credentials:
        raise ValueError("--authenticate-http-readonly/-readwrite need --http-credentials "
                         "(a file with at least one principal)")


def make_middleware(cfg: AgentConfig, credentials: dict[str, str]) -> Callable[[web.Request, Handler],
                                                                               Awaitable[web.StreamResponse]]:
    check_config(cfg, credentials)
    enabled = {READONLY: cfg.authenticate_http_readonly, READWRITE: cfg.authenticate_http_readwrite}

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        realm = realm_of(request.path)
        if realm is not None and enabled[realm]:
            if check_basic(request.headers.get("Authorization"), credentials) is None:
                return web.Response(status=401, text=f"Authentication required ({realm})",
                                    headers={"WWW-Authenticate": f'Basic realm="{realm}"'})
        return await handler(request)

    return authenticate


__all__ = ["make_middleware", "realm_of", "check_config", "READONLY", "READWRITE"]
