"""The agent's secrets: its credential for the master, the credentials its HTTP endpoints
accept, and the per-container executor tokens.

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

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets

from .checkpoint import meta_dir


class CredentialError(ValueError):
    """A credential file that cannot be used; ``str()`` says which and why."""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CredentialError(f"cannot read the credential file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialError(f"the credential file {path} is not UTF-8 text") from None


def _pair(obj: object, path: str) -> tuple[str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("principal"), str) \
            or not isinstance(obj.get("secret"), str) or not obj["principal"]:
        raise CredentialError(f"the credential file {path} needs a 'principal' and a 'secret' (strings)")
    return obj["principal"], obj["secret"]


def read_credential(path: str) -> tuple[str, str]:
    """(principal, secret) of the agent's ``--credential`` file."""
    text = _read(path).strip()
    if text.startswith("{"):
        try:
            return _pair(json.loads(text), path)
        except ValueError as e:
            if isinstance(e, CredentialError):
                raise
            raise CredentialError(f"the credential file {path} is not valid JSON: {e}") from None
    parts = text.split()
    if len(parts) != 2:
        raise CredentialError(f"the credential file {path} must be JSON or one line 'PRINCIPAL SECRET'")
    return parts[0], parts[1]


def read_credentials(path: str) -> dict[str, str]:
    """principal -> secret of an ``--http-credentials`` file (Mesos' list format)."""
    try:
        obj = json.loads(_read(path))
    except ValueError as e:
        if isinstance(e, CredentialError):
            raise
        raise CredentialError(f"the credentials file {path} is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("credentials"), list):
        raise CredentialError(f"the credentials file {path} needs a 'credentials' list")
    return dict(_pair(c, path) for c in obj["credentials"])


def basic_header(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


def channel_authorization(credential_file: str | None, legacy_secret: str | None) -> str | None:
    """The channel's ``Authorization`` value: Basic from the credential file, else a legacy
    in-process shared secret as Bearer, else None. Raises CredentialError."""
    if credential_file:
        return basic_header(*read_credential(credential_file))
    if legacy_secret:
        return f"Bearer {legacy_secret}"
    return None


def check_basic(header: str | None, credentials: dict[str, str]) -> str | None:
    """The authenticated principal, or None (Mesos: exactly ``Basic``, valid base64, exactly
    two parts on ``:``, a known principal with that secret)."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    parts = decoded.split(":")
    if len(parts) != 2:
        return None
    expected = credentials.get(parts[0])
    if expected is None or not hmac.compare_digest(expected.encode(), parts[1].encode()):
        return None
    return parts[0]


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
