"""Run in the pymesos 0.3.15 virtualenv: follow the leading master of a zk:// URL with
pymesos' own detector and its own znode parser, print one JSON line per change.

usage: zk_detect.py zk://host:port/path
"""

import json
import sys
import threading

from pymesos.detector import MasterDetector
from pymesos.scheduler import MesosSchedulerDriver


class Listener:
    # pymesos' scheduler driver parses the znode data in this method; reuse it unchanged
    onNewMasterDetectedMessage = MesosSchedulerDriver.onNewMasterDetectedMessage

    def change_master(self, master):
        print(json.dumps({"leader": master}), flush=True)

    def onNoMasterDetectedMessage(self):
        print(json.dumps({"leader": None}), flush=True)


def main():
    uri = sys.argv[1]
    # exactly what MesosSchedulerDriver.start() does with a zk:// master
    detector = MasterDetector(uri[uri.index("://") + 3:], Listener())
    detector.start()
    print(json.dumps({"started": True}), flush=True)
    # stay until stdin closes (the test ends us)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    detector.stop()


if __name__ == "__main__":
    main()
