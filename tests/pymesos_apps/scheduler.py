"""pymesos 0.3.15 frameworks, run UNMODIFIED under CPython 3.10 against mesos-nb.

Usage: python3.10 scheduler.py SCENARIO MASTER [args]. Prints one JSON line per fact the
test asserts, then a final {"done": ...} line. Exits 0 on success, 1 on timeout.
"""

import json
import os
import sys
import threading
import time
import uuid

from pymesos import MesosSchedulerDriver, Scheduler

SCENARIO, MASTER = sys.argv[1], sys.argv[2]
ARGS = sys.argv[3:]


_EMIT = threading.Lock()


def emit(**kw):
    # One line at a time: pymesos' thread (a second error() after its reconnect) and the main
    # thread's final line may emit at once, and print() writes text and newline apart.
    with _EMIT:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def task_for(offer, task_id, cmd, cpus=0.1, mem=16):
    return {
        "task_id": {"value": task_id},
        "agent_id": {"value": offer["agent_id"]["value"]},
        "name": "pymesos-" + task_id,
        "resources": [scalar("cpus", cpus), scalar("mem", mem)],
        "command": {"value": cmd},
    }


def offered(offer, name):
    return sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name and r["type"] == "SCALAR")


class Base(Scheduler):
    def __init__(self):
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.result = {}

    def registered(self, driver, framework_id, master_info):
        emit(event="registered", framework_id=framework_id["value"])

    def reregistered(self, driver, master_info):
        emit(event="reregistered")

    def executorLost(self, driver, executor_id, agent_id, status):
        # Mesos sends FAILURE (pymesos: executorLost) for custom executors only, never for command tasks.
        emit(event="executor_lost", executor_id=executor_id["value"], status=status)

    def error(self, driver, message):
        emit(event="error", message=message)
        self.result["error"] = message
        self.done.set()


class ManyTasks(Base):
    """Launch N command tasks; count TASK_FINISHED (acknowledged implicitly)."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.launched = 0
        self.states = {}

    def resourceOffers(self, driver, offers):
        for offer in offers:
            tasks = []
            cpus, mem = offered(offer, "cpus"), offered(offer, "mem")
            with self.lock:
                while self.launched < self.n and cpus >= 0.1 - 1e-9 and mem >= 16:
                    tasks.append(task_for(offer, f"t{self.launched}", "echo task-$MESOS_TASK_ID"))
                    self.launched += 1
                    cpus -= 0.1
                    mem -= 16
            if tasks:
                driver.launchTasks(offer["id"], tasks, {"refuse_seconds": 0})
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})

    def statusUpdate(self, driver, update):
        with self.lock:
            self.states[update["task_id"]["value"]] = update["state"]
            fin = sum(1 for s in self.states.values() if s == "TASK_FINISHED")
            bad = {k: s for k, s in self.states.items() if s in ("TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED")}
        if bad:
            self.result["bad"] = bad
            self.done.set()
        if fin == self.n:
            self.result["finished"] = fin
            self.done.set()


class KillAndReconcile(Base):
    """Launch `sleep 60`; once RUNNING, reconcile (known + unknown ids), then kill it."""

    def __init__(self):
        super().__init__()
        self.launched = False
        self.reconciled = {}
        self.phase = "launch"

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if not self.launched:
                self.launched = True
                driver.launchTasks(offer["id"], [task_for(offer, "sleeper", "sleep 60")])
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})

    def statusUpdate(self, driver, update):
        tid, state = update["task_id"]["value"], update["state"]
        emit(event="update", task_id=tid, state=state, reason=update.get("reason"), has_uuid="uuid" in update)
        if tid == "sleeper" and state == "TASK_RUNNING" and self.phase == "launch":
            self.phase = "reconcile"
            driver.reconcileTasks([{"task_id": {"value": "sleeper"}}, {"task_id": {"value": "no-such-task"}}])
        elif update.get("reason") == "REASON_RECONCILIATION":
            self.reconciled[tid] = state
            if len(self.reconciled) == 2 and self.phase == "reconcile":
                self.phase = "kill"
                self.result["reconciled"] = dict(self.reconciled)
                driver.killTask({"value": "sleeper"})
        elif tid == "sleeper" and state == "TASK_KILLED":
            self.result["killed"] = True
            self.done.set()


class DeclineFilter(Base):
    """Decline every offer with refuse_seconds=R; report the gaps between offers per agent."""

    def __init__(self, refuse):
        super().__init__()
        self.refuse = refuse
        self.last = {}
        self.gaps = []

    def resourceOffers(self, driver, offers):
        now = time.time()
        for offer in offers:
            aid = offer["agent_id"]["value"]
            if aid in self.last:
                self.gaps.append(now - self.last[aid])
            self.last[aid] = now
            driver.declineOffer(offer["id"], {"refuse_seconds": self.refuse})
        if len(self.gaps) >= 2:
            self.result["gaps"] = self.gaps
            self.done.set()


class Failover(Base):
    """Phase 'start': launch `sleep 60` with failover_timeout, then stop(failover=True).
    Phase 'resume FID': re-subscribe with that id and reconcile the task."""

    def __init__(self, phase, fid):
        super().__init__()
        self.phase = phase
        self.fid = fid
        self.launched = False

    def registered(self, driver, framework_id, master_info):
        super().registered(driver, framework_id, master_info)
        self.result["framework_id"] = framework_id["value"]

    def reregistered(self, driver, master_info):
        super().reregistered(driver, master_info)
        if self.phase == "resume":
            driver.reconcileTasks([{"task_id": {"value": "survivor"}}])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if self.phase == "start" and not self.launched:
                self.launched = True
                driver.launchTasks(offer["id"], [task_for(offer, "survivor", "sleep 60")])
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})

    def statusUpdate(self, driver, update):
        tid, state = update["task_id"]["value"], update["state"]
        emit(event="update", task_id=tid, state=state, reason=update.get("reason"))
        if self.phase == "start" and state == "TASK_RUNNING":
            self.result["running"] = True
            self.done.set()
        if self.phase == "resume" and update.get("reason") == "REASON_RECONCILIATION":
            self.result["reconciled_state"] = state
            self.done.set()


def main():
    failover_timeout = 100.0
    framework = {"user": "", "name": "pymesos-" + SCENARIO, "hostname": "localhost"}
    if SCENARIO == "many":
        sched = ManyTasks(int(ARGS[0]))
    elif SCENARIO == "kill":
        sched = KillAndReconcile()
    elif SCENARIO == "decline":
        sched = DeclineFilter(float(ARGS[0]))
    elif SCENARIO == "failover":
        phase = ARGS[0]
        failover_timeout = float(ARGS[1])
        sched = Failover(phase, ARGS[2] if len(ARGS) > 2 else None)
        if phase == "resume":
            framework["id"] = {"value": ARGS[2]}
    else:
        raise SystemExit("unknown scenario " + SCENARIO)
    framework["failover_timeout"] = failover_timeout
    # As any pymesos user would: principal and secret for a master that authenticates frameworks.
    principal, secret = os.environ.get("PYMESOS_PRINCIPAL"), os.environ.get("PYMESOS_SECRET")
    if principal:
        framework["principal"] = principal
    driver = MesosSchedulerDriver(sched, framework, MASTER, use_addict=False, principal=principal, secret=secret)
    driver.start()
    ok = sched.done.wait(float(60))
    emit(done=ok, result=sched.result)
    driver.stop(failover=(SCENARIO == "failover"))
    driver.join()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    _ = uuid
    main()
