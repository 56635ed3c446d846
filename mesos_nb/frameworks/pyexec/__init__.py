"""The warm Python executor: a Mesos custom executor (v1 executor HTTP API) that keeps an
interpreter with chosen modules imported and forks one child per task. See README.md."""

from .wire import call_payload, cell_payload, decode_result, executor_info, parse_output

__all__ = ["call_payload", "cell_payload", "decode_result", "executor_info", "parse_output"]
