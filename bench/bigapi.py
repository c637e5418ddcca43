"""
The big-API-result scenario of ``python -m bench``: while wrk calls
``/hello`` on houweb, one client calls an API function whose result is about
10 MB of JSON, over and over. The hello clients' p99 with those calls is
compared with their p99 without them (issue 19: at most 2×, as the encoding
happens off the reactor thread).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field

from .load import LoadResult, run_wrk
from .procs import Cores, ServerProcess
from .report import markdown_table
from .servers import ServerSpec

SPEC = ServerSpec("houweb", "big_houweb", ("houweb",))
BIG_CALL = 'json=["big", [], {}]'
#: The target: hello's p99 with the big calls over its p99 without.
TARGET = 2.0


def call_big(port: int, timeout: float = 60.0) -> int:
    """Call ``big`` once. :returns: the size of its JSON result. :raises RuntimeError: unless 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST", "/api", BIG_CALL, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200 or not body.startswith(b"[{"):
        raise RuntimeError(f"big answered {response.status}: {body[:80]!r}")
    return len(body)


class BigCaller(threading.Thread):
    """Calls ``big`` back to back until stopped; counts the calls and times them."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self._port = port
        self._stopping = threading.Event()
        self.seconds: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        while not self._stopping.is_set():
            started = time.perf_counter()
            try:
                call_big(self._port)
            except (OSError, RuntimeError) as exc:
                self.error = str(exc)
                return
            self.seconds.append(time.perf_counter() - started)

    def stop(self) -> None:
        self._stopping.set()
        self.join(120)


@dataclass
class BigResults:
    """Hello under wrk alone and with the big calls, per round."""

    size: int = 0
    alone: list[LoadResult] = field(default_factory=list)
    loaded: list[LoadResult] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)  # seconds per big call
    calls_per_second: list[float] = field(default_factory=list)
    failed: str | None = None

    def growth(self) -> float | None:
        """:returns: the median per round of hello's p99 with the big calls over without."""
        pairs = [(b.p99, a.p99) for a, b in zip(self.alone, self.loaded) if a.p99]
        return statistics.median(b / a for b, a in pairs) if pairs else None


def measure(args: argparse.Namespace, cores: Cores, files: str, work: str) -> BigResults:
    """Start houweb's big server; per round, wrk on ``/hello`` alone, then with the big calls."""
    results = BigResults()
    server = ServerProcess.start(SPEC, files, cores, work)
    try:
        server.wait_ready(60)
        results.size = call_big(server.port)
        url = f"http://127.0.0.1:{server.port}/hello"
        run_wrk(url, 1, args.connections, cores)
        for round_number in range(args.rounds):
            alone = run_wrk(url, args.duration, args.connections, cores)
            caller = BigCaller(server.port)
            caller.start()
            loaded = run_wrk(url, args.duration, args.connections, cores)
            caller.stop()
            if caller.error:
                raise RuntimeError(caller.error)
            results.alone.append(alone)
            results.loaded.append(loaded)
            results.calls += caller.seconds
            results.calls_per_second.append(len(caller.seconds) / args.duration)
            print(
                f"bench: round {round_number + 1} bigapi hello p99 {alone.p99:6.2f} ms alone, "
                f"{loaded.p99:6.2f} ms with {len(caller.seconds)} big calls "
                f"({loaded.rps:,.0f} vs {alone.rps:,.0f} req/s)",
                flush=True,
            )
    except RuntimeError as exc:
        results.failed = str(exc)
    finally:
        server.stop()
    return results


def tables(results: BigResults) -> str:
    """The big-API table and its target, as Markdown."""
    if results.failed or not results.alone:
        return f"### Big API results\n\nnot measured: {results.failed}\n"

    def med(values: list[float]) -> float:
        return statistics.median(values)

    rows = [
        [
            "hello alone",
            f"{med([r.rps for r in results.alone]):,.0f}",
            f"{med([r.p50 for r in results.alone]):.2f}",
            f"{med([r.p99 for r in results.alone]):.2f}",
            "-",
        ],
        [
            "hello + big calls",
            f"{med([r.rps for r in results.loaded]):,.0f}",
            f"{med([r.p50 for r in results.loaded]):.2f}",
            f"{med([r.p99 for r in results.loaded]):.2f}",
            f"{med(results.calls_per_second):.1f} calls/s, {med(results.calls) * 1e3:.0f} ms each",
        ],
    ]
    growth = results.growth()
    met = "-" if growth is None else ("met" if growth <= TARGET else "NOT met")
    return "\n".join(
        [
            f"### Big API results ({results.size / 1e6:.1f} MB of JSON per call, houweb)",
            "",
            markdown_table(["hello clients", "req/s", "p50 ms", "p99 ms", "big calls"], rows),
            "",
            markdown_table(
                ["target", "measured", ""],
                [
                    [
                        f"hello p99 with big calls ≤ {TARGET:g}× without",
                        f"{growth:.2f}×" if growth else "-",
                        met,
                    ]
                ],
            ),
            "",
        ]
    )
