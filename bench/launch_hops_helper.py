"""The agent's launcher helper with ``bench.launch_hops``'s tracing hooks (bench only).

Started by the traced agent in place of ``mesos_nb/agent/launch_helper.py`` (``python -S``,
stdlib only, the socket's fd as ``argv[1]``): it imports that module, marks when a request
was read, when the spawn began and returned (the child has exec'd: ``posix_spawn`` is a
vfork) and when the reply was written, then runs the helper unchanged. The events go to
``$LAUNCH_HOPS_DIR/helper-PID.json`` when the helper exits (EOF from the agent).
"""

import atexit
import json
import os
import sys
import time

sys.path.insert(0, os.environ.get("LAUNCH_HOPS_HELPER_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mesos_nb", "agent"))

import launch_helper  # noqa: E402 - after its directory is on the path

EVENTS = []


def _mark(label):
    EVENTS.append((time.monotonic_ns(), label))


def _traced(fn, before=None, after=None):
    def wrapped(*a, **kw):
        if before is not None and (label := before(*a)) is not None:
            _mark(label)
        r = fn(*a, **kw)
        if after is not None:
            _mark(after)
        return r
    return wrapped


H, S = launch_helper.Helper, launch_helper.Spawner
H._launch = _traced(H._launch, before=lambda *_: "h.request_in")
launch_helper.apply_plan = _traced(launch_helper.apply_plan, after="h.setup_done")  # (cgroups: mkdir, limits)
S.spawn = _traced(S.spawn, before=lambda *_: "h.spawn", after="h.exec_done")
H._confirm = _traced(H._confirm, after="h.exec_done")  # (the fork path: the exec pipe closed)
H._flush = _traced(H._flush, before=lambda self: "h.reply_out" if self.out else None)

out = os.environ.get("LAUNCH_HOPS_DIR")
if out:
    def _dump():
        with open(os.path.join(out, f"helper-{os.getpid()}.json"), "w") as f:
            json.dump(EVENTS, f)
    atexit.register(_dump)

if __name__ == "__main__":
    launch_helper.main()
