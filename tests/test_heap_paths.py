"""The soak's diagnostic names the record that holds growing live objects."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bench.heap_paths import container_sizes, grown, referrers_of


class Marker:  # a type no other test creates
    __slots__ = ()


@dataclass
class Fw:
    tasks: dict[str, int] = field(default_factory=dict)
    done: deque = field(default_factory=lambda: deque(maxlen=3))


@dataclass
class Core:
    frameworks: dict[str, Fw] = field(default_factory=dict)
    gone: list[tuple[str, Marker]] = field(default_factory=list)


Fw.__module__ = Core.__module__ = "bench.test_fixture"  # entered like the master's own records


def test_the_growing_path_is_named_across_every_framework():
    core = Core({"a": Fw({"t1": 1}), "b": Fw({"t2": 2})})
    before = container_sizes(core, "core")
    assert before["core.frameworks"] == 2 and before["core.frameworks[*].tasks"] == 2
    for i in range(5):
        core.frameworks["a"].done.append(i)  # bounded: stays at 3
        core.gone.append((f"agent-{i}", Marker()))  # unbounded: the leak
    core.frameworks["b"].tasks["t3"] = 3
    after = container_sizes(core, "core")
    assert grown(before, after) == {"core.gone": 5, "core.gone[*]": 10, "core.frameworks[*].done": 3,
                                    "core.frameworks[*].tasks": 1}


def test_referrers_say_which_containers_hold_a_type():
    kept = [(str(i), Marker()) for i in range(4)]
    levels = referrers_of("Marker", up=2)
    assert levels[0].get("tuple", 0) >= 4  # each Marker is in a tuple ...
    assert levels[1].get("list", 0) >= 4  # ... and the tuples are in a list
    del kept
