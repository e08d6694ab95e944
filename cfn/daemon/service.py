"""The worker daemon: one per project on a machine, for at most its maximum lifetime.

It schedules workers (a worker due is enqueued by exactly one of the daemons sharing the
queue: cfn.coordination.daemon), runs daemon_max_concurrent consumers (cfn.daemon.consumer)
that take jobs from the queue, takes over the jobs of daemons that died, and beats in
Redis so every machine's `cfn daemon status` sees it. Its lock file in the state directory
makes it the project's only daemon here; its state file says where it runs.

Run as: python -m cfn.daemon ROOT OPTIONS_JSON (what `cfn daemon start` does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cfn import defaults
from cfn.config import ensure_home
from cfn.coordination import daemon as daemon_state
from cfn.daemon import queue, runner, workers
from cfn.errors import NegativeOutcome

if TYPE_CHECKING:
    from cfn.project import Project

log = logging.getLogger("cfn.daemon")
START_DEADLINE_S = 30.0
STOP_GRACE_S = 10.0  # a consumer finishing its job when asked to stop, before it is made to


@dataclass(frozen=True)
class Options:
    workers: tuple[str, ...] = ()  # the workers it schedules (none named: the enabled ones)
    headless: bool = False  # headless workers run Claude Code (off: their local versions)
    sandbox: str | None = None  # every worker's sandbox mode (its jobs' and those it runs)
    runtime: str = "process"  # where headless runs go (process, container)
    schedule: bool = True  # enqueue due workers
    consume: bool = True  # run jobs
    max_lifetime: float | None = None  # None: the project's daemon_max_lifetime

    def to_dict(self) -> dict:
        return {**asdict(self), "workers": list(self.workers)}

    @classmethod
    def from_dict(cls, data: dict) -> Options:
        return cls(**{**data, "workers": tuple(data["workers"])})


# --- where it keeps its files --------------------------------------------------------------

def directory(home: Path) -> Path:
    path = ensure_home(home) / "daemon"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def log_path(home: Path) -> Path:
    return directory(home) / "daemon.log"


def _state_path(home: Path) -> Path:
    return directory(home) / "state.json"


def _exit_path(home: Path) -> Path:
    return directory(home) / "last-exit.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, document: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    temporary.replace(path)


def _hold(home: Path) -> IO | None:
    """The project's daemon lock, held for the daemon's life; None if another holds it."""
    from cfn.agents.supervision import hold_lock

    return hold_lock(directory(home) / "lock")


def running(home: Path) -> dict | None:
    """The state of the daemon serving this project on this machine, or None."""
    deadline = time.monotonic() + START_DEADLINE_S
    while (lock := _hold(home)) is None:
        state = _read(_state_path(home))
        if state or time.monotonic() > deadline:
            return state or {"pid": None}
        time.sleep(0.05)  # it has the lock and is about to say where it runs
    lock.close()  # nobody holds it: no daemon, whatever a stale state file says
    return None


def last_exit(home: Path) -> dict | None:
    """How the last daemon here ended (when, and why)."""
    return _read(_exit_path(home))


def namespace(project: Project) -> str:
    """The queue namespace: daemon_queue, or the project directory's name made an ID."""
    if project.config.daemon_queue:
        return str(project.config.daemon_queue)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", project.root.name).strip("-._")[:64] or "cfn"


class AlreadyRunning(NegativeOutcome):
    def __init__(self, state: dict, home: Path):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.get("started_at", 0)))
        super().__init__(
            f"a daemon already serves this project: pid {state.get('pid')} on "
            f"{state.get('host')} since {started} (log: {log_path(home)}); "
            "stop it first with `cfn daemon stop`")


# --- starting and stopping it ---------------------------------------------------------------

def start(project: Project, options: Options) -> dict:
    """Start the daemon in the background; returns its state once it serves."""
    home = project.home
    if (state := running(home)) is not None:
        raise AlreadyRunning(state, home)
    said = directory(home) / f"start-{os.getpid()}.err"  # until it has the lock and its log
    with open(said, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cfn.daemon", str(project.root),
             json.dumps(options.to_dict())],
            cwd=project.root, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
            start_new_session=True)
    try:
        return _started(home, process, said)
    finally:
        said.unlink(missing_ok=True)


def _started(home: Path, process: subprocess.Popen, said: Path) -> dict:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        state = _read(_state_path(home))
        if state and state.get("pid") == process.pid:
            return state
        if process.poll() is not None:
            if (other := running(home)) is not None:  # another start won the race
                raise AlreadyRunning(other, home)
            raise NegativeOutcome(f"the daemon did not start: {_tail(said)}")
        time.sleep(0.05)
    process.kill()
    raise NegativeOutcome(f"the daemon did not start within {START_DEADLINE_S:g}s: "
                          f"{_tail(said)}")


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(its log is empty)"


def stop(home: Path, timeout: float = STOP_GRACE_S * 3) -> dict | None:
    """Ask the daemon to stop and wait until it has; its state, or None if none ran."""
    state = running(home)
    if state is None or not state.get("pid"):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(home) is not None:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state["pid"], signal.SIGKILL)
            break
        time.sleep(0.1)
    return state


def serve(project: Project, options: Options, background: bool = False) -> None:
    """Be the daemon, in this process, until stopped or out of lifetime."""
    lock = _hold(project.home)
    if lock is None:
        raise AlreadyRunning(running(project.home) or {}, project.home)
    if background:  # from here on everything it says goes to its log
        with open(log_path(project.home), "ab") as output:
            for stream in (1, 2):
                os.dup2(output.fileno(), stream)
    try:
        Daemon(project, options).run()
    finally:
        lock.close()


# --- the daemon itself ----------------------------------------------------------------------

class Daemon:
    def __init__(self, project: Project, options: Options):
        self.project, self.options = project, options
        self.id = f"{socket.gethostname()}-{os.getpid()}"
        self.namespace = namespace(project)
        self.conn = queue.connection(project)
        self.scheduled = [w for w in workers.select(options.workers, project.root)
                          if w.interval > 0] if options.schedule else []
        self.consumers: dict[int, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.started_at = time.time()
        lifetime = options.max_lifetime or float(project.config.daemon_max_lifetime)
        self.ends_at = self.started_at + lifetime

    def state(self) -> dict:
        return {"id": self.id, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": self.started_at, "ends_at": self.ends_at,
                "namespace": self.namespace, "root": str(self.project.root),
                "concurrency": self.concurrency, "options": self.options.to_dict(),
                "log": str(log_path(self.project.home))}

    @property
    def concurrency(self) -> int:
        return int(self.project.config.daemon_max_concurrent) if self.options.consume else 0

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        _write(_state_path(self.project.home), self.state())
        log.info("cfn daemon %s: serving queue %s with %d consumer(s), scheduling %s; "
                 "stops by %s", self.id, self.namespace, self.concurrency,
                 ", ".join(w.name for w in self.scheduled) or "nothing",
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(self.ends_at)))
        reason = "stopped on request"
        try:
            while not self.stopping.is_set():
                if time.time() >= self.ends_at:
                    reason = "its maximum lifetime (daemon_max_lifetime) was reached"
                    break
                self.tick()
                self.stopping.wait(defaults.DAEMON_TICK_S)
        finally:
            self.shutdown(reason)

    def tick(self) -> None:
        """One round of upkeep; a Redis outage is ridden out, not fatal."""
        try:
            daemon_state.beat(self.project.redis, self.namespace, self.id, self.state(),
                              defaults.DAEMON_ALIVE_TTL_S)
            if self.options.consume:
                queue.reclaim(self.conn, self.namespace)
                self.keep_consumers()
            self.enqueue_due()
        except Exception as exc:  # noqa: BLE001 - tried again on the next tick
            log.warning("cfn daemon: %s: %s", type(exc).__name__, exc)

    def enqueue_due(self) -> None:
        for worker in self.scheduled:
            if daemon_state.claim_due(self.project.redis, self.namespace, worker.name,
                                      worker.interval):
                job = queue.enqueue(self.conn, self.namespace, worker, origin="schedule",
                                    headless=self.options.headless,
                                    sandbox=self.options.sandbox,
                                    backoff=self.project.config.daemon_retry_backoff)
                log.info("cfn daemon: %s is due: job %s", worker.name, job.id)

    def keep_consumers(self) -> None:
        for slot in range(self.concurrency):
            process = self.consumers.get(slot)
            if process is not None and process.poll() is None:
                continue
            if process is not None:
                log.warning("cfn daemon: consumer %d ended (%s); starting another", slot,
                            process.returncode)
            self.consumers[slot] = self._consumer(slot)

    def _consumer(self, slot: int) -> subprocess.Popen:
        env = {**os.environ, runner.ROOT_ENV: str(self.project.root),
               runner.QUEUE_ENV: self.namespace, runner.RUNTIME_ENV: self.options.runtime,
               runner.SANDBOX_ENV: self.options.sandbox or "", runner.DAEMON_ENV: self.id}
        name = f"{self.id}-{slot}-{int(time.time() * 1000) % 10**8}"  # rq names are unique
        argv = [sys.executable, "-m", "cfn.daemon.consumer", name]
        if setpriv := shutil.which("setpriv"):  # a daemon killed outright takes them along
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)

    def shutdown(self, reason: str) -> None:
        """Consumers finish their jobs (for STOP_GRACE_S; then they are ended, and their jobs
        go to another daemon), this daemon's agents are stopped, and it leaves a note."""
        log.info("cfn daemon %s: stopping: %s", self.id, reason)
        live = [p for p in self.consumers.values() if p.poll() is None]
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):  # warm, cold, dead
            for process in live:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            deadline = time.monotonic() + STOP_GRACE_S
            while (live := [p for p in live if p.poll() is None]) and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            if not live:
                break
        self._stop_agents()
        with contextlib.suppress(Exception):
            daemon_state.gone(self.project.redis, self.namespace, self.id)
        _write(_exit_path(self.project.home), {"pid": os.getpid(), "at": time.time(),
                                               "reason": reason})
        _state_path(self.project.home).unlink(missing_ok=True)

    def _stop_agents(self) -> None:
        """Headless runs this machine's daemon started, still running: stopped, so no
        provider spend outlives the daemon."""
        from cfn.agents import lifecycle, runs

        with contextlib.suppress(Exception):
            for row in runs.live(self.project.sqlite):
                if row["task_id"].startswith("daemon-"):
                    lifecycle.stop(self.project, row["task_id"], row["agent_id"])


def main() -> None:
    from cfn.exit import leave
    from cfn.project import Project

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    from cfn.errors import CfnError

    root, options = sys.argv[1], Options.from_dict(json.loads(sys.argv[2]))
    try:
        with Project.open(root) as project:
            serve(project, options, background=True)
    except CfnError as exc:
        log.error("cfn: error: %s", exc)
        leave(exc.exit_code)
    leave(0)
