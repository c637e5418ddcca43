"""
``python -m bench``: start every server side by side, check each endpoint,
drive them with wrk in interleaved rounds, stream a large upload to each,
time cold starts, and print (and for a full run write) the tables.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Sequence

from . import bigapi, prepare, report, ws
from .load import run_wrk, wrk_script
from .procs import Cores, ServerProcess, get
from .report import LoadSample, Results, UploadSample
from .servers import BASELINE, SERVERS, ServerSpec
from .servers.common import HELLO, STATIC_NAME, STATIC_SIZE
from .upload import stream_upload

#: Endpoints driven by wrk, and their paths.
LOAD_PATHS = {
    "hello": "/hello",
    "api": "/api",
    "static": f"/static/{STATIC_NAME}",
    "file": "/file",
}
ENDPOINTS = (*LOAD_PATHS, "upload", "cold", "ws", "bigapi")
RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short run: 3 s, 1 round, 64 MiB upload"
    )
    parser.add_argument(
        "--servers",
        default=",".join(s.name for s in SERVERS),
        help="comma-separated servers (default: all installed); the baseline is always run",
    )
    parser.add_argument(
        "--endpoints", default=",".join(ENDPOINTS), help="comma-separated: " + ",".join(ENDPOINTS)
    )
    parser.add_argument(
        "--duration", type=float, help="seconds of load per run (default 10, quick 3)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--upload-mib", type=int, help="upload size in MiB (default 1024, quick 64)"
    )
    parser.add_argument("--cold-runs", type=int, help="cold starts per server (default 5, quick 2)")
    parser.add_argument("--no-setup", action="store_true", help="do not install wrk or the peers")
    parser.add_argument(
        "--write",
        metavar="PATH",
        help="write the results there (a full run writes bench/RESULTS.md)",
    )
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.upload_mib = args.upload_mib or (64 if args.quick else 1024)
    args.cold_runs = args.cold_runs or (2 if args.quick else 5)
    if args.write is None and not args.quick:
        args.write = RESULTS_PATH
    return args


def chosen_servers(names: str) -> list[ServerSpec]:
    """The servers asked for whose modules are installed, the baseline always among them."""
    wanted = {n.strip() for n in names.split(",") if n.strip()} | {BASELINE}
    unknown = wanted - {s.name for s in SERVERS}
    if unknown:
        raise SystemExit(f"unknown servers: {', '.join(sorted(unknown))}")
    chosen = []
    for spec in SERVERS:
        if spec.name not in wanted:
            continue
        missing = [m for m in spec.needs if importlib.util.find_spec(m) is None]
        if missing:
            print(f"bench: skipping {spec.name}: {', '.join(missing)} not installed", flush=True)
        else:
            chosen.append(spec)
    return chosen


def post_api(port: int) -> tuple[int, bytes]:
    """:returns: the status and body of the API call wrk sends."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        body = 'json=["add", [1, 2], {}]'
        conn.request("POST", "/api", body, {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check(server: ServerProcess, endpoint: str) -> str | None:
    """:returns: why ``endpoint`` does not answer correctly, or ``None`` when it does."""
    try:
        if endpoint == "api":
            status, body = post_api(server.port)
            good = status == 200 and json.loads(body) == 3
        else:
            status, body = get(server.port, LOAD_PATHS[endpoint])
            good = status == 200 and (
                body == HELLO if endpoint == "hello" else len(body) == STATIC_SIZE
            )
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if good else f"answered {status}: {body[:80]!r}"


def measure_load(
    servers: list[ServerProcess],
    endpoints: list[str],
    args: argparse.Namespace,
    cores: Cores,
    results: Results,
) -> None:
    """Warm every server up, then run the interleaved rounds."""
    working = {e: [s for s in servers if (e, s.spec.name) not in results.failed] for e in endpoints}
    for endpoint in endpoints:
        for server in working[endpoint]:
            url = f"http://127.0.0.1:{server.port}{LOAD_PATHS[endpoint]}"
            run_wrk(url, 1, args.connections, cores, wrk_script(endpoint))
    for round_number in range(args.rounds):
        for endpoint in endpoints:
            order = working[endpoint]
            shift = round_number % max(1, len(order))
            for server in order[shift:] + order[:shift]:
                url = f"http://127.0.0.1:{server.port}{LOAD_PATHS[endpoint]}"
                server.reset_peak()
                cpu = server.cpu_seconds()
                result = run_wrk(url, args.duration, args.connections, cores, wrk_script(endpoint))
                cpu = server.cpu_seconds() - cpu
                sample = LoadSample(result, server.status("VmHWM"), cpu / max(1, result.requests))
                results.add_load(endpoint, server.spec.name, sample)
                print(
                    f"bench: round {round_number + 1} {endpoint:6} {server.spec.name:11} "
                    f"{result.rps:10,.0f} req/s  p50 {result.p50:6.2f} ms  p99 {result.p99:6.2f} ms"
                    f"  {sample.cpu_per_request * 1e6:7.1f} CPU µs/req",
                    flush=True,
                )


def measure_upload(servers: list[ServerProcess], size: int, results: Results) -> None:
    """Stream one upload of ``size`` bytes to each server."""
    results.upload_size = size
    for server in servers:
        before = server.status("VmRSS")
        server.reset_peak()
        try:
            seconds = stream_upload(server.port, size)
        except (OSError, RuntimeError) as exc:
            results.failed[("upload", server.spec.name)] = str(exc)
            continue
        growth = max(0, server.status("VmHWM") - before)
        results.upload[server.spec.name] = UploadSample(seconds, growth)
        print(
            f"bench: upload {server.spec.name:11} {seconds:6.2f} s  +{growth / report.MIB:.1f} MiB",
            flush=True,
        )


def measure_cold(
    specs: list[ServerSpec], runs: int, files: str, cores: Cores, log_dir: str, results: Results
) -> None:
    """Start each server ``runs`` times (interleaved); time until it first answers."""
    prepare.compile_sources()
    for _ in range(runs):
        for spec in specs:
            server = ServerProcess.start(spec, files, cores, log_dir)
            try:
                results.cold.setdefault(spec.name, []).append(server.wait_ready())
            except RuntimeError as exc:
                results.failed[("cold", spec.name)] = str(exc)
            finally:
                server.stop()
    for spec in specs:
        if spec.name in results.cold:
            print(f"bench: cold   {spec.name:11} {results.cold_start(spec.name):.3f} s", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        raise SystemExit(f"unknown endpoints: {', '.join(sorted(unknown))}")
    if not args.no_setup:
        prepare.ensure_peers()
        if any(e in LOAD_PATHS or e == "bigapi" for e in endpoints):
            prepare.ensure_wrk()
    specs = chosen_servers(args.servers)
    cores = Cores.split()
    if cores.load and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores.load)  # the upload client and the polling, too
    results = Results(
        settings=(
            f"{args.duration:g} s per run, {args.rounds} round(s), {args.connections} connections, "
            f"{cores.describe()}"
        )
    )
    print(f"bench: {results.settings}", flush=True)
    with tempfile.TemporaryDirectory(prefix="houweb-bench-") as work:
        files = prepare.make_files(os.path.join(work, "files"))
        served = [e for e in endpoints if e in LOAD_PATHS or e == "upload"]
        if served:
            run_servers(specs, served, files, work, args, cores, results)
        if "cold" in endpoints:
            measure_cold(specs, args.cold_runs, files, cores, work, results)
        if "ws" in endpoints:
            results.sections.append(ws.tables(ws.measure(args, cores, files, work)))
        if "bigapi" in endpoints:
            results.sections.append(bigapi.tables(bigapi.measure(args, cores, files, work)))
    names = [s.name for s in specs]
    print()
    print(report.tables(results, names))
    if args.write:
        with open(args.write, "w", encoding="utf-8") as out:
            out.write(report.results_markdown(results, names))
        print(f"bench: wrote {args.write}")
    return 0


def run_servers(
    specs: list[ServerSpec],
    endpoints: list[str],
    files: str,
    work: str,
    args: argparse.Namespace,
    cores: Cores,
    results: Results,
) -> None:
    """Start every server side by side, measure, and stop them all by PID."""
    servers: list[ServerProcess] = []
    try:
        for spec in specs:
            server = ServerProcess.start(spec, files, cores, work)
            servers.append(server)
        for server in list(servers):
            try:
                server.wait_ready()
            except RuntimeError as exc:
                print(f"bench: {exc}", file=sys.stderr, flush=True)
                for endpoint in endpoints:
                    results.failed[(endpoint, server.spec.name)] = str(exc)
                servers.remove(server)
                server.stop()
        load = [e for e in endpoints if e in LOAD_PATHS]
        for endpoint in load:
            for server in servers:
                why = check(server, endpoint)
                if why is not None:
                    results.failed[(endpoint, server.spec.name)] = why
        measure_load(servers, load, args, cores, results)
        if "upload" in endpoints:
            measure_upload(servers, args.upload_mib * report.MIB, results)
    finally:
        for server in servers:
            server.stop()
