"""pymesos 0.3.15 frameworks using dynamic reservations and a persistent volume, run
UNMODIFIED under CPython 3.10 against mesos-nb.

Usage: python3.10 volume_scheduler.py SCENARIO MASTER [args]
  create SECRET  role 'db': RESERVE cpus+disk, CREATE volume 'vol-1' (container_path 'data')
                 and LAUNCH a task writing SECRET into data/hello.txt, in one ACCEPT.
  read SECRET    role 'db': wait for an offer holding 'vol-1', run a task that checks
                 data/hello.txt holds SECRET, then DESTROY the volume and UNRESERVE it all.
  watch N        role 'other': record N offers (declining them) and report any reserved
                 resource or volume it was offered.
Prints one JSON line per fact the test asserts, then a final {"done": ...} line.
"""

import sys
import threading

from pymesos import Scheduler
from run_until_done import emit, run_until_done

SCENARIO, MASTER = sys.argv[1], sys.argv[2]
ARGS = sys.argv[3:]
ROLE, PRINCIPAL = "db", "alice"
RESERVATION = [{"type": "DYNAMIC", "role": ROLE, "principal": PRINCIPAL}]
VOLUME_DISK = {"persistence": {"id": "vol-1", "principal": PRINCIPAL},
               "volume": {"container_path": "data", "mode": "RW"}}


def scalar(name, value, reserved=False, disk=None):
    r = {"name": name, "type": "SCALAR", "scalar": {"value": value}}
    if reserved:
        r["reservations"] = RESERVATION
    if disk:
        r["disk"] = disk
    return r


def unreserved(offer, name):
    return sum(r["scalar"]["value"] for r in offer["resources"]
               if r["name"] == name and r["type"] == "SCALAR" and not r.get("reservations"))


def volume_in(offer):
    for r in offer["resources"]:
        if ((r.get("disk") or {}).get("persistence") or {}).get("id") == "vol-1":
            return r
    return None


def task(offer, task_id, cmd, volume):
    return {"task_id": {"value": task_id}, "agent_id": offer["agent_id"], "name": task_id,
            "resources": [scalar("cpus", 0.5, reserved=True), scalar("mem", 32), volume],
            "command": {"value": cmd}}


class Base(Scheduler):
    def __init__(self):
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.result = {"operations": {}}

    def error(self, driver, message):
        emit(event="error", message=message)
        self.result["error"] = message
        self.done.set()

    def operationStatusUpdate(self, driver, status):
        op, state = status["operation_id"]["value"], status["state"]
        emit(event="operation", id=op, state=state, message=status.get("message"))
        with self.lock:
            self.result["operations"][op] = state
        self.operation_done(driver)

    def operation_done(self, driver):
        pass


class Create(Base):
    def __init__(self, secret):
        super().__init__()
        self.secret = secret
        self.accepted = False

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if self.accepted or unreserved(offer, "disk") < 100 or unreserved(offer, "cpus") < 0.5:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})
                continue
            self.accepted = True
            volume = scalar("disk", 100, reserved=True, disk=VOLUME_DISK)
            driver.acceptOffers([offer["id"]], [
                {"type": "RESERVE", "id": {"value": "reserve"},
                 "reserve": {"resources": [scalar("cpus", 0.5, True), scalar("disk", 100, True)]}},
                {"type": "CREATE", "id": {"value": "create"}, "create": {"volumes": [volume]}},
                {"type": "LAUNCH", "launch": {"task_infos": [
                    task(offer, "writer", f"echo {self.secret} > data/hello.txt", volume)]}},
            ], {"refuse_seconds": 1})

    def statusUpdate(self, driver, update):
        emit(event="update", task_id=update["task_id"]["value"], state=update["state"])
        if update["state"] in ("TASK_FINISHED", "TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED"):
            self.result["writer"] = update["state"]
            self.done.set()


class Read(Base):
    def __init__(self, secret):
        super().__init__()
        self.secret = secret
        self.phase = "read"

    def resourceOffers(self, driver, offers):
        for offer in offers:
            volume = volume_in(offer)
            if volume is None or self.phase not in ("read", "destroy"):
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})
                continue
            if self.phase == "read":
                self.phase = "reading"
                self.result["offered_volume"] = volume
                driver.acceptOffers([offer["id"]], [{"type": "LAUNCH", "launch": {"task_infos": [
                    task(offer, "reader", f"grep -qx {self.secret} data/hello.txt", volume)]}}],
                    {"refuse_seconds": 1})
            else:
                self.phase = "destroying"
                driver.acceptOffers([offer["id"]], [
                    {"type": "DESTROY", "id": {"value": "destroy"}, "destroy": {"volumes": [volume]}},
                    {"type": "UNRESERVE", "id": {"value": "unreserve"},
                     "unreserve": {"resources": [scalar("cpus", 0.5, True), scalar("disk", 100, True)]}},
                ], {"refuse_seconds": 1})

    def statusUpdate(self, driver, update):
        emit(event="update", task_id=update["task_id"]["value"], state=update["state"])
        if update["state"] == "TASK_FINISHED":
            self.result["reader"] = update["state"]
            self.phase = "destroy"
            driver.reviveOffers()
        elif update["state"] in ("TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED"):
            self.result["reader"] = update["state"]
            self.done.set()

    def operation_done(self, driver):
        if len(self.result["operations"]) == 2:
            self.done.set()


class Watch(Base):
    def __init__(self, n):
        super().__init__()
        self.n = n
        self.result.update(offers=0, reserved_seen=[])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                self.result["offers"] += 1
                self.result["reserved_seen"] += [r for r in offer["resources"]
                                                 if r.get("reservations") or r.get("reservation") or r.get("disk")]
                if self.result["offers"] >= self.n:
                    self.done.set()
            driver.declineOffer(offer["id"], {"refuse_seconds": 0.2})


def main():
    if SCENARIO == "create":
        sched, role = Create(ARGS[0]), ROLE
    elif SCENARIO == "read":
        sched, role = Read(ARGS[0]), ROLE
    elif SCENARIO == "watch":
        sched, role = Watch(int(ARGS[0])), "other"
    else:
        raise SystemExit("unknown scenario " + SCENARIO)
    framework = {"user": "", "name": "pymesos-volume-" + SCENARIO, "hostname": "localhost", "role": role,
                 "principal": PRINCIPAL, "failover_timeout": 0}
    run_until_done(sched, framework, MASTER, 60.0)


if __name__ == "__main__":
    main()
