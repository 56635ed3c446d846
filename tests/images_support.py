"""Test images built from scratch: busybox-static + /etc files, packed as `docker save`
archives (manifest.json or legacy layout) or pushed to a Registry v2 with the push API."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1234:\nstaff:x:50:app\n"
APPLETS = ("sh", "cat", "id", "echo", "ls", "touch", "test", "stat", "sleep", "true")


def busybox_path() -> str | None:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).is_file():
            return p
    return shutil.which("busybox")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TarBuilder:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, type_: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type_, mode, uid, gid, 1_700_000_000
        return ti

    def dir(self, name: str, mode: int = 0o755) -> TarBuilder:
        self.tf.addfile(self._info(name, tarfile.DIRTYPE, mode))
        return self

    def file(self, name: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarBuilder:
        data = data.encode() if isinstance(data, str) else data
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str) -> TarBuilder:
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tf.addfile(ti)
        return self

    def hardlink(self, name: str, target: str) -> TarBuilder:
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.tf.addfile(ti)
        return self

    def chardev(self, name: str, major: int, minor: int) -> TarBuilder:
        ti = self._info(name, tarfile.CHRTYPE, 0o666)
        ti.devmajor, ti.devminor = major, minor
        self.tf.addfile(ti)
        return self

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()


def base_layer(marker: str = "image-marker", filler: bytes = b"") -> bytes:
    bb = busybox_path()
    assert bb, "busybox-static is not installed"
    t = TarBuilder().dir("bin").file("bin/busybox", Path(bb).read_bytes(), 0o755)
    for a in APPLETS:
        t.symlink(f"bin/{a}", "busybox")
    t.dir("etc").file("etc/passwd", PASSWD).file("etc/group", GROUP).file("etc/hostname", marker + "\n")
    t.dir("tmp", 0o1777).dir("home").dir("home/app").file("gone.txt", "will be whited out\n")
    t.dir("opq").file("opq/old.txt", "hidden by the opaque marker\n").file("keep.txt", "kept\n")
    if filler:
        t.file("filler.bin", filler)
    return t.bytes()


def top_layer() -> bytes:
    return (TarBuilder().file(".wh.gone.txt", b"").dir("opq").file("opq/.wh..wh..opq", b"")
            .file("opq/new.txt", "from the top layer\n").file("layer2.txt", "second layer\n").bytes())


@dataclass
class TestImage:
    layers: list[bytes]          # uncompressed tars, base first
    config: dict
    repo: str = "busybox-test"
    tag: str = "latest"
    config_bytes: bytes = b""
    diff_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.diff_ids = [sha(x) for x in self.layers]
        self.config.setdefault("rootfs", {"type": "layers", "diff_ids": self.diff_ids})
        self.config_bytes = json.dumps(self.config).encode()


def make_image(marker: str = "image-marker", *, user: str = "app", filler: bytes = b"",
               layers: list[bytes] | None = None, repo: str = "busybox-test", tag: str = "latest") -> TestImage:
    config = {"architecture": "amd64", "os": "linux",
              "config": {"User": user, "Env": ["PATH=/bin", "GREETING=hello"],
                         "Cmd": ["/bin/sh", "-c", "echo default"], "WorkingDir": "/work"}}
    return TestImage(layers if layers is not None else [base_layer(marker, filler), top_layer()],
                     config, repo, tag)


def save_manifest_tar(img: TestImage, path: Path, *, oci: bool = False) -> Path:
    """A `docker save` archive in the manifest.json layout (Docker 1.10 – 24), or with
    ``oci=True`` the Docker >= 25 one (blobs/sha256/<hex>, index.json, oci-layout)."""
    t = TarBuilder()
    if oci:
        cfg = "blobs/sha256/" + sha(img.config_bytes).split(":")[1]
        t.dir("blobs").dir("blobs/sha256").file(cfg, img.config_bytes)
        names = []
        for layer, d in zip(img.layers, img.diff_ids, strict=True):
            names.append("blobs/sha256/" + d.split(":")[1])
            t.file(names[-1], layer)
        t.file("oci-layout", '{"imageLayoutVersion":"1.0.0"}').file("index.json", '{"schemaVersion":2,"manifests":[]}')
        t.file("manifest.json", json.dumps([{"Config": cfg, "RepoTags": [f"{img.repo}:{img.tag}"], "Layers": names}]))
        t.file("repositories", json.dumps({img.repo: {img.tag: img.diff_ids[-1].split(":")[1]}}))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(t.bytes())
        return path
    cfg_name = sha(img.config_bytes).split(":")[1] + ".json"
    t.file(cfg_name, img.config_bytes)
    names = []
    for i, layer in enumerate(img.layers):
        lid = hashlib.sha256(f"v1-{i}-{img.diff_ids[i]}".encode()).hexdigest()
        t.dir(lid).file(f"{lid}/VERSION", "1.0").file(f"{lid}/layer.tar", layer)
        names.append(f"{lid}/layer.tar")
    t.file("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": [f"{img.repo}:{img.tag}"],
                                         "Layers": names}]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(t.bytes())
    return path


def save_legacy_tar(img: TestImage, path: Path) -> Path:
    """The legacy layout only: `repositories` + `<id>/json` parent chain + `<id>/layer.tar`."""
    t = TarBuilder()
    parent = None
    for i, layer in enumerate(img.layers):
        lid = hashlib.sha256(f"legacy-{i}-{sha(layer)}".encode()).hexdigest()
        meta = {"id": lid, "os": "linux", "architecture": "amd64"}
        if parent:
            meta["parent"] = parent
        if i == len(img.layers) - 1:
            meta["config"] = img.config["config"]
        t.dir(lid).file(f"{lid}/VERSION", "1.0").file(f"{lid}/json", json.dumps(meta)).file(f"{lid}/layer.tar", layer)
        parent = lid
    t.file("repositories", json.dumps({img.repo: {img.tag: parent}}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(t.bytes())
    return path


# --- Registry v2 push (the client side of the push API) ------------------------------------

def _req(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
         auth: tuple[str, str] | None = None) -> urllib.request.addinfourl:
    import base64
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if auth:
        r.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    return urllib.request.urlopen(r, timeout=30)


def push_blob(base: str, name: str, data: bytes, auth: tuple[str, str] | None = None) -> str:
    digest = sha(data)
    with _req("POST", f"{base}/v2/{name}/blobs/uploads/", b"", auth=auth) as r:
        assert r.status == 202, r.status
        loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    with _req("PUT", f"{loc}{sep}digest={digest}", data,
              {"Content-Type": "application/octet-stream"}, auth=auth) as r:
        assert r.status == 201, r.status
    return digest


def push_image(base: str, img: TestImage, auth: tuple[str, str] | None = None, *,
               tag: str | None = None) -> tuple[str, dict]:
    """Push gzipped layers, the config and a schema-2 manifest; returns (manifest digest, manifest)."""
    layers = []
    for layer in img.layers:
        gz = gzip.compress(layer, mtime=0)
        layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                       "size": len(gz), "digest": push_blob(base, img.repo, gz, auth)})
    cfg = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(img.config_bytes),
           "digest": push_blob(base, img.repo, img.config_bytes, auth)}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": cfg, "layers": layers}
    body = json.dumps(manifest).encode()
    with _req("PUT", f"{base}/v2/{img.repo}/manifests/{tag or img.tag}", body,
              {"Content-Type": manifest["mediaType"]}, auth=auth) as r:
        assert r.status == 201, r.status
    return sha(body), manifest


def push_index(base: str, repo: str, tag: str, entries: list[tuple[str, int, str, str]]) -> None:
    """An OCI image index over already pushed manifests: entries (digest, size, os, arch)."""
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                            "digest": d, "size": n, "platform": {"os": o, "architecture": a}}
                           for d, n, o, a in entries]}
    with _req("PUT", f"{base}/v2/{repo}/manifests/{tag}", json.dumps(index).encode(),
              {"Content-Type": index["mediaType"]}) as r:
        assert r.status == 201, r.status



# --- a real Docker Registry v2 on loopback (Debian's docker-registry) -------------------------

REGISTRY = shutil.which("docker-registry")


def start_registry(root: Path, htpasswd: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``docker-registry serve`` on a free loopback port; (process, base URL)."""
    from conftest import free_port, wait_for

    assert REGISTRY is not None, "docker-registry is not installed"
    port = free_port()
    cfg = (f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
           f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
           f"http:\n  addr: 127.0.0.1:{port}\n")
    if htpasswd:
        (root / "htpasswd").write_text(htpasswd)
        cfg += f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {root}/htpasswd\n"
    (root / "config.yml").write_text(cfg)
    proc = subprocess.Popen([REGISTRY, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "registry.log", "wb"))
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (root / "registry.log").read_text()
        try:
            urllib.request.urlopen(base + "/v2/", timeout=2).close()
        except urllib.error.HTTPError:
            pass  # 401: up, wants auth
        return True
    wait_for(up, timeout=20, message="docker-registry answering")
    return proc, base
