"""TLS for the agent: its HTTP listener and its channel client to the master.

Settings come from the flags (``--tls-cert``, ``--tls-key``, ``--tls-ca``) or, as in Mesos,
from ``LIBPROCESS_SSL_*`` variables (``SSL_*`` legacy names, ``LIBPROCESS_SSL_`` winning):
ENABLED, CERT_FILE, KEY_FILE, CA_FILE, CA_DIR, VERIFY_SERVER_CERT, REQUIRE_CLIENT_CERT.
ENABLED without a certificate and key is an error (Mesos exits). The client verifies the
master's certificate against the CA when one is given (else the system trust store);
TLS 1.2 is the minimum. These variables are read from the agent's environment here and are
not passed on to tasks (environment.py builds task environments from nothing).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from .config import AgentConfig


class TLSConfigError(ValueError):
    """TLS settings that cannot work; ``str()`` says which."""


def _env(env: Mapping[str, str], name: str) -> str | None:
    for prefix in ("LIBPROCESS_SSL_", "SSL_"):
        v = env.get(prefix + name)
        if v is not None and v != "":
            return v
    return None


def _flag(env: Mapping[str, str], name: str, legacy: str | None = None) -> bool:
    v = _env(env, name) or (_env(env, legacy) if legacy else None)
    return (v or "").strip().lower() in ("1", "true")


@dataclass(frozen=True)
class TLSSettings:
    cert: str | None
    key: str | None
    ca_file: str | None
    ca_dir: str | None
    verify_server: bool
    require_client_cert: bool

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)


def settings(cfg: AgentConfig, env: Mapping[str, str]) -> TLSSettings:
    enabled = _flag(env, "ENABLED")
    cert = cfg.tls_cert or (_env(env, "CERT_FILE") if enabled else None)
    key = cfg.tls_key or (_env(env, "KEY_FILE") if enabled else None)
    if enabled and not (cert and key):
        raise TLSConfigError("LIBPROCESS_SSL_ENABLED needs LIBPROCESS_SSL_CERT_FILE and LIBPROCESS_SSL_KEY_FILE")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise TLSConfigError("--tls-cert and --tls-key go together")
    require = _flag(env, "REQUIRE_CLIENT_CERT", "REQUIRE_CERT")
    return TLSSettings(
        cert=cert, key=key, ca_file=cfg.tls_ca or _env(env, "CA_FILE"), ca_dir=_env(env, "CA_DIR"),
        verify_server=require or _flag(env, "VERIFY_SERVER_CERT", "VERIFY_CERT"),
        require_client_cert=require,
    )


def server_context(s: TLSSettings) -> ssl.SSLContext | None:
    """The listener's context (None: plain HTTP)."""
    if not s.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(s.cert, s.key)  # type: ignore[arg-type]
        if s.require_client_cert:
            if not (s.ca_file or s.ca_dir):
                raise TLSConfigError("LIBPROCESS_SSL_REQUIRE_CLIENT_CERT needs a CA (--tls-ca)")
            ctx.load_verify_locations(cafile=s.ca_file, capath=s.ca_dir)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"cannot load the agent's TLS certificate/key: {e}") from None
    return ctx


def client_context(s: TLSSettings) -> ssl.SSLContext | None:
    """The channel client's context for ``wss://`` (None: aiohttp's default, which verifies
    against the system trust store)."""
    if not (s.ca_file or s.ca_dir or s.cert):
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.ca_file, capath=s.ca_dir)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.cert and s.key:
            ctx.load_cert_chain(s.cert, s.key)  # presented when the master requires client certs
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"cannot load the TLS files for the master connection: {e}") from None
    return ctx


__all__ = ["TLSConfigError", "TLSSettings", "settings", "server_context", "client_context"]
