"""The widget's render bundle, serialized ahead and kept current by re-encoding what changes.

Bokeh serializes a document by asking each of its ~400 models for every property: 0.2–0.5 s
of the kernel for the dashboard, on the path from the cell to the plots. The warm-up thread
(``prebuild``) pays it once for the prebuilt dashboard; the widget then takes the bundle with
only the attributes changed since (the first snapshot's columns, the axes' factors, the quota
plot's title, the figure it adds) encoded again, in place, by Bokeh's own serializer.

Bokeh 3's document JSON defines each model once, where it first appears, and refers to it by
id afterwards; an attribute whose old value holds such a definition is therefore not replaced
(the bundle is serialized whole, the slow way, instead).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from bokeh.core.serialization import Serializer
from bokeh.model import Model


def _definitions(rep: Any, out: dict[str, dict[str, Any]]) -> None:
    """Every model defined in ``rep`` (a JSON tree), by id."""
    stack = [rep]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and "id" in node:
                out[node["id"]] = node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _defines_any(rep: Any) -> bool:
    found: dict[str, dict[str, Any]] = {}
    _definitions(rep, found)
    return bool(found)


def _appended(old: Any, value: Any) -> bool:
    """Whether ``value`` (a list of models) is the list ``old`` encodes with items appended."""
    return (isinstance(old, list) and isinstance(value, list) and len(value) >= len(old)
            and all(isinstance(o, dict) and isinstance(v, Model) and o.get("id") == v.id
                    for o, v in zip(old, value[:len(old)], strict=True)))


class Prerendered:
    """The render bundle of ``root`` (jupyter_bokeh's ``{docs_json, render_items, div}``) as it
    was when built, plus the (model, attribute) pairs changed since."""

    def __init__(self, root: Model) -> None:
        from jupyter_bokeh import BokehModel

        self.root = root
        self.bundle = BokehModel._model_to_traits(root)  # puts root in a Document if it has none
        self.doc = root.document
        self.defined: dict[str, dict[str, Any]] = {}
        _definitions(self.bundle["docs_json"], self.defined)
        self.changed: dict[tuple[str, str], tuple[Model, str]] = {}
        self.whole = False  # something happened that re-encoding attributes cannot express
        self._lock = threading.Lock()
        self.doc.on_change(self._on_change)

    def warm_up_json(self) -> str:
        """The document as it was built, as JSON, its model ids renamed (``p123`` → ``w123``):
        for the page to draw once offscreen, beside (never instead of) the widget's own."""
        (doc,) = self.bundle["docs_json"].values()
        return re.sub(r'"p(\d+)"', r'"w\1"', json.dumps(doc))

    def _on_change(self, event: Any) -> None:
        model, attr = getattr(event, "model", None), getattr(event, "attr", None)
        with self._lock:
            if isinstance(model, Model) and isinstance(attr, str):
                self.changed[(model.id, attr)] = (model, attr)
            else:  # a root added or removed, the document's title, a message
                self.whole = True

    def take(self) -> dict[str, Any] | None:
        """The bundle as the document is now, or None where only a whole serialization can say
        it; either way this object stops following the document (the bundle is used once)."""
        self.doc.remove_on_change(self._on_change)
        with self._lock:
            if self.whole:
                return None
            changed = list(self.changed.values())
        # models the bundle defines are referred to by id; new ones are defined where they appear
        ser = Serializer(references={m for m in self.doc.models if m.id in self.defined}, deferred=False)
        for model, attr in changed:
            rep = self.defined.get(model.id)
            if rep is None:  # a model added since: defined inside an attribute re-encoded here
                continue
            attrs = rep.setdefault("attributes", {})
            old, value = attrs.get(attr), getattr(model, attr)
            if not _defines_any(old):
                attrs[attr] = ser.encode(value)
            elif _appended(old, value):  # e.g. a plot added below the others: keep their definitions
                attrs[attr] = old + [ser.encode(v) for v in value[len(old):]]
            else:
                return None
        return self.bundle


__all__ = ["Prerendered"]
