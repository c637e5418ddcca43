"""
``python -m bench.wsload``: a WebSocket load generator, the wrk of the
WebSocket scenario. Each connection sends one message, waits for its echo,
and sends it again, for the given seconds; it prints one JSON line with the
round trips completed and their latency percentiles.

The client is kept as cheap as a client can be, so that the server is what
is measured: every message is one frame built (and masked) once up front,
and an echo is counted by reading frame headers and skipping payloads, never
copying or unmasking them. Pings are answered with pongs; anything else the
server sends ends the run with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import struct
import time
from collections.abc import Sequence

PING, PONG, CLOSE = 0x9, 0xA, 0x8


def frame(payload: bytes, opcode: int, mask: bytes) -> bytes:
    """:returns: one final, masked client frame holding ``payload``."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = int.from_bytes(mask * ((size + 3) // 4), "big") >> (8 * (-size % 4))
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big") if size else b""
    return head + mask + masked


class EchoClient(asyncio.Protocol):
    """One connection: handshake, then message, echo, message, ... until told to stop."""

    def __init__(self, path: str, message: bytes, opcode: int, done: asyncio.Future[None]) -> None:
        self._path = path
        self._frame = frame(message, opcode, os.urandom(4))
        self._size = len(message)
        self._done = done
        self._buffer = bytearray()
        self._opened = False
        self._skip = 0  # payload bytes of the current data frame still to come
        self._sent_at = 0.0
        self.latencies: list[float] = []
        self.running = True
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.transport.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode("ascii")
        )

    def send(self) -> None:
        self._sent_at = time.perf_counter()
        self.transport.write(self._frame)

    def data_received(self, data: bytes) -> None:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                if not self._skip:
                    self._echoed()
                return
            data = data[self._skip :]
            self._skip = 0
            self._echoed()
        self._buffer += data
        if not self._opened:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                return self._fail(f"handshake answered {bytes(self._buffer[:40])!r}")
            del self._buffer[: end + 4]
            self._opened = True
            self.send()
        self._frames()

    def _frames(self) -> None:
        """Take the complete frame headers in the buffer; skip data payloads."""
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            size, start = second & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            opcode = first & 0x0F
            if opcode >= CLOSE:
                if len(buffer) < start + size:
                    return
                payload = bytes(buffer[start : start + size])
                del buffer[: start + size]
                if opcode == PING:
                    self.transport.write(frame(payload, PONG, os.urandom(4)))
                elif opcode == CLOSE:
                    return self._fail(f"the server closed: {payload!r}")
                continue
            if not first & 0x80 or size != self._size:
                return self._fail(f"expected one frame of {self._size} bytes, got {size}")
            have = len(buffer) - start
            if have >= size:
                del buffer[: start + size]
                self._echoed()
            else:
                self._skip = size - have
                buffer.clear()
                return

    def _echoed(self) -> None:
        self.latencies.append(time.perf_counter() - self._sent_at)
        if self.running:
            self.send()
        elif not self._done.done():
            self._done.set_result(None)

    def _fail(self, why: str) -> None:
        self.error = why
        self.transport.abort()
        if not self._done.done():
            self._done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.running and self.error is None:
            self.error = f"connection lost: {exc}"
        if not self._done.done():
            self._done.set_result(None)


async def run(
    port: int, path: str, size: int, binary: bool, connections: int, seconds: float
) -> dict[str, object]:
    """:returns: round trips, seconds, latency p50/p99 (ms), and errors."""
    loop = asyncio.get_running_loop()
    message = os.urandom(size) if binary else (b"0123456789abcdef" * (size // 16 + 1))[:size]
    clients: list[EchoClient] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        _, client = await loop.create_connection(
            lambda done=done: EchoClient(path, message, 0x2 if binary else 0x1, done),
            "127.0.0.1",
            port,
        )
        clients.append(client)
    await asyncio.sleep(0.2)  # every handshake answered, first echoes under way
    for client in clients:
        client.latencies.clear()
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    count = sum(len(c.latencies) for c in clients)
    elapsed = time.perf_counter() - started
    latencies = sorted(latency for c in clients for latency in c.latencies)
    for client in clients:
        client.running = False
    await asyncio.wait([c._done for c in clients], timeout=10)
    for client in clients:
        client.transport.abort()
    errors = [c.error for c in clients if c.error]
    return {
        "messages": count,
        "seconds": elapsed,
        "p50": statistics.median(latencies) * 1e3 if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else 0.0,
        "errors": errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wsload", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--size", type=int, default=16, help="message size in bytes")
    parser.add_argument("--binary", action="store_true", help="binary messages (default: text)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    result = runner(
        run(args.port, args.path, args.size, args.binary, args.connections, args.seconds)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
