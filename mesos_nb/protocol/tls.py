"""TLS settings as Mesos users know them, turned into :class:`ssl.SSLContext` objects.

Explicit flags (``--tls-cert``, ``--tls-key``, ``--tls-ca``) win; otherwise the libprocess
environment is read: ``LIBPROCESS_SSL_ENABLED``, ``LIBPROCESS_SSL_CERT_FILE``,
``LIBPROCESS_SSL_KEY_FILE``, ``LIBPROCESS_SSL_CA_FILE``, ``LIBPROCESS_SSL_REQUIRE_CLIENT_CERT``
(and the legacy ``SSL_`` prefix, which loses to ``LIBPROCESS_SSL_``, as in Mesos).

Unlike libprocess, a client always verifies the server's certificate and hostname: a TLS
connection that does not check who answers protects nothing. Trust comes from the CA file
when one is given, else from the system store.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass


class TLSConfigError(ValueError):
    """TLS settings that cannot work; the message names the setting."""


def _env(name: str) -> str | None:
    for prefix in ("LIBPROCESS_SSL_", "SSL_"):
        v = os.environ.get(prefix + name)
        if v is not None and v != "":
            return v
    return None


def _env_bool(name: str) -> bool:
    v = _env(name)
    if v is None:
        return False
    t = v.strip().lower()
    if t in ("1", "true", "yes"):
        return True
    if t in ("0", "false", "no"):
        return False
    raise TLSConfigError(f"LIBPROCESS_SSL_{name} must be true/false or 1/0, not {v!r}")


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


def server_settings(cert: str | None = None, key: str | None = None, ca: str | None = None) -> TLSSettings:
    """A listener's settings: the flags, else ``LIBPROCESS_SSL_*`` when ENABLED is true."""
    require = False
    if not cert and not key and _env_bool("ENABLED"):
        cert, key = _env("CERT_FILE"), _env("KEY_FILE")
        ca = ca or _env("CA_FILE")
        require = _env_bool("REQUIRE_CLIENT_CERT")
        if not cert or not key:
            raise TLSConfigError("LIBPROCESS_SSL_ENABLED is true but LIBPROCESS_SSL_CERT_FILE and "
                                 "LIBPROCESS_SSL_KEY_FILE are not both set")
    if bool(cert) != bool(key):
        raise TLSConfigError("--tls-cert and --tls-key must be given together")
    return TLSSettings(cert, key, ca, require)


def server_context(settings: TLSSettings) -> ssl.SSLContext | None:
    """The listener's context, or None when TLS is off. Files are read now, so a bad one fails
    at start with a sentence instead of at the first connection."""
    if not settings.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)  # type: ignore[arg-type]
        if settings.ca_file:
            ctx.load_verify_locations(settings.ca_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"cannot load the TLS certificate/key/CA ({e})") from None
    if settings.require_client_cert:
        if not settings.ca_file:
            raise TLSConfigError("requiring client certificates needs a CA file (--tls-ca)")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ca_file(ca: str | None = None) -> str | None:
    """The CA a client trusts: the argument, ``$MESOS_NB_CA_FILE``, else ``LIBPROCESS_SSL_CA_FILE``."""
    return ca or os.environ.get("MESOS_NB_CA_FILE") or _env("CA_FILE")


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A verifying client context (server certificate and hostname), optionally with a client
    certificate for masters that require one."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca = client_ca_file(ca)
    try:
        if ca:
            ctx.load_verify_locations(ca)
        cert = cert or (_env("CERT_FILE") if _env_bool("ENABLED") else None)
        key = key or (_env("KEY_FILE") if _env_bool("ENABLED") else None)
        if cert and key:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"cannot load the TLS CA/certificate ({e})") from None
    return ctx


def describe_tls_mismatch(url: str, error: BaseException) -> str | None:
    """A sentence for the two classic mistakes (plain HTTP to a TLS port, HTTPS to a plain
    one), or None when ``error`` is something else."""
    text = f"{type(error).__name__} {error}".lower()
    base = "/".join(url.split("/", 3)[:3])
    if url.startswith("https://") and ("wrong version number" in text or "record layer failure" in text
                                        or "unknown protocol" in text or "http_request" in text):
        return f"the master at {base} does not speak TLS; use http:// instead of https://"
    if url.startswith("https://") and ("timed out" in text or "timeout" in text):
        return (f"the master at {base} did not answer the TLS handshake; if it does not serve TLS, "
                "use http:// instead of https://")
    if url.startswith("https://") and "certificate verify failed" in text:
        return (f"the TLS certificate of {base} is not trusted ({error}); give the CA with --ca-file "
                "or $MESOS_NB_CA_FILE")
    if url.startswith("http://") and any(s in text for s in (
            "remotedisconnected", "badstatusline", "connection reset", "serverdisconnected",
            "connection aborted", "server disconnected", "bad status line")):
        return (f"the master at {base} closed the connection without an HTTP answer; if it serves "
                "TLS, use https:// instead of http://")
    return None


__all__ = ["TLSConfigError", "TLSSettings", "client_ca_file", "client_context", "describe_tls_mismatch",
           "server_context", "server_settings"]
