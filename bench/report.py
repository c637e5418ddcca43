"""
The figures of one benchmark run, their ratios to the bare Klein design, the
targets houweb must reach, and RESULTS.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from .load import LoadResult
from .servers import BASELINE

MIB = 1 << 20
#: The static reference for the static-file targets.
STATIC_REFERENCE = "twisted-web"


@dataclass(frozen=True)
class LoadSample:
    """
    One wrk run of one server on one endpoint, with the server's peak RSS and
    the CPU time it spent per request (all its threads): unlike req/s, CPU
    time per request hardly moves when other programs load the machine.
    """

    result: LoadResult
    peak_rss: int
    cpu_per_request: float = 0.0


@dataclass(frozen=True)
class UploadSample:
    """One streamed upload: seconds, and peak RSS growth over the RSS before it."""

    seconds: float
    growth: int


@dataclass
class Results:
    """Everything measured in one run, by endpoint then server."""

    load: dict[str, dict[str, list[LoadSample]]] = field(default_factory=dict)
    upload: dict[str, UploadSample] = field(default_factory=dict)
    upload_size: int = 0
    cold: dict[str, list[float]] = field(default_factory=dict)
    #: ``(endpoint, server)`` pairs that did not answer correctly, with why.
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    settings: str = ""
    #: Tables of the scenarios with their own servers (bench.ws, bench.bigapi), as Markdown.
    sections: list[str] = field(default_factory=list)

    def add_load(self, endpoint: str, server: str, sample: LoadSample) -> None:
        self.load.setdefault(endpoint, {}).setdefault(server, []).append(sample)

    def rps(self, endpoint: str, server: str) -> float | None:
        samples = self.load.get(endpoint, {}).get(server)
        return statistics.median(s.result.rps for s in samples) if samples else None

    def rps_ratio(self, endpoint: str, server: str, base: str = BASELINE) -> float | None:
        """
        :returns: the median over rounds of ``server``'s req/s divided by
            ``base``'s in the same round: two runs a few seconds apart share
            most of whatever else loads the machine, so the ratio is steadier
            than either figure.
        """
        ours = self.load.get(endpoint, {}).get(server)
        theirs = self.load.get(endpoint, {}).get(base)
        if not ours or not theirs:
            return None
        pairs = [(a.result.rps, b.result.rps) for a, b in zip(ours, theirs) if b.result.rps]
        return statistics.median(a / b for a, b in pairs) if pairs else None

    def cpu_per_request(self, endpoint: str, server: str) -> float | None:
        """:returns: the median CPU seconds the server spent per request."""
        samples = self.load.get(endpoint, {}).get(server)
        return statistics.median(s.cpu_per_request for s in samples) if samples else None

    def client_busy(self, endpoint: str, server: str) -> float | None:
        """:returns: the median share of its CPUs wrk used against ``server``."""
        samples = self.load.get(endpoint, {}).get(server)
        return statistics.median(s.result.client_busy for s in samples) if samples else None

    def pair_cpu_per_request(self, endpoint: str, server: str) -> float | None:
        """
        :returns: the median CPU seconds per request of the server and wrk
            together. On loopback the kernel's work of moving the bytes is
            charged to whichever side's system call drives it, so with large
            responses a server can shift CPU to the client (``sendfile``
            leaves the sending to ACKs processed in wrk's reads): the sum is
            what a response costs the machine.
        """
        samples = self.load.get(endpoint, {}).get(server)
        if not samples:
            return None
        return statistics.median(
            s.cpu_per_request + s.result.client_cpu_per_request for s in samples
        )

    def latency(self, endpoint: str, server: str) -> tuple[float, float] | None:
        """:returns: median p50 and p99 in ms."""
        samples = self.load.get(endpoint, {}).get(server)
        if not samples:
            return None
        return (
            statistics.median(s.result.p50 for s in samples),
            statistics.median(s.result.p99 for s in samples),
        )

    def peak_rss(self, endpoint: str, server: str) -> int | None:
        samples = self.load.get(endpoint, {}).get(server)
        return max(s.peak_rss for s in samples) if samples else None

    def cold_start(self, server: str) -> float | None:
        runs = self.cold.get(server)
        return statistics.median(runs) if runs else None


def _ratio(value: float | None, base: float | None = 1.0) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}×"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def load_rows(results: Results, servers: Sequence[str]) -> list[list[str]]:
    """Rows of the throughput table: one per endpoint and server."""
    rows = []
    for endpoint, by_server in results.load.items():
        base_rss = results.peak_rss(endpoint, BASELINE)
        base_cpu = results.cpu_per_request(endpoint, BASELINE)
        for server in servers:
            if (endpoint, server) in results.failed:
                rows.append([endpoint, server, "failed"] + ["-"] * 9)
                continue
            if server not in by_server:
                continue
            rps = results.rps(endpoint, server)
            p50, p99 = results.latency(endpoint, server) or (0.0, 0.0)
            rss = results.peak_rss(endpoint, server)
            cpu = results.cpu_per_request(endpoint, server)
            errors = sum(s.result.errors for s in by_server[server])
            rows.append(
                [
                    endpoint,
                    server,
                    _num(rps) + (f" ({errors} errors)" if errors else ""),
                    _ratio(results.rps_ratio(endpoint, server)),
                    _num(p50, 2),
                    _num(p99, 2),
                    f"{p99 / p50:.1f}" if p50 else "-",
                    _num(cpu * 1e6 if cpu else None),
                    _ratio(cpu, base_cpu),
                    _num(rss / MIB if rss else None, 1),
                    _ratio(rss, base_rss),
                    _num(results.client_busy(endpoint, server), 2),
                ]
            )
    return rows


LOAD_HEADER = [
    "endpoint",
    "server",
    "req/s",
    "× bare",
    "p50 ms",
    "p99 ms",
    "p99/p50",
    "CPU µs/req",
    "× bare",
    "peak RSS MiB",
    "× bare",
    "wrk busy",
]


def upload_rows(results: Results, servers: Sequence[str]) -> list[list[str]]:
    base = results.upload.get(BASELINE)
    rows = []
    for server in servers:
        if ("upload", server) in results.failed:
            rows.append([server, "failed", "-", "-", "-"])
        elif server in results.upload:
            sample = results.upload[server]
            rows.append(
                [
                    server,
                    f"{sample.seconds:.2f}",
                    _ratio(sample.seconds, base.seconds if base else None),
                    f"{sample.growth / MIB:.1f}",
                    _ratio(sample.growth, base.growth if base else None),
                ]
            )
    return rows


UPLOAD_HEADER = ["server", "seconds", "× bare", "peak RSS growth MiB", "× bare"]


def cold_rows(results: Results, servers: Sequence[str]) -> list[list[str]]:
    base = results.cold_start(BASELINE)
    return [
        [server, f"{results.cold_start(server):.3f}", _ratio(results.cold_start(server), base)]
        for server in servers
        if results.cold_start(server) is not None
    ]


COLD_HEADER = ["server", "seconds to first answer", "× bare"]


@dataclass(frozen=True)
class Target:
    """One of houweb's targets (issues 7 and 19), and whether this run met it."""

    what: str
    measured: str
    met: bool | None  # None: not measured in this run
    #: What to say instead of met / NOT met / "-", when neither is true.
    verdict: str | None = None


#: Issue 19's req/s targets over the bare design: (done at, goal).
RPS_TARGETS = {"hello": (1.3, 1.5), "api": (1.6, 2.0)}

#: Issue 19's target for static files over twisted.web's ``static.File``.
STATIC_TARGET = 1.2

#: wrk using this share of its CPUs or more was the limit of the run.
CLIENT_BOUND = 0.9


def targets(results: Results) -> list[Target]:
    """Issues 7's and 19's targets, checked against this run."""
    found: list[Target] = []
    for endpoint in ("hello", "api"):
        ratio = results.rps_ratio(endpoint, "houweb")
        done_at, goal = RPS_TARGETS[endpoint]
        found.append(
            Target(
                f"{endpoint}: ≥ {done_at:.1f}× the bare design's req/s (goal {goal:.1f}×)",
                f"{ratio:.2f}×" if ratio else "not measured",
                None if ratio is None else ratio >= done_at,
            )
        )
        latency = results.latency(endpoint, "houweb")
        spread = latency[1] / latency[0] if latency and latency[0] else None
        found.append(
            Target(
                f"{endpoint}: p99 ≤ 3× p50",
                f"{spread:.1f}×" if spread else "not measured",
                None if spread is None else spread <= 3.0,
            )
        )
    for endpoint in ("static", "file"):
        found.append(_static_target(results, endpoint))
    upload = results.upload.get("houweb")
    found.append(
        Target(
            f"upload of {results.upload_size // MIB} MiB: peak RSS growth < 32 MiB",
            f"{upload.growth / MIB:.1f} MiB" if upload else "not measured",
            None if upload is None else upload.growth < 32 * MIB,
        )
    )
    cold = results.cold_start("houweb")
    found.append(
        Target(
            "cold start < 0.3 s",
            f"{cold:.3f} s" if cold is not None else "not measured",
            None if cold is None else cold < 0.3,
        )
    )
    return found


def _static_target(results: Results, endpoint: str) -> Target:
    """
    Static files against twisted.web, by req/s. A side against which wrk was
    the limit could have answered more than it did: houweb's req/s is then
    a floor, so only a ratio at or over the target shows anything (met);
    twisted.web's is a floor, so only a ratio under it does (NOT met). Where
    the ratio cannot show the target either way, the verdict says so and the
    CPU per response of server and wrk together is given beside it.
    """
    what = f"{endpoint}: ≥ {STATIC_TARGET:.1f}× twisted.web static.File's req/s"
    ratio = results.rps_ratio(endpoint, "houweb", STATIC_REFERENCE)
    if ratio is None:
        return Target(what, "not measured", None)
    ours = results.client_busy(endpoint, "houweb") or 0.0
    theirs = results.client_busy(endpoint, STATIC_REFERENCE) or 0.0
    if ratio >= STATIC_TARGET and theirs < CLIENT_BOUND:
        return Target(what, f"{ratio:.2f}×", True)
    if ratio < STATIC_TARGET and ours < CLIENT_BOUND:
        return Target(what, f"{ratio:.2f}×", False)
    pair = results.pair_cpu_per_request(endpoint, "houweb")
    their_pair = results.pair_cpu_per_request(endpoint, STATIC_REFERENCE)
    return Target(
        what,
        f"{ratio:.2f}× (wrk {ours:.2f} busy against houweb, {theirs:.2f} against "
        f"twisted.web; server + wrk CPU per response: houweb {_num(pair and pair * 1e6)} µs, "
        f"twisted.web {_num(their_pair and their_pair * 1e6)} µs)",
        None,
        "not shown: wrk was the limit",
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, its columns padded so it reads as plain text too."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)])


def tables(results: Results, servers: Sequence[str]) -> str:
    """Every table of a run, as Markdown."""
    parts = []
    if results.load:
        parts += [
            "### Load (wrk)",
            "",
            markdown_table(LOAD_HEADER, load_rows(results, servers)),
            "",
        ]
    if results.upload or any(e == "upload" for e, _ in results.failed):
        size = results.upload_size // MIB
        parts += [
            f"### Streamed upload of {size} MiB",
            "",
            markdown_table(UPLOAD_HEADER, upload_rows(results, servers)),
            "",
        ]
    if results.cold:
        parts += [
            "### Cold start",
            "",
            markdown_table(COLD_HEADER, cold_rows(results, servers)),
            "",
        ]
    parts += results.sections
    checked = targets(results)
    rows = [
        [t.what, t.measured, t.verdict or {True: "met", False: "NOT met", None: "-"}[t.met]]
        for t in checked
    ]
    parts += ["### houweb's targets", "", markdown_table(["target", "measured", ""], rows), ""]
    if results.failed:
        parts += (
            ["Failed:", ""]
            + [f"- {e} on {s}: {why}" for (e, s), why in results.failed.items()]
            + [""]
        )
    return "\n".join(parts)


def machine() -> str:
    """:returns: CPU count and model, OS and Python, for the record."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


REPRODUCE = """\
## Reproduce

    python3 -m venv .venv && . .venv/bin/activate
    pip install -e '.[bench]'
    python -m bench            # full run, rewrites bench/RESULTS.md
    python -m bench --quick    # a short run, prints the tables only

`python -m bench --help` lists the options (servers, endpoints, duration,
rounds, connections, upload size). The setup step installs wrk with apt-get
when it is missing, and the peers from bench/requirements.txt.

Every figure is a median over the rounds; each round runs every endpoint on
every server one after another, in a rotating order, so that load from
elsewhere on the machine is spread over all of them. The req/s ratios are
medians of per-round ratios (runs seconds apart share most of the noise).
"× bare" divides by the
bare design houweb is built on (`klein-pool`: a Klein route per endpoint,
handlers in a 4-thread pool through deferToThreadPool, Twisted's asyncio
reactor on uvloop's loop). For req/s higher is better; for latency, memory
and seconds lower is better. CPU µs/req is the server's CPU time (all its
threads, from /proc/PID/stat) over the requests wrk completed: it hardly
moves when other programs load the machine, so it shows an optimisation
where req/s is too noisy. "wrk busy" is wrk's CPU time over its CPUs and
the run's time: near 1.0, wrk was the limit, not the server (1 MiB
responses on a 2-CPU machine). Peak RSS is the server's VmHWM during the run
(reset before each run through /proc/PID/clear_refs).

The servers, in bench/servers/: `houweb` (handlers in its pool, run() in the
foreground), `klein-pool` (the bare design), `twisted-web` (plain resources
and static.File on the reactor thread, default reactor), `flask` (Werkzeug's
threaded server), `aiohttp` (its own server, uvloop), `uvicorn` (Starlette
on uvicorn). The upload is a multipart/form-data body streamed by the client
one MiB at a time. Flask spools file parts to temporary files; the others
stream the body through the multipart package's push parser into a temporary
file (twisted.web and Klein after twisted.web spooled the body to a temporary
file of its own: its in-memory request.args parsing is turned off for
multipart bodies, as it needs about 12 times the upload's size in memory).

Two scenarios have servers of their own. WebSockets (`bench/ws.py`):
houweb's `webSocket` echo, aiohttp's and the `websockets` library's, driven
by `bench/wsload.py` (16 connections, each sending a message and waiting
for its echo; 16 B text and 1 MiB binary); CPU µs/msg as above. Big API
results (`bench/bigapi.py`): wrk on houweb's /hello alone, then while one
client fetches a 10 MB JSON result from an API function back to back.

Profiles, and what stands in the way of the targets not met: bench/PROFILE.md
(`python -m bench.profile` takes them).
"""


def results_markdown(results: Results, servers: Sequence[str], notes: str = "") -> str:
    """The whole RESULTS.md."""
    today = datetime.date.today().isoformat()
    return "\n".join(
        [
            "# houweb benchmark results",
            "",
            f"- Date: {today}",
            f"- Machine: {machine()}",
            f"- Settings: {results.settings}",
            "",
            tables(results, servers),
            notes,
            REPRODUCE,
        ]
    )
