"""The dashboard: server-rendered pages (jinja2) over the same project the API reads, that
update live by server-sent events (the task's event stream, read by a blocking XREAD) with
a few lines of JavaScript and no build step.

A browser signs in once with `/dashboard?token=TOKEN`: the token goes into an HttpOnly,
same-site cookie, and every page and stream checks it as the API checks its header.

No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request,
imported where they are defined) as they are defined.
"""

import time
from pathlib import Path

from cfn.web.auth import Caller

COOKIE = "cfn_token"
LOG_LINES = 40  # of each agent's log shown on the task page
HERE = Path(__file__).parent


def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["ago"] = _ago
    env.filters["seconds"] = _seconds
    return env


def overview_data(project, who: Caller) -> dict:
    """Tasks (an agent: its own), worktrees and the daemon's workers (operators only)."""
    from cfn.web import metrics

    tasks = metrics.tasks(project.db, None if who.is_operator else who.task_id)["tasks"]
    found = {"tasks": tasks, "operator": who.is_operator, "worktrees": [], "daemon": None}
    if who.is_operator:
        from cfn.worktrees import manage

        found["worktrees"] = [w.to_dict() for w in manage.list_all(project.db)]
        found["daemon"] = _daemon(project)
    return found


def _daemon(project) -> dict | None:
    from cfn.daemon import service
    from cfn.daemon.status import status

    if service.running(project.home) is None:
        return None
    return status(project)


def task_data(project, task_id: str) -> dict:
    """The loop's picture: thresholds, iterations with their agents, gate and consensus
    against their thresholds, decisions, and the tail of each agent's log."""
    from cfn.agents import runs
    from cfn.loop import store, view

    picture = view.snapshot(project, task_id)
    logs = {}
    home = project.home.resolve()
    for row in runs.listing(project.db, task_id):
        path = Path(row["log_path"] or "").resolve()
        if path.is_relative_to(home) and path.is_file():  # only cfn's own logs
            logs[row["agent_id"]] = path.read_text(errors="replace").splitlines()[-LOG_LINES:]
    return {"task": store.status(project.db, task_id), "view": picture, "logs": logs,
            "chart": _chart(picture), "now": time.time()}


def _chart(picture) -> list[dict]:
    """Per iteration the gate and consensus scores as bar heights (0..1), with thresholds."""
    bars = []
    for number, it in sorted(picture.iterations.items()):
        bars.append({"iteration": number,
                     "gate": (it.gate or {}).get("score"),
                     "consensus": (it.consensus or {}).get("score")})
    return bars


def _ago(epoch: float | None) -> str:
    return f"{_seconds(time.time() - epoch)} ago" if epoch else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def add_routes(app, open_project, secret_of) -> None:
    """The dashboard's pages and streams on the portal's app."""
    from contextlib import contextmanager

    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

    from cfn.web.auth import caller

    pages = environment()
    opened = contextmanager(open_project)

    def who(request: Request, project) -> Caller:
        token = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        return caller(secret_of(project), f"Bearer {token}")

    def page(name: str, **values) -> HTMLResponse:
        return HTMLResponse(pages.get_template(name).render(**values))

    from fastapi.staticfiles import StaticFiles

    app.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/dashboard", include_in_schema=False)
    def overview(request: Request):
        with opened() as project:
            caller_ = who(request, project)
            if "token" in request.query_params:  # signed in: the token moves to a cookie
                answer = RedirectResponse("/dashboard", status_code=303)
                answer.set_cookie(COOKIE, request.query_params["token"], httponly=True,
                                  samesite="strict")
                return answer
            return page("overview.html", **overview_data(project, caller_))

    @app.get("/dashboard/tasks/{task_id}", include_in_schema=False)
    def task(task_id: str, request: Request):
        with opened() as project:
            who(request, project).may_read(task_id)
            return page("task.html", task_id=task_id, **task_data(project, task_id))

    @app.get("/dashboard/tasks/{task_id}/body", include_in_schema=False)
    def task_body(task_id: str, request: Request):
        with opened() as project:
            who(request, project).may_read(task_id)
            return page("task_body.html", task_id=task_id, **task_data(project, task_id))

    @app.get("/dashboard/tasks/{task_id}/events", include_in_schema=False)
    def task_events(task_id: str, request: Request):
        from cfn import keys

        with opened() as project:
            who(request, project).may_read(task_id)
            url, target = project.redis_url, project.target
        return StreamingResponse(_follow(url, target, keys.events(task_id)),
                                 media_type="text/event-stream")


async def _follow(url: str, target, stream: str):
    """Server-sent events: one `data:` line per new entry of the stream (blocking XREAD),
    a comment every few seconds so proxies keep the connection."""
    import json

    import redis.asyncio

    r = redis.asyncio.Redis.from_url(url, username=target.username, password=target.password,
                                     decode_responses=True)
    try:
        newest = await r.xrevrange(stream, count=1)
        position = newest[0][0] if newest else "0-0"
        yield ": following\n\n"
        while True:
            found = await r.xread({stream: position}, block=5000, count=100)
            if not found:
                yield ": still here\n\n"
                continue
            for entry_id, fields in found[0][1]:
                position = entry_id
                yield f"data: {json.dumps({'eventId': entry_id, 'type': fields.get('type')})}\n\n"
    finally:
        await r.aclose()
