"""`cfn.Project`: the front door to one project's configuration, Redis and database.

    with Project.open() as project:
        project.send_signal("T", "start-loop2", '{"go": true}')

It resolves the configuration once, connects to Redis on first use (the primary, else
the fallback) and remembers the URL it reached, opens and migrates the database on
first use, and carries the policy (key TTL, payload limit) so no call repeats it.
Every Redis failure inside a call leaves as BackendUnavailable (exit 4).

Nothing heavy is imported until it is needed: `cfn config` never loads redis-py,
`cfn signal send` never loads sqlite-utils.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfn.config import Config, resolve
from cfn.errors import CfnError

if TYPE_CHECKING:
    import sqlite3

    import redis
    from sqlite_utils import Database

    from cfn.agents.lifecycle import Waited
    from cfn.agents.spawn import Spawned, SpawnRequest
    from cfn.backend import Target
    from cfn.coordination.completion import Completion
    from cfn.coordination.decisions import Decision
    from cfn.coordination.locks import Lock
    from cfn.coordination.results import Collection
    from cfn.hiredis_client import Client
    from cfn.loop.engine import LoopReport
    from cfn.loop.spec import LoopSpec


def _backend_errors(method: Callable) -> Callable:
    """Redis errors raised inside `method` become BackendUnavailable naming the URL."""

    @functools.wraps(method)
    def call(self: Project, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except CfnError:
            raise
        except Exception as exc:
            from cfn.backend import is_redis_error, unavailable

            if not is_redis_error(exc):
                raise
            raise unavailable(exc, self._url or "(not connected)") from None

    return call


class Project:
    """One cfn project. Open it with `Project.open()`; close it (or use `with`) when done."""

    def __init__(self, config: Config, *, target: Target | None = None,
                 client: redis.Redis | Client | None = None, url: str | None = None):
        """`client`, connected to `url`, is used instead of connecting to the target (the
        hot commands pass cfn.hiredis_client's, see cfn.cli.fast)."""
        self.config = config
        self._target = target
        self._redis = client
        self._url = url
        self._db: Database | None = None
        self._sqlite: sqlite3.Connection | None = None

    @classmethod
    def open(cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
             **overrides: object) -> Project:
        """The project at (or above) `path`, default the current directory.

        `overrides` are settings by name (as `cfn config` lists them) and win over the
        environment (`env`, default os.environ) and cfn.toml.
        """
        return cls(resolve(flags=overrides, env=env, cwd=Path(path) if path else None))

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in (self._redis, self._db, self._sqlite):
            if handle is not None:
                handle.close()
        self._redis = self._db = self._sqlite = None

    # --- where things are -----------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def home(self) -> Path:
        """The state directory (.cfn/): database, embedded Redis, agent logs."""
        return self.config.home

    @property
    def key_ttl(self) -> int:
        return int(self.config.key_ttl)

    @property
    def max_payload(self) -> int:
        return int(self.config.max_payload)

    # --- connections --------------------------------------------------------------------

    @property
    def target(self) -> Target:
        """Where Redis is: the configured primary (the embedded server when none is
        configured, started on demand) and the fallback."""
        if self._target is None:
            from cfn.backend import Target

            self._target = Target.of(self.config)
        return self._target

    @property
    def redis(self) -> redis.Redis:
        """A client on the first Redis of the target that answered (on a node of a Redis
        Cluster, redis-py's cluster client with the same API: cfn.cluster); connects once."""
        if self._redis is None:
            from cfn.backend import connect

            self._redis, self._url = connect(self.target)
        return self._redis

    @_backend_errors
    def connect(self) -> None:
        """Reach Redis now rather than on first use (e.g. before a wait's clock starts)."""
        _ = self.redis

    @property
    def redis_url(self) -> str:
        """The URL this project actually reached (connecting first if need be)."""
        _ = self.redis
        assert self._url is not None
        return self._url

    @property
    def db(self) -> Database:
        """The project database (sqlite-utils), migrated forward; opened once."""
        if self._db is None:
            from cfn.db import open_db

            self._db = open_db(self.home)
        return self._db

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The same database, migrated, as a plain sqlite3 connection: for work that only
        records (supervisors, collecting, deciding), without sqlite-utils' import."""
        if self._sqlite is None:
            from cfn.db import open_plain

            self._sqlite = open_plain(self.home)
        return self._sqlite

    # --- coordination ---------------------------------------------------------------------

    @_backend_errors
    def store_context(self, task_id: str, key: str, value: str, *,
                      ttl: int | None = None) -> None:
        from cfn import validate
        from cfn.coordination import context

        validate.payload(value, self.max_payload, "value")  # before connecting starts a server
        context.store(self.redis, task_id, key, value, ttl=ttl, max_bytes=self.max_payload)

    @_backend_errors
    def get_context(self, task_id: str, key: str) -> str:
        from cfn.coordination import context

        return context.get(self.redis, task_id, key)

    @_backend_errors
    def list_context(self, task_id: str) -> list[str]:
        from cfn.coordination import context

        return context.list_keys(self.redis, task_id)

    @_backend_errors
    def delete_context(self, task_id: str, key: str) -> None:
        from cfn.coordination import context

        context.delete(self.redis, task_id, key)

    @_backend_errors
    def send_signal(self, task_id: str, channel: str, payload: str = "") -> int:
        """Queue a signal; returns how many now wait on the channel."""
        from cfn import validate
        from cfn.coordination import signals

        validate.payload(payload, self.max_payload)  # before connecting starts a server
        return signals.send(self.redis, task_id, channel, payload, ttl=self.key_ttl,
                            max_bytes=self.max_payload)

    @_backend_errors
    def wait_signal(self, task_id: str, channel: str, *, timeout: float) -> str:
        """Take the oldest signal, waiting up to `timeout` s (TimedOut after that)."""
        from cfn.coordination import signals

        return signals.wait(self.redis, task_id, channel, timeout=timeout, ttl=self.key_ttl)

    @_backend_errors
    def report(self, task_id: str, agent_id: str, *, status: str = "success",
               confidence: float | None = None, result: object | None = None) -> str:
        """Report an agent's result; returns the stream entry ID. Run as that agent (cfn sets
        its identity and token for the agents it spawns), the report is signed."""
        from cfn.coordination import results

        own = agent_id == self.config.agent_id and self.config.agent_token
        return results.report(self.redis, task_id, agent_id, status=status,
                              confidence=confidence, result=result, ttl=self.key_ttl,
                              max_bytes=self.max_payload,
                              signing_key=str(self.config.agent_token) if own else None)

    @_backend_errors
    def collect_results(self, task_id: str, *, expected: int, threshold: float,
                        timeout: float, on_report: Callable | None = None) -> Collection:
        """Wait for `expected` reports (or the timeout), judge the quorum, and record what
        arrived in the database. Never consumes the results. `on_report(report, agents so
        far)` hears of each report as it arrives."""
        from cfn import history
        from cfn.coordination import results

        collected = results.collect(self.redis, task_id, expected=expected,
                                    threshold=threshold, timeout=timeout, on_report=on_report)
        history.record_results(self.sqlite, collected)
        return collected

    @_backend_errors
    def signal_completion(self, task_id: str, agent_id: str, *, status: str = "success",
                          payload: str | None = None, phase: str | None = None) -> str:
        from cfn.coordination import completion

        return completion.signal_completion(self.redis, task_id, agent_id, status=status,
                                            payload=payload, phase=phase, ttl=self.key_ttl,
                                            max_bytes=self.max_payload)

    @_backend_errors
    def wait_completion(self, task_id: str, *, expected: int, timeout: float,
                        phase: str | None = None,
                        on_completion: Callable | None = None) -> Completion:
        """Wait until `expected` agents completed (or the timeout); `on_completion(agent,
        record, agents so far)` hears of each completion as it arrives."""
        from cfn.coordination import completion

        return completion.wait_for_completion(self.redis, task_id, expected=expected,
                                              timeout=timeout, phase=phase,
                                              on_completion=on_completion)

    @_backend_errors
    def acquire_lock(self, task_id: str, name: str, *, ttl: float, wait: float = 0.0) -> Lock:
        from cfn.coordination import locks

        return locks.acquire(self.redis, task_id, name, ttl=ttl, wait=wait)

    @_backend_errors
    def release_lock(self, task_id: str, name: str, token: str) -> None:
        from cfn.coordination import locks

        locks.release(self.redis, task_id, name, token)

    @_backend_errors
    def extend_lock(self, task_id: str, name: str, token: str, *, ttl: float) -> None:
        from cfn.coordination import locks

        locks.extend(self.redis, task_id, name, token, ttl=ttl)

    # --- decisions and history ----------------------------------------------------------------

    @_backend_errors
    def decide(self, decision: Decision) -> Decision:
        """Record a product-owner decision durably, then publish it as the task's latest."""
        from cfn import history

        return history.decide(self.redis, self.sqlite, decision, ttl=self.key_ttl)

    @_backend_errors
    def latest_decision(self, task_id: str) -> Decision | None:
        """The task's latest decision in Redis, once any that SQLite holds unpublished (its
        process was killed in between) is published."""
        from cfn.coordination import decisions

        self._publish_decisions(task_id)
        return decisions.latest(self.redis, task_id)

    def _publish_decisions(self, task_id: str) -> None:
        from cfn import history
        from cfn.db import db_path

        if db_path(self.home).exists():  # no database, nothing recorded: none is created
            history.publish_pending(self.redis, self.sqlite, task_id, ttl=self.key_ttl)

    def history(self, task_id: str) -> dict | None:
        """Everything the database recorded about a task (works with Redis gone)."""
        from cfn import history

        return history.task_history(self.db, task_id)

    # --- agents and the loop ----------------------------------------------------------------

    @_backend_errors
    def spawn(self, request: SpawnRequest) -> Spawned:
        """Start an agent under a supervisor; returns once the supervisor has its spec."""
        from cfn.agents.spawn import spawn
        from cfn.errors import NegativeOutcome

        if self.config.agent_id:
            raise NegativeOutcome(
                f"agent {self.config.agent_id} cannot spawn agents: only the orchestrator or "
                "the operator can (agents are not trusted with that); ask for more help in "
                "your report's feedback, or signal the orchestrator")

        return spawn(self, request)

    @_backend_errors
    def wait_agents(self, task_id: str, run_ids: dict[str, int], *, timeout: float,
                    phase: str | None = None, on_record: Callable | None = None) -> Waited:
        """Wait until each agent (agent ID -> run ID) finished that run, or the timeout."""
        from cfn.agents import lifecycle

        return lifecycle.wait(self, task_id, run_ids, timeout=timeout, phase=phase,
                              on_record=on_record)

    @_backend_errors
    def run_loop(self, spec: LoopSpec, *, continuing: bool = False) -> LoopReport:
        """Run (or resume) a CFN Loop to its end; progress goes to the `cfn.loop` logger.
        A task whose loop ended runs more iterations only when `continuing`."""
        from cfn.loop.engine import Loop

        return Loop(self, spec).run(continuing=continuing)

    @_backend_errors
    def loop_orchestrated(self, task_id: str) -> bool:
        """Whether a live process drives the task's loop (its heartbeat in Redis)."""
        from cfn.loop.engine import orchestrator_alive

        return orchestrator_alive(self, task_id)

    @_backend_errors
    def loop_status(self, task_id: str) -> dict | None:
        """Where the task's loop stands (status, last decided iteration, running agents, and
        whether a live process drives it); None if it never ran."""
        from cfn.loop import store

        found = store.status(self.db, task_id)
        if found is not None:
            found["orchestrator_alive"] = self.loop_orchestrated(task_id)
        return found

    @_backend_errors
    def ended_loop(self, task_id: str) -> LoopReport | None:
        """The final report of the task's loop if it ended (PROCEED, ABORT, the iteration
        limit or the budget), None if it runs or was never run; publishes what its
        orchestrator recorded but did not publish."""
        from cfn.loop.engine import ended_report

        self._publish_decisions(task_id)
        return ended_report(self, task_id)
