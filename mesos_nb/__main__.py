"""``python -m mesos_nb`` is ``mesos-nb``."""

import sys

from mesos_nb.cli import main

sys.exit(main())
