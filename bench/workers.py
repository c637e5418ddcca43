"""
``python -m bench.workers``: how houweb's ``workers`` option scales. Runs
houweb's benchmark server with 1 and then N worker processes, unpinned (the
processes and wrk share every CPU), in alternating rounds, and prints the
hello-world req/s of each and their ratio (a median over the rounds).

Issue 7's target: 2 workers on 2 cores at least 1.6x one worker. On a
machine with only 2 CPUs the load generator needs one of them too, so the
ceiling there is well below 2x; the ratio is printed as measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence

from .load import run_wrk
from .prepare import ensure_wrk, make_files
from .procs import Cores, ServerProcess
from .servers import SERVERS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="processes to compare with 1")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--endpoint", default="/hello", help="path to load")
    return parser.parse_args(argv)


def measure(files: str, workers: int, options: argparse.Namespace, log_dir: str) -> float:
    """:returns: req/s of houweb with ``workers`` processes on ``options.endpoint``."""
    spec = next(spec for spec in SERVERS if spec.name == "houweb")
    server = ServerProcess.start(spec, files, Cores(), log_dir, "--workers", str(workers))
    try:
        server.wait_ready()
        url = f"http://127.0.0.1:{server.port}{options.endpoint}"
        run_wrk(url, 1, options.connections, Cores())  # every worker up and warm
        result = run_wrk(url, options.duration, options.connections, Cores(load=_all_cpus()))
        if result.errors:
            raise RuntimeError(f"{result.errors} failed requests with {workers} worker(s)")
        return result.rps
    finally:
        server.stop()


def _all_cpus() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="houweb-bench-") as directory:
        files = make_files(directory)
        ratios, one, many = [], [], []
        for round_number in range(1, options.rounds + 1):
            single = measure(files, 1, options, directory)
            several = measure(files, options.workers, options, directory)
            one.append(single)
            many.append(several)
            ratios.append(several / single)
            print(
                f"round {round_number}: 1 worker {single:,.0f} req/s, "
                f"{options.workers} workers {several:,.0f} req/s ({several / single:.2f}x)",
                flush=True,
            )
    print(
        f"\n{os.cpu_count()} CPUs, {options.connections} connections, {options.endpoint}: "
        f"1 worker {statistics.median(one):,.0f} req/s, {options.workers} workers "
        f"{statistics.median(many):,.0f} req/s, median ratio {statistics.median(ratios):.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
