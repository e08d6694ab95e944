"""Live events over socket.io: namespace /cfn-loop, `auth: {taskId, token, lastEventId?}`.

One reader per task follows its event stream (`coord:{T}:events`) with a blocking XREAD
(no polling) and sends each client `agent:update` (an agent started or finished) and
`loop:progress` (the loop started, a gate, a consensus, a decision, its end), each carrying
the stream's `eventId`. A client that reconnects with the last `eventId` it saw (socket.io
re-reads `auth` on every connect when it is a function) first gets what it missed, in
order, and then the live events: none twice, none lost (docs/web.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import socketio

from cfn import keys
from cfn.web.auth import Caller, Refused, caller

NAMESPACE = "/cfn-loop"
BLOCK_MS = 5000  # a reader's XREAD blocks this long, then looks whether anyone still listens
AGENT_EVENTS = ("agent_start", "agent_done")
# which loop an event moves on: the gate ends Loop 3, consensus Loop 2, then the decision
LOOP_OF = {"gate": "loop3", "consensus": "loop2", "decision": "product-owner"}
log = logging.getLogger("cfn.web")


@dataclass
class Client:
    last: str  # the newest event ID it has
    live: bool = False  # caught up: the task's reader sends it what comes next


@dataclass
class Task:
    clients: dict[str, Client] = field(default_factory=dict)
    iterations: int | None = None  # from loop_start: progress is iteration / iterations
    reader: asyncio.Task | None = None


def payload(task_id: str, entry_id: str, fields: dict, iterations: int | None
            ) -> tuple[str, dict]:
    """The socket.io event and its data for one stream entry."""
    kind, number = fields.get("type", ""), int(fields.get("iteration") or 0)
    data = json.loads(fields.get("data") or "{}")
    base = {"taskId": task_id, "eventId": entry_id, "iteration": number, "type": kind}
    if kind in AGENT_EVENTS:
        return "agent:update", {**base, "agentId": data.get("agent"),
                                "status": "running" if kind == "agent_start"
                                else data.get("status"),
                                "phase": data.get("phase"), "confidence": data.get("confidence")}
    progress = None
    if kind == "loop_end":
        progress = 1.0
    elif iterations:
        progress = min(1.0, number / iterations)
    return "loop:progress", {**base, "loop": LOOP_OF.get(kind, "loop"), "progress": progress,
                             "data": data}


class Live:
    """The socket.io server of one project, and its readers."""

    def __init__(self, root: Path, env: dict[str, str] | None):
        self.root, self.env = root, env
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[],
                                        logger=False, engineio_logger=False)
        self.tasks: dict[str, Task] = {}
        self.sio.on("connect", self.connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self.disconnect, namespace=NAMESPACE)
        self._redis = None
        self._secret = None

    def asgi(self, app) -> socketio.ASGIApp:
        return socketio.ASGIApp(self.sio, other_asgi_app=app)

    # --- connections ---------------------------------------------------------------------

    async def connect(self, sid: str, _environ: dict, auth: dict | None = None) -> None:
        try:
            who, task_id = self._admit(auth)
        except Refused as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        r = await self.redis()
        stream = keys.events(task_id)
        last = (auth or {}).get("lastEventId")
        if not isinstance(last, str) or not last:
            newest = await r.xrevrange(stream, count=1)
            last = newest[0][0] if newest else "0-0"
        task = self.tasks.setdefault(task_id, Task())
        client = task.clients[sid] = Client(last)
        await self.sio.save_session(sid, {"task_id": task_id, "agent_id": who.agent_id},
                                    namespace=NAMESPACE)
        await self._catch_up(r, task_id, task, sid, client)
        if task.reader is None or task.reader.done():
            task.reader = asyncio.ensure_future(self._read(task_id, task))

    def _admit(self, auth: dict | None) -> tuple[Caller, str]:
        from cfn.project import Project
        from cfn.tokens import signing_secret

        if not isinstance(auth, dict) or not isinstance(auth.get("taskId"), str):
            raise Refused("connect with auth: {taskId, token}", 401)
        if self._secret is None:
            with Project.open(self.root, env=self.env) as project:
                self._secret = signing_secret(project.config.token_secret, project.home)
        who = caller(self._secret, f"Bearer {auth.get('token') or ''}")
        who.may_read(auth["taskId"])
        keys.events(auth["taskId"])  # an invalid task ID is refused here
        return who, auth["taskId"]

    async def disconnect(self, sid: str, *_args) -> None:
        for task in self.tasks.values():
            task.clients.pop(sid, None)

    async def _catch_up(self, r, task_id: str, task: Task, sid: str, client: Client) -> None:
        """What the client missed, until nothing more is there; then it is live (no await
        between the last, empty read and that: the reader sends everything newer)."""
        while True:
            missed = await r.xrange(keys.events(task_id), min=f"({client.last}", count=500)
            if not missed:
                client.live = True
                return
            for entry_id, fields in missed:
                await self._send(task_id, task, sid, client, entry_id, fields)

    async def _send(self, task_id: str, task: Task, sid: str, client: Client, entry_id: str,
                    fields: dict) -> None:
        if fields.get("type") == "loop_start":
            task.iterations = json.loads(fields.get("data") or "{}").get("iterations")
        event, data = payload(task_id, entry_id, fields, task.iterations)
        client.last = entry_id
        await self.sio.emit(event, data, to=sid, namespace=NAMESPACE)

    # --- the task's reader ------------------------------------------------------------------

    async def _read(self, task_id: str, task: Task) -> None:
        r = await self.redis()
        stream = keys.events(task_id)
        newest = await r.xrevrange(stream, count=1)
        position = newest[0][0] if newest else "0-0"
        while task.clients:
            try:
                found = await r.xread({stream: position}, block=BLOCK_MS, count=500)
            except Exception as exc:  # noqa: BLE001 - Redis away: try again shortly
                log.warning("cfn portal: reading %s: %s", stream, exc)
                await asyncio.sleep(1)
                continue
            for _stream, entries in found or ():
                for entry_id, fields in entries:
                    position = entry_id
                    for sid, client in list(task.clients.items()):
                        if client.live and _newer(entry_id, client.last):
                            await self._send(task_id, task, sid, client, entry_id, fields)

    async def redis(self):
        """An asyncio client on the project's Redis (text replies), made once."""
        if self._redis is None:
            import redis.asyncio

            from cfn.project import Project

            with Project.open(self.root, env=self.env) as project:
                url, target = project.redis_url, project.target
            self._redis = redis.asyncio.Redis.from_url(
                url, username=target.username, password=target.password,
                decode_responses=True, socket_connect_timeout=target.connect_timeout)
        return self._redis


def _newer(entry_id: str, than: str) -> bool:
    def parts(value: str) -> tuple[int, int]:
        ms, _, seq = value.partition("-")
        return int(ms), int(seq or 0)

    return parts(entry_id) > parts(than)
