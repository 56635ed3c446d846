"""The master's collector policy (``mesos_nb.master.gcpolicy``): what each collection walks,
counted in objects (``gc.get_objects`` at the collection's start), never timed. Each case runs
in a fresh interpreter: the policy changes the whole process's collector."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent("""
    import gc
    from mesos_nb.master import gcpolicy
    walked = []  # (generation, objects it is about to walk)

    def count(phase, info):
        if phase == "start":
            g = info["generation"]
            walked.append((g, sum(len(gc.get_objects(i)) for i in range(g + 1))))

    gcpolicy.install(young_period=None)
    gc.callbacks.insert(0, count)
""")


def _run(body: str) -> str:
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_no_collection_walks_more_than_a_young_generation_during_a_burst_of_records():
    """300,000 long-lived records arrive (a cluster's tasks launched): every collection walks
    only what arrived since the last one, about the young threshold, the middle generation's
    included (before, it walked the survivors of the young collections since its last:
    ~8,000 objects for the young ones' ~2,000, the 30 ms pauses of the NSDI run)."""
    out = _run("""
        keep = [[i] for i in range(300_000)]
        gc.callbacks.remove(count)
        young = gcpolicy.THRESHOLD[0]
        assert len(walked) >= 100, len(walked)
        worst = max(n for _, n in walked)
        assert worst <= young + young // 4, (worst, sorted(set(g for g, _ in walked)))
        assert gcpolicy.stats()["frozen"] >= 295_000, gcpolicy.stats()
        print("ok")
    """)
    assert out == "ok"


def test_what_a_young_collection_leaves_is_frozen_and_never_walked_again():
    """Survivors of a young collection go to the permanent generation at once: a middle or
    full collection right after walks nothing of them; garbage cycles made after the freeze are
    still collected."""
    out = _run("""
        records = [{"id": i, "tasks": [i]} for i in range(5_000)]
        gc.collect(0)
        assert gc.get_objects(1) == [] and gc.get_objects(2) == []
        walked.clear()
        gc.collect(1)
        gc.collect(2)
        assert max(n for _, n in walked) < 100, walked

        class Node:
            pass

        gc.disable()  # (no automatic collection meanwhile: the one below finds them all)
        for _ in range(1_000):  # cycles that are garbage at once: still reclaimed
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        assert gc.collect(0) >= 2_000
        gc.enable()
        print("ok")
    """)
    assert out == "ok"


def test_a_full_collection_is_due_only_after_the_heap_grew_a_quarter_and_an_hour_passed():
    """The decision alone (no collector): CPython's rule (pending > 25 % of what the last full
    collection left, of the floor at least) and at most one a ``min_interval``."""
    from mesos_nb.master.gcpolicy import full_collection_due as due

    base = 4_000_000
    assert not due(base + 1_000_000, base, now=5000.0, last_full=0.0)  # exactly 25 %: not yet
    assert due(base + 1_000_001, base, now=5000.0, last_full=0.0)
    assert not due(base + 1_000_001, base, now=3599.0, last_full=0.0)  # the default: one an hour at most
    assert not due(base + 1_000_001, base, now=59.0, last_full=0.0, min_interval=60.0)  # too soon
    assert due(base + 1_000_001, base, now=60.0, last_full=0.0, min_interval=60.0)
    assert not due(base - 500_000, base, now=5000.0, last_full=0.0)  # a heap that shrank
    # a small heap is measured against the floor: its garbage is not worth a whole-heap pause
    assert not due(300_000, 100_000, now=5000.0, last_full=0.0, floor=1_000_000)
    assert due(300_000, 100_000, now=5000.0, last_full=0.0, floor=0)
    assert due(600_000, 300_000, now=5000.0, last_full=0.0, ratio=0.5, floor=500_000)
    assert not due(600_000, 300_000, now=5000.0, last_full=0.0, ratio=1.0, floor=500_000)


FROZEN_GARBAGE = """
    import asyncio, time

    class Node:
        freed = 0

        def __del__(self):
            Node.freed += 1

    async def main(full_ratio):
        gcpolicy.FULL_MIN_INTERVAL = 0.0
        gcpolicy.FULL_FLOOR = 0
        gcpolicy.FULL_CHECK_PERIOD = 0.0
        gcpolicy.uninstall()
        gcpolicy.install(full_ratio=full_ratio)  # (clocked, on this loop)
        gc.callbacks.remove(count)
        keep = []
        for _ in range(50_000):  # a finished request's objects: a reference cycle each
            a, b = Node(), Node()
            a.other, b.other = b, a
            keep.append(a)
        del a, b
        gc.collect(0)  # the policy freezes them
        frozen = gc.get_freeze_count()
        assert frozen >= 100_000, frozen
        keep.clear()  # now garbage, but frozen: no young collection looks at them
        deadline = time.monotonic() + WAIT
        while Node.freed < 100_000 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # (polls: the loop runs the policy's clocked collections)
        st = gcpolicy.stats()
        print(Node.freed, st["full_collections"], st["frozen"] < frozen - 90_000)

    asyncio.run(main(FULL_RATIO))
"""


def test_frozen_reference_cycles_that_became_garbage_are_freed_by_the_full_collection():
    """100,000 objects in reference cycles survive a young collection (frozen by the policy),
    then become garbage: the policy's full collection (the heap grew past its quarter) frees
    every one; without it (``full_ratio=None``) the clocked collections free none, not in 3 s."""
    out = _run(FROZEN_GARBAGE.replace("FULL_RATIO", "gcpolicy.FULL_RATIO").replace("WAIT", "30"))
    freed, fulls, shrank = out.split()
    assert int(freed) == 100_000 and int(fulls) >= 1 and shrank == "True", out
    out = _run(FROZEN_GARBAGE.replace("FULL_RATIO", "None").replace("WAIT", "3"))
    assert out.split() == ["0", "0", "False"], out
