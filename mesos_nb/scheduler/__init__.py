"""The framework SDK: an asyncio Mesos v1 scheduler driver and its blocking facade.

    from mesos_nb.scheduler import Scheduler, SchedulerDriver, FrameworkInfo

See README.md in this folder for the job and the data flow.
"""

from mesos_nb.protocol.messages import (
    CommandInfo,
    Filters,
    FrameworkInfo,
    InverseOffer,
    Offer,
    Operation,
    TaskInfo,
    TaskStatus,
    is_terminal,
)

from .blocking import BlockingSchedulerDriver
from .driver import MesosError, Scheduler, SchedulerDriver
from .pool import TaskHandle, TaskPool, TaskSpec, match_offer
from .stream import Backoff, EventStream, Watchdog
from .tasks import command_task, fits, matches_attributes, parse_constraints

__all__ = [
    "Backoff",
    "BlockingSchedulerDriver",
    "CommandInfo",
    "EventStream",
    "Filters",
    "FrameworkInfo",
    "InverseOffer",
    "MesosError",
    "Offer",
    "Operation",
    "Scheduler",
    "SchedulerDriver",
    "TaskHandle",
    "TaskInfo",
    "TaskPool",
    "TaskSpec",
    "TaskStatus",
    "Watchdog",
    "command_task",
    "fits",
    "is_terminal",
    "match_offer",
    "matches_attributes",
    "parse_constraints",
]
