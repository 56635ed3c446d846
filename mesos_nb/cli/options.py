"""Option helpers: every option also reads ``MESOS_NB_<OPTION>``; a bad flag is one sentence
(:class:`CLIError`), never a usage dump."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from .errors import CLIError

ENV_PREFIX = "MESOS_NB_"
DEFAULT_MASTER = "127.0.0.1:5050"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        raise CLIError(f"{message} (see '{self.prog} --help')")


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def opt(p: argparse.ArgumentParser, flag: str, *, type: Callable[[str], Any] = str,
         default: Any = None, **kw: Any) -> None:
    """An option whose default comes from ``MESOS_NB_<OPTION>`` when that is set."""
    env = _env_name(flag)
    raw = os.environ.get(env)
    if raw is not None and raw != "":
        try:
            default = type(raw)
        except (ValueError, argparse.ArgumentTypeError) as e:
            raise CLIError(f"bad value {raw!r} in ${env}: {e}") from None
    help_ = kw.pop("help", "")
    shown = f" (default: {default})" if default is not None and "default" not in help_ else ""
    kw["help"] = f"{help_}{shown} [${env}]".strip()
    p.add_argument(flag, type=type, default=default, **kw)


def flag(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    env = _env_name(flag)
    raw = os.environ.get(env)
    try:
        default = _bool(raw) if raw is not None else False
    except ValueError as e:
        raise CLIError(f"bad value in ${env}: {e}") from None
    p.add_argument(flag, action="store_true", default=default, help=f"{help} [${env}]")


def positive(text: str) -> float:
    v = float(text)
    if v < 0 or v != v:
        raise ValueError("must not be negative")
    return v


def port(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 65535:
        raise ValueError("a port is between 0 and 65535")
    return v


def log_level(text: str) -> str:
    from mesos_nb.logs import parse_level

    parse_level(text)
    return text


def event_loop(text: str) -> str:
    """An ``--event-loop`` value: auto, uvloop (installed) or asyncio."""
    from mesos_nb.protocol.event_loop import parse

    try:
        return parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def event_loop_option(p: argparse.ArgumentParser) -> None:
    opt(p, "--event-loop", type=event_loop, default="auto",
        help="the process's event loop: auto (uvloop when installed, else asyncio), uvloop, asyncio")
