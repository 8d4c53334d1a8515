"""A fast stand-in platform on 127.0.0.1: answers every POST after a fixed latency, records arrivals.

Run as its own process (`python -m bench.platform --latency 0.05`) so it never shares a GIL with
the daemon or with the reference loop. It prints `PORT <n>` on its first stdout line.

- any POST/PUT: recorded (arrival time = `time.time()` when the whole request is in), answered
  `200 {"id": "<n>"}` after `--latency` seconds (an asyncio timer: no thread per request);
- `GET /_stats`: {"count", "distinct_keys", "first", "last", "connections"};
- `GET /_arrivals`: [[arrival, path, idempotency key, post_id], ...] for every recorded request;
- `GET /_reset`: forget everything recorded.

Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


class Recorder:
    def __init__(self, latency: float, status: int) -> None:
        self.latency = latency
        self.status = status
        self.reset()

    def reset(self) -> None:
        self.arrivals: list[tuple[float, str, str, bytes]] = []
        self.keys: set[str] = set()
        self.connections = 0

    def stats(self) -> dict[str, Any]:
        times = [a[0] for a in self.arrivals]
        return {
            "count": len(self.arrivals),
            "distinct_keys": len(self.keys),
            "first": min(times) if times else None,
            "last": max(times) if times else None,
            "connections": self.connections,
        }

    def dump(self) -> list[list[Any]]:
        out = []
        for at, path, key, body in self.arrivals:
            post_id = None
            try:
                post_id = json.loads(body).get("post_id")
            except (ValueError, AttributeError):
                pass
            out.append([at, path, key, post_id])
        return out


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "OK")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop) -> None:
        self.recorder = recorder
        self.loop = loop
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.recorder.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, path = lines[0].split(" ", 2)[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.handle(method, path, headers, body)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        rec = self.recorder
        if method == "GET" and path.startswith("/_"):
            if path == "/_stats":
                payload = rec.stats()
            elif path == "/_arrivals":
                payload = rec.dump()
            elif path == "/_reset":
                rec.reset()
                payload = {"ok": True}
            else:
                payload = {"error": "unknown"}
            self._write(_response(200, json.dumps(payload).encode()))
            return
        now = time.time()
        key = headers.get("idempotency-key", "")
        rec.arrivals.append((now, path, key, body))
        rec.keys.add(key)
        answer = _response(rec.status, b'{"id":"%d"}' % len(rec.arrivals))
        if rec.latency > 0:
            self.loop.call_later(rec.latency, self._write, answer)
        else:
            self._write(answer)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(latency: float, status: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder(latency, status)
    server = await loop.create_server(lambda: HttpProtocol(recorder, loop), "127.0.0.1", port, backlog=1024)
    sock_port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {sock_port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.latency, args.status, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
