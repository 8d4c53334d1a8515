"""A real HTTP server on 127.0.0.1 for end-to-end tests: scripted answers, recorded requests.

Each route answers from a script (a list of `Answer`s, the last one repeating); an answer can
hold the request open until the test releases it, to catch a daemon in the middle of a send.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes as is
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # wait for this before answering
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer | Callable[[Seen], Answer]]] = {}
        self.requests: list[Seen] = []
        self.arrived = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k: v for k, v in self.headers.items()}, body, time.time())
                with server.arrived:
                    server.requests.append(seen)
                    server.arrived.notify_all()
                answer = server._answer(seen)
                if answer.hold is not None:
                    answer.hold.wait(60)
                if answer.delay:
                    time.sleep(answer.delay)
                payload = answer.body
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()
                    content_type = "application/json"
                elif isinstance(payload, str):
                    data, content_type = payload.encode(), "text/plain"
                else:
                    data, content_type = payload or b"", "application/octet-stream"
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", content_type))
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in answer.headers.items():
                        if key.lower() != "content-type":
                            self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, path: str, *answers: Answer | Callable[[Seen], Answer]) -> None:
        self.routes[(method, path)] = list(answers)

    def _answer(self, seen: Seen) -> Answer:
        path = seen.path.split("?", 1)[0]
        script = self.routes.get((seen.method, path))
        if not script:
            return Answer(404, {"error": f"no route {seen.method} {path}"})
        item = script.pop(0) if len(script) > 1 else script[0]
        return item(seen) if callable(item) else item

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path.split("?", 1)[0] == path]

    def wait_for(self, count: int, timeout: float = 30.0, method: str | None = None, path: str | None = None) -> bool:
        def matching() -> int:
            return len([r for r in self.requests if (method is None or r.method == method)
                        and (path is None or r.path.split("?", 1)[0] == path)])

        deadline = time.time() + timeout
        with self.arrived:
            while matching() < count:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
