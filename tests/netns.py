"""Network partitions for tests: two network namespaces joined by a veth pair (pytest plugin).

Load with ``pytest_plugins = ["netns"]``; the ``netns_pair`` fixture yields a started
:class:`NetnsPair` and always removes it (the namespaces and, with them, the veth pair), also
when the test fails. Without root or without ``ip netns`` support the fixture skips with the
reason.

The addresses (198.18.0.0/15, the benchmarking range) exist only inside the two namespaces
the test creates itself: no traffic leaves them. ``cut()`` takes both ends of the link down
(packets are dropped, new connections fail with "network unreachable", established TCP
connections retransmit); ``heal()`` brings them back up.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

IP = shutil.which("ip") or "/usr/sbin/ip"
_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check, timeout=30)


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None if they can (probes by creating one)."""
    if not os.path.exists(IP):
        return "no 'ip' command (Debian package iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"mnbprobe{os.getpid()}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"'ip netns add' failed: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetnsPair:
    """Namespaces ``a`` and ``b``, addresses ``addr_a``/``addr_b`` on one veth link."""

    def __init__(self) -> None:
        n = next(_counter)
        tag = f"{os.getpid() % 100000}x{n}"
        self.ns_a, self.ns_b = f"mnb-{tag}-a", f"mnb-{tag}-b"
        self.if_a, self.if_b = f"mnb{tag}a"[:15], f"mnb{tag}b"[:15]
        net = n % 250
        self.addr_a, self.addr_b = f"198.18.{net}.1", f"198.18.{net}.2"
        self.created: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []

    def create(self) -> NetnsPair:
        try:
            for ns in (self.ns_a, self.ns_b):
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", self.if_a, "netns", self.ns_a, "type", "veth", "peer", "name", self.if_b,
                "netns", self.ns_b)
            for ns, ifname, addr in ((self.ns_a, self.if_a, self.addr_a), (self.ns_b, self.if_b, self.addr_b)):
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
                _ip("-n", ns, "link", "set", ifname, "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a process inside namespace ``ns`` (``self.ns_a`` or ``self.ns_b``); it is killed
        by :meth:`destroy` if still running."""
        p = subprocess.Popen([IP, "netns", "exec", ns, *argv], **kw)
        self.procs.append(p)
        return p

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([IP, "netns", "exec", ns, *argv], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def python(self, ns: str, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.run(ns, [sys.executable, "-c", code, *args], timeout=timeout)

    def cut(self) -> None:
        _ip("-n", self.ns_a, "link", "set", self.if_a, "down")
        _ip("-n", self.ns_b, "link", "set", self.if_b, "down")

    def heal(self) -> None:
        _ip("-n", self.ns_a, "link", "set", self.if_a, "up")
        _ip("-n", self.ns_b, "link", "set", self.if_b, "up")

    def destroy(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        self.procs.clear()
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)  # removes the veth end inside it, and its peer
        self.created.clear()

    def __enter__(self) -> NetnsPair:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with NetnsPair() as pair:
        yield pair
