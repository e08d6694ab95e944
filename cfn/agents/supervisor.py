"""The supervisor: one process per spawned agent, started by cfn.agents.spawn.

It reads its spec as JSON on stdin (secrets travel there, never in argv),
starts the agent at once, then keeps a heartbeat in Redis, captures output to
the agent's log, enforces the timeout, moves the agent to the next provider
of its chain after a provider error, and on every exit writes a completion
record: to SQLite first, then to the task's results and completion streams.

Run as: python -m cfn.agents.supervisor  (spec on stdin)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from cfn import defaults, routing
from cfn.agents import isolation, runs, runtimes
from cfn.agents import outcome as outcomes
from cfn.agents.profiles import parse as parse_profile
from cfn.backend import Target
from cfn.config import Config
from cfn.coordination import agents as agent_state
from cfn.exit import leave
from cfn.project import Project

log = logging.getLogger("cfn.supervisor")


class Supervisor:
    def __init__(self, spec: dict):
        self.spec = spec
        self.profile = parse_profile(spec["profile"], spec["profile_source"])
        self.stop_requested = False
        # the spawner's project, connecting first to the Redis the spawner reached
        target = Target.from_dict(spec["target"]) if "target" in spec else None
        self.project = Project(Config.from_dict(spec["config"]), target=target)

    # --- the agent ---------------------------------------------------------

    def agent_env(self, provider: str | None) -> dict[str, str]:
        spec, config = self.spec, self.project.config
        base = isolation.inherited(os.environ, config.agent_env) \
            if spec["runtime"] == "process" else {}
        base.update(spec["agent_env"])  # CFN_*, REDIS_* credentials, context
        base["PROVIDER"] = provider or ""  # the seed's name
        table = config.providers
        if provider is None:
            return routing.agent_env_without_credentials(base, table)
        resolved = routing.resolve(table[provider], os.environ)
        env = routing.agent_env(resolved, self.model(provider), base, table)
        env["CLAUDE_CODE_MAX_RETRIES"] = str(self.profile.max_retries)
        if self.profile.max_tokens:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(self.profile.max_tokens)
        return env

    def model(self, provider: str) -> str:
        return routing.model_for(provider, self.profile.provider, self.profile.model,
                                 self.project.config.providers)

    def argv(self, provider: str | None, skills_dir: str) -> list[str]:
        if self.spec["command"]:
            return list(self.spec["command"])
        allowed = [*self.profile.tools, *isolation.skill_rules(skills_dir)]
        return self.profile.argv(
            prompt=self.spec["prompt"], instructions=self.spec["instructions"],
            model=self.model(provider) if provider else "", workspace=self.spec["workspace"],
            task_id=self.spec["task_id"], agent_id=self.spec["agent_id"],
            allowed_tools=",".join(allowed),
        )

    def skills(self, env: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Where the agent finds its skills, and what to mount for that: the agent image has
        them in its home; a sandbox gets them bound read-only into its fresh home; an
        unsandboxed process agent runs them from cfn's package."""
        shipped = isolation.shipped_skills()
        if self.spec["runtime"] != "process":
            return f"{isolation.CONTAINER_HOME}/.claude/skills", {}
        if not self.spec["sandbox"]:
            return str(shipped), {}
        inside = f"{env.setdefault('HOME', isolation.CONTAINER_HOME)}/.claude/skills"
        return inside, {str(shipped / s): f"{inside}/{s}" for s in isolation.AGENT_SKILLS}

    def request(self, provider: str | None, run_id: int) -> runtimes.RunRequest:
        """What the runtime is asked to run for this attempt."""
        spec = self.spec
        env = self.agent_env(provider)
        skills_dir, skill_mounts = self.skills(env)
        return runtimes.RunRequest(
            name=f"cfn-{spec['task_id']}-{spec['agent_id']}-{run_id}".lower(),
            argv=self.argv(provider, skills_dir), env=env, ro_mounts=skill_mounts,
            workspace=Path(spec["workspace"]), log_path=Path(spec["log_path"]),
            memory=spec["memory"], cpus=spec["cpus"], image=spec["image"],
            network=spec["network"], mounts=spec["mounts"], deadline_s=spec["timeout"],
            sandbox=spec["sandbox"], hidden=tuple(spec["hidden"]),
            labels={"cfn.task": spec["task_id"], "cfn.agent": spec["agent_id"],
                    "cfn.run": str(run_id)},
        )

    def attempt(self, provider: str | None, run_id: int) -> outcomes.Outcome:
        run = runtimes.start(self.spec["runtime"], self.request(provider, run_id))
        started = time.monotonic()
        self.heartbeat(run_id, run.handle)
        runs.mark_running(self.project.sqlite, run_id, run.handle)
        try:
            return self.watch(run, started)
        finally:
            run.cleanup()

    def watch(self, run, started: float) -> outcomes.Outcome:
        deadline = started + self.spec["timeout"]
        forced = None
        while True:
            code = run.wait(min(defaults.HEARTBEAT_EVERY_S, max(0.0, deadline - time.monotonic())))
            if code is not None:
                break
            if self.stop_requested or time.monotonic() >= deadline:
                forced = "stopped" if self.stop_requested else "timeout"
                run.kill()
                code = run.wait(0)
                break
            self.heartbeat_refresh()
        result = outcomes.parse(outcomes.read_log_tail(self.spec["log_path"]), code)
        if forced:
            result.status, result.error = forced, (
                "stopped on request" if forced == "stopped"
                else f"timed out after {self.spec['timeout']:g}s")
        elif code is not None and code < 0:
            result.status, result.error = "killed", f"killed by signal {-code}"
        return result

    # --- Redis ---------------------------------------------------------------------

    def heartbeat(self, run_id: int, handle: str) -> None:
        self._beat = {"supervisor_pid": os.getpid(), "run_id": run_id, "handle": handle,
                      "runtime": self.spec["runtime"]}
        self.heartbeat_refresh()

    def heartbeat_refresh(self) -> None:
        agent_state.beat(self.project.redis, self.spec["task_id"], self.spec["agent_id"],
                         self._beat)

    # --- the whole run -------------------------------------------------------

    def run(self) -> int:
        chain = self.spec["chain"] or [None]
        run_id = self.spec["run_id"]
        for index, provider in enumerate(chain):
            result = self.attempt(provider, run_id)
            if result.provider_error and index + 1 < len(chain) and not self.stop_requested:
                agent_state.cool_down(self.project.redis, provider)
                runs.finish(self.project.sqlite, run_id, status="provider-error",
                            exit_code=result.exit_code, confidence=None, handle=None)
                log.warning("cfn supervisor [%s]: provider %s failed (%s); moving to %s",
                            self.spec["agent_id"], provider, result.provider_error,
                            chain[index + 1])
                run_id = runs.retry(self.project.sqlite, run_id, provider=chain[index + 1],
                                    model=self.model(chain[index + 1]))
                continue
            break
        if result.key_refused and provider:
            result.error = self.key_problem(provider, result.error)
        self.finish(run_id, provider, result)
        return 0 if result.status == "success" else 1

    def key_problem(self, provider: str, said: str | None) -> str:
        key_env = self.project.config.providers[provider].key_env or "the CLI's login"
        return (f"provider {provider} refused its key ({said}); check {key_env} "
                f"(`cfn route` shows where each provider's key comes from)")

    def finish(self, run_id: int, provider: str | None, result: outcomes.Outcome) -> None:
        """Record how the run ended: SQLite first, then the report (unless the agent made
        its own) and the completion record together in Redis."""
        from cfn.coordination import results

        spec, project = self.spec, self.project
        own = results.latest_signed(project.redis, spec["task_id"], spec["agent_id"],
                                    spec["agent_env"]["CFN_TOKEN"])
        if own and own.reported_at < spec["spawned_at"]:
            own = None  # an earlier run's
        if own:  # the agent reported itself (signed): its word on confidence stands
            result.confidence = own.confidence
        runs.finish(project.sqlite, run_id, status=result.status, exit_code=result.exit_code,
                    confidence=result.confidence, handle=None,
                    input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                    cost_usd=result.cost_usd)
        record = {**result.to_dict(), "run_id": run_id, "agent_id": spec["agent_id"],
                  "task_id": spec["task_id"], "provider": provider,
                  "log_path": spec["log_path"]}
        status = "success" if result.status == "success" else "failure"
        report = None if own else {
            "status": status, "confidence": result.confidence,
            "result": {"deliverables": result.deliverables, "feedback": result.feedback,
                       "status": result.status}}
        agent_state.finish(project.redis, spec["task_id"], spec["agent_id"], status=status,
                           payload=json.dumps(record), phase=spec["phase"], report=report,
                           ttl=project.key_ttl, max_bytes=project.max_payload)
        self.release()

    def release(self) -> None:
        """Remove the agent's Redis user and heartbeat; safe to call twice."""
        r = self.project.redis
        if self.spec.get("acl_user"):
            agent_state.delete_user(r, self.spec["acl_user"])
        agent_state.unclaim(r, self.spec["task_id"], self.spec["agent_id"])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    spec = json.loads(sys.stdin.read())
    sys.stdin.close()
    supervisor = Supervisor(spec)
    signal.signal(signal.SIGTERM, lambda *_: setattr(supervisor, "stop_requested", True))
    try:
        code = supervisor.run()
    except Exception as exc:  # noqa: BLE001 - whatever broke, the agent must be reported
        log.error("cfn supervisor [%s]: supervisor failed: %s: %s", spec["agent_id"],
                  type(exc).__name__, exc)
        failed = outcomes.Outcome(status="failure", error=f"supervisor failed: {exc}")
        code = 1
        try:
            supervisor.finish(spec["run_id"], None, failed)
        finally:
            supervisor.project.close()
            leave(code)
    supervisor.project.close()
    leave(code)


if __name__ == "__main__":
    main()
