"""
What ``import houweb`` does, and leaves out, so that a server starts quickly
(bench/PROFILE.md, cold start): each check runs a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _run_fresh(code: str) -> str:
    """:returns: what a fresh interpreter running ``code`` printed."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def _gc_after_import(before: str = "") -> dict[str, object]:
    """:returns: the collector's state around ``import houweb``, ``before`` run first."""
    code = (
        "import gc, json\n"
        f"{before}\n"
        "full = gc.get_stats()[2]['collections']\n"
        "frozen = gc.get_freeze_count()\n"
        "import houweb\n"
        "print(json.dumps({'full_collections': gc.get_stats()[2]['collections'] - full,\n"
        "    'enabled': gc.isenabled(), 'frozen_before': frozen,\n"
        "    'frozen_after': gc.get_freeze_count(), 'young': gc.get_count()[0]}))\n"
    )
    result: dict[str, object] = json.loads(_run_fresh(code))
    return result


def test_importing_houweb_runs_no_full_garbage_collection():
    # Loading Twisted and Klein set off a full collection (and many younger
    # ones) over the growing heap: about 40-50 ms of the cold start.
    state = _gc_after_import()
    assert state["full_collections"] == 0
    assert state["young"] < 700  # the import's objects are not left to the next collection


def test_importing_houweb_leaves_the_collector_enabled_and_nothing_frozen():
    state = _gc_after_import()
    assert state["enabled"] is True
    assert state["frozen_after"] == 0


def test_importing_houweb_leaves_a_disabled_collector_disabled():
    state = _gc_after_import("gc.disable()")
    assert state["enabled"] is False


def test_importing_houweb_keeps_what_the_application_froze_frozen():
    state = _gc_after_import("keep = [[] for _ in range(100)]\ngc.freeze()")
    assert isinstance(state["frozen_before"], int) and state["frozen_before"] >= 100
    # gc.unfreeze() would have emptied the permanent generation; a few
    # frozen objects are freed meanwhile (their last reference dropped).
    assert isinstance(state["frozen_after"], int)
    assert state["frozen_after"] >= 0.9 * state["frozen_before"]
    assert state["enabled"] is True
