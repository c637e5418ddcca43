"""
A Sphinx extension drawing the benchmark charts of ``docs/benchmarks.rst``
from the tables of ``bench/RESULTS.md`` (what ``python -m bench --write``
produces), so the charts never disagree with the published numbers.

The PNGs are written to ``docs/_charts/`` (not versioned) when the build
starts, with matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

import os
import re
from typing import Any

#: (file name, section of RESULTS.md, value column, y label, title)
LOAD_CHARTS = (
    ("load_rps.png", "req/s", "requests per second (higher is better)", "Throughput under wrk"),
    ("load_p99.png", "p99 ms", "p99 latency in ms (lower is better)", "Tail latency under wrk"),
)


def parse_tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """
    :returns: each ``### heading``'s first table, as rows of column -> text.
    """
    tables: dict[str, list[dict[str, str]]] = {}
    heading = None
    header: list[str] | None = None
    for line in markdown.splitlines():
        if line.startswith("### "):
            heading, header = line[4:].strip(), None
            continue
        if heading is None or not line.startswith("|"):
            if header is not None:
                heading, header = None, None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            tables[heading] = []
        elif not set("".join(cells)) <= set("-: "):
            tables[heading].append(dict(zip(header, cells)))
    return tables


def number(text: str) -> float:
    """``"5,480"`` -> 5480.0, ``"0.93×"`` -> 0.93."""
    return float(re.sub(r"[^\d.]", "", text))


def draw(results: str, out_dir: str) -> list[str]:
    """
    Draw every chart of ``results`` (the text of RESULTS.md) into ``out_dir``.

    :returns: the names of the files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = parse_tables(results)
    load = next(rows for name, rows in tables.items() if name.startswith("Load"))
    endpoints = list(dict.fromkeys(row["endpoint"] for row in load))
    servers = list(dict.fromkeys(row["server"] for row in load))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for file_name, column, label, title in LOAD_CHARTS:
        figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
        width = 0.8 / len(servers)
        for index, server in enumerate(servers):
            values = [
                next(
                    (
                        number(r[column])
                        for r in load
                        if r["endpoint"] == e and r["server"] == server
                    ),
                    0.0,
                )
                for e in endpoints
            ]
            positions = [
                e + (index - (len(servers) - 1) / 2) * width for e in range(len(endpoints))
            ]
            axes.bar(
                positions,
                values,
                width,
                label=server,
                edgecolor="black" if server == "houweb" else None,
            )
        axes.set_xticks(range(len(endpoints)), endpoints)
        axes.set_ylabel(label)
        axes.set_title(title)
        axes.legend(fontsize="small", ncol=3)
        figure.tight_layout()
        figure.savefig(os.path.join(out_dir, file_name))
        plt.close(figure)
        written.append(file_name)
    for file_name, prefix, column, label in (
        (
            "upload.png",
            "Streamed upload",
            "seconds",
            "seconds for a 1 GiB upload (lower is better)",
        ),
        (
            "cold_start.png",
            "Cold start",
            "seconds to first answer",
            "seconds to the first answer (lower is better)",
        ),
    ):
        rows = next(rows for name, rows in tables.items() if name.startswith(prefix))
        figure, axes = plt.subplots(figsize=(8, 3), dpi=100)
        names = [row["server"] for row in rows]
        axes.barh(
            names,
            [number(row[column]) for row in rows],
            color=["C0" if n == "houweb" else "C7" for n in names],
        )
        axes.invert_yaxis()
        axes.set_xlabel(label)
        figure.tight_layout()
        figure.savefig(os.path.join(out_dir, file_name))
        plt.close(figure)
        written.append(file_name)
    return written


def _on_builder_inited(app: Any) -> None:
    root = os.path.dirname(app.srcdir)
    with open(os.path.join(root, "bench", "RESULTS.md"), encoding="utf-8") as file:
        results = file.read()
    draw(results, os.path.join(app.srcdir, "_charts"))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
