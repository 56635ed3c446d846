"""One job per module (the architecture's rule): no module in ``mesos_nb/`` over 600 lines, so a
module that grows past it is split before it lands, not found in review."""

from __future__ import annotations

from conftest import REPO

LIMIT = 600


def test_no_module_in_the_package_is_over_600_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in (REPO / "mesos_nb").rglob("*.py")}
    over = {path: n for path, n in sizes.items() if n > LIMIT}
    assert not over, f"modules over {LIMIT} lines (split them by concept): {over}"
