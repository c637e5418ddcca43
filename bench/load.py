"""Driving a server with wrk and reading its report."""

from __future__ import annotations

import os
import re
import resource
import subprocess
from dataclasses import dataclass, replace

from .procs import Cores

HERE = os.path.dirname(os.path.abspath(__file__))

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_REQS = re.compile(r"Requests/sec:\s*([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_BAD = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class LoadResult:
    """
    One wrk run: requests per second and latency percentiles (ms), and how
    busy wrk itself was: on a 2-CPU machine a load generator with one CPU can
    be the limit (1 MiB responses), and then req/s says how fast wrk is.
    """

    rps: float
    p50: float
    p99: float
    errors: int
    requests: int = 0
    #: wrk's CPU time over the run's wall time and its threads: 1.0 is all
    #: of its CPUs, the run measured the client as much as the server.
    client_busy: float = 0.0
    #: wrk's CPU seconds per request it completed.
    client_cpu_per_request: float = 0.0


def wrk_script(endpoint: str) -> str | None:
    """:returns: the wrk Lua script an endpoint needs (POST bodies), if any."""
    return os.path.join(HERE, "api.lua") if endpoint == "api" else None


def run_wrk(
    url: str, seconds: float, connections: int, cores: Cores, script: str | None = None
) -> LoadResult:
    """Run wrk against ``url`` on the load CPUs, one thread per CPU."""
    threads = max(1, len(cores.load)) if cores.load else 1
    command = [
        *cores.prefix(cores.load),
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    if script:
        command += ["-s", script]
    before = _children_cpu()
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    cpu = _children_cpu() - before
    result = parse_wrk(output)
    duration = max(1, round(seconds))
    return replace(
        result,
        client_busy=cpu / (duration * min(threads, connections)),
        client_cpu_per_request=cpu / max(1, result.requests),
    )


def _children_cpu() -> float:
    """:returns: the user and system CPU seconds of this process's waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk(output: str) -> LoadResult:
    """:returns: the figures of a ``wrk --latency`` report."""
    reqs = _REQS.search(output)
    if reqs is None:
        raise ValueError(f"no Requests/sec in wrk's output:\n{output}")
    percentiles = {int(p): float(v) * _UNITS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    errors = sum(int(n) for n in _BAD.findall(output))
    socket_errors = _ERRORS.search(output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    total = _TOTAL.search(output)
    return LoadResult(
        float(reqs.group(1)),
        percentiles.get(50, 0.0),
        percentiles.get(99, 0.0),
        errors,
        int(total.group(1)) if total else 0,
    )
