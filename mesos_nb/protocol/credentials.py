"""Mesos credential files and HTTP Basic, shared by the master, the agent and every client.

Mesos keeps one file format for the master's ``--credentials`` (a list) and one for an agent's
``--credential`` (a single entry); both are JSON. A legacy text form (one ``principal secret``
pair per line) is read too, because operators carry such files from older Mesos setups.

Basic parsing follows Mesos exactly: the scheme must be exactly ``Basic``, the base64 must
decode, and the decoded value must split into exactly two parts on ``:`` (so a password that
contains ``:`` never authenticates, as in Mesos). Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from dataclasses import dataclass


class CredentialsError(ValueError):
    """A credentials file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Credential:
    principal: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credential(principal={self.principal!r}, secret=***)"


def _entry(obj: object, where: str) -> Credential:
    if not isinstance(obj, dict):
        raise CredentialsError(f"{where}: each credential must be an object with 'principal' and 'secret'")
    principal, secret = obj.get("principal"), obj.get("secret")
    if not isinstance(principal, str) or not principal:
        raise CredentialsError(f"{where}: credential without a 'principal' string")
    if not isinstance(secret, str):
        raise CredentialsError(f"{where}: credential for '{principal}' has no 'secret' string")
    return Credential(principal, secret)


def parse_credentials(text: str, where: str = "credentials") -> dict[str, str]:
    """Principal -> secret from the master's file (JSON list, single JSON entry or text lines)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError as e:
            raise CredentialsError(f"{where}: not valid JSON ({e})") from None
        if "credentials" in doc:
            items = doc["credentials"]
            if not isinstance(items, list):
                raise CredentialsError(f"{where}: 'credentials' must be a list")
        else:
            items = [doc]
        out: dict[str, str] = {}
        for item in items:
            c = _entry(item, where)
            out[c.principal] = c.secret
        return out
    out = {}
    for n, line in enumerate(stripped.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise CredentialsError(f"{where}: line {n} is not 'principal secret'")
        out[parts[0]] = parts[1]
    return out


def load_credentials(path: str) -> dict[str, str]:
    """Read a Mesos ``--credentials`` file; raises CredentialsError naming the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CredentialsError(f"cannot read credentials file {path}: {e.strerror}") from None
    creds = parse_credentials(text, path)
    if not creds:
        raise CredentialsError(f"{path}: holds no credentials")
    return creds


def load_credential(path: str) -> Credential:
    """Read an agent's (or client's) ``--credential`` file: one entry, or the first of a list."""
    creds = load_credentials(path)
    principal, secret = next(iter(creds.items()))
    return Credential(principal, secret)


def write_credentials(path: str, creds: list[Credential]) -> None:
    """Write the Mesos list format with mode 0600, created so no other user can ever read it."""
    doc = {"credentials": [{"principal": c.principal, "secret": c.secret} for c in creds]}
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def basic_header(principal: str, secret: str) -> str:
    """The ``Authorization`` header value for HTTP Basic."""
    raw = f"{principal}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_basic(header: str | None) -> Credential | None:
    """(principal, secret) from an ``Authorization`` header, or None when Mesos would refuse it."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme != "Basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = decoded.split(":")
    if len(parts) != 2 or not parts[0]:
        return None
    return Credential(parts[0], parts[1])


def verify(creds: dict[str, str], given: Credential | None) -> bool:
    """True when ``given`` names a known principal with its exact secret (constant time)."""
    if given is None:
        return False
    expected = creds.get(given.principal)
    if expected is None:
        hmac.compare_digest(given.secret.encode(), given.secret.encode())
        return False
    return hmac.compare_digest(expected.encode(), given.secret.encode())
