"""Pure parts of mesos_nb.agent.images: references, manifests, launch rules, users, layer
unpacking safety and whiteouts, the copy backend, in-image file reads."""

from __future__ import annotations

import json
import os
import stat

import pytest
from images_support import TarBuilder

from mesos_nb.agent.images import (
    ImageError,
    ImageReferenceError,
    image_launch,
    parse_reference,
    resolve_user,
)
from mesos_nb.agent.images.layers import extract_layer
from mesos_nb.agent.images.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    parse_config,
    parse_manifest,
    pick_platform,
    sha256_digest,
)
from mesos_nb.agent.images.registry import (
    credentials_from_docker_config,
    parse_challenge,
    registry_base_url,
)
from mesos_nb.agent.images.rootfs import apply_layer, read_image_file
from mesos_nb.agent.images.store import StoredLayer

D = "sha256:" + "a" * 64


# --- references ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,registry,repo,tag,digest,api", [
    ("busybox", None, "busybox", None, None, "library/busybox"),
    ("busybox:1.36", None, "busybox", "1.36", None, "library/busybox"),
    ("team/app:v2", None, "team/app", "v2", None, "team/app"),
    ("localhost:5000/app", "localhost:5000", "app", None, None, "app"),
    ("registry.example.com/a/b:t", "registry.example.com", "a/b", "t", None, "a/b"),
    (f"busybox@{D}", None, "busybox", None, D, "library/busybox"),
    (f"host:1/x:t@{D}", "host:1", "x", "t", D, "x"),
])
def test_reference_parsing(text, registry, repo, tag, digest, api):
    r = parse_reference(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)
    assert r.api_name() == api
    assert str(r) == text
    assert r.reference == (digest or tag or "latest")


@pytest.mark.parametrize("text,needle", [
    ("", "empty"), ("Busybox", "lower-case"), ("a@b@c", "more than one"), ("x@sha256:zz", "not a digest"),
    ("x:bad tag", "not a valid tag"), ("../x", "not a registry"), ("x//y", "component"),
    ("localhost:5000/", "no repository"),
])
def test_reference_errors_name_the_problem(text, needle):
    with pytest.raises(ImageReferenceError, match=needle):
        parse_reference(text)


# --- manifests ------------------------------------------------------------------------------

def test_manifest_list_picks_platform_and_manifest_parses():
    idx = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert pick_platform(idx, "linux", "amd64").digest == "sha256:" + "2" * 64
    with pytest.raises(ImageError, match="no manifest for linux/s390x.*linux/arm64, linux/amd64"):
        pick_platform(idx, "linux", "s390x")
    m = parse_manifest(json.dumps({"schemaVersion": 2, "config": {"digest": D, "size": 3},
                                   "layers": [{"digest": D, "size": 9}]}).encode(), DOCKER_MANIFEST)
    assert m.layers[0].size == 9
    with pytest.raises(ImageError, match="no layers"):
        parse_manifest(b'{"schemaVersion":2,"config":{"digest":"%s"},"layers":[]}' % D.encode(), DOCKER_MANIFEST)
    with pytest.raises(ImageError, match="schema 1"):
        parse_manifest(b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws")
    with pytest.raises(ImageError, match="only sha256"):
        parse_manifest(b'{"schemaVersion":2,"config":{"digest":"md5:00"},"layers":[]}', DOCKER_MANIFEST)


def test_config_parsing_and_errors():
    c = parse_config(json.dumps({"rootfs": {"type": "layers", "diff_ids": [D]},
                                 "config": {"Entrypoint": ["/e"], "Cmd": None, "User": "app"}}).encode())
    assert (c.entrypoint, c.cmd, c.user, c.diff_ids) == (["/e"], [], "app", [D])
    with pytest.raises(ImageError, match="rootfs"):
        parse_config(b'{"config":{}}')
    with pytest.raises(ImageError, match="Env must be a list"):
        parse_config(json.dumps({"rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": "x"}}).encode())


# --- launch rules (Mesos docker/runtime) ------------------------------------------------------

def _cfg(entrypoint=(), cmd=(), env=(), wd="", user=""):
    return parse_config(json.dumps({"rootfs": {"type": "layers", "diff_ids": []}, "config": {
        "Entrypoint": list(entrypoint), "Cmd": list(cmd), "Env": list(env), "WorkingDir": wd, "User": user}}).encode())


def test_launch_rules_in_mesos_order():
    cfg = _cfg(entrypoint=["/ep", "-x"], cmd=["c1", "c2"])
    with pytest.raises(ImageError, match="Shell specified but no command value"):
        image_launch(cfg, shell=True)
    assert image_launch(cfg, shell=True, value="echo hi").argv == ["/bin/sh", "-c", "echo hi"]
    ln = image_launch(cfg, value="/bin/prog", arguments=["prog", "a"])
    assert (ln.executable, ln.argv) == ("/bin/prog", ["prog", "a"])
    assert image_launch(cfg).argv == ["/ep", "-x", "c1", "c2"]
    assert image_launch(cfg, arguments=["u"]).argv == ["/ep", "-x", "u"]
    only_cmd = _cfg(cmd=["/c", "d1"])
    assert image_launch(only_cmd).argv == ["/c", "d1"]
    assert image_launch(only_cmd, arguments=["u"]).argv == ["/c", "u"]
    with pytest.raises(ImageError, match="No executable is found"):
        image_launch(_cfg())


def test_launch_env_cwd_user():
    cfg = _cfg(cmd=["/c"], env=["A=image", "B=image=x", "NOEQ"], wd="/srv", user="app")
    ln = image_launch(cfg, agent_env={"A": "agent", "Z": "agent"}, task_env={"B": "task"})
    assert ln.env["A"] == "image" and ln.env["B"] == "task" and ln.env["Z"] == "agent"
    assert ln.env["MESOS_SANDBOX"] == "/mnt/mesos/sandbox" and "NOEQ" not in ln.env and "PATH" in ln.env
    assert ln.cwd == "/srv" and ln.user == "app"
    assert image_launch(_cfg(cmd=["/c"])).cwd == "/mnt/mesos/sandbox"
    assert image_launch(cfg, user="root").user == "root"


PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1234:\nstaff:x:50:app,other\nwheel:x:10:\n"


@pytest.mark.parametrize("spec,want", [
    ("", (0, 0, [])), ("app", (1234, 1234, [1234, 50])), ("1234", (1234, 1234, [1234, 50])),
    ("app:wheel", (1234, 10, [])), ("app:7", (1234, 7, [])), ("4321", (4321, 0, [0])), ("0:0", (0, 0, [])),
])
def test_resolve_user_through_image_files(spec, want):
    u = resolve_user(spec, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups) == want


def test_resolve_user_unknown_names():
    with pytest.raises(ImageError, match="'nobody' is not in the image's /etc/passwd"):
        resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(ImageError, match="group 'nogroup'"):
        resolve_user("app:nogroup", PASSWD, GROUP)


# --- registry helpers ---------------------------------------------------------------------------

def test_challenge_scheme_and_credentials():
    s, p = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:samalba/my-app:pull,push"')
    assert s == "bearer" and p["scope"] == "repository:samalba/my-app:pull,push" and p["service"] == "registry.docker.io"
    assert parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})
    assert registry_base_url("localhost:5000") == "http://localhost:5000"
    assert registry_base_url("localhost:443") == "https://localhost:443"
    assert registry_base_url("example.com:80") == "http://example.com:80"
    assert registry_base_url("example.com") == "https://example.com"
    creds = credentials_from_docker_config('{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},'
                                           '"r.example:5000":{"username":"a","password":"b"}}}')
    assert creds == {"docker.io": ("u", "p"), "r.example:5000": ("a", "b")}


# --- layer unpacking ---------------------------------------------------------------------------------

def _blob(tmp_path, t: TarBuilder, name="layer.tar"):
    p = tmp_path / name
    p.write_bytes(t.bytes())
    return str(p)


def test_extract_records_whiteouts_and_hashes(tmp_path):
    data = (TarBuilder().file("./.wh.gone", b"").dir("d").file("d/.wh..wh..opq", b"").file("d/new", "n")
            .file("a/b/c", "deep").hardlink("a/link", "a/b/c").chardev("dev/sda", 8, 0).bytes())
    blob = tmp_path / "l.tar"
    blob.write_bytes(data)
    dest = tmp_path / "out"
    dest.mkdir()
    c = extract_layer(str(blob), str(dest), overlay_markers=False)
    assert c.diff_id == sha256_digest(data)
    assert c.whiteouts == ["gone"] and c.opaque == ["d"] and c.skipped_devices == 1
    assert not (dest / ".wh.gone").exists() and not (dest / "d" / ".wh..wh..opq").exists()
    assert (dest / "a" / "b" / "c").read_text() == "deep"
    assert os.stat(dest / "a" / "link").st_ino == os.stat(dest / "a" / "b" / "c").st_ino
    assert not (dest / "dev" / "sda").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="overlay markers need root (mknod, trusted xattrs)")
def test_extract_writes_overlay_markers_as_root(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    extract_layer(_blob(tmp_path, TarBuilder().file(".wh.gone", b"").dir("d").file("d/.wh..wh..opq", b"")),
                  str(dest), overlay_markers=True)
    st = os.lstat(dest / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"


@pytest.mark.parametrize("build,needle", [
    (lambda t: t.file("../escape", "x"), "contains '..'"),
    (lambda t: t.file("/abs-escape", "x"), "absolute path"),
    (lambda t: t.symlink("lib", "/tmp/outside").file("lib/evil", "x"), "parent 'lib' is a symlink"),
    (lambda t: t.symlink("up", "..").file("up/evil", "x"), "parent 'up' is a symlink"),
    (lambda t: t.hardlink("h", "../../etc/passwd"), "contains '..'"),
    (lambda t: t.hardlink("h", "missing"), "not earlier in the same layer"),
    (lambda t: t.file("f", "x").file("f/under", "y"), "not a directory"),
    (lambda t: t.file(".wh.", b""), "invalid whiteout"),
])
def test_hostile_layers_are_refused_and_write_nothing_outside(tmp_path, build, needle):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(ImageError, match=needle):
        extract_layer(_blob(tmp_path, build(TarBuilder())), str(dest))
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape").exists() and not os.path.exists("/abs-escape")
    assert not os.path.exists("/tmp/outside/evil")


def test_not_a_tar_is_an_image_error(tmp_path):
    (tmp_path / "b").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(ImageError, match="not a valid tar"):
        extract_layer(str(tmp_path / "b"), str(tmp_path))
    (tmp_path / "z").write_bytes(b"\x28\xb5\x2f\xfd....")
    with pytest.raises(ImageError, match="zstd"):
        extract_layer(str(tmp_path / "z"), str(tmp_path))


# --- copy backend --------------------------------------------------------------------------------------

def _layer(tmp_path, name, t: TarBuilder) -> StoredLayer:
    d = tmp_path / name
    d.mkdir()
    c = extract_layer(_blob(tmp_path, t, name + ".tar"), str(d), overlay_markers=os.geteuid() == 0)
    return StoredLayer(c.diff_id, str(d), c.size, tuple(c.whiteouts), tuple(c.opaque))


def test_copy_backend_applies_whiteouts_and_never_writes_through_lower_symlinks(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    lower = _layer(tmp_path, "l0", TarBuilder().file("gone", "g").dir("opq").file("opq/old", "o")
                   .file("keep", "k").symlink("x", str(victim)).file("clash", "file"))
    upper = _layer(tmp_path, "l1", TarBuilder().file(".wh.gone", b"").dir("opq").file("opq/.wh..wh..opq", b"")
                   .file("opq/new", "n").dir("x").file("x/passwd", "pwned").dir("clash").file("clash/f", "d"))
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(lower, str(root))
    apply_layer(upper, str(root))
    assert sorted(os.listdir(root)) == ["clash", "keep", "opq", "x"]
    assert os.listdir(root / "opq") == ["new"]
    assert list(victim.iterdir()) == []  # the upper x/ replaced the symlink instead of following it
    assert (root / "x" / "passwd").read_text() == "pwned" and not os.path.islink(root / "x")
    assert (root / "clash" / "f").read_text() == "d"


def test_read_image_file_resolves_symlinks_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "real").write_text("inside\n")
    secret = tmp_path / "host-secret"
    secret.write_text("host\n")
    os.symlink("/../../../" + str(secret), root / "etc" / "passwd")
    assert read_image_file(str(root), "/etc/passwd") == ""  # resolves to <root>/<secret path>: absent
    os.symlink("../real", root / "etc" / "group")
    assert read_image_file(str(root), "/etc/group") == "inside\n"
    os.symlink("/etc/loop", root / "etc" / "loop")
    with pytest.raises(ImageError, match="too many symlinks"):
        read_image_file(str(root), "/etc/loop")


async def test_bearer_token_is_cached_until_it_expires():
    """Token lifetime: expires_in (never under 60 s), reused for the same host and scope."""
    from aiohttp import web
    from conftest import free_port

    from mesos_nb.agent.images.registry import RegistrySource

    issued = []

    async def token(request):
        issued.append(request.query["scope"])
        return web.json_response({"token": f"t{len(issued)}", "expires_in": 10})

    app = web.Application()
    app.router.add_get("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    now = [1000.0]
    src = RegistrySource(f"http://127.0.0.1:{port}", clock=lambda: now[0])
    try:
        params = {"realm": f"http://127.0.0.1:{port}/token", "service": "s"}
        assert await src._token("h", params, "repository:a:pull") == "t1"
        now[0] += 50  # expires_in 10 is raised to 60: still valid
        assert await src._token("h", params, "repository:a:pull") == "t1"
        assert await src._token("h", params, "repository:b:pull") == "t2"  # another scope
        now[0] += 20
        assert await src._token("h", params, "repository:a:pull") == "t3"
        assert issued == ["repository:a:pull", "repository:b:pull", "repository:a:pull"]
    finally:
        await src.close()
        await runner.cleanup()
