"""What the one-shot pymesos apps share: print JSON lines for the test to read, and drive a
scheduler until it sets its ``done`` event (or the time runs out), exiting 0 only if it did.
Imported by sibling scripts (a script's own folder is first on ``sys.path``)."""

import json
import sys

from pymesos import MesosSchedulerDriver


def emit(**kw):
    print(json.dumps(kw), flush=True)


def run_until_done(sched, framework, master, timeout):
    driver = MesosSchedulerDriver(sched, framework, master, use_addict=False)
    driver.start()
    ok = sched.done.wait(timeout)
    emit(done=ok, result=sched.result)
    driver.stop()
    driver.join()
    sys.exit(0 if ok else 1)
