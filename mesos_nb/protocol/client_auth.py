"""How a client proves who it is to a master and whom it trusts: one answer for the SDK, the
client library, the CLI and the notebook.

For a master URL the credential comes from, in order: explicit arguments;
``$MESOS_NB_PRINCIPAL`` + ``$MESOS_NB_SECRET``; ``$MESOS_NB_CREDENTIAL`` (a Mesos credential
file); the discovery file a local cluster on this machine wrote for that address
(``~/.mesos-nb/clusters/<host>_<port>.json``, mode 0600, naming its ``credentials.json``), or,
first, the one a local cluster in this very process registered (a notebook kernel's embedded
cluster: found even when ``$HOME`` changes).
The CA to trust comes from the argument, ``$MESOS_NB_CA_FILE``, ``LIBPROCESS_SSL_CA_FILE``, else
the discovery file. A discovery file whose process is gone is ignored.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .credentials import Credential, CredentialsError, basic_header, load_credential
from .tls import client_ca_file, client_context


def state_dir() -> Path:
    """``~/.mesos-nb`` (follows ``$HOME``, so tests can point it elsewhere)."""
    return Path(os.environ.get("HOME") or os.path.expanduser("~")) / ".mesos-nb"


def _hostport(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return (host or rest), (port or "5050")


def discovery_path(url: str) -> Path:
    host, port = _hostport(url)
    return state_dir() / "clusters" / f"{host.strip('[]').replace(':', '_')}_{port}.json"


_IN_PROCESS: dict[str, dict] = {}  # "host:port" -> discovery info of clusters this process runs


def write_discovery(url: str, credentials: str | None, ca_file: str | None) -> Path:
    """Record, for this user only, where clients find this local cluster's credentials."""
    host, port = _hostport(url)
    _IN_PROCESS[f"{host}:{port}"] = {"url": url, "credentials": credentials, "ca_file": ca_file}
    path = discovery_path(url)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = {"url": url, "pid": os.getpid(), "credentials": credentials, "ca_file": ca_file}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)
    return path


def remove_discovery(url: str) -> None:
    host, port = _hostport(url)
    _IN_PROCESS.pop(f"{host}:{port}", None)
    path = discovery_path(url)
    try:
        info = json.loads(path.read_text())
        if int(info.get("pid") or 0) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read_discovery(url: str) -> dict | None:
    host, port = _hostport(url)
    mine = _IN_PROCESS.get(f"{host}:{port}")
    if mine is not None:
        return mine
    try:
        info = json.loads(discovery_path(url).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not psutil.pid_exists(int(info.get("pid") or 0)):
        return None
    return info


@dataclass(frozen=True)
class Access:
    """A client's credential (or none) and the CA file it trusts (or the system store)."""

    credential: Credential | None = None
    ca_file: str | None = None

    def headers(self) -> dict[str, str]:
        c = self.credential
        return {"Authorization": basic_header(c.principal, c.secret)} if c is not None else {}

    def ssl_context(self, url: str) -> ssl.SSLContext | None:
        return _context(self.ca_file) if url.startswith(("https://", "wss://")) else None


@functools.lru_cache(maxsize=16)
def _context(ca_file: str | None) -> ssl.SSLContext:
    return client_context(ca_file)


def access_for(url: str, principal: str | None = None, secret: str | None = None,
               ca_file: str | None = None) -> Access:
    """The credential and trust for talking to the master at ``url`` (see the module doc)."""
    cred: Credential | None = None
    if principal:
        cred = Credential(principal, secret or "")
    elif os.environ.get("MESOS_NB_PRINCIPAL"):
        cred = Credential(os.environ["MESOS_NB_PRINCIPAL"], os.environ.get("MESOS_NB_SECRET", ""))
    elif os.environ.get("MESOS_NB_CREDENTIAL"):
        cred = load_credential(os.environ["MESOS_NB_CREDENTIAL"])
    info = None
    if cred is None or not client_ca_file(ca_file):
        info = read_discovery(url)
    if cred is None and info and info.get("credentials"):
        try:
            cred = load_credential(str(info["credentials"]))
        except CredentialsError:
            cred = None
    ca = client_ca_file(ca_file) or (info.get("ca_file") if info else None)
    return Access(cred, ca)


class AccessCache:
    """``access_for`` per master base URL, re-read every ``ttl`` seconds (polling clients ask often)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Access]] = {}

    def get(self, url: str) -> Access:
        base = "/".join(url.split("/", 3)[:3])
        now = time.monotonic()
        hit = self._cache.get(base)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        acc = access_for(base)
        if acc.credential is not None or acc.ca_file is not None:  # "nothing" is re-read next time
            self._cache[base] = (now, acc)
        return acc


__all__ = ["Access", "AccessCache", "access_for", "discovery_path", "read_discovery", "remove_discovery",
           "state_dir", "write_discovery"]
