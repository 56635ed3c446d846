"""``zk://[user:pass@]host1:port1,host2:port2/path`` as Mesos reads it (``--zk``, ``--master``).

Pure parsing, so the master, the agent, the SDK and the CLI all accept and reject the same
strings with the same sentence. The rules follow Mesos' ``zookeeper::URL::parse``: the
authority ends at the first ``/`` (the rest is the znode path, default ``/``), credentials end
at the last ``@`` and are for ZooKeeper's ``digest`` scheme. Unlike Mesos we also check each
``host:port`` here, so a typo is reported before any connection attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "zk://"
DEFAULT_ZK_PORT = 2181


class ZkUrlError(ValueError):
    """The string is not a valid zk:// URL; ``str()`` is one sentence for the user."""


@dataclass(frozen=True)
class ZkUrl:
    servers: tuple[tuple[str, int], ...]
    path: str
    username: str | None = None
    password: str | None = None

    @property
    def hosts(self) -> str:
        """The connection string a ZooKeeper client takes (``h1:p1,h2:p2``, no chroot)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.servers)

    @property
    def digest(self) -> str | None:
        """``user:pass`` for the ``digest`` auth scheme, or None."""
        return None if self.username is None else f"{self.username}:{self.password or ''}"

    def __str__(self) -> str:
        """The URL without the password, safe for logs."""
        cred = f"{self.username}:***@" if self.username is not None else ""
        return f"{PREFIX}{cred}{self.hosts}{self.path}"


def is_zk_url(s: str) -> bool:
    return s.strip().lower().startswith(PREFIX)


def _server(item: str, whole: str) -> tuple[str, int]:
    if not item:
        raise ZkUrlError(f"Empty server in ZooKeeper URL {whole!r}: write zk://host1:2181,host2:2181/path.")
    if item.startswith("["):  # [ipv6]:port
        end = item.find("]")
        if end < 0:
            raise ZkUrlError(f"Unclosed '[' in ZooKeeper server {item!r}.")
        host, rest = item[1:end], item[end + 1:]
        if rest and not rest.startswith(":"):
            raise ZkUrlError(f"Expected ':port' after ']' in ZooKeeper server {item!r}.")
        port_text = rest[1:] if rest else ""
    elif item.count(":") > 1:
        raise ZkUrlError(f"IPv6 ZooKeeper server {item!r} must be written [address]:port.")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ZkUrlError(f"Missing host in ZooKeeper server {item!r}.")
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ZkUrlError(f"Invalid host {host!r} in ZooKeeper URL {whole!r}.")
    if port_text == "":
        return host, DEFAULT_ZK_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ZkUrlError(f"Invalid port {port_text!r} in ZooKeeper server {item!r}: expected 1-65535.")
    return host, int(port_text)


def parse_zk_url(text: str) -> ZkUrl:
    """Parse a ``zk://`` URL; raise :class:`ZkUrlError` naming what is wrong."""
    s = text.strip()
    if not s.lower().startswith(PREFIX):
        raise ZkUrlError(f"Expected a URL starting with zk://, got {text!r}.")
    rest = s[len(PREFIX):]
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    username = password = None
    if "@" in authority:
        cred, _, authority = authority.rpartition("@")
        username, colon, password = cred.partition(":")
        if not username or not colon:
            raise ZkUrlError("ZooKeeper credentials must be written user:password@ before the servers.")
    if not authority:
        raise ZkUrlError(f"No ZooKeeper servers in {text!r}: write zk://host1:2181,host2:2181/path.")
    servers = tuple(_server(item, text) for item in authority.split(","))
    if len(path) > 1:
        path = path.rstrip("/")
    if "//" in path or any(p in (".", "..") for p in path.split("/")):
        raise ZkUrlError(f"Invalid znode path {path!r}: no empty, '.' or '..' components.")
    if any(c.isspace() or ord(c) < 0x20 for c in path):
        raise ZkUrlError(f"Invalid znode path {path!r}: no whitespace or control characters.")
    return ZkUrl(servers=servers, path=path, username=username, password=password)


__all__ = ["DEFAULT_ZK_PORT", "ZkUrl", "ZkUrlError", "is_zk_url", "parse_zk_url"]
