"""Pulls from a real Docker Registry v2 (Debian's ``docker-registry``, run on loopback) through
a counting front that can demand Bearer tokens, redirect blobs to another host and corrupt a
blob: one download per blob, token flow, digest verification, manifest lists, Basic auth."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import warnings

import aiohttp
import pytest
from aiohttp import web
from conftest import free_port
from images_support import busybox_path, make_image, push_image, push_index, start_registry

from mesos_nb.agent.images import (
    ImageError,
    ImageStore,
    RegistryError,
    RegistrySource,
    parse_reference,
)
from mesos_nb.agent.images.manifest import host_platform

REGISTRY = shutil.which("docker-registry")
pytestmark = [pytest.mark.skipif(REGISTRY is None, reason="Debian package docker-registry is not installed"),
              pytest.mark.skipif(busybox_path() is None, reason="busybox-static is not installed")]


_start_registry = start_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    proc, base = _start_registry(root)
    img = make_image()
    push_image(base, img)
    _, arch = host_platform()
    other = "arm64" if arch != "arm64" else "amd64"
    native, foreign = make_image(marker="native", repo="multi"), make_image(marker="foreign", repo="multi")
    d1, m1 = push_image(base, native, tag="native")
    d2, m2 = push_image(base, foreign, tag="foreign")
    push_index(base, "multi", "latest", [(d2, len(json.dumps(m2)), "linux", other),
                                          (d1, len(json.dumps(m1)), "linux", arch)])
    yield base, img, native
    proc.terminate()
    proc.wait(10)


class Front:
    """A test double in front of the real registry: counts requests, optionally demands a
    Bearer token from its own /token realm, redirects blobs to a second host name, corrupts a blob."""

    def __init__(self, upstream: str, *, bearer=False, redirect_blobs=False, corrupt=(), basic=None):
        self.upstream, self.bearer, self.redirect, self.corrupt = upstream, bearer, redirect_blobs, set(corrupt)
        self.basic = basic
        self.requests: list[str] = []
        self.tokens_issued = 0
        self.cdn_auth_headers: list[str] = []

    def count(self, kind: str) -> int:
        return sum(1 for r in self.requests if f"/{kind}/" in r)

    async def start(self):
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get("/cdn/{digest}", self.cdn)
        app.router.add_get("/v2/{tail:.*}", self.v2)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.session = aiohttp.ClientSession()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self):
        await self.session.close()
        await self.runner.cleanup()

    async def token(self, request):
        if self.basic and request.headers.get("Authorization") != self.basic:
            return web.Response(status=401)
        assert request.query["service"] == "test-registry"
        self.tokens_issued += 1
        return web.json_response({"token": f"tok-{self.tokens_issued}", "expires_in": 300})

    async def cdn(self, request):
        self.cdn_auth_headers.append(request.headers.get("Authorization", ""))
        return await self._forward(f"/v2/{request.query['name']}/blobs/{request.match_info['digest']}", request)

    async def v2(self, request):
        path = request.path
        self.requests.append(path)
        if self.bearer and not request.headers.get("Authorization", "").startswith("Bearer tok-"):
            name = path[4:].split("/manifests/")[0].split("/blobs/")[0]
            realm = f"http://127.0.0.1:{self.port}/token"
            return web.Response(status=401, headers={"WWW-Authenticate":
                f'Bearer realm="{realm}",service="test-registry",scope="repository:{name}:pull"'})
        if self.redirect and "/blobs/" in path:
            name, digest = path[4:].split("/blobs/")
            return web.Response(status=307, headers={"Location": f"http://localhost:{self.port}/cdn/{digest}?name={name}"})
        return await self._forward(path, request)

    async def _forward(self, path, request):
        headers = {"Accept": request.headers.get("Accept", "*/*")}
        async with self.session.get(self.upstream + path, headers=headers) as r:
            body = await r.read()
            if r.status == 200 and any(path.endswith(d) for d in self.corrupt):
                body = body[:-1] + bytes([body[-1] ^ 0xFF])
            return web.Response(status=r.status, body=body,
                                headers={k: v for k, v in r.headers.items()
                                         if k in ("Content-Type", "Docker-Content-Digest")})


@pytest.fixture
async def front_factory(registry):
    fronts = []

    async def make(**kw):
        f = Front(registry[0], **kw)
        url = await f.start()
        fronts.append(f)
        return f, url
    yield make
    for f in fronts:
        await f.stop()


async def test_pull_downloads_each_blob_once_then_reuses(tmp_path, registry, front_factory):
    _, img, _ = registry
    front, url = await front_factory()
    src = RegistrySource(url)
    store = ImageStore(str(tmp_path / "store"))
    try:
        image = await store.pull("busybox-test", src)
        assert image.layer_ids == img.diff_ids and image.config.user == "app"
        assert image.manifest_digest and image.manifest_digest.startswith("sha256:")
        assert front.count("manifests") == 1 and front.count("blobs") == 3  # config + 2 gzipped layers
        await store.pull("busybox-test:latest", src)
        assert len(front.requests) == 4  # cached: nothing asked
        await store.pull("busybox-test", src, cached=False)  # re-resolve, layers reused
        assert front.count("manifests") == 2 and front.count("blobs") == 4
        assert not os.path.lexists(os.path.join(image.layers[1].path, ".wh.gone.txt"))
        assert "gone.txt" in store.layer(image.layer_ids[1]).whiteouts
    finally:
        await src.close()


async def test_concurrent_pulls_share_downloads(tmp_path, registry, front_factory):
    _, img, _ = registry
    front, url = await front_factory()
    src = RegistrySource(url)
    store = ImageStore(str(tmp_path / "store"))
    try:
        await asyncio.gather(*(store.pull("busybox-test", src) for _ in range(4)),
                             store.pull("busybox-test", src, cached=False))
        layer_gets = [r for r in front.requests if "/blobs/" in r]
        assert len(layer_gets) == len(set(layer_gets)) + 1  # each layer once; the config once per resolve
        assert len(set(layer_gets)) == 3
    finally:
        await src.close()


async def test_bearer_token_challenge_and_cross_host_redirect(tmp_path, registry, front_factory):
    _, img, _ = registry
    front, url = await front_factory(bearer=True, redirect_blobs=True)
    src = RegistrySource(url)
    store = ImageStore(str(tmp_path / "store"))
    try:
        port = url.rsplit(":", 1)[1]
        image = await store.pull(f"127.0.0.1:{port}/busybox-test", src)  # explicit registry host
        assert image.layer_ids == img.diff_ids
        assert front.tokens_issued == 1  # one token, cached for the manifest and every blob
        assert len(front.cdn_auth_headers) == 3 and set(front.cdn_auth_headers) == {""}  # no token leaked
    finally:
        await src.close()


async def test_token_realm_with_credentials(tmp_path, registry, front_factory):
    import base64
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    front, url = await front_factory(bearer=True, basic=basic)
    store = ImageStore(str(tmp_path / "store"))
    anon = RegistrySource(url)
    try:
        with pytest.raises(RegistryError, match="token request .* failed: HTTP 401"):
            await store.pull("busybox-test", anon)
    finally:
        await anon.close()
    host = url.split("://")[1]
    authed = RegistrySource(url, credentials={host: ("alice", "s3cret")})
    try:
        await store.pull("busybox-test", authed)
        assert front.tokens_issued == 1
    finally:
        await authed.close()


async def test_blob_digest_mismatch_is_refused(tmp_path, registry, front_factory):
    base, img, _ = registry
    src0 = RegistrySource(base)
    resolved = await src0.resolve(parse_reference("busybox-test"))
    await src0.close()
    bad = resolved.layers[1].digest
    front, url = await front_factory(corrupt=[bad])
    src = RegistrySource(url)
    store = ImageStore(str(tmp_path / "store"))
    try:
        with pytest.raises(ImageError, match=f"digest mismatch: expected {bad}"):
            await store.pull("busybox-test", src)
        assert store.layer(img.diff_ids[1]) is None and store.cached("busybox-test", "registry") is None
        assert os.listdir(tmp_path / "store" / "staging") == []
    finally:
        await src.close()


async def test_manifest_list_resolves_to_this_host(tmp_path, registry, front_factory):
    _, _, native = registry
    front, url = await front_factory()
    src = RegistrySource(url)
    store = ImageStore(str(tmp_path / "store"))
    try:
        image = await store.pull("multi", src)
        assert image.layer_ids == native.diff_ids
        hostname = os.path.join(image.layers[0].path, "etc", "hostname")
        assert open(hostname).read() == "native\n"
        assert front.count("manifests") == 2  # the index, then the linux/<arch> manifest by digest
        other = RegistrySource(url, platform=("linux", "s390x"))
        with pytest.raises(ImageError, match="no manifest for linux/s390x"):
            await other.resolve(parse_reference("multi"))
        await other.close()
    finally:
        await src.close()


async def test_unknown_image_names_the_registry_error(tmp_path, registry, front_factory):
    front, url = await front_factory()
    src = RegistrySource(url)
    try:
        with pytest.raises(RegistryError, match="not found in registry .*(MANIFEST_UNKNOWN|NAME_UNKNOWN)"):
            await ImageStore(str(tmp_path / "s")).pull("no-such-image:1", src)
    finally:
        await src.close()


def _bcrypt(password: str) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # cost 4: fast tests
        return h if h and h.startswith("$2") else None
    except (ImportError, AttributeError):
        return None


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    h = _bcrypt("pw-42")
    if h is None:
        pytest.skip("no bcrypt for the registry's htpasswd file")
    root = tmp_path_factory.mktemp("registry-basic")
    proc, base = _start_registry(root, htpasswd=f"bob:{h}\n")
    push_image(base, make_image(), auth=("bob", "pw-42"))
    yield base
    proc.terminate()
    proc.wait(10)


async def test_basic_auth_registry(tmp_path, basic_registry):
    store = ImageStore(str(tmp_path / "store"))
    anon = RegistrySource(basic_registry)
    try:
        with pytest.raises(RegistryError, match="requires authentication .* no credentials"):
            await store.pull("busybox-test", anon)
    finally:
        await anon.close()
    host = basic_registry.split("://")[1]
    wrong = RegistrySource(basic_registry, credentials={host: ("bob", "nope")})
    try:
        with pytest.raises(RegistryError, match="refused the credentials"):
            await store.pull("busybox-test", wrong)
    finally:
        await wrong.close()
    good = RegistrySource(basic_registry, credentials={host: ("bob", "pw-42")})
    try:
        image = await store.pull("busybox-test", good)
        assert len(image.layers) == 2
    finally:
        await good.close()
