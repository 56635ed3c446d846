"""pymesos 0.3.15 scheduler (CPython 3.10, unmodified) driving executor_app.py on mesos-nb.

Usage: python3.10 executor_scheduler.py MASTER EXECUTOR_COMMAND [TIMEOUT]. Launches task t1
with a custom executor, then t2 and t3 into the same (running) executor on the same agent;
pings the executor with framework messages; once every task FINISHED and the pongs are back,
tells the executor to exit and waits for executorLost. Prints JSON lines, then {"done": ...}.
"""

import base64
import json
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

MASTER, EXECUTOR_CMD = sys.argv[1], sys.argv[2]
TIMEOUT = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
EXECUTOR_ID = "pm-exec"


def emit(**kw):
    print(json.dumps(kw), flush=True)


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def b64(text):
    return base64.b64encode(text.encode()).decode()


EXECUTOR = {
    "executor_id": {"value": EXECUTOR_ID},
    "name": "pymesos executor_app",
    "command": {"value": EXECUTOR_CMD},
    "resources": [scalar("cpus", 0.1), scalar("mem", 64)],
}


class Sched(Scheduler):
    def __init__(self):
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.agent = None
        self.pending = ["t1", "t2", "t3"]
        self.launched = []
        self.states = {}
        self.messages = []
        self.lost = None
        self.exit_sent = False

    def registered(self, driver, framework_id, master_info):
        emit(event="registered", framework_id=framework_id["value"])

    def resourceOffers(self, driver, offers):
        with self.lock:
            for offer in offers:
                aid = offer["agent_id"]["value"]
                can = self.pending and (self.agent is None or aid == self.agent)
                # t2/t3 go into the running executor: wait until t1 runs.
                if can and self.agent is not None and self.states.get("t1", [None])[-1] is None:
                    can = False
                if not can:
                    driver.declineOffer([offer["id"]], {"refuse_seconds": 0.5})
                    continue
                self.agent = aid
                batch = [self.pending.pop(0)] if not self.launched else list(self.pending)
                if self.launched:
                    self.pending.clear()
                tasks = [{
                    "task_id": {"value": tid}, "agent_id": {"value": aid}, "name": tid,
                    "resources": [scalar("cpus", 0.1), scalar("mem", 16)], "executor": EXECUTOR,
                } for tid in batch]
                self.launched.extend(batch)
                emit(event="launch", tasks=batch)
                driver.launchTasks([offer["id"]], tasks, {"refuse_seconds": 0.5})

    def statusUpdate(self, driver, update):
        tid = update["task_id"]["value"]
        with self.lock:
            self.states.setdefault(tid, []).append(update["state"])
            emit(event="update", task=tid, state=update["state"], source=update.get("source"),
                 executor=update.get("executor_id", {}).get("value"), message=update.get("message"))
            if tid == "t1" and update["state"] == "TASK_RUNNING":
                driver.sendFrameworkMessage({"value": EXECUTOR_ID}, update["agent_id"], b64("ping:1"))
                driver.sendFrameworkMessage({"value": EXECUTOR_ID}, update["agent_id"], b64("ping:2"))
            self._maybe_exit(driver)

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        with self.lock:
            text = base64.b64decode(message).decode()
            self.messages.append(text)
            emit(event="message", text=text, executor=executor_id["value"])
            self._maybe_exit(driver)

    def _maybe_exit(self, driver):
        finished = [t for t in ("t1", "t2", "t3") if "TASK_FINISHED" in self.states.get(t, [])]
        pongs = [m for m in self.messages if m.startswith("pong:")]
        if len(finished) == 3 and len(pongs) == 2 and not self.exit_sent:
            self.exit_sent = True
            emit(event="exit_sent")
            driver.sendFrameworkMessage({"value": EXECUTOR_ID}, {"value": self.agent}, b64("exit"))

    def executorLost(self, driver, executor_id, agent_id, status):
        emit(event="executor_lost", executor=executor_id["value"], agent=agent_id["value"], status=status)
        self.lost = {"executor": executor_id["value"], "status": status}
        self.done.set()

    def error(self, driver, message):
        emit(event="error", message=message)
        self.done.set()


def main():
    sched = Sched()
    framework = {"user": "", "name": "pymesos-executor", "hostname": "localhost"}
    driver = MesosSchedulerDriver(sched, framework, MASTER, use_addict=False)
    driver.start()
    ok = sched.done.wait(TIMEOUT)
    result = {"states": sched.states, "messages": sched.messages, "lost": sched.lost}
    driver.stop()
    emit(done=ok, result=result)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
