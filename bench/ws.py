"""
The WebSocket scenario of ``python -m bench``: houweb's ``webSocket`` echo
side by side with aiohttp's and the ``websockets`` library's, each server on
the server CPU, driven by ``bench.wsload`` on the load CPU.

Two runs per server and round: small text messages echoed over 16
connections (round trips per second), and 1 MiB binary messages echoed
(messages per second, each way). As for wrk's endpoints, the server's CPU
time per message comes from /proc and hardly moves when other programs
share the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from .procs import ROOT, Cores, ServerProcess
from .report import markdown_table
from .servers import ServerSpec
from .servers.ws_common import WS_PATH

WS_SERVERS = (
    ServerSpec("houweb", "ws_houweb", ("houweb", "autobahn")),
    ServerSpec("aiohttp", "ws_aiohttp", ("aiohttp",)),
    ServerSpec("websockets", "ws_websockets", ("websockets",)),
)
#: The server houweb's WebSocket targets are measured against.
WS_REFERENCE = "websockets"
#: The runs: name, message size in bytes, binary.
WS_RUNS = (("echo 16 B", 16, False), ("1 MiB", 1 << 20, True))


@dataclass(frozen=True)
class WsSample:
    """One wsload run: messages echoed per second, latency (ms), server CPU per message."""

    rate: float
    p50: float
    p99: float
    cpu_per_message: float
    errors: int


@dataclass
class WsResults:
    """Every WebSocket run, by run then server."""

    samples: dict[str, dict[str, list[WsSample]]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, run: str, server: str, sample: WsSample) -> None:
        self.samples.setdefault(run, {}).setdefault(server, []).append(sample)

    def ratio(self, run: str, server: str, base: str = WS_REFERENCE) -> float | None:
        """:returns: the median over rounds of ``server``'s rate over ``base``'s."""
        ours = self.samples.get(run, {}).get(server)
        theirs = self.samples.get(run, {}).get(base)
        if not ours or not theirs:
            return None
        pairs = [(a.rate, b.rate) for a, b in zip(ours, theirs) if b.rate]
        return statistics.median(a / b for a, b in pairs) if pairs else None

    def median(self, run: str, server: str, name: str) -> float | None:
        samples = self.samples.get(run, {}).get(server)
        return statistics.median(getattr(s, name) for s in samples) if samples else None


def wsload(
    port: int, size: int, binary: bool, connections: int, seconds: float, cores: Cores
) -> dict[str, object]:
    """Run ``bench.wsload`` on the load CPUs. :returns: its JSON report."""
    command = [
        *cores.prefix(cores.load),
        sys.executable,
        "-m",
        "bench.wsload",
        "--port",
        str(port),
        "--path",
        WS_PATH,
        "--size",
        str(size),
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        *(["--binary"] if binary else []),
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=ROOT, timeout=seconds + 60
    ).stdout
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return result


def check(port: int) -> str | None:
    """:returns: why the echo at ``port`` is wrong, or ``None`` when it echoes text and 1 MiB."""
    from websockets.sync.client import connect

    try:
        with connect(f"ws://127.0.0.1:{port}{WS_PATH}", max_size=2 << 20, compression=None) as ws:
            ws.send("héllo")
            text = ws.recv(timeout=10)
            blob = os.urandom(1 << 20)
            ws.send(blob)
            echoed = ws.recv(timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure disqualifies the server
        return f"{type(exc).__name__}: {exc}"
    if text != "héllo" or echoed != blob:
        return "the echo differs from the message"
    return None


def chosen() -> list[ServerSpec]:
    """:returns: the WebSocket servers whose modules are installed."""
    found = []
    for spec in WS_SERVERS:
        missing = [m for m in spec.needs if importlib.util.find_spec(m) is None]
        if missing:
            print(f"bench: skipping {spec.name} (ws): {', '.join(missing)} not installed")
        else:
            found.append(spec)
    return found


def measure(args: argparse.Namespace, cores: Cores, files: str, work: str) -> WsResults:
    """Start the WebSocket servers side by side, check them, run the interleaved rounds."""
    results = WsResults()
    servers: list[ServerProcess] = []
    try:
        for spec in chosen():
            servers.append(ServerProcess.start(spec, files, cores, work))
        for server in list(servers):
            try:
                server.wait_ready()
                why = check(server.port)
            except RuntimeError as exc:
                why = str(exc)
            if why is not None:
                results.failed[server.spec.name] = why
                servers.remove(server)
                server.stop()
        for _, size, binary in WS_RUNS:  # warm up
            for server in servers:
                wsload(server.port, size, binary, args.connections, 1, cores)
        for round_number in range(args.rounds):
            for name, size, binary in WS_RUNS:
                shift = round_number % max(1, len(servers))
                for server in servers[shift:] + servers[:shift]:
                    cpu = server.cpu_seconds()
                    report = wsload(
                        server.port, size, binary, args.connections, args.duration, cores
                    )
                    cpu = server.cpu_seconds() - cpu
                    count = int(report["messages"])  # type: ignore[call-overload]
                    errors = len(report["errors"])  # type: ignore[arg-type]
                    sample = WsSample(
                        count / float(report["seconds"]),  # type: ignore[arg-type]
                        float(report["p50"]),  # type: ignore[arg-type]
                        float(report["p99"]),  # type: ignore[arg-type]
                        cpu / max(1, count),
                        errors,
                    )
                    results.add(name, server.spec.name, sample)
                    print(
                        f"bench: round {round_number + 1} ws {name:9} {server.spec.name:10} "
                        f"{sample.rate:9,.0f} msg/s  p50 {sample.p50:6.2f} ms  "
                        f"p99 {sample.p99:6.2f} ms  {sample.cpu_per_message * 1e6:7.1f} CPU µs/msg"
                        + (f"  errors: {report['errors']}" if errors else ""),
                        flush=True,
                    )
    finally:
        for server in servers:
            server.stop()
    return results


HEADER = ["run", "server", "msg/s", f"× {WS_REFERENCE}", "p50 ms", "p99 ms", "CPU µs/msg"]


def tables(results: WsResults) -> str:
    """The WebSocket table and houweb's WebSocket targets, as Markdown."""
    rows = []
    for run, by_server in results.samples.items():
        for server in (s.name for s in WS_SERVERS):
            if server not in by_server:
                continue
            errors = sum(s.errors for s in by_server[server])
            cpu = results.median(run, server, "cpu_per_message")
            ratio = results.ratio(run, server)
            rows.append(
                [
                    run,
                    server,
                    f"{results.median(run, server, 'rate'):,.0f}"
                    + (f" ({errors} errors)" if errors else ""),
                    f"{ratio:.2f}×" if ratio else "-",
                    f"{results.median(run, server, 'p50'):.2f}",
                    f"{results.median(run, server, 'p99'):.2f}",
                    f"{cpu * 1e6:,.0f}" if cpu is not None else "-",
                ]
            )
    targets = []
    for run, _, _ in WS_RUNS:
        ratio = results.ratio(run, "houweb")
        targets.append(
            [
                f"ws {run}: ≥ 1.0× {WS_REFERENCE}'s msg/s",
                f"{ratio:.2f}×" if ratio else "not measured",
                "-" if ratio is None else ("met" if ratio >= 1.0 else "NOT met"),
            ]
        )
    parts = [
        "### WebSockets (echo, bench.wsload)",
        "",
        markdown_table(HEADER, rows) if rows else "(not measured)",
        "",
        markdown_table(["target", "measured", ""], targets),
        "",
    ]
    parts += [f"- ws on {server}: {why}" for server, why in results.failed.items()]
    return "\n".join(parts)
