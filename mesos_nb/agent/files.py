"""The agent's ``/files/{read,browse,download,debug}`` endpoints.

``/files`` serves only *attached* paths (each sandbox's real directory, its ``runs/latest``
link and the virtual ``/frameworks/<fw>/executors/<ex>/runs/latest``). The request path is
normalised, split into the attached root and the components below it, and every open goes
through :func:`safe_path.open_beneath`: the kernel resolves the components relative to the
sandbox's directory fd and refuses symlinks, so a task that swaps a directory for a link to
``/etc`` in a tight loop gets 403/404 answers, never a host file. Everything afterwards
(fstat, read, listing, download) works on that fd, never on the path again. Bad parameters
get a 400 with a sentence; no request gets a 5xx.
"""

from __future__ import annotations

import grp
import json
import mimetypes
import os
import posixpath
import pwd
import stat
from typing import Any

from aiohttp import web

from .app_key import agent_of
from .safe_path import PathError, kind, list_dir, open_beneath

READ_CAP = 16 * (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096)
DOWNLOAD_CHUNK = 256 * 1024


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


def _bad(message: str) -> web.Response:
    return web.Response(status=400, text=message)


def normalize(path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def split_attached(files: dict[str, str], path: str) -> tuple[str, list[str]] | None:
    """(attached real directory, components below it) for a request path; None when the
    path is under nothing attached."""
    if "\x00" in path:
        return None
    prefix = normalize(path)
    rest: list[str] = []
    while True:
        root = files.get(prefix)
        if root is not None:
            return root, rest
        if prefix == "/":
            return None
        prefix, tail = posixpath.split(prefix)
        rest.insert(0, tail)


def _open(request: web.Request, path: str) -> int:
    """An fd of the requested attached path, or the 403/404 that /files answers with."""
    found = split_attached(agent_of(request).files, path)
    if found is None:
        raise web.HTTPNotFound(text=f"Path '{path}' was not found.")
    try:
        return open_beneath(found[0], found[1], path)
    except PathError as e:
        cls = web.HTTPForbidden if e.status == 403 else web.HTTPNotFound
        raise cls(text=str(e)) from None


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"Failed to parse {name}: '{raw}' is not an integer.") from None


def with_jsonp(request: web.Request, obj: Any) -> web.Response:
    cb = request.query.get("jsonp")
    if cb:
        if not all(c.isalnum() or c in "_.$" for c in cb):
            return _bad("Invalid jsonp callback name.")
        return web.Response(text=f"{cb}({json.dumps(obj)});", content_type="text/javascript")
    return _json(obj)


def _path_param(request: web.Request) -> str:
    path = request.query.get("path")
    if path is None:
        raise web.HTTPBadRequest(text="Expecting 'path=value' in query.")
    return path


def _open_file(request: web.Request, path: str, verb: str) -> tuple[int, os.stat_result]:
    """An fd of the requested regular file and its stat: a directory is a 400 (``Cannot <verb>
    a directory.``), anything else that is not a regular file a 403."""
    fd = _open(request, path)
    try:
        what, st = kind(fd)
        if what == "dir":
            raise web.HTTPBadRequest(text=f"Cannot {verb} a directory.")
        if what != "file":
            raise web.HTTPForbidden(text=f"'{path}' is not a regular file.")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


async def files_read(request: web.Request) -> web.Response:
    path = _path_param(request)
    offset = _int_param(request, "offset", 0)
    if offset < -1:
        return _bad(f"Negative offset provided: {offset}.")
    length = _int_param(request, "length", -1)
    if length < -1:
        return _bad(f"Negative length provided: {length}.")
    fd, st = _open_file(request, path, "read")
    try:
        size = st.st_size
        if offset == -1:
            return with_jsonp(request, {"data": "", "offset": size})
        if offset >= size:
            return with_jsonp(request, {"data": "", "offset": offset})
        n = READ_CAP if length == -1 else min(length, READ_CAP)
        try:
            data = os.pread(fd, n, offset)
        except OSError as e:
            raise web.HTTPNotFound(text=f"Failed to read '{path}': {e.strerror}.") from None
    finally:
        os.close(fd)
    return with_jsonp(request, {"data": data.decode("utf-8", errors="replace"), "offset": offset})


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _file_info(virtual: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": virtual, "nlink": st.st_nlink, "size": st.st_size, "mtime": int(st.st_mtime),
        "mode": stat.filemode(st.st_mode), "uid": _owner(st.st_uid), "gid": _group(st.st_gid),
    }


async def files_browse(request: web.Request) -> web.Response:
    path = _path_param(request)
    shown = normalize(path)
    fd = _open(request, path)
    try:
        what, st = kind(fd)
        if what == "dir":
            try:
                entries = list_dir(fd)
            except OSError:
                raise web.HTTPForbidden(text=f"Cannot list '{path}'.") from None
            out = [_file_info(posixpath.join(shown, name), est) for name, est in entries]
        else:
            out = [_file_info(shown, st)]
    finally:
        os.close(fd)
    return with_jsonp(request, out)


async def files_download(request: web.Request) -> web.StreamResponse:
    path = _path_param(request)
    fd, st = _open_file(request, path, "download")
    try:
        name = posixpath.basename(normalize(path)).replace('"', "")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        resp = web.StreamResponse(headers={
            "Content-Type": ctype, "Content-Disposition": f'attachment; filename="{name}"'})
        resp.content_length = st.st_size
        await resp.prepare(request)
        sent = 0
        while sent < st.st_size:  # the size when opened: a growing log is cut there
            chunk = os.pread(fd, min(DOWNLOAD_CHUNK, st.st_size - sent), sent)
            if not chunk:
                break
            await resp.write(chunk)
            sent += len(chunk)
        if sent < st.st_size:  # truncated under us: the length promised cannot be kept
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp
    finally:
        os.close(fd)


async def files_debug(request: web.Request) -> web.Response:
    return _json(dict(agent_of(request).files))


def add_routes(router: web.UrlDispatcher) -> None:
    for name, handler in (("read", files_read), ("browse", files_browse),
                          ("download", files_download), ("debug", files_debug)):
        router.add_get(f"/files/{name}", handler)
        router.add_get(f"/files/{name}.json", handler)


__all__ = ["add_routes", "split_attached", "normalize", "with_jsonp", "READ_CAP"]
