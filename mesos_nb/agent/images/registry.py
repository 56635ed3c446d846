"""Images from a Docker Registry HTTP API v2 server (aiohttp client).

Pull = ``GET /v2/<name>/manifests/<tag|digest>`` with ``Accept`` for OCI index/manifest and
Docker list/manifest; an index/list is resolved to this host's ``linux/<arch>`` entry and that
manifest fetched by digest; then the config blob and each layer blob. Every blob and every
manifest fetched by digest is verified (sha256) here: a registry's ``Docker-Content-Digest``
header is not trusted.

Auth: anonymous first (or HTTP Basic when credentials are configured for the host); on a 401
the ``WWW-Authenticate`` challenge decides: ``Bearer realm=…,service=…,scope=…`` → a token
from the realm (with the Basic credentials, if any), cached per (host, scope) until it expires
(``expires_in``, 60 s when absent); ``Basic`` → retry with credentials. Redirects (blobs on a
CDN) are followed by hand so an ``Authorization`` header never goes to another host.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from .manifest import (
    ACCEPT,
    INDEX_TYPES,
    ImageError,
    check_digest,
    media_type_of,
    parse_config,
    parse_manifest,
    pick_platform,
    verify_digest,
)
from .reference import DOCKER_HUB, ImageReference
from .source import LayerRef, ResolvedImage

HUB_AUTH_KEY = "https://index.docker.io/v1/"
_MAX_DOC = 8 << 20
_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class RegistryError(ImageError):
    """The registry refused or failed a request (the message names the URL path and the reason)."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate`` → (scheme lower-cased, params): ``Bearer realm="…",service="…"``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()}


def registry_base_url(host: str) -> str:
    """Mesos' scheme rule: https, except port 80, or localhost/127.0.0.1 on a port other than 443."""
    name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
    if port == "80" or (name in ("localhost", "127.0.0.1") and port and port != "443"):
        return f"http://{host}"
    return f"https://{host}"


def credentials_from_docker_config(text: str) -> dict[str, tuple[str, str]]:
    """``{"auths": {host: {"auth": base64(user:password)}}}`` (or ``.dockercfg``) → {host: (user, pw)}."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ImageError(f"docker config is not JSON: {e}") from None
    auths = doc.get("auths", doc) if isinstance(doc, dict) else {}
    out: dict[str, tuple[str, str]] = {}
    for host, entry in (auths or {}).items():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ImageError(f"docker config: the auth entry for {host} is not base64(user:password)") from None
        elif isinstance(entry.get("username"), str):
            user, pw = entry["username"], str(entry.get("password", ""))
        else:
            continue
        key = urlsplit(host).netloc if "://" in host else host.split("/")[0]
        out["docker.io" if host == HUB_AUTH_KEY else key] = (user, pw)
    return out


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


class RegistrySource:
    """An :class:`~.source.ImageSource` over registries speaking the HTTP API v2."""

    name = "registry"

    def __init__(self, default_registry: str = f"https://{DOCKER_HUB}", *,
                 credentials: Mapping[str, tuple[str, str]] | None = None,
                 session: aiohttp.ClientSession | None = None,
                 platform: tuple[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        url = default_registry if "://" in default_registry else registry_base_url(default_registry)
        self.default_url = url.rstrip("/")
        self.default_host = urlsplit(self.default_url).netloc
        self.credentials = dict(credentials or {})
        self._session, self._own_session = session, session is None
        self.platform = platform
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self.requests = 0  # HTTP requests sent (for metrics and tests)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120))
        return self._session

    def _base(self, ref: ImageReference) -> str:
        return registry_base_url(ref.registry) if ref.registry else self.default_url

    def _creds(self, host: str) -> tuple[str, str] | None:
        if host in self.credentials:
            return self.credentials[host]
        if host in (DOCKER_HUB, "index.docker.io"):
            return self.credentials.get("docker.io")
        return None

    # --- HTTP with auth and redirects ---------------------------------------------------

    async def _token(self, host: str, params: dict[str, str], scope: str) -> str:
        key = (host, scope)
        cached = self._tokens.get(key)
        if cached and cached[1] > self._clock():
            return cached[0]
        realm = params.get("realm")
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"registry {host} sent a Bearer challenge without a usable realm")
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        headers = {}
        creds = self._creds(host)
        if creds:
            headers["Authorization"] = _basic(*creds)
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        self.requests += 1
        async with self._http().get(url, headers=headers, allow_redirects=True) as r:
            if r.status != 200:
                raise RegistryError(f"token request to {urlsplit(realm).netloc} for {scope!r} "
                                    f"failed: HTTP {r.status}")
            try:
                doc = await r.json(content_type=None)
            except ValueError:
                raise RegistryError(f"token reply from {urlsplit(realm).netloc} is not JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token reply from {urlsplit(realm).netloc} has no token")
        expires = doc.get("expires_in", 60)
        expires = max(60, int(expires)) if isinstance(expires, (int, float)) else 60
        self._tokens[key] = (token, self._clock() + expires - 5)
        return token

    async def _open(self, url: str, name: str, accept: str | None = None) -> aiohttp.ClientResponse:
        """GET ``url`` with auth; returns an open 200 response (the caller releases it)."""
        host = urlsplit(url).netloc
        scope = f"repository:{name}:pull"
        auth: str | None = None
        if (host, scope) in self._tokens and self._tokens[(host, scope)][1] > self._clock():
            auth = "Bearer " + self._tokens[(host, scope)][0]
        elif self._creds(host):
            auth = _basic(*self._creds(host))  # type: ignore[misc]
        tried_challenge = False
        for _ in range(8):
            headers = {"Accept": accept} if accept else {}
            if auth and urlsplit(url).netloc == host:
                headers["Authorization"] = auth
            self.requests += 1
            try:
                r = await self._http().get(url, headers=headers, allow_redirects=False)
            except aiohttp.ClientError as e:
                raise RegistryError(f"cannot reach registry {urlsplit(url).netloc}: {e}") from None
            if r.status in (301, 302, 303, 307, 308) and "Location" in r.headers:
                url = urljoin(url, r.headers["Location"])
                r.release()
                continue
            if r.status == 401 and not tried_challenge:
                tried_challenge = True
                challenge = r.headers.get("WWW-Authenticate", "")
                r.release()
                scheme, params = parse_challenge(challenge)
                if scheme == "bearer":
                    want = params.get("scope") or scope
                    self._tokens.pop((host, want), None)  # refused: a cached token is stale
                    auth = "Bearer " + await self._token(host, params, want)
                    continue
                if scheme == "basic" and self._creds(host):
                    auth = _basic(*self._creds(host))  # type: ignore[misc]
                    continue
                raise RegistryError(f"registry {host} requires authentication for {name} "
                                    "and no credentials are configured")
            if r.status == 200:
                return r
            detail = await self._error_detail(r)
            if r.status == 401:
                raise RegistryError(f"registry {host} refused the credentials for {name}: {detail}")
            if r.status == 404:
                raise RegistryError(f"not found in registry {host}: {urlsplit(url).path} ({detail})")
            raise RegistryError(f"registry {host} answered HTTP {r.status} for {urlsplit(url).path}: {detail}")
        raise RegistryError(f"too many redirects fetching {urlsplit(url).path}")

    @staticmethod
    async def _error_detail(r: aiohttp.ClientResponse) -> str:
        try:
            body = await r.read()
            errs = json.loads(body).get("errors") or []
            return "; ".join(f"{e.get('code', 'UNKNOWN')}: {e.get('message', '')}" for e in errs) or "no detail"
        except (ValueError, AttributeError, aiohttp.ClientError):
            return "no detail"
        finally:
            r.release()

    async def _get_doc(self, url: str, name: str, accept: str | None = None) -> tuple[bytes, str]:
        r = await self._open(url, name, accept)
        try:
            body = await r.content.read(_MAX_DOC + 1)
            if len(body) > _MAX_DOC:
                raise RegistryError(f"{urlsplit(url).path} is larger than {_MAX_DOC} bytes")
            return body, r.headers.get("Content-Type", "")
        finally:
            r.release()

    # --- ImageSource -------------------------------------------------------------------

    async def resolve(self, ref: ImageReference) -> ResolvedImage:
        base, name = self._base(ref), ref.api_name(self.default_host)
        body, ctype = await self._get_doc(f"{base}/v2/{name}/manifests/{ref.reference}", name, ACCEPT)
        if ref.digest:
            verify_digest(body, ref.digest)
        mtype = media_type_of(body, ctype)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if mtype in INDEX_TYPES:
            os_name, arch = self.platform or (None, None)
            entry = pick_platform(body, os_name, arch)
            body, ctype = await self._get_doc(f"{base}/v2/{name}/manifests/{entry.digest}", name, ACCEPT)
            verify_digest(body, entry.digest)
            mtype, digest = media_type_of(body, ctype), entry.digest
        manifest = parse_manifest(body, mtype)
        config_bytes, _ = await self._get_doc(f"{base}/v2/{name}/blobs/{manifest.config.digest}", name)
        verify_digest(config_bytes, manifest.config.digest)
        config = parse_config(config_bytes)
        if len(config.diff_ids) != len(manifest.layers):
            raise ImageError(f"{ref}: manifest has {len(manifest.layers)} layers, config {len(config.diff_ids)}")
        layers = [LayerRef(diff_id=d, digest=layer.digest, media_type=layer.media_type,
                           locator=layer.digest, size=layer.size)
                  for d, layer in zip(config.diff_ids, manifest.layers, strict=True)]
        return ResolvedImage(ref, config_bytes, config, layers, digest, self.name, {"base": base, "name": name})

    async def fetch_layer(self, image: ResolvedImage, layer: LayerRef, dest_path: str) -> None:
        digest = layer.digest or layer.locator
        check_digest(digest)
        base, name = image.extra["base"], image.extra["name"]
        r = await self._open(f"{base}/v2/{name}/blobs/{digest}", name)
        h, n = hashlib.sha256(), 0
        try:
            with open(dest_path, "wb") as f:
                async for chunk in r.content.iter_chunked(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
        except aiohttp.ClientError as e:
            raise RegistryError(f"download of {digest} from {urlsplit(base).netloc} failed: {e}") from None
        finally:
            r.release()
        got = "sha256:" + h.hexdigest()
        if got != digest or (layer.size >= 0 and n != layer.size):
            with contextlib.suppress(OSError):
                os.unlink(dest_path)
            raise ImageError(f"layer blob digest mismatch: expected {digest} ({layer.size} bytes), "
                             f"downloaded {got} ({n} bytes)")


