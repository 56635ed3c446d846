"""A pymesos 0.3.15 framework, run UNMODIFIED under CPython 3.10, that lives through a
maintenance window: it runs one long task on the agent at HOST, reports every offer's
``unavailability``, declines the inverse offer it gets, and ends when its task ends.

Usage: python3.10 maintenance_scheduler.py MASTER HOST. One JSON line per fact, then
{"done": ...}.
"""

import sys
import threading

from pymesos import Scheduler
from run_until_done import emit, run_until_done

MASTER, HOST = sys.argv[1], sys.argv[2]


class Maintained(Scheduler):
    def __init__(self):
        self.launched = False
        self.done = threading.Event()
        self.result = {}

    def registered(self, driver, framework_id, master_info):
        emit(event="registered", framework_id=framework_id["value"])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if "unavailability" in offer:
                emit(event="offer_unavailability", hostname=offer["hostname"], unavailability=offer["unavailability"])
            if not self.launched and offer["hostname"] == HOST:
                self.launched = True
                task = {"task_id": {"value": "long"}, "agent_id": offer["agent_id"], "name": "long",
                        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}],
                        "command": {"value": "sleep 600"}}
                driver.launchTasks(offer["id"], [task], {"refuse_seconds": 1})
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})

    def inverseOffers(self, driver, offers):
        for io in offers:
            emit(event="inverse_offer", agent_id=io["agent_id"]["value"], unavailability=io["unavailability"])
            driver.declineInverseOffer(io["id"], {"refuse_seconds": 3600})

    def statusUpdate(self, driver, update):
        emit(event="update", state=update["state"], reason=update.get("reason"), message=update.get("message"))
        if update["state"] not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            self.result = {"state": update["state"], "reason": update.get("reason"), "message": update.get("message")}
            self.done.set()


def main():
    sched = Maintained()
    framework = {"user": "", "name": "pymesos-maintenance", "hostname": "localhost", "failover_timeout": 100.0}
    run_until_done(sched, framework, MASTER, 90.0)


if __name__ == "__main__":
    main()
