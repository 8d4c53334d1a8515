"""A real HTTP server on 127.0.0.1 for end-to-end tests: scripted answers, recorded requests.

Each route answers from a script (a list of `Answer`s, the last one repeating); an answer can
hold the request open until the test releases it, to catch a daemon in the middle of a send.
A route is an exact path, or a regular expression (`route_pattern`) for paths that carry ids.
Recorded requests can be read back as the server saw them: path, query, form and file fields.
An answer can also be no answer: `Answer(reset=True)` drops the connection with a TCP reset.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes as is
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # wait for this before answering
    delay: float = 0.0
    reset: bool = False  # close the connection with a TCP reset instead of answering


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    client_port: int = 0  # the TCP connection it came on (the client's port)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def route(self) -> str:
        """The path without its query string."""
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        """A request header, whatever its case."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def form(self) -> dict[str, str]:
        """The text fields of a form body, urlencoded or multipart (file parts left out)."""
        if self._content_type().startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(self.body.decode(), keep_blank_values=True))
        return {p.name: p.value.decode() for p in self._parts() if p.filename is None}

    def files(self) -> dict[str, Part]:
        """The file parts of a multipart body, by field name."""
        return {p.name: p for p in self._parts() if p.filename is not None}

    def _content_type(self) -> str:
        return self.header("Content-Type") or ""

    def _parts(self) -> list[Part]:
        content_type = self._content_type()
        if not content_type.startswith("multipart/"):
            return []
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self.body
        )
        parts = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            parts.append(Part(str(name), part.get_payload(decode=True) or b"", part.get_filename(),
                              part.get_content_type() if part.get("Content-Type") else None))
        return parts


@dataclass
class Part:
    """One part of a multipart/form-data body."""

    name: str
    value: bytes
    filename: str | None
    content_type: str | None


class FakeServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer | Callable[[Seen], Answer]]] = {}
        self.patterns: list[tuple[str, re.Pattern[str], list[Answer | Callable[[Seen], Answer]]]] = []
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
                if len(body) < length:
                    # The client went away mid-body (a daemon killed while sending): no platform
                    # acts on a request that never arrived whole, so it is not recorded either.
                    self.close_connection = True
                    return
                seen = Seen(self.command, self.path, {k: v for k, v in self.headers.items()}, body, time.time(),
                            self.client_address[1])
                with server.arrived:
                    server.requests.append(seen)
                    server.arrived.notify_all()
                answer = server._answer(seen)
                if answer.hold is not None:
                    answer.hold.wait(60)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.reset:  # no answer at all: the peer sees "connection reset by peer"
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
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
                    if self.command != "HEAD":  # a HEAD answer has headers only
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval: `shutdown` waits for the loop to notice, once per test.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, path: str, *answers: Answer | Callable[[Seen], Answer]) -> None:
        self.routes[(method, path)] = list(answers)

    def route_pattern(self, method: str, pattern: str, *answers: Answer | Callable[[Seen], Answer]) -> None:
        """A route for every path the regular expression matches in full (exact routes win)."""
        self.patterns.append((method, re.compile(pattern), list(answers)))

    def _answer(self, seen: Seen) -> Answer:
        path = seen.path.split("?", 1)[0]
        script = self.routes.get((seen.method, path))
        if not script:
            script = next((s for m, p, s in self.patterns if m == seen.method and p.fullmatch(path)), None)
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
