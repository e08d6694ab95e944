"""The project's supervisor: one long-lived asyncio process that runs all of a project's agents.

Spawners hand it agents over a unix socket in the state directory (cfn.agents.supervision
starts it on demand, like the embedded Redis). For each agent it starts the runtime at once,
keeps its heartbeat in Redis, lets its output go straight to its log, enforces its timeout,
moves it to the next provider of its chain after a provider error, and on every exit writes
its completion record: to SQLite first, then to the task's results and completion streams.

One process for many agents is what lets a loop's cost stay flat as agents are added: an
agent costs the supervisor a pidfd and a few objects, not an interpreter (20 MB and 200 ms
of CPU each, when every agent had its own supervisor).

Threads: the event loop starts processes and keeps time; every Redis and SQLite write goes
through one `records` thread (SQLite wants one writer; the loop never blocks on I/O);
container and kubernetes SDK calls block, so they run in the `runtimes` pool.

Guarantees kept from one supervisor per agent:
- agents outlive the spawning command (the supervisor is its own session);
- a supervisor that dies is noticed: its heartbeats stop, waiters record its agents `lost`
  within seconds, and the next supervisor records any still marked running;
- no orphans: process agents die with their supervisor (cfn.agents.runtimes.process).

Run as: python -m cfn.agents.supervisor --home STATE_DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from cfn import defaults, outage, routing
from cfn.agents import isolation, lifecycle, relay, runs, runtimes, supervision
from cfn.agents import outcome as outcomes
from cfn.agents.profiles import parse as parse_profile
from cfn.backend import Target
from cfn.config import Config
from cfn.coordination import agents as agent_state
from cfn.exit import leave
from cfn.project import Project

log = logging.getLogger("cfn.supervisor")
RECORD_TRIES = 60  # each try rides out the reconnect window: an hour at the default


class AgentRun:
    """One agent, from its spec to its completion record."""

    def __init__(self, spec: dict, project: Project):
        self.spec = spec
        self.project = project
        self.profile = parse_profile(spec["profile"], spec["profile_source"])
        self.environ: dict[str, str] = spec.get("environ", {})
        self.stopping = asyncio.Event()
        self.beat: dict | None = None  # the heartbeat's content while the agent runs

    @property
    def key(self) -> tuple[str, str]:
        return self.spec["task_id"], self.spec["agent_id"]

    # --- what the runtime is asked to run ---------------------------------------------

    def agent_env(self, provider: str | None) -> dict[str, str]:
        spec, config = self.spec, self.project.config
        base = isolation.inherited(self.environ, config.agent_env) \
            if spec["runtime"] == "process" else {}
        base.update(spec["agent_env"])  # CFN_*, REDIS_* credentials, context
        base["PROVIDER"] = provider or ""  # the seed's name
        table = config.providers
        if provider is None:
            return routing.agent_env_without_credentials(base, table)
        resolved = routing.resolve(table[provider], self.environ)
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
        servers = (self.spec.get("mcp_servers") or {}).get("mcpServers", {})
        allowed = [*self.profile.tools, *isolation.skill_rules(skills_dir),
                   *(f"mcp__{name}" for name in servers)]
        return self.profile.argv(
            mcp_config=json.dumps({"mcpServers": servers}) if servers else "",
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

    @property
    def fenced(self) -> bool:
        """Sandbox mode strict or permissive: no network but the provider relay's."""
        return self.spec.get("sandbox_mode") in ("strict", "permissive")

    def relay_plan(self, provider: str | None) -> relay.Plan | None:
        """The provider relay a fenced agent needs (none without a provider)."""
        if not self.fenced or provider is None:
            return None
        return relay.plan(self.agent_env(provider).get("ANTHROPIC_BASE_URL"))

    def fence(self, request: runtimes.RunRequest, provider: str | None,
              host: relay.HostRelay | None) -> runtimes.RunRequest:
        """A strict or permissive agent's request: the workspace read-only (strict), no
        network, and its argv started behind the relay to its provider."""
        plan = host.plan if host else self.relay_plan(provider)
        changes = {"read_only_workspace": self.spec["sandbox_mode"] == "strict",
                   "no_network": True, "env": relay.fenced_env(request.env, plan)}
        if plan is None:
            return replace(request, **changes)
        container = self.spec["runtime"] != "process"
        python = ["python3", relay.SCRIPT_INSIDE] if container \
            else [sys.executable, "-m", "cfn.agents.relay"]
        mounts = host.mounts(script=container) if host else relay.preview_mounts(plan)
        return replace(request, **changes, argv=relay.wrap(request.argv, plan, python),
                       ro_mounts={**request.ro_mounts, **mounts})

    def request(self, provider: str | None, run_id: int,
                host: relay.HostRelay | None = None) -> runtimes.RunRequest:
        """What the runtime is asked to run for this attempt (`host`: its provider relay,
        for a strict or permissive agent)."""
        spec = self.spec
        env = self.agent_env(provider)
        skills_dir, skill_mounts = self.skills(env)
        request = runtimes.RunRequest(
            name=f"cfn-{spec['task_id']}-{spec['agent_id']}-{run_id}".lower(),
            argv=self.argv(provider, skills_dir), env=env,
            ro_mounts={**spec.get("ro_mounts", {}), **skill_mounts},
            workspace=Path(spec["workspace"]), log_path=Path(spec["log_path"]),
            memory=spec["memory"], cpus=spec["cpus"], image=spec["image"],
            network=spec["network"], deadline_s=spec["timeout"],
            sandbox=spec["sandbox"], hidden=tuple(spec["hidden"]),
            labels={"cfn.task": spec["task_id"], "cfn.agent": spec["agent_id"],
                    "cfn.run": str(run_id)},
            host_env=self.environ,
        )
        return self.fence(request, provider, host) if self.fenced else request

    # --- running it ----------------------------------------------------------------------

    async def run(self, supervisor: Supervisor) -> None:
        """Every attempt along the provider chain, then the completion record; whatever
        breaks, the agent is reported."""
        if self.spec.get("sandbox_mode") == "disabled" and self.spec["runtime"] == "process":
            log.warning("cfn supervisor [%s]: runs unsandboxed (sandbox mode disabled): it "
                        "sees your files, your home directory and your other processes",
                        self.spec["agent_id"])
        try:
            provider, run_id, result = await self.attempts(supervisor)
        except Exception as exc:  # noqa: BLE001 - the agent must be reported
            log.error("cfn supervisor [%s]: %s: %s", self.spec["agent_id"],
                      type(exc).__name__, exc)
            provider, run_id = None, self.spec["run_id"]
            result = outcomes.Outcome(status="failure", error=f"supervisor failed: {exc}")
        self.beat = None
        supervisor.release(self)  # its ID is free once its claim goes (in `finish`)
        await supervisor.record_patiently(self.finish, run_id, provider, result)

    async def attempts(self, supervisor: Supervisor
                       ) -> tuple[str | None, int, outcomes.Outcome]:
        chain = self.spec["chain"] or [None]
        run_id = self.spec["run_id"]
        for index, provider in enumerate(chain):
            result = await self.attempt(supervisor, provider, run_id)
            if result.provider_error and index + 1 < len(chain) and not self.stopping.is_set():
                log.warning("cfn supervisor [%s]: provider %s failed (%s); moving to %s",
                            self.spec["agent_id"], provider, result.provider_error,
                            chain[index + 1])
                run_id = await supervisor.record(self.next_provider, run_id, provider,
                                                 chain[index + 1], result)
                continue
            break
        if result.key_refused and provider:
            result.error = self.key_problem(provider, result.error)
        return provider, run_id, result

    async def attempt(self, supervisor: Supervisor, provider: str | None,
                      run_id: int) -> outcomes.Outcome:
        plan = self.relay_plan(provider)
        host = await relay.HostRelay.open(plan) if plan else None
        try:
            request = self.request(provider, run_id, host)
            run = await runtimes.start(self.spec["runtime"], request, supervisor.runtime_pool)
            try:
                self.beat = {"supervisor_pid": os.getpid(), "run_id": run_id,
                             "handle": run.handle, "runtime": self.spec["runtime"]}
                await supervisor.record(self.started, run_id, run.handle)
                return await self.watch(run)
            finally:
                await run.cleanup()
        finally:
            if host:
                await host.close()

    async def watch(self, run: runtimes.Run) -> outcomes.Outcome:
        deadline = time.monotonic() + self.spec["timeout"]
        forced = None
        if (code := await self.exit_or_stop(run, deadline)) is None:
            forced = "stopped" if self.stopping.is_set() else "timeout"
            await run.kill()
            code = await run.wait(0)
        output = outcomes.read_log_tail(self.spec["log_path"])
        result = outcomes.parse(output, code, claude_agent=self.profile.kind == "claude"
                                and not self.spec["command"],
                                report_required=self.spec.get("report_required", True))
        result.sandbox = self.spec.get("sandbox_mode")
        if self.fenced:
            self.log_violations(output)
        if forced:
            result.status, result.error = forced, (
                "stopped on request" if forced == "stopped"
                else f"timed out after {self.spec['timeout']:g}s")
        elif code is not None and code < 0:
            result.status, result.error = "killed", f"killed by signal {-code}"
        return result

    def log_violations(self, output: str) -> None:
        """Each refusal of a fenced agent's sandbox, as a warning; what the agent wrote
        there is its own, so any secret it holds is blanked first."""
        secrets = {v for env in (self.spec["agent_env"], self.environ)
                   for k, v in env.items() if runtimes.is_secret(k) and len(v) >= 8}
        for seen in outcomes.sandbox_violations(output):
            said = f"{seen['tool']}({seen['input']}): {seen['error']}"
            for secret in secrets:
                said = said.replace(secret, "<redacted>")
            log.warning("cfn supervisor [%s]: the %s sandbox refused %s",
                        self.spec["agent_id"], self.spec["sandbox_mode"], said)

    async def exit_or_stop(self, run: runtimes.Run, deadline: float) -> int | None:
        """The agent's exit code; None once it must be ended (timeout or stop request)."""
        while not self.stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            exited = asyncio.ensure_future(run.wait(remaining))
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not exited.done():
                exited.cancel()  # and let it unwind (it stops watching the agent's pidfd)
                await asyncio.gather(exited, return_exceptions=True)
                return None
            if (code := exited.result()) is not None:
                return code
        return None

    # --- records (run in the supervisor's records thread) -------------------------------

    def started(self, run_id: int, handle: str) -> None:
        agent_state.beat(self.project.redis, *self.key, self.beat)
        runs.mark_running(self.project.sqlite, run_id, handle, os.getpid())

    def next_provider(self, run_id: int, failed: str, provider: str,
                      result: outcomes.Outcome) -> int:
        """Record the failed attempt and start a run of the same agent on `provider`."""
        agent_state.cool_down(self.project.redis, failed)
        runs.finish(self.project.sqlite, run_id, status="provider-error",
                    exit_code=result.exit_code, confidence=None, handle=None)
        return runs.retry(self.project.sqlite, run_id, provider=provider,
                          model=self.model(provider))

    def key_problem(self, provider: str, said: str | None) -> str:
        key_env = self.project.config.providers[provider].key_env or "the CLI's login"
        return (f"provider {provider} refused its key ({said}); check {key_env} "
                f"(`cfn route` shows where each provider's key comes from)")

    def finish(self, run_id: int, provider: str | None, result: outcomes.Outcome) -> None:
        """Record how the run ended: SQLite first, then the report (unless the agent made
        its own) and the completion record together in Redis; then release the agent."""
        from cfn.coordination import results

        spec, project = self.spec, self.project
        own = results.latest_signed(project.redis, spec["task_id"], spec["agent_id"],
                                    spec["agent_env"]["CFN_TOKEN"])
        if own and own.reported_at < spec["spawned_at"]:
            own = None  # an earlier run's
        if own:  # the agent reported itself (signed): its word on confidence stands
            result.confidence = own.confidence
        record = {**result.to_dict(), "run_id": run_id, "agent_id": spec["agent_id"],
                  "task_id": spec["task_id"], "provider": provider,
                  "log_path": spec["log_path"]}
        status = "success" if result.status == "success" else "failure"
        report = None if own else {
            "status": status, "confidence": result.confidence,
            "result": {"deliverables": result.deliverables, "feedback": result.feedback,
                       "status": result.status}}
        # unique anywhere (run IDs are each project's own) and unguessable: an agent may write
        # the results stream's markers, and must not pre-empt its supervisor's report
        outbox = lifecycle.records(spec, record_id=f"{spec['record_nonce']}-{run_id}",
                                   status=status, payload=json.dumps(record), report=report)
        runs.finish(project.sqlite, run_id, status=result.status, exit_code=result.exit_code,
                    confidence=result.confidence, handle=None,
                    input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                    cost_usd=result.cost_usd, outbox=outbox)
        lifecycle.publish(project, run_id, outbox)
        agent_state.unclaim(project.redis, *self.key)


class Supervisor:
    """The project's agents, the socket spawners reach it on, and its heartbeat."""

    def __init__(self, home: Path):
        self.home = home
        self.agents: dict[tuple[str, str], AgentRun] = {}  # running, by (task, agent)
        self.tasks: set[asyncio.Task] = set()  # every agent's, until its record is written
        self.projects: dict[str, Project] = {}
        self.requests = 0  # connections being served
        self.records = ThreadPoolExecutor(1, thread_name_prefix="records")
        self.runtime_pool = ThreadPoolExecutor(64, thread_name_prefix="runtime")
        self.leaving = asyncio.Event()
        self.idle_since = time.monotonic()

    async def record(self, work, *args):
        """Run Redis and SQLite work in the one records thread."""
        return await asyncio.get_running_loop().run_in_executor(self.records, work, *args)

    async def record_patiently(self, work, *args):
        """`record`, again while Redis stays out of reach (each try already rides out the
        reconnect window): an agent's completion record is written once Redis is back.
        `work` must be safe to repeat."""
        failures = 0
        while True:
            try:
                return await self.record(work, *args)
            except Exception as exc:
                failures += 1
                if not outage.is_connection_error(exc) or failures >= RECORD_TRIES:
                    raise
                log.warning("cfn supervisor: Redis out of reach (%s); trying again", exc)
                await asyncio.sleep(outage.BACKOFF_CAP_S)

    # --- requests ----------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.leaving.is_set():  # came in as it closed: unanswered, the spawner starts another
            writer.close()
            return
        self.requests += 1
        try:
            line = await reader.readline()
            if not line:  # a probe: is anyone listening?
                return
            try:
                answer = await self.answer(json.loads(line))
            except Exception as exc:  # noqa: BLE001 - the spawner hears why
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass  # the spawner went away; it starts over if it still wants the agent
        finally:
            self.requests -= 1
            self.idle_since = time.monotonic()
            writer.close()

    async def answer(self, message: dict) -> dict:
        if message["op"] == "run":
            spec = message["spec"]
            project = await self.project_for(spec)
            if (spec["task_id"], spec["agent_id"]) in self.agents:  # no await from here on
                return {"ok": False, "error": "that agent is already running"}
            self.adopt(spec, project)
        elif message["op"] == "stop":
            agent = self.agents.get((message["task_id"], message["agent_id"]))
            if agent is None:
                return {"ok": False, "error": "not running here"}
            agent.stopping.set()
        return {"ok": True, "pid": os.getpid()}

    def adopt(self, spec: dict, project: Project) -> None:
        agent = AgentRun(spec, project)
        self.agents[agent.key] = agent
        task = asyncio.ensure_future(agent.run(self))
        self.tasks.add(task)

        def gone(task: asyncio.Task) -> None:
            self.tasks.discard(task)
            self.release(agent)
            if not task.cancelled() and task.exception():  # its record could not be written
                log.error("cfn supervisor [%s]: no record written: %s", agent.spec["agent_id"],
                          task.exception())

        task.add_done_callback(gone)

    def release(self, agent: AgentRun) -> None:
        """Forget a running agent (not another run that has its ID by now)."""
        if self.agents.get(agent.key) is agent:
            del self.agents[agent.key]

    async def project_for(self, spec: dict) -> Project:
        """The spawner's project, connecting first to the Redis the spawner reached; the first
        time, its runs left `running` by a supervisor that died are recorded lost."""
        key = json.dumps([spec["config"], spec.get("target")], sort_keys=True)
        if key not in self.projects:
            target = Target.from_dict(spec["target"]) if "target" in spec else None
            project = Project(Config.from_dict(spec["config"]), target=target)
            await self.record(_record_lost_runs, project, spec["environ"])
            self.projects.setdefault(key, project)  # once its recovery is done
        return self.projects[key]

    # --- upkeep ------------------------------------------------------------------------

    async def heartbeats(self) -> None:
        """Every agent's heartbeat, one pipeline per Redis, every HEARTBEAT_EVERY_S."""
        restored = time.monotonic()
        while True:
            await asyncio.sleep(defaults.HEARTBEAT_EVERY_S)
            try:
                agents = list(self.agents.values())
                if outage.failed_since(restored):  # Redis was out: perhaps restarted
                    restored = time.monotonic()
                    await self.record(self._restore_users, agents)
                await self.record(self._beat_all, agents)
            except Exception as exc:  # noqa: BLE001 - tried again on the next beat
                log.warning("cfn supervisor: heartbeat failed: %s", exc)

    @staticmethod
    def _restore_users(agents: list[AgentRun]) -> None:
        """Define the running agents' Redis users again: a restarted Redis has lost them."""
        for agent in agents:
            if agent.spec.get("acl_user"):
                user = agent_state.RedisUser(agent.spec["acl_user"],
                                             agent.spec["agent_env"]["REDIS_PASSWORD"])
                agent_state.set_user(agent.project.redis, agent.spec["task_id"], user)

    @staticmethod
    def _beat_all(agents: list[AgentRun]) -> None:
        by_redis: dict[int, tuple] = {}
        for agent in agents:
            if agent.beat is not None:
                r = agent.project.redis
                by_redis.setdefault(id(r), (r, []))[1].append((*agent.key, agent.beat))
        for r, beats in by_redis.values():
            agent_state.beat_all(r, beats)

    async def idle_watch(self, idle_s: float) -> None:
        """Leave once nothing has run and no one has asked for `idle_s` seconds."""
        while True:
            await asyncio.sleep(min(idle_s, 1.0))
            if self.tasks or self.requests:
                self.idle_since = time.monotonic()
            elif time.monotonic() - self.idle_since >= idle_s:
                self.leaving.set()
                return

    def stop_all(self) -> None:
        """SIGTERM: stop every agent (each still gets its record), then leave."""
        for agent in self.agents.values():
            agent.stopping.set()
        self.leaving.set()


def _record_lost_runs(project: Project, environ: dict) -> None:
    """Runs still marked live whose supervisor is gone (this machine's: one supervisor per
    project): recorded lost, what is left of their agents ended (by the handle SQLite
    kept, with the spawner's `environ`: DOCKER_HOST, KUBECONFIG), their claims cleared. And
    what a supervisor recorded in SQLite and did not live to publish is published."""
    r = project.redis
    lifecycle.publish_pending(project)
    for row in runs.live(project.sqlite):
        beat = agent_state.heartbeat(r, row["task_id"], row["agent_id"]) or {}
        pid = row["supervisor_pid"] or beat.get("supervisor_pid")
        dead = pid is not None and not supervision.alive(pid)
        if dead or lifecycle.is_lost(project, row):
            lifecycle.mark_lost(project, row)
        if dead:
            runtimes.end_orphan(row["runtime"], row["handle"], environ)
            agent_state.unclaim(r, row["task_id"], row["agent_id"])


async def _main(home: Path, idle_s: float) -> int:
    supervisor = Supervisor(home)
    holder = supervision.hold(home)
    if holder is None:
        return 0  # another supervisor serves this project
    path = supervision.socket_path(home)
    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(supervisor.serve, path=str(path),
                                             limit=supervision.MAX_MESSAGE_BYTES)
    os.chmod(path, 0o600)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.stop_all)
    upkeep = [asyncio.ensure_future(supervisor.heartbeats()),
              asyncio.ensure_future(supervisor.idle_watch(idle_s))]
    log.info("cfn supervisor: serving %s (pid %d)", path, os.getpid())
    await supervisor.leaving.wait()
    server.close()  # no new agents: a spawner now starts the next supervisor
    path.unlink(missing_ok=True)
    holder.close()
    while supervisor.tasks or supervisor.requests:  # those that came in meanwhile
        await asyncio.sleep(0.1)
    for task in upkeep:
        task.cancel()
    for project in supervisor.projects.values():
        await supervisor.record(project.close)
    return 0


def _more_descriptors() -> None:
    """Each agent holds a pidfd and its log: allow as many descriptors as the system lets."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    _more_descriptors()
    parser = argparse.ArgumentParser(description="cfn's per-project agent supervisor")
    parser.add_argument("--home", required=True, type=Path, help="the project's state dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    idle_s = float(os.environ.get("CFN_SUPERVISOR_IDLE_S", defaults.SUPERVISOR_IDLE_S))
    leave(asyncio.run(_main(args.home, idle_s)))


if __name__ == "__main__":
    main()
