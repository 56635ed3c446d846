"""The agent's secrets: its credential for the master, the credentials its HTTP endpoints
accept, and the per-container executor tokens. File formats and Basic parsing are the
project's one implementation (:mod:`mesos_nb.protocol.credentials`).

- ``--credential FILE`` (Mesos format: ``{"principal": "p", "secret": "s"}``, or the text
  form ``p s`` on one line) is read from a file, never argv, so ``ps`` cannot show it; the
  agent presents it on the channel's WebSocket upgrade as HTTP Basic ``principal:secret``.
- ``--http-credentials FILE`` (``{"credentials": [{"principal", "secret"}, …]}``): Basic
  authentication of the agent's endpoints (realms ``mesos-agent-readonly`` /
  ``mesos-agent-readwrite``) when ``--authenticate-http-readonly/-readwrite`` are on.
- Executor tokens: ``<container id>.HMAC-SHA256(key, container id)``; the key is random, kept in
  ``<work_dir>/meta/executor_token.key`` (0600) so executors that outlive an agent restart
  keep a valid token. A token proves which container is calling, so an executor cannot
  act for another container (Mesos 1.5+ does the same with a JWT).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets

from mesos_nb.protocol.credentials import (
    CredentialsError,
    basic_header,
    load_credential,
    load_credentials,
    parse_basic,
    verify,
)

from .checkpoint import meta_dir

CredentialError = CredentialsError


def read_credential(path: str) -> tuple[str, str]:
    """(principal, secret) of the agent's ``--credential`` file."""
    c = load_credential(path)
    return c.principal, c.secret


def read_credentials(path: str) -> dict[str, str]:
    """principal -> secret of an ``--http-credentials`` file (Mesos' list format)."""
    return load_credentials(path)


def channel_authorization(credential_file: str | None, legacy_secret: str | None) -> str | None:
    """The channel's ``Authorization`` value: Basic from the credential file, else a legacy
    in-process shared secret as Bearer, else None. Raises CredentialError."""
    if credential_file:
        return basic_header(*read_credential(credential_file))
    if legacy_secret:
        return f"Bearer {legacy_secret}"
    return None


def check_basic(header: str | None, credentials: dict[str, str]) -> str | None:
    """The authenticated principal, or None (Mesos' rules: protocol/credentials.py)."""
    given = parse_basic(header)
    return given.principal if given is not None and verify(credentials, given) else None


def executor_key(work_dir: str) -> bytes:
    """The agent's executor-token key, made once per work_dir."""
    d = meta_dir(work_dir)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "executor_token.key")
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            key = f.read()
        if len(key) >= 32:
            return key
    key = secrets.token_bytes(32)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


def executor_token(key: bytes, container_id: str) -> str:
    """``<container id>.<hex HMAC>``: names the container it was given to, unforgeable."""
    return f"{container_id}.{hmac.new(key, container_id.encode(), hashlib.sha256).hexdigest()}"


def executor_token_container(key: bytes, header: str | None) -> str | None:
    """The container id an ``Authorization: Bearer <token>`` proves, or None (missing, not
    Bearer, malformed or forged)."""
    if not header or not header.startswith("Bearer "):
        return None
    token = header[7:].strip()
    cid, _, mac = token.rpartition(".")
    if not cid:
        return None
    expected = executor_token(key, cid)
    return cid if hmac.compare_digest(token.encode(), expected.encode()) else None


__all__ = [
    "CredentialError", "read_credential", "read_credentials", "basic_header", "check_basic", "channel_authorization",
    "executor_key", "executor_token", "executor_token_container",
]
