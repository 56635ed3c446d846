"""The one HTTP client setup every operator-side caller shares: timeouts, one error type,
the ``Authorization`` header and the TLS context. Without explicit hooks both come from
:func:`mesos_nb.protocol.client_auth.access_for` (environment, or the discovery file of a local
cluster), so every operator-side caller authenticates the same way.

Synchronous on purpose: the CLI and the notebook call it from plain threads; async callers
wrap it in ``asyncio.to_thread``.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec

from mesos_nb.protocol.client_auth import AccessCache
from mesos_nb.protocol.state import decode
from mesos_nb.protocol.tls import TLSConfigError, describe_tls_mismatch

_ACCESS = AccessCache()


class MesosClientError(Exception):
    """A failure the user sees as one sentence (unreachable, refused, not the expected body).

    ``status`` is the HTTP status when the server answered one, so callers decide on it rather
    than on the text (which holds URLs, whose ports may read like a status).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _reason(e: BaseException) -> str:
    r = getattr(e, "reason", e)
    if isinstance(r, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(r, OSError) and r.strerror:
        return r.strerror.lower()
    return str(r)


def _base(url: str) -> str:
    parts = url.split("/", 3)
    return "/".join(parts[:3]) if len(parts) >= 3 else url


class HttpClient:
    """``auth`` returns extra headers per request (e.g. ``{"Authorization": ...}``);
    ``ssl_context`` is used for ``https://`` URLs."""

    def __init__(self, timeout: float = 10.0, auth: Callable[[], dict[str, str]] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self.auth = auth
        self.ssl_context = ssl_context

    def request(self, url: str, *, method: str = "GET", body: Any = None,
                timeout: float | None = None, what: str = "the master") -> tuple[int, bytes]:
        """``(status, body)`` for any answer; raises when ``what`` cannot be reached."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            access = _ACCESS.get(url) if self.auth is None or self.ssl_context is None else None
            headers = self.auth() if self.auth else access.headers() if access else {}
            ctx = self.ssl_context or (access.ssl_context(url) if access else None)
        except (TLSConfigError, ValueError) as e:
            raise MesosClientError(str(e)) from None
        for k, v in headers.items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            tls = describe_tls_mismatch(url, getattr(e, "reason", e))
            if tls is not None:
                raise MesosClientError(tls) from None
            raise MesosClientError(f"cannot reach {what} at {_base(url)} ({_reason(e)})") from None

    def get(self, url: str, what: str = "the master") -> bytes:
        """The body of a 200 answer; any other status is an error naming it."""
        status, raw = self.request(url, what=what)
        if status == 401:
            raise MesosClientError(
                f"{what} at {_base(url)} requires authentication: give a principal and secret "
                "(--principal/--secret-file, $MESOS_NB_PRINCIPAL/$MESOS_NB_SECRET or $MESOS_NB_CREDENTIAL)")
        if status != 200:
            raise MesosClientError(
                f"{url} answered {status}: {raw.decode(errors='replace').strip()[:200]}", status)
        return raw

    def get_json(self, url: str, what: str = "the master") -> Any:
        try:
            return json.loads(self.get(url, what))
        except ValueError:
            raise MesosClientError(f"{url} did not answer JSON") from None

    def get_view(self, url: str, view: type[Any], what: str = "the master") -> Any:
        """The body decoded into one of :mod:`mesos_nb.protocol.state`'s views."""
        raw = self.get(url, what)
        try:
            return decode(raw, view)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise MesosClientError(f"{url} did not answer the expected JSON ({e})") from None


DEFAULT = HttpClient()

__all__ = ["DEFAULT", "HttpClient", "MesosClientError"]
