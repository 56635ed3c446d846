"""``mesos-nb``: run the services (master, agent, local) and operate a cluster.

Every option also reads ``MESOS_NB_<OPTION>`` (``--work-dir`` -> ``MESOS_NB_WORK_DIR``);
``--master`` defaults to ``$MESOS_NB_MASTER``, else ``127.0.0.1:5050``. Errors (bad flags,
bad resource strings, an unreachable master) print one sentence on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from mesos_nb.protocol.version import VERSION

ENV_PREFIX = "MESOS_NB_"
DEFAULT_MASTER = "127.0.0.1:5050"
TERMINAL = {
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
}
READ_CHUNK = 16384


class CLIError(Exception):
    """A user-facing failure: ``str()`` is one sentence; the process exits 2."""


# ============================================================================ argument parsing
class _Parser(argparse.ArgumentParser):
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


def _opt(p: argparse.ArgumentParser, flag: str, *, type: Callable[[str], Any] = str,
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
    kw["help"] = f"{help_} [${env}]".strip()
    p.add_argument(flag, type=type, default=default, **kw)


def _flag(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    env = _env_name(flag)
    raw = os.environ.get(env)
    try:
        default = _bool(raw) if raw is not None else False
    except ValueError as e:
        raise CLIError(f"bad value in ${env}: {e}") from None
    p.add_argument(flag, action="store_true", default=default, help=f"{help} [${env}]")


def _positive(text: str) -> float:
    v = float(text)
    if v < 0 or v != v:
        raise ValueError("must not be negative")
    return v


def _port(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 65535:
        raise ValueError("a port is between 0 and 65535")
    return v


def _log_level(text: str) -> str:
    from mesos_nb.logs import parse_level

    parse_level(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mesos-nb", description="Apache Mesos re-made in Python, notebook first.")
    p.add_argument("--version", action="version", version=f"mesos-nb {VERSION}")
    master_default = os.environ.get(ENV_PREFIX + "MASTER") or DEFAULT_MASTER
    p.add_argument("--master", default=master_default,
                   help="the master, HOST:PORT [$MESOS_NB_MASTER, else 127.0.0.1:5050]")
    p.add_argument("--debug", action="store_true", default=bool(os.environ.get(ENV_PREFIX + "DEBUG")),
                   help="show tracebacks on errors [$MESOS_NB_DEBUG]")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        # accepted after the command too; SUPPRESS keeps the top-level value when absent
        sp.add_argument("--master", default=argparse.SUPPRESS, help="the master, HOST:PORT")
        return sp

    m = cmd("master", "run a master", cmd_master)
    _opt(m, "--host", default="127.0.0.1", help="address to listen on")
    _opt(m, "--port", type=_port, default=5050, help="port to listen on (0: any free port)")
    _opt(m, "--hostname", help="hostname to advertise")
    _opt(m, "--work-dir", help="directory for the registry")
    _opt(m, "--allocation-interval", type=_positive, default=1.0, help="seconds between allocation cycles")
    _opt(m, "--agent-ping-timeout", type=_positive, default=15.0, help="seconds between agent pings")
    _opt(m, "--max-agent-ping-timeouts", type=int, default=5, help="missed pings before an agent is lost")
    _opt(m, "--agent-secret", help="shared secret agents must present")
    _opt(m, "--log-level", type=_log_level, default="info", help="debug, info, warning, error")

    a = cmd("agent", "run an agent", cmd_agent)
    _opt(a, "--host", default="127.0.0.1", help="address to listen on")
    _opt(a, "--port", type=_port, default=5051, help="port to listen on (0: any free port)")
    _opt(a, "--hostname", help="hostname to advertise")
    _opt(a, "--resources", help='e.g. "cpus:4;mem:8192;ports:[31000-32000]" (default: detected)')
    _opt(a, "--attributes", help='e.g. "rack:a;zone:1"')
    _opt(a, "--work-dir", default="/tmp/mesos-nb/agent", help="sandboxes and checkpoints")
    _opt(a, "--isolation", default="auto",
         help="auto (the best this machine allows), cgroups, cgroups/v1, cgroups/v2, posix, or Mesos names: "
              "cgroups/cpu,cgroups/mem,cgroups/blkio,disk/du,filesystem/linux,namespaces/pid")
    _opt(a, "--docker-registry", help="container images: a directory of `docker save` tarballs or a registry URL "
                                      "(default: Docker Hub)")
    _opt(a, "--docker-store-dir", help="image layer store (default: <work-dir>/store/docker)")
    _opt(a, "--image-store-max-bytes", type=int, default=0, help="bound of the image layer store (0: unbounded)")
    a.add_argument("--enforce-container-disk-quota", action="store_true",
                   help="disk/du: kill a task that uses more disk than its `disk` resource")
    _opt(a, "--container-disk-watch-interval", type=_positive, default=15.0, help="disk/du: seconds between measurements")
    _opt(a, "--agent-secret", help="shared secret for the master")
    _opt(a, "--log-level", type=_log_level, default="info", help="debug, info, warning, error")

    lo = cmd("local", "run a master and N agents in one process", cmd_local)
    _opt(lo, "--agents", type=int, default=2, help="number of agents")
    _opt(lo, "--port", type=_port, default=5050, help="master port (0: any free port)")
    _opt(lo, "--work-dir", help="work directory (default: a temporary one)")
    _opt(lo, "--resources", help="resources of each agent (default: the machine divided among them)")
    _opt(lo, "--log-level", type=_log_level, default="warning", help="debug, info, warning, error")

    cmd("status", "summary of the cluster", cmd_status)
    cmd("agents", "list agents", cmd_agents)
    fr = cmd("frameworks", "list frameworks", cmd_frameworks)
    fr.add_argument("--all", action="store_true", help="include completed frameworks")
    t = cmd("tasks", "list tasks", cmd_tasks)
    t.add_argument("--all", action="store_true", help="include completed tasks")

    r = cmd("run", "run one command as a task; stream its output; exit with its exit code", cmd_run)
    _opt(r, "--cpus", type=_positive, default=1.0, help="CPUs")
    _opt(r, "--mem", type=_positive, default=256.0, help="memory (MB)")
    _opt(r, "--gpus", type=_positive, default=0.0, help="GPUs")
    _opt(r, "--disk", type=_positive, default=0.0, help="disk (MB)")
    _opt(r, "--role", help="role to run as")
    r.add_argument("--attr", action="append", default=[], metavar="K=V",
                   help="only run on agents with this attribute (repeatable)")
    _opt(r, "--name", help="task name")
    _opt(r, "--timeout", type=_positive, help="give up after this many seconds")
    _flag(r, "--verbose", "print status updates on stderr")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")

    lg = cmd("logs", "print a task's stdout (or stderr)", cmd_logs)
    lg.add_argument("task", metavar="TASK", help="task id (or a unique prefix)")
    lg.add_argument("-f", "--follow", action="store_true", help="follow until the task ends")
    lg.add_argument("--stderr", action="store_true", help="stderr instead of stdout")

    k = cmd("kill", "kill a task", cmd_kill)
    k.add_argument("task", metavar="TASK", help="task id (or a unique prefix)")
    _notebook_commands(cmd)
    return p


# ============================================================================ HTTP helpers
def master_url(master: str) -> str:
    from mesos_nb.scheduler.stream import normalize_master

    try:
        return normalize_master(master)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _reason(e: BaseException) -> str:
    r = getattr(e, "reason", e)
    if isinstance(r, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(r, OSError) and r.strerror:
        return r.strerror.lower()
    return str(r)


def http(url: str, *, method: str = "GET", body: Any = None, timeout: float = 10.0,
         what: str = "the master") -> tuple[int, bytes]:
    """(status, body); raises CLIError when the server cannot be reached."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        base = url.split("/", 3)
        where = "/".join(base[:3]) if len(base) >= 3 else url
        raise CLIError(f"cannot reach {what} at {where} ({_reason(e)})") from None


def get_json(url: str, what: str = "the master") -> Any:
    status, raw = http(url, what=what)
    if status != 200:
        raise CLIError(f"{url} answered {status}: {raw.decode(errors='replace').strip()[:200]}")
    try:
        return json.loads(raw)
    except ValueError:
        raise CLIError(f"{url} did not answer JSON") from None


def master_state(master: str) -> dict[str, Any]:
    return get_json(master_url(master) + "/master/state")


# ============================================================================ output
def _is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    if _is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*[str(c) for c in row])
        Console().print(table)
        return
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(title)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return str(int(v)) if v.is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


def _used_total(res: dict[str, Any], used: dict[str, Any], name: str) -> str:
    return f"{_num(used.get(name, 0))}/{_num(res.get(name, 0))}"


def _all_frameworks(state: dict[str, Any], completed: bool = True) -> list[tuple[dict[str, Any], bool]]:
    out = [(f, True) for f in state.get("frameworks", [])]
    if completed:
        out += [(f, False) for f in state.get("completed_frameworks", [])]
    return out


def _all_tasks(state: dict[str, Any], completed: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    seen = set()
    for fw, _live in _all_frameworks(state, completed):
        keys = ["tasks", "unreachable_tasks"] + (["completed_tasks"] if completed else [])
        for key in keys:
            for t in fw.get(key, []) or []:
                ident = (fw.get("id"), t.get("id"))
                if ident in seen:
                    continue
                seen.add(ident)
                if not completed and t.get("state") in TERMINAL:
                    continue
                out.append((t, fw))
    return out


def cluster_totals(state: dict[str, Any]) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """From ``/master/state``: total and used cpus/mem/disk/gpus over the agents, and the number
    of tasks in each state (completed ones included). Shared by ``status`` and ``%mesos status``."""
    tot: dict[str, float] = {}
    used: dict[str, float] = {}
    for s in state.get("slaves", []):
        for k in ("cpus", "mem", "disk", "gpus"):
            tot[k] = tot.get(k, 0) + float((s.get("resources") or {}).get(k, 0) or 0)
            used[k] = used.get(k, 0) + float((s.get("used_resources") or {}).get(k, 0) or 0)
    counts: dict[str, int] = {}
    for t, _fw in _all_tasks(state, completed=True):
        counts[t.get("state", "?")] = counts.get(t.get("state", "?"), 0) + 1
    return tot, used, counts


# ============================================================================ operator commands
def cmd_status(args: argparse.Namespace) -> int:
    url = master_url(args.master)
    state = get_json(url + "/master/state")
    slaves = state.get("slaves", [])
    tot, used, counts = cluster_totals(state)
    started = state.get("start_time")
    uptime = f"{time.time() - float(started):.0f} s" if started else "?"
    fws = state.get("frameworks", [])
    rows = [
        ("master", url),
        ("version", state.get("version", "?")),
        ("id", state.get("id", "?")),
        ("leader", (state.get("leader_info") or {}).get("hostname") or state.get("leader", "?")),
        ("uptime", uptime),
        ("agents", f"{sum(1 for s in slaves if s.get('active', True))} active / {len(slaves)}"),
        ("frameworks", f"{sum(1 for f in fws if f.get('active', True))} active / {len(fws)}"),
        ("tasks", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"),
    ] + [(f"{k} used/total", f"{_num(used.get(k, 0))}/{_num(tot.get(k, 0))}") for k in ("cpus", "mem", "disk", "gpus")]
    print_table(["FIELD", "VALUE"], rows)
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    state = master_state(args.master)
    tasks_per: dict[str, int] = {}
    for t, _fw in _all_tasks(state, completed=False):
        tasks_per[t.get("slave_id", "")] = tasks_per.get(t.get("slave_id", ""), 0) + 1
    rows = []
    for s in state.get("slaves", []):
        res, used = s.get("resources") or {}, s.get("used_resources") or {}
        rows.append((
            s.get("id", ""),
            f"{s.get('hostname', '')}:{s.get('port', '')}",
            "yes" if s.get("active", True) else "no",
            _used_total(res, used, "cpus"),
            _used_total(res, used, "mem"),
            _used_total(res, used, "disk"),
            _used_total(res, used, "gpus"),
            tasks_per.get(s.get("id", ""), 0),
            ";".join(f"{k}:{v}" for k, v in (s.get("attributes") or {}).items()),
        ))
    print_table(["ID", "HOST", "ACTIVE", "CPUS", "MEM", "DISK", "GPUS", "TASKS", "ATTRIBUTES"], rows)
    return 0


def cmd_frameworks(args: argparse.Namespace) -> int:
    state = master_state(args.master)
    rows = []
    for fw, live in _all_frameworks(state, completed=args.all):
        used = fw.get("used_resources") or {}
        roles = fw.get("roles") or ([fw["role"]] if fw.get("role") else [])
        active = "completed" if not live else ("yes" if fw.get("active", True) else "no")
        rows.append((
            fw.get("id", ""), fw.get("name", ""), active,
            "yes" if fw.get("connected", live) else "no",
            ",".join(roles) or "*", len(fw.get("tasks") or []),
            _num(used.get("cpus", 0)), _num(used.get("mem", 0)),
        ))
    print_table(["ID", "NAME", "ACTIVE", "CONNECTED", "ROLES", "TASKS", "CPUS", "MEM"], rows)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    state = master_state(args.master)
    hosts = {s.get("id"): s.get("hostname", "") for s in state.get("slaves", [])}
    rows = []
    for t, fw in _all_tasks(state, completed=args.all):
        res = t.get("resources") or {}
        sid = t.get("slave_id", "")
        rows.append((
            t.get("id", ""), t.get("name", ""), t.get("state", ""),
            fw.get("name", "") or fw.get("id", ""),
            f"{hosts.get(sid, '?')} ({sid})" if sid else "",
            _num(res.get("cpus", 0)), _num(res.get("mem", 0)),
        ))
    print_table(["ID", "NAME", "STATE", "FRAMEWORK", "AGENT", "CPUS", "MEM"], rows)
    return 0


def find_task(state: dict[str, Any], ident: str) -> tuple[dict[str, Any], dict[str, Any]]:
    every = _all_tasks(state, completed=True)
    exact = [x for x in every if x[0].get("id") == ident]
    if exact:
        # a live task wins over a completed one with the same id
        return sorted(exact, key=lambda x: x[0].get("state") in TERMINAL)[0]
    pref = [x for x in every if str(x[0].get("id", "")).startswith(ident)]
    ids = {x[0].get("id") for x in pref}
    if len(ids) == 1:
        return pref[0]
    if not ids:
        raise CLIError(f"no task '{ident}' is known to the master")
    raise CLIError(f"'{ident}' matches {len(ids)} tasks ({', '.join(sorted(ids)[:3])}, ...); give more of the id")


def cmd_kill(args: argparse.Namespace) -> int:
    url = master_url(args.master)
    task, _fw = find_task(get_json(url + "/master/state"), args.task)
    tid = task["id"]
    status, raw = http(url + "/api/v1", method="POST",
                       body={"type": "KILL_TASK", "kill_task": {"task_id": {"value": tid}}})
    if status // 100 != 2:
        msg = raw.decode(errors="replace").strip().splitlines()
        raise CLIError(f"the master refused to kill {tid} ({status}: {msg[0] if msg else 'no message'})")
    print(f"killing task {tid}")
    return 0


# ============================================================================ sandbox files
def agent_url_for(state: dict[str, Any], agent_id: str) -> str:
    for s in state.get("slaves", []) + state.get("recovered_slaves", []):
        if s.get("id") == agent_id:
            host, port = s.get("hostname"), s.get("port")
            pid = s.get("pid") or ""
            if "@" in pid:
                hp = pid.split("@", 1)[1]
                if not host or not port:
                    return f"http://{hp}"
            return f"http://{host}:{port}"
    raise CLIError(f"agent {agent_id} is not known to the master (it may have been removed)")


def sandbox_dir(agent_url: str, framework_id: str | None, task_id: str, executor_id: str | None = None) -> str | None:
    state = get_json(agent_url + "/state", what="the agent")
    exec_ids = {x for x in (executor_id, task_id) if x}
    for fw in state.get("frameworks", []) + state.get("completed_frameworks", []):
        if framework_id and fw.get("id") not in (framework_id, None):
            continue
        for ex in fw.get("executors", []) + fw.get("completed_executors", []):
            tasks = {t.get("id") for k in ("tasks", "queued_tasks", "completed_tasks") for t in ex.get(k, []) or []}
            if ex.get("id") in exec_ids or task_id in tasks:
                if ex.get("directory"):
                    return ex["directory"]
    return None


class FileFollower:
    """Tails one sandbox file through the agent's ``/files/read`` (size first, then bytes)."""

    def __init__(self, agent_url: str, path: str, out: Any) -> None:
        self.agent_url = agent_url
        self.path = path
        self.out = out
        self.offset = 0

    def _read(self, offset: int, length: int) -> tuple[int, dict[str, Any]]:
        q = urllib.parse.urlencode({"path": self.path, "offset": offset, "length": length})
        status, raw = http(f"{self.agent_url}/files/read?{q}", what="the agent")
        if status != 200:
            return status, {}
        return status, json.loads(raw)

    def poll(self) -> int:
        """Write whatever is new; returns the number of bytes consumed."""
        status, info = self._read(-1, -1)
        if status != 200:
            return 0
        size = int(info.get("offset", 0))
        got = 0
        while self.offset < size:
            n = min(READ_CHUNK, size - self.offset)
            status, chunk = self._read(self.offset, n)
            if status != 200:
                break
            data = chunk.get("data", "")
            if not data:
                break
            self.out.write(data)
            self.out.flush()
            self.offset += n
            got += n
        return got


# ============================================================================ logs
def cmd_logs(args: argparse.Namespace) -> int:
    url = master_url(args.master)
    state = get_json(url + "/master/state")
    task, fw = find_task(state, args.task)
    tid = task["id"]
    agent = agent_url_for(state, task.get("slave_id", ""))
    directory = None
    deadline = time.monotonic() + (30 if args.follow else 0)
    while True:
        directory = sandbox_dir(agent, fw.get("id"), tid, task.get("executor_id") or None)
        if directory or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not directory:
        raise CLIError(f"the agent at {agent} has no sandbox for task {tid}")
    name = "stderr" if args.stderr else "stdout"
    out = sys.stdout
    follower = FileFollower(agent, f"{directory}/{name}", out)
    follower.poll()
    if not args.follow:
        return 0
    last_check = 0.0
    while True:
        time.sleep(0.2)
        follower.poll()
        if time.monotonic() - last_check >= 1.0:
            last_check = time.monotonic()
            with contextlib.suppress(CLIError):
                t, _ = find_task(get_json(url + "/master/state"), tid)
                if t.get("state") in TERMINAL:
                    time.sleep(0.2)
                    follower.poll()
                    return 0


# ============================================================================ run
_EXIT_RE = re.compile(r"exited with status (\d+)")


def exit_code_for(state: str, message: str | None) -> int:
    if state == "TASK_FINISHED":
        return 0
    m = _EXIT_RE.search(message or "")
    if state == "TASK_FAILED" and m:
        code = int(m.group(1))
        return code if code else 1
    return 1


def _parse_attrs(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise CLIError(f"bad --attr {it!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


class _RunScheduler:
    def __init__(self, args: argparse.Namespace, cmd: list[str], amounts: dict[str, float],
                 constraints: dict[str, str]) -> None:
        from mesos_nb.scheduler.tasks import new_task_id

        self.args = args
        self.cmd = cmd
        self.amounts = amounts
        self.constraints = constraints
        self.name = args.name or os.path.basename(cmd[0]) or "task"
        self.task_id = new_task_id(self.name)
        self.launched = False
        self.agent_id: str | None = None
        self.started = asyncio.Event()
        self.done = asyncio.Event()
        self.final: Any = None
        self.offers_seen = 0
        self.error: str | None = None

    def _say(self, text: str) -> None:
        if self.args.verbose:
            print(f"mesos-nb run: {text}", file=sys.stderr, flush=True)

    async def offers(self, driver: Any, offers: list[Any]) -> None:
        from mesos_nb.scheduler.tasks import command_task, fits

        rest = []
        for offer in offers:
            self.offers_seen += 1
            if not self.launched and fits(offer, self.amounts, self.constraints):
                task = command_task(
                    offer, self.cmd if len(self.cmd) > 1 else self.cmd[0],
                    name=self.name, task_id=self.task_id, **self.amounts,
                )
                self.launched = True
                self.agent_id = offer.agent_id.value
                self._say(f"launching {self.task_id} on {offer.hostname} ({offer.agent_id.value})")
                await driver.launch([offer.id], [task])
            else:
                rest.append(offer.id)
        if rest:
            await driver.decline(rest, refuse_seconds=3600 if self.launched else 1)

    async def update(self, driver: Any, status: Any) -> None:
        if status.task_id.value != self.task_id:
            return
        self._say(f"{status.state}{': ' + status.message if status.message else ''}")
        if status.state in ("TASK_STARTING", "TASK_RUNNING") or status.state in TERMINAL:
            self.started.set()
        if status.state in TERMINAL:
            self.final = status
            self.done.set()

    async def error(self, driver: Any, message: str) -> None:
        self.error = message
        self.done.set()


def _want(amounts: dict[str, float]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in amounts.items())


async def _follow_task(sched: _RunScheduler, master: str) -> None:
    """Stream the task's stdout/stderr until it is terminal (then drain what is left)."""
    await sched.started.wait()
    state = await asyncio.to_thread(master_state, master)
    agent = agent_url_for(state, sched.agent_id or "")
    directory = None
    while directory is None:
        directory = await asyncio.to_thread(sandbox_dir, agent, None, sched.task_id)
        if directory is None:
            if sched.done.is_set():
                return
            await asyncio.sleep(0.1)
    followers = [FileFollower(agent, f"{directory}/stdout", sys.stdout),
                 FileFollower(agent, f"{directory}/stderr", sys.stderr)]
    while not sched.done.is_set():
        for f in followers:
            await asyncio.to_thread(f.poll)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sched.done.wait(), 0.2)
    # the status can overtake the last writes: drain until two quiet polls in a row
    quiet = 0
    while quiet < 2:
        got = 0
        for f in followers:
            got += await asyncio.to_thread(f.poll)
        quiet = quiet + 1 if got == 0 else 0
        if quiet < 2:
            await asyncio.sleep(0.05)


async def _run_async(args: argparse.Namespace) -> int:
    from mesos_nb.protocol.messages import Capability, FrameworkInfo
    from mesos_nb.scheduler import MesosError, SchedulerDriver
    from mesos_nb.scheduler.tasks import request

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CLIError("no command given: use 'mesos-nb run [OPTIONS] -- CMD ...'")
    amounts = request(cpus=args.cpus, mem=args.mem, gpus=args.gpus, disk=args.disk)
    if not amounts:
        raise CLIError("a task needs some resources: give --cpus or --mem")
    constraints = _parse_attrs(args.attr)
    url = master_url(args.master)
    await asyncio.to_thread(http, url + "/health", timeout=5)  # fail fast, one sentence

    caps = [Capability(type="MULTI_ROLE")]
    if args.gpus:
        caps.append(Capability(type="GPU_RESOURCES"))
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "nobody"
    sched = _RunScheduler(args, cmd, amounts, constraints)
    fw = FrameworkInfo(user=user, name=f"mesos-nb run {sched.name}", roles=[args.role or "*"],
                       capabilities=caps, failover_timeout=0.0)
    driver = SchedulerDriver(sched, fw, url, start_timeout=10.0)
    try:
        await driver.start()
    except ConnectionError as e:
        raise CLIError(str(e)) from None
    except MesosError as e:
        raise CLIError(f"the master refused the framework ({e})") from None

    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.set)
    follower = asyncio.create_task(_follow_task(sched, url))
    deadline = time.monotonic() + args.timeout if args.timeout else None
    code = 1
    try:
        while not sched.done.is_set():
            waits = [asyncio.ensure_future(sched.done.wait()), asyncio.ensure_future(interrupted.wait())]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            timed_out = deadline is not None and time.monotonic() >= deadline and not sched.done.is_set()
            if interrupted.is_set() or timed_out:
                why = "interrupted" if interrupted.is_set() else f"timed out after {_num(args.timeout)} s"
                if not sched.launched:
                    if timed_out:
                        raise CLIError(
                            f"no offer with {_want(amounts)}"
                            f"{' and ' + ', '.join(f'{k}={v}' for k, v in constraints.items()) if constraints else ''}"
                            f" arrived within {_num(args.timeout)} s ({sched.offers_seen} offers did not fit)"
                        )
                    print(f"mesos-nb run: {why} before the task was launched", file=sys.stderr)
                    return 130
                print(f"mesos-nb run: {why}; killing task {sched.task_id}", file=sys.stderr, flush=True)
                with contextlib.suppress(MesosError, ConnectionError):
                    await driver.kill(sched.task_id, sched.agent_id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sched.done.wait(), 15)
                code = 130 if interrupted.is_set() else 124
                break
        with contextlib.suppress(asyncio.TimeoutError, CLIError):
            await asyncio.wait_for(follower, 10)
        if sched.error and sched.final is None:
            raise CLIError(f"the master ended the framework: {sched.error}")
        st = sched.final
        if st is not None:
            if code not in (124, 130):
                code = exit_code_for(st.state, st.message)
            if st.state != "TASK_FINISHED":
                msg = f": {st.message}" if st.message else ""
                reason = f" ({st.reason})" if st.reason else ""
                print(f"task {sched.task_id} {st.state}{reason}{msg}", file=sys.stderr)
        return code
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await driver.stop()


def cmd_run(args: argparse.Namespace) -> int:
    from mesos_nb import logs

    logs.setup("info" if args.verbose else "error")
    return asyncio.run(_run_async(args))


# ============================================================================ services
async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _listen_error(what: str, host: str, port: int, e: OSError) -> CLIError:
    why = (e.strerror or str(e)).lower()
    return CLIError(f"the {what} cannot listen on {host}:{port} ({why})")


def cmd_master(args: argparse.Namespace) -> int:
    from mesos_nb import logs

    logs.setup(args.log_level)

    async def main() -> None:
        from mesos_nb.master.server import MasterConfig, MasterServer

        cfg = MasterConfig(
            host=args.host, port=args.port, hostname=args.hostname, work_dir=args.work_dir,
            allocation_interval=args.allocation_interval, agent_ping_timeout=args.agent_ping_timeout,
            max_agent_ping_timeouts=args.max_agent_ping_timeouts, agent_secret=args.agent_secret,
        )
        server = MasterServer(cfg)
        try:
            await server.start()
        except OSError as e:
            raise _listen_error("master", args.host, args.port, e) from None
        print(f"master: {server.url}", flush=True)
        print(f"web UI: {server.url}/", flush=True)
        try:
            await _wait_for_signal()
        finally:
            await server.stop()

    asyncio.run(main())
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from mesos_nb import logs
    from mesos_nb.agent.attributes import parse_attributes
    from mesos_nb.protocol.resources import ResourceParseError, Resources

    logs.setup(args.log_level)
    if args.resources is not None:
        try:
            Resources.parse(args.resources)
        except ResourceParseError as e:
            raise CLIError(f"bad --resources: {e}") from None
    try:
        parse_attributes(args.attributes)
    except ValueError as e:
        raise CLIError(f"bad --attributes: {e}") from None

    async def main() -> None:
        from mesos_nb.agent.config import AgentConfig
        from mesos_nb.agent.process import AgentProcess

        cfg = AgentConfig(
            master=args.master, host=args.host, port=args.port, hostname=args.hostname,
            resources=args.resources, attributes=args.attributes, work_dir=args.work_dir,
            isolation=args.isolation, agent_secret=args.agent_secret,
            docker_registry=args.docker_registry, docker_store_dir=args.docker_store_dir,
            image_store_max_bytes=args.image_store_max_bytes,
            enforce_container_disk_quota=args.enforce_container_disk_quota,
            container_disk_watch_interval=args.container_disk_watch_interval,
        )
        try:
            proc = AgentProcess([cfg], master=args.master, secret=args.agent_secret)
        except ValueError as e:  # an --isolation this agent or machine cannot provide
            raise CLIError(str(e)) from None
        try:
            await proc.start()
        except ConnectionError as e:
            raise CLIError(str(e) or f"cannot reach the master at {args.master}") from None
        except ResourceParseError as e:
            raise CLIError(f"bad --resources: {e}") from None
        except OSError as e:
            raise _listen_error("agent", args.host, args.port, e) from None
        for ag in proc.agents:
            print(f"agent: {ag.url} id={ag.agent_id} master={args.master}", flush=True)
        try:
            await _wait_for_signal()
        finally:
            await proc.stop()

    asyncio.run(main())
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from mesos_nb import logs
    from mesos_nb.local import LocalCluster

    logs.setup(args.log_level)
    if args.agents < 0:
        raise CLIError("--agents cannot be negative")
    if args.resources is not None:
        from mesos_nb.protocol.resources import ResourceParseError, Resources

        try:
            Resources.parse(args.resources)
        except ResourceParseError as e:
            raise CLIError(f"bad --resources: {e}") from None

    async def main() -> None:
        cluster = LocalCluster(agents=args.agents, port=args.port, work_dir=args.work_dir,
                               agent_resources=args.resources)
        try:
            await cluster.start()
        except OSError as e:
            if isinstance(e, ConnectionError):
                raise CLIError(str(e)) from None
            raise _listen_error("master", "127.0.0.1", args.port, e) from None
        for line in cluster.describe():
            print(line, flush=True)
        try:
            await _wait_for_signal()
        finally:
            await cluster.stop(kill_tasks=True)

    asyncio.run(main())
    return 0


# ============================================================================ notebook (demo, kernel)
def _notebook_commands(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    d = cmd("demo", "start an embedded cluster and run the quickstart notebook headlessly", cmd_demo)
    d.add_argument("--output", "-o", help="executed notebook (default: ./quickstart.executed.ipynb)")
    d.add_argument("--notebook", help="notebook to run (default: notebooks/quickstart.ipynb)")
    _opt(d, "--agents", type=int, default=2, help="agents of the embedded cluster")
    _opt(d, "--resources", help="resources of each agent (default: the machine divided among them)")
    _opt(d, "--cell-timeout", type=_positive, default=180.0, help="seconds a cell may run")
    kn = cmd("kernel", "install the mesos-nb Jupyter kernelspec (ipykernel + the extension)", cmd_kernel)
    kn.add_argument("action", choices=["install"], help="install")
    kn.add_argument("--user", action="store_true", help="install for this user only")
    kn.add_argument("--prefix", help="install under this prefix (e.g. a virtualenv)")


def _notebook_error() -> type[Exception]:
    from mesos_nb.notebook.errors import MesosNotebookError

    return MesosNotebookError


def cmd_demo(args: argparse.Namespace) -> int:
    from mesos_nb import logs
    from mesos_nb.notebook.demo import run_demo

    logs.setup("error")
    try:
        run_demo(args.output, args.notebook, agents=args.agents, resources=args.resources,
                 timeout=args.cell_timeout)
    except _notebook_error() as e:
        raise CLIError(str(e)) from None
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    from mesos_nb.notebook.kernelspec import install

    try:
        where = install(user=args.user, prefix=args.prefix)
    except (OSError, ImportError) as e:
        raise CLIError(f"cannot install the kernelspec ({e})") from None
    print(f"installed kernelspec mesos-nb in {where}")
    return 0


# ============================================================================ entry point
def main(argv: Sequence[str] | None = None) -> int:
    debug = bool(os.environ.get(ENV_PREFIX + "DEBUG"))
    try:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"mesos-nb: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except Exception as e:
        if debug:
            raise
        text = str(e).strip().splitlines()
        print(f"mesos-nb: {type(e).__name__}: {text[0] if text else 'unexpected error'}"
              f" (set MESOS_NB_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
