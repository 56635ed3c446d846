"""An unmodified pymesos 0.3.15 custom executor (CPython 3.10), started by the mesos-nb agent.

Each task: TASK_RUNNING, then TASK_FINISHED once the agent has acknowledged the RUNNING update
(pymesos forgets an acknowledged task: it leaves ``driver.tasks``). Framework messages: "ping:X" is
answered with "pong:X"; "exit" stops the driver, so the process exits (the scheduler then
sees executorLost). Sends "hello" when registered.
"""

import base64
import threading
import time

from pymesos import Executor, MesosExecutorDriver


def b64(text):
    return base64.b64encode(text.encode()).decode()


acked = threading.Condition()  # notified on each acknowledgement the agent sends


class Driver(MesosExecutorDriver):
    """pymesos' own driver; it only says when an acknowledgement arrived (pymesos has no
    callback for it: it drops the acknowledged task from ``tasks``)."""

    def on_acknowledged(self, event):
        super().on_acknowledged(event)
        with acked:
            acked.notify_all()


class App(Executor):
    def registered(self, driver, executor_info, framework_info, agent_info):
        driver.sendFrameworkMessage(b64("hello"))

    def launchTask(self, driver, task):
        def run():
            update = {"task_id": task["task_id"], "state": "TASK_RUNNING", "timestamp": time.time()}
            driver.sendStatusUpdate(update)
            tid = task["task_id"]["value"]
            with acked:
                acked.wait_for(lambda: tid not in driver.tasks, timeout=30)
            update = {"task_id": task["task_id"], "state": "TASK_FINISHED", "timestamp": time.time(),
                      "message": "done by executor_app"}
            driver.sendStatusUpdate(update)

        threading.Thread(target=run, daemon=True).start()

    def frameworkMessage(self, driver, message):
        text = base64.b64decode(message).decode()
        if text == "exit":
            driver.stop()
        elif text.startswith("ping:"):
            driver.sendFrameworkMessage(b64("pong:" + text[5:]))


if __name__ == "__main__":
    driver = Driver(App(), use_addict=False)
    driver.run()
