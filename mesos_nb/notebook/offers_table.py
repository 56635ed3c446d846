"""Offers as table rows (text and HTML): shared by the offer browser and the framework's
"why is my task waiting" text."""

from __future__ import annotations

from collections.abc import Sequence

from mesos_nb.protocol.messages import Offer
from mesos_nb.scheduler.tasks import offer_attributes

from .display import html_table, num


def offer_amounts(offer: Offer) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in offer.resources:
        if r.scalar is not None:
            out[r.name] = out.get(r.name, 0.0) + float(r.scalar.value)
    return out


def offer_ports(offer: Offer) -> str:
    spans = []
    for r in offer.resources:
        if r.name == "ports" and r.ranges is not None:
            spans += [f"{x.begin}-{x.end}" for x in r.ranges.range]
    return ",".join(spans)


def offer_rows(offers: Sequence[Offer]) -> list[list[str]]:
    rows = []
    for o in offers:
        a = offer_amounts(o)
        rows.append([o.id.value, f"{o.hostname} ({o.agent_id.value})", num(a.get("cpus", 0)),
                     num(a.get("mem", 0)), num(a.get("disk", 0)), num(a.get("gpus", 0)),
                     offer_ports(o), ";".join(f"{k}:{v}" for k, v in offer_attributes(o).items())])
    return rows


OFFER_HEADERS = ["OFFER", "AGENT", "CPUS", "MEM", "DISK", "GPUS", "PORTS", "ATTRIBUTES"]


def offers_html(offers: Sequence[Offer]) -> str:
    return html_table(OFFER_HEADERS, offer_rows(offers))


__all__ = ["OFFER_HEADERS", "offer_amounts", "offer_ports", "offer_rows", "offers_html"]
