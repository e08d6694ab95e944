"""The MCP server: cfn's coordination as tools a model can call, over stdio, on the official
MCP Python SDK (its MCPServer writes each tool's JSON schema from the function's types and
docstring).

Scoped by who runs it: the operator's server acts with the project's rights; inside an
agent (CFN_AGENT_ID and CFN_TASK_ID set by cfn, with the agent's own Redis user) every tool
refuses another task before it touches Redis, reports only under the agent's own name,
and cannot spawn; Redis refuses the rest through the agent's ACL user in any case.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from cfn import validate
from cfn.errors import CfnError
from cfn.project import Project

log = logging.getLogger(__name__)
INSTRUCTIONS = ("cfn coordinates AI coding agents through Redis: share context, send and "
                "wait for signals, report results and collect them with a quorum, wait at "
                "completion barriers, and (as the operator) spawn agents, run Claude Code "
                "in containers and run CFN Loops. Every tool works on one task ID.")


class Scope:
    """Who this server acts for: the operator (everything) or one agent (its task)."""

    def __init__(self, environ: dict[str, str]):
        self.agent_id = environ.get("CFN_AGENT_ID") or None
        self.task_id = environ.get("CFN_TASK_ID") or None

    @property
    def is_agent(self) -> bool:
        return self.agent_id is not None

    def task(self, task_id: str) -> str:
        if self.is_agent and task_id != self.task_id:
            raise ToolError(f"this server acts for agent {self.agent_id} of task "
                            f"{self.task_id}; it may not touch task {task_id} (exit 2)")
        return task_id

    def reporter(self, agent_id: str | None) -> str:
        if self.is_agent:
            if agent_id not in (None, self.agent_id):
                raise ToolError(f"an agent reports only as itself ({self.agent_id}) (exit 2)")
            return self.agent_id
        if not agent_id:
            raise ToolError("say which agent reports: agent_id (exit 2)")
        return agent_id

    def operator_only(self, what: str) -> None:
        if self.is_agent:
            raise ToolError(f"agents may not {what}: only the operator or the orchestrator "
                            "can (exit 1)")


@contextlib.contextmanager
def meaning() -> Iterator[None]:
    """cfn's errors as tool errors that carry their meaning (the exit code the CLI would
    give)."""
    try:
        yield
    except CfnError as exc:
        raise ToolError(f"{exc} (exit {int(exc.exit_code)})") from None


def build(environ: dict[str, str] | None = None) -> MCPServer:
    """The server, with every tool registered."""
    environ = dict(os.environ if environ is None else environ)
    scope = Scope(environ)
    server = MCPServer("cfn", instructions=INSTRUCTIONS)

    def call(work: Callable[[Project], Any]) -> Any:
        """Run `work` on a fresh project, keeping the meaning of cfn's errors."""
        with meaning(), Project.open(env=environ) as project:
            return work(project)

    @server.tool()
    def context_store(task_id: str, key: str, value: str, ttl: int | None = None) -> str:
        """Store a value under a key of the task's shared context (ttl in seconds)."""
        call(lambda p: p.store_context(scope.task(task_id), key, value, ttl=ttl))
        return "stored"

    @server.tool()
    def context_get(task_id: str, key: str) -> str:
        """The value stored under a key of the task's shared context."""
        return call(lambda p: p.get_context(scope.task(task_id), key))

    @server.tool()
    def signal_send(task_id: str, channel: str, payload: str = "") -> int:
        """Queue a signal on a channel of the task; returns how many wait on it now."""
        return call(lambda p: p.send_signal(scope.task(task_id), channel, payload))

    @server.tool()
    def signal_wait(task_id: str, channel: str, timeout: float = 60) -> str:
        """Take the oldest signal of a channel, waiting up to timeout seconds for one."""
        return call(lambda p: p.wait_signal(scope.task(task_id), channel, timeout=timeout))

    @server.tool()
    def report(task_id: str, confidence: float, agent_id: str | None = None,
               deliverables: list[str] | None = None, feedback: str | None = None,
               status: str = "success") -> str:
        """Report an agent's result (confidence 0..1, deliverables, feedback) to the task.
        Inside an agent it reports as that agent; the operator names the agent."""
        result = {"deliverables": deliverables or [], "feedback": feedback}
        return call(lambda p: p.report(scope.task(task_id), scope.reporter(agent_id),
                                       status=status, confidence=confidence, result=result))

    @server.tool()
    def collect_results(task_id: str, expected: int, threshold: float = 1.0,
                        timeout: float = 60) -> dict:
        """Wait for `expected` agents' reports (or the timeout) and judge the quorum:
        met when ceil(expected * threshold) of them succeeded."""
        return call(lambda p: p.collect_results(scope.task(task_id), expected=expected,
                                                threshold=threshold,
                                                timeout=timeout).to_dict())

    @server.tool()
    def barrier_signal(task_id: str, agent_id: str | None = None, status: str = "success",
                       phase: str | None = None) -> str:
        """Say that an agent completed (a phase of) the task."""
        return call(lambda p: p.signal_completion(scope.task(task_id),
                                                  scope.reporter(agent_id), status=status,
                                                  phase=phase))

    @server.tool()
    def barrier_wait(task_id: str, expected: int, timeout: float = 60,
                     phase: str | None = None) -> dict:
        """Wait until `expected` agents completed (a phase of) the task."""
        return call(lambda p: p.wait_completion(scope.task(task_id), expected=expected,
                                                timeout=timeout, phase=phase).to_dict())

    @server.tool()
    def spawn_agent(task_id: str, agent_id: str, prompt: str = "", profile: str | None = None,
                    command: list[str] | None = None, wait: bool = True,
                    timeout: float = 600) -> dict:
        """Start an agent on the task (a Claude profile with a prompt, or a scripted one
        with a command) and, with wait, return its completion record."""
        from cfn.agents.spawn import SpawnRequest

        scope.operator_only("spawn agents")

        def spawn(project: Project) -> dict:
            spawned = project.spawn(SpawnRequest(agent_id=agent_id, task_id=task_id,
                                                 prompt=prompt, profile=profile,
                                                 command=tuple(command or ())))
            if not wait:
                return spawned.to_dict()
            waited = project.wait_agents(task_id, {agent_id: spawned.run_id}, timeout=timeout)
            return {**spawned.to_dict(), "record": waited.records.get(agent_id),
                    "timed_out": waited.timed_out}

        return call(spawn)

    loops: dict[str, threading.Thread] = {}  # loops this server runs without waiting

    @server.tool()
    def loop_run(task_id: str, epic: str, mode: str = "standard",
                 loop3_agents: list[str] | None = None, loop2_agents: list[str] | None = None,
                 product_owner: str = "product-owner", max_iterations: int | None = None,
                 runtime: str = "process", wait: bool = True) -> dict:
        """Run a CFN Loop on the task: implementers (loop3_agents, default coder) until the
        gate passes, validators (loop2_agents, default code-reviewer, tester and
        security-specialist) to consensus, then the product owner decides PROCEED, ITERATE
        or ABORT. mode: mvp, standard or enterprise. With wait it returns the loop's report
        when it ends; without, it starts the loop and returns at once (follow it with
        loop_watch, read it with loop_report)."""
        from cfn.loop.engine import Loop
        from cfn.loop.spec import LoopSpec

        scope.operator_only("run loops")
        named = {"loop3_agents": loop3_agents, "loop2_agents": loop2_agents}
        with meaning():
            spec = LoopSpec(task_id=task_id, epic=epic, mode=mode, product_owner=product_owner,
                            max_iterations=max_iterations, runtime=runtime,
                            **{k: tuple(v) for k, v in named.items() if v})
        if wait:
            return call(lambda p: p.run_loop(spec).to_dict())
        if task_id in loops and loops[task_id].is_alive() or \
                call(lambda p: p.loop_orchestrated(task_id)):
            raise ToolError(f"a loop already runs for task {task_id} (exit 1)")
        call(lambda p: Loop(p, spec).preflight())  # bad agents are said now, not in a log
        loops[task_id] = thread = threading.Thread(target=run_in_background, args=(spec,),
                                                   daemon=True, name=f"loop-{task_id}")
        thread.start()
        return {"task_id": task_id, "status": "started"}

    def run_in_background(spec) -> None:
        """A loop nobody waits for: its own records say how it ended (loop_report)."""
        try:
            call(lambda p: p.run_loop(spec))
        except Exception as exc:  # noqa: BLE001 - a thread's end; said, not raised
            log.error("cfn mcp: the loop of %s ended with %s", spec.task_id, exc)

    @server.tool()
    def loop_watch(task_id: str, cursor: str = "0", timeout: float = 30) -> dict:
        """The loop's events after `cursor` (start with "0", then pass back the cursor it
        returns), waiting up to timeout seconds for one: agents starting and finishing,
        gate, consensus, decisions; `ended` once the loop has ended."""
        from cfn.loop.view import events_after

        if not re.fullmatch(r"\d{1,20}(-\d{1,20})?", cursor):
            raise ToolError(f"cursor {cursor!r} is not one loop_watch returned (exit 2)")
        events, after = call(lambda p: events_after(p, scope.task(task_id), cursor,
                                                    validate.timeout(timeout)))
        return {"events": events, "cursor": after,
                "ended": any(e["kind"] == "loop_end" for e in events)}

    @server.tool()
    def loop_report(task_id: str) -> dict:
        """The task's loop as recorded: per iteration its agents (status, provider, model,
        tokens, cost, confidence), gate and consensus scores, and decisions."""
        found = call(lambda p: p.history(scope.task(task_id)))
        if found is None:
            raise ToolError(f"no loop for task {task_id} (exit 1)")
        return found

    @server.tool()
    def spawn_claude_container(task: str, repoUrl: str | None = None,  # noqa: N803
                               sessionTimeout: float = 300,  # noqa: N803
                               sessionId: str | None = None,  # noqa: N803
                               keepSession: bool = False) -> dict:  # noqa: N803
        """Run Claude Code on `task` in a container (a cfn session of the agent image) and
        return its answer: sessionId, containerId, result, and the workspace (on this
        machine) where its changes are. The workspace is repoUrl, cloned, or else an empty
        directory of its own (never the project's: its state would be in reach). The
        session ends after the task unless keepSession (a later call with its sessionId
        runs in the same container); it ends by itself after sessionTimeout seconds in any
        case."""
        from cfn.agents import sessions

        scope.operator_only("start containers")

        def run(project: Project) -> dict:
            config = project.config
            session = sessions.get(sessionId) if sessionId else sessions.start(
                config.home, image=config.agent_image, timeout=sessionTimeout, repo=repoUrl,
                workspace=None if repoUrl else sessions.scratch_workspace(config.home),
                network=config.agent_network)
            try:
                result = sessions.ask_claude(config, environ, session.id, task)
            finally:
                if not keepSession:
                    sessions.stop(session.id)
            return {"sessionId": session.id, "containerId": session.container_id,
                    "result": result, "workspace": session.workspace}

        return call(run)

    @server.resource("cfn://tasks/{task_id}/state")
    def task_state(task_id: str) -> str:
        """Where the task's loop stands: status, mode, last decided iteration, running
        agents, and whether a live process drives it."""
        found = call(lambda p: p.loop_status(scope.task(task_id)))
        if found is None:
            raise ToolError(f"no loop for task {task_id} (exit 1)")
        return json.dumps(found, default=str)

    @server.resource("cfn://tasks/{task_id}/history")
    def task_history(task_id: str) -> str:
        """Everything the database recorded about a task (results, decisions, runs, cost)."""
        return json.dumps(call(lambda p: p.history(scope.task(task_id))), default=str)

    return server


def serve() -> None:
    build().run("stdio")
