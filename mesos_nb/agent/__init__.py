"""The mesos-nb agent: runs tasks for the master on one machine (see README.md)."""

from .agent import Agent
from .config import AgentConfig
from .process import AgentProcess, parse_master

__all__ = ["Agent", "AgentConfig", "AgentProcess", "parse_master"]
