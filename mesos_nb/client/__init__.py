"""The operator client library: the master's and agents' read endpoints as typed values,
task lookup, sandbox files and log following. See README.md in this folder."""

from .http import HttpClient, MesosClientError
from .master import (
    MasterClient,
    agent_for,
    agent_url_for,
    all_frameworks,
    all_tasks,
    cluster_totals,
    find_task,
    master_url,
)
from .sandbox import FileFollower, Sandbox, drain, locate, read_file, sandbox_dir

__all__ = [
    "FileFollower",
    "HttpClient",
    "MasterClient",
    "MesosClientError",
    "Sandbox",
    "agent_for",
    "agent_url_for",
    "all_frameworks",
    "all_tasks",
    "cluster_totals",
    "drain",
    "find_task",
    "locate",
    "master_url",
    "read_file",
    "sandbox_dir",
]
