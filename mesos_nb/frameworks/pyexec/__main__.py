"""``python -m mesos_nb.frameworks.pyexec``: the warm executor (started by the agent)."""

import sys

from .executor import main

sys.exit(main())
