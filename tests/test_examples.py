"""
The examples in ``examples/``: the live-progress page, in-process over real
sockets and end to end in headless Chromium.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tempfile
from typing import Any

import pytest
import pytest_twisted

from .browser import HEADLESS_FLAGS
from .support import ROOT, ServerProcess, debian_program, ws_connect

PROGRESS = os.path.join(ROOT, "examples", "progress")


def load_example(path: str) -> Any:
    """Run an example module, registering its handlers in the current registry."""
    spec = importlib.util.spec_from_file_location("houweb_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_twisted.ensureDeferred
async def test_progress_example_reports_every_step_over_the_websocket(serve, client):
    load_example(os.path.join(PROGRESS, "server.py"))
    port = (await serve()).port_numbers()[0]
    page = await client.get(port, "/")
    assert page.status == 200 and b'<progress id="bar"' in page.body
    ws = await ws_connect(port, "/progress?job=j1")
    call = json.dumps(["jobs.render", ["j1"], {"steps": 5, "seconds": 0.05}])
    reply = await client.post(port, "/api", data={"json": call})
    assert json.loads(reply.body) == {"job": "j1", "steps": 5}
    steps = [json.loads(await ws.next_message()) for _ in range(5)]
    assert steps == [{"done": n, "total": 5} for n in range(1, 6)]
    ws.sendClose(1000)
    await ws.wait_closed()


@pytest_twisted.ensureDeferred
async def test_progress_example_refuses_sockets_without_a_job(serve):
    load_example(os.path.join(PROGRESS, "server.py"))
    port = (await serve()).port_numbers()[0]
    with pytest.raises(ConnectionError):
        await ws_connect(port, "/progress")


def chromium() -> str:
    """Chromium, installed from Debian's package when missing (else the test skips)."""
    return debian_program("chromium", "chromium")


def dump_dom(url: str, budget_ms: int = 30000) -> str:
    """Load ``url`` in a fresh headless Chromium; :returns: the DOM once the page is idle."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                chromium(),
                *HEADLESS_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return result.stdout


def test_progress_page_in_headless_chromium_reaches_100_percent():
    server = ServerProcess(os.path.join(PROGRESS, "server.py"), "0")
    try:
        port = server.port()
        dom = dump_dom(f"http://127.0.0.1:{port}/#start")
    finally:
        server.kill()
    bar = re.search(r"<progress [^>]*>", dom)
    assert bar is not None, dom
    assert 'value="100"' in bar.group(0)
    updates = re.search(r'data-updates="(\d+)"', bar.group(0))
    assert updates is not None and int(updates.group(1)) > 2  # it moved, live
    assert '<span id="percent">100%</span>' in dom
    assert '<p id="status">finished 40 steps</p>' in dom
