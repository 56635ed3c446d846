"""What the read side (``/master/state``, the web UI, the utilization feed) may see of a master.

A read interface instead of the server itself, so the read modules do not import the shell
(:class:`~mesos_nb.master.server.MasterServer` satisfies it) and can be given any object with
these members, e.g. in tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..protocol import messages as m
    from .core import MasterCore


class MasterView(Protocol):
    @property
    def core(self) -> MasterCore: ...

    @property
    def master_id(self) -> str: ...

    @property
    def hostname(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def address(self) -> str:
        """``host:port`` of this master."""
        ...

    @property
    def start_time(self) -> float: ...

    @property
    def leader_address(self) -> str | None:
        """``host:port`` of the leading master (this one without --zk); None while none leads."""
        ...

    def master_info(self) -> m.MasterInfo: ...

    def flags(self) -> dict[str, str]:
        """The flags ``/master/state`` shows, as Mesos renders them (strings)."""
        ...

    def health(self) -> tuple[bool, str]:
        """Whether the master works (its registry accepts writes), and why not."""
        ...

    def operator_subscribers(self) -> int:
        """How many operator API SUBSCRIBE streams are open (a metric)."""
        ...
