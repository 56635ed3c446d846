"""Who may use the apps framework's REST API and UI.

The API launches commands on the cluster under the framework's principal, so when the
operator gives ``--http-credentials FILE`` (the master's credentials format) every route but
``/ping`` asks for HTTP Basic with one of those principals. Browsers send Basic credentials on
cross-site requests too, so a request that changes something is refused when its ``Origin``
is another site (no CSRF through a logged-in browser).

Tasks must not hold an operator's secret: the one route a task calls, the fetch of a job's
notebook (``GET /v2/jobs/{id}/notebook``), takes instead a ``token`` bound to that job id by an
HMAC under a key that lives only in this process (a run launched by an earlier leader fetches
its notebook at once, so the token outliving a failover is not needed).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from mesos_nb.protocol.credentials import parse_basic, verify

REALM = "mesos-nb-apps"
_NOTEBOOK = re.compile(r"^/v2/jobs/(?P<id>[^/]+)/notebook$")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiGuard:
    """The credentials (or None: an open API, the default on loopback) and the token key."""

    def __init__(self, credentials: dict[str, str] | None, key: bytes | None = None) -> None:
        self.credentials = credentials
        self._key = key or os.urandom(32)

    def notebook_token(self, job_id: str) -> str:
        return hmac.new(self._key, f"notebook:{job_id}".encode(), hashlib.sha256).hexdigest()

    def _token_ok(self, request: web.Request) -> bool:
        m = _NOTEBOOK.match(request.path)
        given = request.query.get("token", "")
        return (request.method == "GET" and m is not None and bool(given)
                and hmac.compare_digest(given, self.notebook_token(m.group("id"))))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in _SAFE and not _same_origin(request):
            return _json(403, "a cross-site request may not change apps or jobs (Origin is another site)")
        if self.credentials is None or request.path == "/ping" or self._token_ok(request):
            return await handler(request)
        if not verify(self.credentials, parse_basic(request.headers.get("Authorization"))):
            return _json(401, "authentication required: HTTP Basic with a principal from --http-credentials",
                         {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        return await handler(request)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser's cross-site request (curl, the CLI, the SDK)
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.headers.get("Host", "").lower()


def _json(status: int, message: str, headers: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


__all__ = ["ApiGuard", "REALM"]
