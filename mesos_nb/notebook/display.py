"""Rich output: every object the magics return has ``_repr_html_`` and a plain-text repr.

Nothing here does I/O: the objects hold data fetched by the magics.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from mesos_nb.client.tables import num

STATE_COLOURS = {
    "PENDING": "#888", "TASK_STAGING": "#b58900", "TASK_STARTING": "#b58900",
    "TASK_RUNNING": "#268bd2", "TASK_FINISHED": "#2a9d3a", "TASK_FAILED": "#dc322f",
    "TASK_KILLED": "#6c71c4", "TASK_KILLING": "#6c71c4", "TASK_ERROR": "#dc322f",
    "TASK_LOST": "#dc322f", "TASK_DROPPED": "#dc322f", "TASK_GONE": "#dc322f",
}


def amounts_text(amounts: dict[str, float]) -> str:
    return ", ".join(f"{k} {num(v)}" for k, v in amounts.items()) or "nothing"


def badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#555")
    return (f'<span style="background:{colour};color:white;border-radius:3px;padding:0 4px;'
            f'font-family:monospace">{html.escape(state)}</span>')


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], raw_columns: Sequence[int] = ()) -> str:
    head = "".join(f'<th style="text-align:left">{html.escape(str(h))}</th>' for h in headers)
    body = []
    for r in rows:
        tds = []
        for i, c in enumerate(r):
            text = str(c) if i in raw_columns else html.escape(str(c))
            tds.append(f'<td style="text-align:left">{text}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Table:
    """A titled table: ``.headers``, ``.rows`` (lists of strings), ``.records`` (dicts)."""

    def __init__(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 note: str | None = None, state_column: int | None = None) -> None:
        self.title = title
        self.headers = list(headers)
        self.rows = [[str(c) for c in r] for r in rows]
        self.note = note
        self.state_column = state_column

    @property
    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.headers, r, strict=True)) for r in self.rows]

    def column(self, name: str) -> list[str]:
        i = self.headers.index(name)
        return [r[i] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        parts = [self.title]
        parts.append(text_table(self.headers, self.rows) if self.rows else "(none)")
        if self.note:
            parts.append(self.note)
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        rows: list[list[str]] = []
        raw: tuple[int, ...] = ()
        for r in self.rows:
            r2 = [html.escape(c) for c in r]
            if self.state_column is not None:
                r2[self.state_column] = badge(r[self.state_column])
            rows.append(r2)
        raw = tuple(range(len(self.headers)))
        table = html_table(self.headers, rows, raw) if self.rows else "<p><i>none</i></p>"
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<div><b>{html.escape(self.title)}</b>{table}{note}</div>"


class Logs:
    """A task's sandbox output: ``.stdout``, ``.stderr``; ``str()`` is stdout then stderr."""

    def __init__(self, task_id: str, stdout: str, stderr: str) -> None:
        self.task_id = task_id
        self.stdout = stdout
        self.stderr = stderr

    def __str__(self) -> str:
        return self.stdout + (self.stderr if self.stderr else "")

    def __contains__(self, text: str) -> bool:
        return text in self.stdout or text in self.stderr

    def _text(self) -> str:
        parts = [f"--- stdout of {self.task_id} ---", self.stdout.rstrip("\n") or "(empty)"]
        if self.stderr.strip():
            parts += [f"--- stderr of {self.task_id} ---", self.stderr.rstrip("\n")]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return self._text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self._text())

    def _repr_html_(self) -> str:
        out = (f"<div><b>stdout</b> of <code>{html.escape(self.task_id)}</code>"
               f"<pre>{html.escape(self.stdout) or '<i>(empty)</i>'}</pre>")
        if self.stderr.strip():
            out += f'<b>stderr</b><pre style="color:#b00">{html.escape(self.stderr)}</pre>'
        return out + "</div>"


class Message:
    """One sentence shown as the result of a magic (``connect``'s notes, ``disconnect``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (live display updates work there, not in a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class LiveLine:
    """A status line that updates in place in a kernel and prints each new line once elsewhere."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.live = enabled and in_kernel()
        self._handle: Any = None
        self._last: str | None = None

    def show(self, text: str, html_text: str | None = None, important: bool = False) -> None:
        """Show ``text``; outside a kernel only ``important`` lines (why it waits) are printed."""
        if not self.enabled or text == self._last:
            return
        self._last = text
        if not self.live and important:
            print(text, flush=True)
        bundle = {"text/plain": text, "text/html": html_text or f"<pre>{html.escape(text)}</pre>"}
        if self.live:
            from IPython.display import display

            if self._handle is None:
                self._handle = display(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)


__all__ = ["LiveLine", "Logs", "Message", "Table", "amounts_text", "badge", "html_table", "in_kernel",
           "num", "text_table"]
