"""The portal's REST API (the seed's routes), on FastAPI: it validates bodies, and writes
the OpenAPI document at /openapi.json.

Every route calls the library (cfn.Project and the modules behind it), never the CLI and
never a shell, and takes no path from a request. Each request opens the project afresh
(SQLite connections belong to one thread; FastAPI runs handlers in a pool). Errors are
JSON, {"error", "exit_code"}, with the HTTP status of cfn's meaning (ERROR_STATUS).

No `from __future__ import annotations` here: FastAPI reads the route functions'
annotations (the Who and Proj dependencies are local to create_app) as they are defined.
"""


import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cfn.errors import BackendUnavailable, CfnError, InvalidInput, NegativeOutcome, TimedOut
from cfn.project import Project
from cfn.web.auth import Caller, Refused, caller

ERROR_STATUS = ((InvalidInput, 400), (TimedOut, 504), (BackendUnavailable, 503),
                (NegativeOutcome, 404))


class SpawnBody(BaseModel):
    agentId: str
    taskId: str
    prompt: str = ""
    profile: str | None = None
    provider: str | None = None
    runtime: str = "process"
    command: list[str] = Field(default_factory=list)
    timeout: float | None = None


class LoopBody(BaseModel):
    taskId: str
    epic: str
    mode: str = "standard"
    loop3Agents: list[str] = Field(default_factory=lambda: ["coder"])
    loop2Agents: list[str] = Field(
        default_factory=lambda: ["code-reviewer", "tester", "security-specialist"])
    productOwner: str = "product-owner"
    maxIterations: int | None = None
    runtime: str = "process"
    testCommand: str | None = None


class DecisionBody(BaseModel):
    decision: str
    iteration: int | None = None
    reason: str | None = None
    confidence: float | None = None


def create_app(root: Path, env: dict[str, str] | None = None) -> FastAPI:
    """The portal of the project at `root`, configured from `env` (default os.environ)."""
    app = FastAPI(title="cfn portal", version="1",
                  description="The CFN Loop's agents, tasks and decisions. Send "
                              "`Authorization: Bearer TOKEN` (`cfn token issue`).")
    open_project = _opener(root, env)
    _limit_bodies(app, open_project)
    _report_errors(app)
    Who = Annotated[Caller, Depends(_who(open_project))]
    Proj = Annotated[Project, Depends(open_project)]
    loops: dict[str, threading.Thread] = {}

    @app.post("/api/agents/spawn", status_code=201)
    def spawn_agent(body: SpawnBody, who: Who, project: Proj) -> dict:
        """Start an agent under the project's supervisor."""
        from cfn.agents.spawn import SpawnRequest

        who.must_operate()
        return project.spawn(SpawnRequest(
            agent_id=body.agentId, task_id=body.taskId, prompt=body.prompt,
            profile=body.profile, provider=body.provider, runtime=body.runtime,
            command=tuple(body.command), timeout=body.timeout)).to_dict()

    @app.get("/api/agents/{taskId}")
    def list_agents(taskId: str, who: Who, project: Proj) -> dict:  # noqa: N803 - the seed's
        """The task's agents (each one's latest run), lost ones marked."""
        from cfn.agents import lifecycle, runs

        who.may_read(taskId)
        return {"taskId": taskId,
                "agents": lifecycle.with_liveness(project, runs.listing(project.db, taskId))}

    @app.delete("/api/agents/{agentId}", status_code=202)
    def stop_agent(agentId: str, taskId: str, who: Who, project: Proj) -> dict:  # noqa: N803
        """Ask the supervisor to stop the agent (it still records its completion)."""
        from cfn.agents import lifecycle

        who.must_operate()
        return {"stopping": lifecycle.stop(project, taskId, agentId)}

    @app.post("/api/tasks/create", status_code=202)
    def create_task(body: LoopBody, who: Who, project: Proj) -> dict:
        """Start a CFN Loop for the task, in the background of this server."""
        from cfn.loop.engine import Loop

        who.must_operate()
        spec = _loop_spec(body)
        Loop(project, spec).preflight()  # a bad agent or runtime is refused here, not later
        if project.loop_orchestrated(spec.task_id) or (
                spec.task_id in loops and loops[spec.task_id].is_alive()):
            raise NegativeOutcome(f"a loop already runs for task {spec.task_id}")
        loops[spec.task_id] = thread = threading.Thread(
            target=_run_loop, args=(open_project, spec), daemon=True,
            name=f"loop-{spec.task_id}")
        thread.start()
        return {"taskId": spec.task_id, "started": True}

    @app.get("/api/tasks/{taskId}/status")
    def task_status(taskId: str, who: Who, project: Proj) -> dict:  # noqa: N803
        """Where the task's loop stands, and its latest decision."""
        from cfn.loop import store

        who.may_read(taskId)
        found = store.status(project.db, taskId)
        if found is None:
            raise NegativeOutcome(f"no task {taskId}")
        decision = project.latest_decision(taskId)
        return {**found, "decision": decision.to_dict() if decision else None}

    @app.post("/api/tasks/{taskId}/decision", status_code=201)
    def decide(taskId: str, body: DecisionBody, who: Who, project: Proj) -> dict:  # noqa: N803
        """Record a product-owner decision (PROCEED, ITERATE or ABORT)."""
        from cfn.coordination.decisions import Decision

        who.must_operate()
        return project.decide(Decision(taskId, body.decision, iteration=body.iteration,
                                       reason=body.reason, confidence=body.confidence,
                                       decided_by=who.agent_id)).to_dict()

    @app.get("/api/metrics/agents")
    def agent_metrics(who: Who, project: Proj) -> dict:
        """Agent runs by status, tokens and cost (an agent's token: its task's only)."""
        from cfn.web import metrics

        return metrics.agents(project.db, None if who.is_operator else who.task_id)

    @app.get("/api/metrics/tasks")
    def task_metrics(who: Who, project: Proj) -> dict:
        """Tasks by status (an agent's token: its own task only)."""
        from cfn.web import metrics

        return metrics.tasks(project.db, None if who.is_operator else who.task_id)

    @app.get("/api/health/system")
    def health(who: Who, project: Proj) -> JSONResponse:
        """cfn doctor's checks: 200 when every required one passes, else 503."""
        from cfn import doctor

        checks = doctor.run_checks(project.config)
        healthy = doctor.healthy(checks)
        return JSONResponse({"healthy": healthy, "checks": [c.to_dict() for c in checks]},
                            status_code=200 if healthy else 503)

    from cfn.web import dashboard

    dashboard.add_routes(app, open_project, secret_of)
    return app


def create_server(root: Path, env: dict[str, str] | None = None):
    """The whole portal as one ASGI app: the REST API and the live events (cfn.web.live)."""
    from cfn.web.live import Live

    return Live(root, env).asgi(create_app(root, env))


def _opener(root: Path, env: dict[str, str] | None) -> Callable[[], Iterator[Project]]:
    def open_project() -> Iterator[Project]:
        with Project.open(root, env=env) as project:
            yield project

    return open_project


def _who(open_project) -> Callable:
    def who(project: Annotated[Project, Depends(open_project)],
            authorization: Annotated[str | None, Header()] = None) -> Caller:
        return caller(secret_of(project), authorization)

    return who


def secret_of(project: Project) -> str:
    """The project's token secret: configured, or generated into the state directory."""
    from cfn.tokens import signing_secret

    return signing_secret(project.config.token_secret, project.home)


def _limit_bodies(app: FastAPI, open_project) -> None:
    """Bodies larger than the project's max_payload are refused before they are read."""
    with _first(open_project) as project:
        limit = project.max_payload

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return _error(413, f"the body is over {limit} bytes (max_payload)", 2)
        return await call_next(request)


def _first(open_project):
    import contextlib

    return contextlib.contextmanager(open_project)()


def _report_errors(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(CfnError)
    async def cfn_error(_request: Request, exc: CfnError) -> JSONResponse:
        if isinstance(exc, Refused):
            return _error(exc.status, str(exc), int(exc.exit_code))
        status = next((code for kind, code in ERROR_STATUS if isinstance(exc, kind)), 409)
        return _error(status, str(exc), int(exc.exit_code))

    @app.exception_handler(RequestValidationError)
    async def bad_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where}: {first.get('msg', 'invalid')}", 2)


def _error(status: int, message: str, exit_code: int) -> JSONResponse:
    return JSONResponse({"error": message, "exit_code": exit_code}, status_code=status)


def _loop_spec(body: LoopBody):
    from cfn.loop.spec import LoopSpec

    return LoopSpec(task_id=body.taskId, epic=body.epic, mode=body.mode,
                    loop3_agents=tuple(body.loop3Agents), loop2_agents=tuple(body.loop2Agents),
                    product_owner=body.productOwner, max_iterations=body.maxIterations,
                    runtime=body.runtime, test_command=body.testCommand)


def _run_loop(open_project, spec) -> None:
    """A loop in a thread of the server, with a project of its own."""
    import logging

    try:
        with _first(open_project) as project:
            project.run_loop(spec)
    except Exception as exc:  # noqa: BLE001 - the loop's own records say how it ended
        logging.getLogger("cfn.web").error("cfn portal: loop %s: %s", spec.task_id, exc)
