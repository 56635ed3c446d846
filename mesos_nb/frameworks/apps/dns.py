"""Service discovery over DNS: a small UDP server answering for the apps' healthy instances.

Names (``DOMAIN`` defaults to ``mesos-nb``; an app ``/group/app`` is the label ``app-group``,
as Mesos-DNS writes Marathon apps; the role ``*`` is the label ``default``):

* ``A  APP.ROLE.DOMAIN``             -> the agent address of each healthy instance
* ``SRV _APP._tcp.ROLE.DOMAIN`` and ``SRV _app._tcp.APP.ROLE.DOMAIN``
                                     -> one record per healthy instance and port,
                                        target ``INSTANCE.APP.ROLE.DOMAIN`` (A record added)
* ``A  INSTANCE.APP.ROLE.DOMAIN``    -> that instance's agent address

Other names in the domain answer NXDOMAIN; names outside it REFUSED. Encoding and decoding
are dnslib's; the server is an asyncio datagram endpoint on the framework's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dnslib import QTYPE, RCODE, RR, SRV, A, DNSRecord

from .model import AppDef
from .reconcile import Instance, is_healthy

log = logging.getLogger("mesos_nb.apps")
TTL = 5


def app_label(app_id: str) -> str:
    return "-".join(reversed(app_id.strip("/").split("/")))


def role_label(role: str) -> str:
    return "default" if role == "*" else re.sub(r"[^a-z0-9-]", "-", role.lower())


def instance_label(task_id: str) -> str:
    m = re.search(r"instance-([0-9a-f]+)", task_id)
    return (m.group(1) if m else re.sub(r"[^a-z0-9]", "", task_id.lower()))[:12]


def healthy_instances(app: AppDef, instances: Iterable[Instance]) -> list[Instance]:
    return [i for i in instances if is_healthy(app, i)]


class Resolver:
    """Answers one query from the current apps and instances (pure apart from the lookups)."""

    def __init__(self, lookup: Callable[[], tuple[Sequence[AppDef], Callable[[str], list[Instance]]]],
                 domain: str = "mesos-nb") -> None:
        self.lookup = lookup
        self.domain = domain.strip(".").lower()

    def _find(self, app_l: str, role_l: str) -> tuple[AppDef, list[Instance]] | None:
        apps, instances_of = self.lookup()
        for app in apps:
            if app_label(app.id) == app_l and role_label(app.role) == role_l:
                return app, healthy_instances(app, instances_of(app.id))
        return None

    def answer(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        suffix = "." + self.domain
        if not name.endswith(suffix):
            reply.header.rcode = RCODE.REFUSED
            return reply
        labels = name[: -len(suffix)].split(".")
        qtype = QTYPE[q.qtype]
        found = False
        if len(labels) >= 3 and labels[1] in ("_tcp", "_udp") and labels[0].startswith("_"):
            rest = labels[2:]
            if len(rest) == 1:
                app_l, role_l = labels[0][1:], rest[0]
            elif len(rest) == 2:
                app_l, role_l = rest
            else:
                app_l = role_l = ""
            hit = self._find(app_l, role_l) if app_l else None
            if hit is not None:
                found = True
                if qtype in ("SRV", "ANY"):
                    for inst in hit[1]:
                        target = f"{instance_label(inst.task_id)}.{app_l}.{role_l}.{self.domain}"
                        for port in inst.ports:
                            reply.add_answer(RR(q.qname, QTYPE.SRV, ttl=TTL, rdata=SRV(0, 1, port, target)))
                        if inst.host_ip:
                            reply.add_ar(RR(target, QTYPE.A, ttl=TTL, rdata=A(inst.host_ip)))
        elif len(labels) == 2:
            hit = self._find(*labels)
            if hit is not None:
                found = True
                if qtype in ("A", "ANY"):
                    for ip in dict.fromkeys(i.host_ip for i in hit[1] if i.host_ip):
                        reply.add_answer(RR(q.qname, QTYPE.A, ttl=TTL, rdata=A(ip)))
        elif len(labels) == 3:
            hit = self._find(labels[1], labels[2])
            if hit is not None:
                for inst in hit[1]:
                    if instance_label(inst.task_id) == labels[0]:
                        found = True
                        if qtype in ("A", "ANY") and inst.host_ip:
                            reply.add_answer(RR(q.qname, QTYPE.A, ttl=TTL, rdata=A(inst.host_ip)))
        if not found:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            request = DNSRecord.parse(data)
        except Exception:  # not DNS: nothing sensible to answer
            return
        try:
            reply = self.resolver.answer(request)
        except Exception:
            log.exception("dns answer failed for %s", request.q.qname)
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
        self.transport.sendto(reply.pack(), addr)


async def serve(resolver: Resolver, host: str = "127.0.0.1", port: int = 8053) -> tuple[Any, int]:
    """Start answering on UDP ``host:port``; returns ``(transport, bound port)``."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(resolver), local_addr=(host, port))
    return transport, transport.get_extra_info("sockname")[1]


__all__ = ["Resolver", "app_label", "healthy_instances", "instance_label", "role_label", "serve"]
