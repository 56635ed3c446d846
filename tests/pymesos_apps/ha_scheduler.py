"""A pymesos 0.3.15 framework, run UNMODIFIED under CPython 3.10, that lives through master
failovers (the HA tests).

Usage: python3.10 ha_scheduler.py MASTER N RELEASE_FILE
MASTER is usually zk://host:port/path (pymesos follows the leader with its own detector).
Launches N command tasks that run until RELEASE_FILE exists, then prints one JSON line per
event (registered, reregistered, update) and exits when every task has reported a terminal
state, or after 600 s.
"""

import json
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

MASTER, N, RELEASE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
            "TASK_GONE", "TASK_GONE_BY_OPERATOR"}


def emit(**kw):
    print(json.dumps(kw), flush=True)


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


class HA(Scheduler):
    def __init__(self):
        self.lock = threading.Lock()
        self.launched = 0
        self.terminal = set()
        self.done = threading.Event()

    def registered(self, driver, framework_id, master_info):
        emit(event="registered", framework_id=framework_id["value"])

    def reregistered(self, driver, master_info):
        emit(event="reregistered")

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                want = N - self.launched
                fit = int(min(sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "cpus") / 0.1,
                              sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "mem") / 16))
                k = min(want, fit, 25)
                tasks = []
                for _ in range(k):
                    tid = f"pm-{self.launched:03d}"
                    self.launched += 1
                    tasks.append({
                        "task_id": {"value": tid}, "agent_id": {"value": offer["agent_id"]["value"]},
                        "name": tid, "resources": [scalar("cpus", 0.1), scalar("mem", 16)],
                        "command": {"value": f"while [ ! -e {RELEASE} ]; do sleep 1; done"},
                    })
            if tasks:
                driver.launchTasks(offer["id"], tasks)
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 5})

    def statusUpdate(self, driver, update):
        tid, state = update["task_id"]["value"], update["state"]
        emit(event="update", task_id=tid, state=state, reason=update.get("reason"))
        if state in TERMINAL:
            with self.lock:
                self.terminal.add(tid)
                if len(self.terminal) >= N:
                    self.done.set()

    def error(self, driver, message):
        emit(event="error", message=message)


def main():
    framework = {"user": "", "name": "pymesos-ha", "hostname": "localhost", "failover_timeout": 3600.0,
                 "checkpoint": True}
    sched = HA()
    driver = MesosSchedulerDriver(sched, framework, MASTER, use_addict=False)
    driver.start()
    ok = sched.done.wait(600.0)
    emit(done=ok)
    driver.stop()
    driver.join()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
