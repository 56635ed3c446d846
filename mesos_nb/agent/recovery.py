"""Agent recovery: after a restart, read the checkpoint (``checkpoint.read_state``) and
re-attach to what the previous agent process left running, before registering. Executors of
checkpointing frameworks are recovered (live ones watched again, custom executors given the
re-registration window; ended ones reported from their exit-status file); everything of a
non-checkpointing framework, and stale runs, are killed -- only processes provably ours
(``pid_identity``). Unacknowledged updates are re-queued.

A mixin of :class:`~mesos_nb.agent.agent.Agent`: its methods work on the Agent's state.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mesos_nb.protocol.channel import StatusUpdate
from mesos_nb.protocol.messages import TERMINAL_STATES
from mesos_nb.protocol.resources import Resources

from . import checkpoint as ckpt
from . import pid_identity
from .container_spec import parse_container
from .containerizer import UNKNOWN_STATUS, read_status_file
from .isolation import Limits
from .pid_identity import kill_if_ours
from .records import ExecutorEntry, FrameworkEntry, TaskEntry

logger = logging.getLogger("mesos_nb.agent")


class Recovery:
    def previous_port(self) -> int:
        """The port the previous agent process listened on (recovered executors call it back)."""
        if not self.config.recover:
            return 0
        state = ckpt.read_state(self.config.work_dir)
        port = state.slave_info.get("port") if state is not None else None
        return port if isinstance(port, int) else 0

    def recover(self) -> None:
        """Re-attach to what the previous agent process left running (before registering)."""
        if not self.config.recover:
            return
        state = ckpt.read_state(self.config.work_dir)
        if state is None:
            return
        self.recovering = True
        try:
            self._recover(state)
        finally:
            self.recovering = False

    def _recover(self, state: ckpt.RecoveredState) -> None:
        self.agent_id = state.agent_id
        logger.info("recovering agent=%s frameworks=%d%s", state.agent_id, len(state.frameworks),
                    " (host rebooted)" if state.rebooted else "")
        for fw_id, rf in state.frameworks.items():
            if not rf.info.checkpoint:
                # Nothing of a non-checkpointing framework may outlive the agent.
                for rex in rf.executors.values():
                    for run in rex.runs:
                        self._kill_orphan(run)
                for rec in rf.pids:
                    kill_if_ours(rec["pid"], rec.get("start_time"), rec.get("container_id"))
                ckpt.remove_tree(rf.path)
                continue
            fw = self._framework(rf.info)
            self._checkpointed_fw.add(fw_id)
            for ex_id, rex in rf.executors.items():
                runs = sorted(rex.runs, key=lambda r: r.info.get("launched", 0))
                for old in runs[:-1]:
                    self._kill_orphan(old)
                    ckpt.remove_tree(old.path)
                if not runs:
                    ckpt.remove_tree(rex.path)
                    continue
                try:
                    self._recover_executor(fw, rex, runs[-1], state.rebooted)
                except Exception:
                    self.counters["recovery_errors"] += 1
                    logger.exception("cannot recover executor agent=%s framework=%s executor=%s",
                                     self.agent_id, fw_id, ex_id)
            self._maybe_complete_framework(fw)

    def _recover_image(self, ex: ExecutorEntry, run: ckpt.RecoveredRun, container: Any) -> None:
        """Hold the image of a live container again (its rootfs is removed when it ends);
        remove the rootfs of one that ended while the agent was down."""
        container_dir = os.path.join(self.config.work_dir, "provisioner", run.container_id)
        if not os.path.isdir(container_dir):
            return
        first = next(iter(ex.tasks.values()), None) or (ex.completed_tasks[-1] if ex.completed_tasks else None)
        info = ex.info.container if not ex.command_executor or first is None else first.info.container
        try:
            name = parse_container(info)[0]
        except ValueError:
            name = None
        recovered = self.images.recovered(name or "", container_dir) if name else None
        if container is not None and recovered is not None:
            container.prepared = recovered
        elif recovered is not None:
            self.images.release(recovered)

    def _kill_orphan(self, run: ckpt.RecoveredRun) -> None:
        pid = run.info.get("pid")
        if isinstance(pid, int):
            kill_if_ours(pid, run.info.get("start_time"), run.container_id)
        self.containerizer.remove_stale(run.container_id)  # (its cgroups: what left its process group too)

    def _recover_executor(self, fw: FrameworkEntry, rex: ckpt.RecoveredExecutor, run: ckpt.RecoveredRun,
                          rebooted: bool) -> None:
        fw_id = fw.framework_id
        command = run.info.get("kind") == "command"
        ex = ExecutorEntry(rex.info, fw_id, run.container_id, run.info.get("directory", ""), command_executor=command)
        ex.checkpoint = True
        ex.recovered = True
        ex.run_meta = run.path
        ex.gpus = [g for g in run.info.get("gpus", []) if g in self._free_gpus]
        self._free_gpus = [g for g in self._free_gpus if g not in ex.gpus]
        ex_id = ex.executor_id
        fw.executors[ex_id] = ex
        self._attach(fw_id, ex_id, ex.directory)
        if not command:
            self._add_used(ex.resources)
        live = 0
        for tid, rt in run.tasks.items():
            try:
                res = Resources.from_proto(rt.info.resources)
            except ValueError:
                res = Resources()
            entry = TaskEntry(rt.info, fw_id, ex_id, res)
            entry.state = rt.state
            entry.statuses = [(u.state, u.timestamp or 0.0) for u in rt.updates]
            self.store.load(fw_id, tid, rt.records) if isinstance(self.store, ckpt.DiskUpdateStore) else None
            unacked = rt.unacked()
            if entry.state in TERMINAL_STATES and not unacked:
                ex.completed_tasks.append(entry)
                continue
            self.tasks[(fw_id, tid)] = entry
            if entry.state in TERMINAL_STATES:
                ex.completed_tasks.append(entry)
            else:
                ex.tasks[tid] = entry
                self._add_used(res)
                live += 1
            if any(u.state != "TASK_STAGING" for u in rt.updates) or not command:
                ex.launched.add(tid)
            for st in unacked:
                self.status_updates.update(StatusUpdate(agent_id=self.agent_id or "", framework_id=fw_id, status=st),
                                           checkpoint=False)
        pid = run.info.get("pid")
        alive = (not rebooted and not run.sentinel and isinstance(pid, int)
                 and pid_identity.alive(pid, run.info.get("start_time")))
        limits = Limits(cpus=run.info.get("cpus", 0.0), mem_bytes=run.info.get("mem_bytes", 0),
                        disk_bytes=run.info.get("disk_bytes", 0))
        container = None
        if alive:
            assert isinstance(pid, int)
            container = self.containerizer.recover(run.container_id, pid, ex.directory, limits=limits,
                                                   status_path=run.status_path if command else None)
        if container is None:
            self.containerizer.remove_stale(run.container_id)
        self._recover_image(ex, run, container)
        self.counters["recovered_executors"] += 1
        logger.info("recovered executor agent=%s framework=%s executor=%s live_tasks=%d running=%s",
                    self.agent_id, fw_id, ex_id, live, container is not None)
        if command:
            task = next(iter(ex.tasks.values()), None)
            if container is not None and task is not None:
                ex.container = container
                ex.state = "RUNNING"
                if task.info.health_check is not None and task.state == "TASK_RUNNING":
                    self._start_health(task, ex)
                self._spawn(self._watch_command(fw, ex, task))
            elif task is not None:
                status = read_status_file(run.status_path)
                self._command_exited(fw, ex, task, status if status is not None else UNKNOWN_STATUS)
            else:
                if container is not None:
                    self._spawn(self.containerizer.destroy(container, 0))
                self._executor_done(fw, ex, None)
            return
        if container is not None:
            ex.container = container
            ex.state = "REGISTERING"
            self._arm_registration(fw, ex, self.config.executor_reregistration_timeout,
                                   "REASON_EXECUTOR_REREGISTRATION_TIMEOUT")
            self._spawn(self._watch_executor(fw, ex))
        else:
            self._executor_exited(fw, ex, UNKNOWN_STATUS)
