"""A stand-in LLM provider on loopback speaking the Anthropic Messages API.

Only what lies outside this machine may be a stand-in: this replaces the
provider, so the real `claude` CLI can run against it. It records every
request (path, model, credentials, body) and answers with a scripted reply,
or with an error status such as 429 to exercise provider fallback.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Standin:
    reply: str = '{"confidence": 0.9, "deliverables": ["done.txt"]}'
    status: int = 200  # e.g. 429 to act rate limited
    # the header the real provider takes its key in: "api-key" (x-api-key, Anthropic's API)
    # or "bearer" (Authorization: Bearer, third parties); a key elsewhere gets a 401
    auth: str = "bearer"
    # the tools the model asks for, one per turn, before it replies `reply`: ("Bash",
    # {"command": ...}), ("Write", {"file_path": ..., "content": ...}), ...
    tool_calls: list[tuple[str, dict]] = field(default_factory=list)
    tools_when: str = ""  # only in conversations whose messages contain this text
    # when given, the final reply of the agent's conversation waits until it is set, and
    # `holding` says a reply is waiting: the agent is running meanwhile, for as long as the
    # test needs
    release: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    requests: list[dict] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)  # what the agent's tool returned
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Standin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._send_json(404, {"type": "error", "error": {"type": "not_found_error"}})

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                standin.requests.append({
                    "path": self.path,
                    "model": body.get("model"),
                    "x-api-key": self.headers.get("x-api-key"),
                    "authorization": self.headers.get("authorization"),
                    "body": body,
                })
                if not self._authorized():
                    self._send_json(401, {"type": "error", "error": {
                        "type": "authentication_error",
                        "message": f"stand-in takes its key as {standin.auth}"}})
                elif standin.status != 200:
                    kind = "rate_limit_error" if standin.status == 429 else "api_error"
                    self._send_json(standin.status, {"type": "error", "error": {
                        "type": kind, "message": f"stand-in says {standin.status}"}})
                elif "count_tokens" in self.path:
                    self._send_json(200, {"input_tokens": 10})
                else:
                    self._hold(body)
                    if body.get("stream"):
                        self._stream(body)
                    else:
                        self._send_json(200, self._message(body))

            def _hold(self, body) -> None:
                """Keep the agent's final reply back until the test releases it."""
                if standin.release is None or not body.get("tools") or self._next_tool(body):
                    return
                standin.holding.set()
                standin.release.wait(timeout=120)  # a test that forgets still ends

            def _next_tool(self, body) -> tuple[str, dict] | None:
                """The tool call this request should be answered with: in the agent's main
                conversation (it offers tools), the next one it has no result for yet."""
                if not standin.tool_calls or not body.get("tools") or \
                        standin.tools_when not in json.dumps(body.get("messages")):
                    return None
                results = [block for message in body.get("messages", [])
                           if isinstance(message.get("content"), list)
                           for block in message["content"] if block.get("type") == "tool_result"]
                for block in results:
                    content = block.get("content")
                    text = content if isinstance(content, str) else json.dumps(content)
                    if text not in standin.tool_results:
                        standin.tool_results.append(text)
                return standin.tool_calls[len(results)] \
                    if len(results) < len(standin.tool_calls) else None

            def _authorized(self) -> bool:
                bearer = (self.headers.get("authorization") or "").startswith("Bearer ")
                api_key = bool(self.headers.get("x-api-key"))
                return (api_key and not bearer) if standin.auth == "api-key" else \
                    (bearer and not api_key)

            def _message(self, body):
                tool = self._next_tool(body)
                if tool:
                    name, tool_input = tool
                    return {
                        "id": "msg_standin_tool", "type": "message", "role": "assistant",
                        "model": body.get("model"), "stop_reason": "tool_use",
                        "stop_sequence": None,
                        "content": [{"type": "tool_use", "name": name, "input": tool_input,
                                     "id": f"toolu_standin_{len(standin.tool_results)}"}],
                        "usage": {"input_tokens": 12, "output_tokens": 7},
                    }
                return {
                    "id": "msg_standin", "type": "message", "role": "assistant",
                    "model": body.get("model"), "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "content": [{"type": "text", "text": standin.reply}],
                    "usage": {"input_tokens": 12, "output_tokens": 7},
                }

            def _stream(self, body):
                message = self._message(body)
                block = message["content"][0]
                if block["type"] == "tool_use":
                    opened = {**block, "input": {}}
                    delta = {"type": "input_json_delta",
                             "partial_json": json.dumps(block["input"])}
                else:
                    opened, delta = {"type": "text", "text": ""}, {"type": "text_delta",
                                                                    "text": block["text"]}
                events = [
                    ("message_start", {"type": "message_start", "message": {
                        **message, "content": [], "stop_reason": None,
                        "usage": {"input_tokens": 12, "output_tokens": 1}}}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": opened}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": delta}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": message["stop_reason"],
                                                 "stop_sequence": None},
                                       "usage": {"output_tokens": 7}}),
                    ("message_stop", {"type": "message_stop"}),
                ]
                payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n"
                                  for name, data in events).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _send_json(self, status, document):
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
