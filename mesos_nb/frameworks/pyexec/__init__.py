"""The warm Python executor: a Mesos custom executor (v1 executor HTTP API) that keeps an
interpreter with chosen modules imported and forks one child per task. See README.md."""

from typing import Any

from .wire import call_payload, cell_payload, decode_result, parse_output


def executor_info(*args: Any, **kwargs: Any) -> Any:
    """See :func:`launch.executor_info` (imported lazily: the executor itself never needs it)."""
    from .launch import executor_info as build

    return build(*args, **kwargs)

__all__ = ["call_payload", "cell_payload", "decode_result", "executor_info", "parse_output"]
