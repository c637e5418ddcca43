"""
``python -m bench.profile``: profile one server on one endpoint under wrk
load with py-spy, write the collapsed stacks (for flamegraph.pl or
speedscope.app) and print where the reactor thread spends its time.

    python -m bench.profile --server houweb --endpoint hello --out hello.folded
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from . import prepare
from .load import wrk_script
from .procs import Cores, ServerProcess
from .run import LOAD_PATHS
from .servers import SERVERS


def summary(folded: str, thread: str = "MainThread", top: int = 30) -> str:
    """:returns: the functions ``thread`` spent most time in, by self and inclusive share."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(folded) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if thread not in frames[0]:
                continue
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames[1:]):
                inclusive[frame] += int(count)
    if not total:
        return f"no samples of {thread}"
    out = [f"{total} samples of {thread}", "", "self:"]
    out += [f"{n * 100 / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"{n * 100 / total:5.1f}%  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--server", default="houweb", choices=[s.name for s in SERVERS])
    parser.add_argument("--endpoint", default="hello", choices=list(LOAD_PATHS))
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of sampling")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--out", default="profile.folded", help="the collapsed stacks")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is missing: pip install -e '.[bench]'")
    prepare.ensure_wrk()
    spec = next(s for s in SERVERS if s.name == args.server)
    cores = Cores.split()
    with tempfile.TemporaryDirectory(prefix="houweb-profile-") as work:
        files = prepare.make_files(os.path.join(work, "files"))
        server = ServerProcess.start(spec, files, cores, work)
        try:
            server.wait_ready()
            url = f"http://127.0.0.1:{server.port}{LOAD_PATHS[args.endpoint]}"
            script = wrk_script(args.endpoint)
            wrk = subprocess.Popen(
                [
                    *cores.prefix(cores.load),
                    "wrk",
                    "-t1",
                    "-c16",
                    f"-d{round(args.seconds) + 3}s",
                    *(["-s", script] if script else []),
                    url,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                subprocess.run(
                    [
                        *cores.prefix(cores.load),
                        "py-spy",
                        "record",
                        "--pid",
                        str(server.process.pid),
                        "--duration",
                        str(round(args.seconds)),
                        "--rate",
                        str(args.rate),
                        "--threads",
                        "--format",
                        "raw",
                        "--output",
                        args.out,
                    ],
                    check=True,
                )
            finally:
                output, _ = wrk.communicate()
            print(output, file=sys.stderr)
        finally:
            server.stop()
    print(summary(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
