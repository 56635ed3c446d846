"""``%mesos offers``: an ipywidgets browser of the offers this notebook's framework holds.

While a browser is open the framework keeps (does not decline) the offers it receives; the
browser listens to the framework and rebuilds its rows when offers come, go or are used.
Each row has Launch (runs the command in the text box on exactly that offer) and Decline
(returns the offer to the master). ``close()`` stops holding and returns every offer.
The object's mimebundle carries the widget plus HTML and text fallbacks, so exported
notebooks and terminals still show the table.
"""

from __future__ import annotations

import html
import threading
from typing import Any

from .display import num, text_table
from .errors import MesosNotebookError
from .framework import NotebookFramework
from .offers_table import OFFER_HEADERS, offer_amounts, offer_rows, offers_html
from .task import Task

DECLINE_REFUSE = 30.0  # seconds a declined offer's resources stay away from this framework
# launch, decline, agent, cpus, mem, disk, gpus, ports, attributes
COLUMNS = ("80px", "80px", "300px", "60px", "80px", "80px", "50px", "140px", "200px")


class OfferBrowser:
    def __init__(self, framework: NotebookFramework, command: str = "hostname",
                 cpus: float = 0.1, mem: float = 32.0, refuse_seconds: float = DECLINE_REFUSE) -> None:
        import ipywidgets as w

        self.framework = framework
        self.refuse_seconds = refuse_seconds
        self.launched: list[Task] = []
        self.closed = False
        self._declined = ""
        self._lock = threading.RLock()
        self.command = w.Text(value=command, description="command", layout=w.Layout(width="60%"))
        self.cpus = w.FloatText(value=cpus, description="cpus", layout=w.Layout(width="150px"))
        self.mem = w.FloatText(value=mem, description="mem (MB)", layout=w.Layout(width="180px"))
        self.status = w.HTML()
        self.rows_box = w.VBox()
        self.close_button = w.Button(description="Return all offers", button_style="warning")
        self.close_button.on_click(lambda _b: self.close())
        self.output = w.Output()
        self.widget = w.VBox([
            w.HTML("<b>Offers held by this notebook's framework</b>"),
            w.HBox([self.command, self.cpus, self.mem]),
            self.rows_box, self.status, self.close_button, self.output,
        ])
        self.buttons: dict[str, tuple[Any, Any]] = {}  # offer id -> (launch, decline)
        self._offers: list[Any] = []
        framework.add_listener(self.refresh)
        framework.hold_offers(True)
        self.refresh()

    # ------------------------------------------------------------------ data
    @property
    def offers(self) -> list[Any]:
        with self._lock:
            return list(self._offers)

    def wait(self, timeout: float = 10.0, count: int = 1) -> OfferBrowser:
        """Block until at least ``count`` offers are held (or ``timeout`` passes)."""
        import time

        deadline = time.monotonic() + timeout
        while len(self.offers) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            self.refresh()
        return self

    def refresh(self) -> None:
        """Rebuild the rows from the framework's held offers (called on every offer event)."""
        import ipywidgets as w

        if self.closed:
            return
        offers = sorted(self.framework.held.values(), key=lambda o: (o.hostname, o.id.value))
        with self._lock:
            self._offers = offers
            rows = []
            buttons = {}
            for o, cells in zip(offers, offer_rows(offers), strict=True):
                oid = o.id.value
                launch, decline = self.buttons.get(oid) or (None, None)
                if launch is None:
                    launch = w.Button(description="Launch", button_style="success",
                                      tooltip=f"run the command on offer {oid}",
                                      layout=w.Layout(width=COLUMNS[0]))
                    decline = w.Button(description="Decline", layout=w.Layout(width=COLUMNS[1]),
                                       tooltip=f"return offer {oid} to the master "
                                               f"(refused for {num(self.refuse_seconds)} s)")
                    launch.on_click(lambda _b, oid=oid: self.launch(oid))
                    decline.on_click(lambda _b, oid=oid: self.decline(oid))
                buttons[oid] = (launch, decline)
                row = w.HBox([launch, decline, *self._cells(cells[1:], first=2)])
                row.add_class("mesos-offer-row")
                row.add_class(f"mesos-agent-{o.agent_id.value}")
                rows.append(row)
            if rows:
                rows.insert(0, w.HBox(self._cells(["", "", *OFFER_HEADERS[1:]], bold=True)))
            self.buttons = buttons
            self.rows_box.children = rows
            status = (f"{len(offers)} offer(s) held; {len(self.launched)} task(s) launched "
                      f"from here" if offers else "<i>no offers held yet: they appear here as "
                      "the master sends them</i>")
            if self._declined:
                status += f"; {html.escape(self._declined)}"
            self.status.value = status

    @staticmethod
    def _cells(cells: list[str], bold: bool = False, first: int = 0) -> list[Any]:
        """Fixed-width cells (one width per column) so the rows line up under the header."""
        import ipywidgets as w

        out = []
        for text, width in zip(cells, COLUMNS[first:], strict=False):
            body = html.escape(text) if text else "&nbsp;"
            out.append(w.HTML(f"<b>{body}</b>" if bold else f"<code>{body}</code>",
                              layout=w.Layout(width=width, overflow="hidden")))
        return out

    # ------------------------------------------------------------------ actions
    def launch(self, offer_id: str, command: str | None = None) -> Task:
        """Launch the command (default: the text box) on exactly this offer."""
        offer = next((o for o in self.offers if o.id.value == offer_id), None)
        if offer is None:
            raise MesosNotebookError(f"offer {offer_id} is no longer held (declined, used or rescinded)")
        cmd = command if command is not None else self.command.value
        have = offer_amounts(offer)
        cpus = min(float(self.cpus.value), have.get("cpus", 0))
        mem = min(float(self.mem.value), have.get("mem", 0))
        task = self.framework.submit(cmd, cpus=cpus, mem=mem, offer_id=offer_id, check=False)
        self.launched.append(task)
        with self.output:
            print(f"launched {task.id} on {offer.hostname} (offer {offer_id})")
        self.refresh()
        return task

    def decline(self, offer_id: str) -> None:
        """Return this offer to the master; its agent's resources are refused for
        ``refuse_seconds`` (a 1 s refusal made the row come back at once, as if the click did
        nothing)."""
        offer = next((o for o in self.offers if o.id.value == offer_id), None)
        self.framework.decline(offer_id, self.refuse_seconds)
        where = f" from {offer.hostname}" if offer is not None else ""
        self._declined = (f"declined offer {offer_id}{where}: that agent's resources are not "
                          f"offered to this notebook again for {num(self.refuse_seconds)} s")
        self.refresh()

    def close(self) -> None:
        """Stop holding offers and return all of them."""
        if self.closed:
            return
        self.closed = True
        self.framework.remove_listener(self.refresh)
        self.framework.hold_offers(False)
        self.rows_box.children = []
        self.status.value = "<i>closed: offers returned to the master</i>"

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        offers = self.offers
        head = f"OfferBrowser: {len(offers)} offer(s) held" + (" (closed)" if self.closed else "")
        return head + ("\n" + text_table(OFFER_HEADERS, offer_rows(offers)) if offers else "")

    def _repr_html_(self) -> str:
        offers = self.offers
        return (f"<div><b>{len(offers)} offer(s) held</b>"
                + (offers_html(offers) if offers else "") + "</div>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = {"text/plain": repr(self), "text/html": self._repr_html_()}
        view = self.widget._repr_mimebundle_() if hasattr(self.widget, "_repr_mimebundle_") else None
        if view:
            data.update({k: v for k, v in view.items() if k.startswith("application/")})
        return data


__all__ = ["OfferBrowser"]
