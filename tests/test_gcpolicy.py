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
