"""The fetcher: ``CommandInfo.uris`` into the sandbox before the command starts.

Each URI ``{value, executable?, extract? (default true), cache?, output_file?}``: a local path,
``file://`` or ``http(s)://`` (aiohttp). Archives (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
``.tar.xz``, ``.zip``) are extracted into the sandbox when ``extract`` is true (member paths
may not leave the sandbox); ``executable`` sets mode 0755; ``output_file`` renames the download.
``cache: true`` keeps a copy under ``<work_dir>/fetcher`` (size-bounded, least recently used
evicted). Any failure raises :class:`FetchError` whose message says which URI and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import urllib.parse
import zipfile
from typing import Any

import aiohttp

ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
HTTP_TIMEOUT = 300.0


class FetchError(Exception):
    pass


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        v = obj.get(name, default)
    else:
        v = getattr(obj, name, default)
    return default if v is None else v


def _basename(value: str) -> str:
    path = urllib.parse.urlparse(value).path if "://" in value else value
    name = os.path.basename(path.rstrip("/"))
    if not name or name in (".", ".."):
        raise FetchError(f"cannot derive a file name from '{value}'")
    return name


async def _download(url: str, dest: str) -> None:
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as r:
            if r.status != 200:
                raise FetchError(f"HTTP {r.status} {r.reason} fetching '{url}'")
            with open(dest, "wb") as f:
                async for chunk in r.content.iter_chunked(1 << 16):
                    f.write(chunk)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise FetchError(f"cannot fetch '{url}': {e or type(e).__name__}") from None


def _copy_local(value: str, dest: str) -> None:
    path = urllib.parse.unquote(urllib.parse.urlparse(value).path) if value.startswith("file://") else value
    if not os.path.isabs(path):
        raise FetchError(f"'{value}' is not an absolute path or a supported URI (file://, http://, https://)")
    try:
        shutil.copyfile(path, dest)
    except OSError as e:
        raise FetchError(f"cannot copy '{value}': {e.strerror or e}") from None


def _inside(root: str, name: str) -> bool:
    target = os.path.realpath(os.path.join(root, name))
    return target == root or target.startswith(root + os.sep)


def _extract(path: str, sandbox: str) -> None:
    root = os.path.realpath(sandbox)
    try:
        if path.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                for n in z.namelist():
                    if not _inside(root, n):
                        raise FetchError(f"archive member '{n}' would leave the sandbox")
                z.extractall(sandbox)
        else:
            with tarfile.open(path) as t:
                for m in t.getmembers():
                    if not _inside(root, m.name) or m.islnk() and not _inside(root, m.linkname):
                        raise FetchError(f"archive member '{m.name}' would leave the sandbox")
                t.extractall(sandbox, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise FetchError(f"cannot extract '{os.path.basename(path)}': {e}") from None


class Cache:
    """Size-bounded (LRU by access time) cache of fetched files keyed by URI."""

    def __init__(self, directory: str, size: int) -> None:
        self.directory = directory
        self.size = size

    def path(self, uri: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(uri.encode()).hexdigest())

    def get(self, uri: str) -> str | None:
        p = self.path(uri)
        if os.path.exists(p):
            os.utime(p)
            return p
        return None

    def put(self, uri: str, src: str) -> None:
        os.makedirs(self.directory, exist_ok=True)
        size = os.path.getsize(src)
        if size > self.size:
            return
        tmp = self.path(uri) + ".tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, self.path(uri))
        self.evict()

    def evict(self) -> None:
        entries = []
        for name in os.listdir(self.directory):
            p = os.path.join(self.directory, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            entries.append((st.st_atime if st.st_atime > st.st_mtime else st.st_mtime, st.st_size, p))
        total = sum(e[1] for e in entries)
        for _, size, p in sorted(entries):
            if total <= self.size:
                break
            try:
                os.unlink(p)
                total -= size
            except OSError:
                pass


async def fetch(uri: Any, sandbox: str, cache: Cache | None = None) -> str:
    value = _get(uri, "value")
    if not value:
        raise FetchError("a URI without a 'value'")
    out_name = _get(uri, "output_file") or _basename(value)
    if "/" in out_name or out_name in (".", ".."):
        raise FetchError(f"bad output_file '{out_name}'")
    dest = os.path.join(sandbox, out_name)
    cached = cache.get(value) if cache is not None and _get(uri, "cache", False) else None
    scheme = urllib.parse.urlparse(value).scheme if "://" in value else ""
    if cached is not None:
        await asyncio.to_thread(shutil.copyfile, cached, dest)
    elif scheme in ("http", "https"):
        await _download(value, dest)
    elif scheme in ("", "file"):
        await asyncio.to_thread(_copy_local, value, dest)
    else:
        raise FetchError(f"unsupported URI scheme '{scheme}://' in '{value}'")
    if cache is not None and _get(uri, "cache", False) and cached is None:
        await asyncio.to_thread(cache.put, value, dest)
    if _get(uri, "executable", False):
        os.chmod(dest, 0o755)
    elif _get(uri, "extract", True) and dest.endswith(ARCHIVES):
        await asyncio.to_thread(_extract, dest, sandbox)
    return dest


async def fetch_all(uris: list[Any], sandbox: str, *, cache_dir: str | None = None,
                    cache_size: int = 2 * 1024 ** 3) -> list[str]:
    cache = Cache(cache_dir, cache_size) if cache_dir else None
    return [await fetch(u, sandbox, cache) for u in uris]


__all__ = ["FetchError", "fetch", "fetch_all", "Cache"]
