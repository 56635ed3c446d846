"""TLS for the agent: its HTTP listener and its channel client to the master, on the
project's one TLS implementation (:mod:`mesos_nb.protocol.tls`).

Settings: ``--tls-cert``/``--tls-key``/``--tls-ca`` (``AgentConfig.tls_*``), else Mesos'
``LIBPROCESS_SSL_*`` variables (ENABLED, CERT_FILE, KEY_FILE, CA_FILE, REQUIRE_CLIENT_CERT;
legacy ``SSL_*``). With TLS on, the listener serves https (TLS >= 1.2) and a bare
``host:port`` master means ``wss://``; the master's certificate is verified against the CA
(else the system trust store). These variables are the agent's: tasks do not inherit them
(environment.py); executors that need them get them through ``--executor-environment-variables``.
"""

from __future__ import annotations

import ssl

from mesos_nb.protocol import tls as _tls

from .config import AgentConfig

TLSConfigError = _tls.TLSConfigError


def enabled(cfg: AgentConfig) -> bool:
    return _tls.server_settings(cfg.tls_cert, cfg.tls_key, cfg.tls_ca).enabled


def server_context(cfg: AgentConfig) -> ssl.SSLContext | None:
    """The listener's context (None: plain HTTP). Raises TLSConfigError with a sentence."""
    return _tls.server_context(_tls.server_settings(cfg.tls_cert, cfg.tls_key, cfg.tls_ca))


def client_context(cfg: AgentConfig, ws_url: str | None) -> ssl.SSLContext | None:
    """The channel's context for ``wss://`` (None for ``ws://``). With a ``zk://`` master the URL
    is not known yet: a context is made when the agent has TLS settings, so a leader found later
    over ``wss://`` is verified too."""
    if ws_url is None:
        return _tls.client_context(cfg.tls_ca, cfg.tls_cert, cfg.tls_key) if cfg.tls_ca else None
    if not ws_url.startswith("wss://"):
        return None
    return _tls.client_context(cfg.tls_ca, cfg.tls_cert, cfg.tls_key)


__all__ = ["TLSConfigError", "enabled", "server_context", "client_context"]
