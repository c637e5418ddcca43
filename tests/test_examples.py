"""
The examples in ``examples/``: the live-progress page, in-process over real
sockets and end to end in headless Chromium.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import pytest
import pytest_twisted

from .browser import Browser
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


#: Resolves once the progress page's job has ended, with what the page shows.
#: The page's own status line says so ("finished N steps", "failed: ...",
#: "WebSocket error"); the wait is on its changes, not on a clock.
PAGE_WHEN_DONE = """
new Promise((resolve) => {
  const status = document.getElementById("status");
  const done = () => {
    const text = status.textContent;
    if (!/^(finished|failed|WebSocket error)/.test(text)) return false;
    const bar = document.getElementById("bar");
    resolve({status: text, value: bar.value, updates: Number(bar.dataset.updates || 0),
             percent: document.getElementById("percent").textContent});
    return true;
  };
  if (!done()) new MutationObserver(done).observe(status, {childList: true, subtree: true,
                                                            characterData: true});
})
"""


def test_progress_page_in_headless_chromium_reaches_100_percent():
    """
    The page in a real browser: it opens its WebSocket, calls the API
    function, and moves its bar live to 100% as the steps arrive. (The
    page is waited on through the DevTools protocol: a virtual-time budget
    could run out before the WebSocket opened on a loaded machine.)
    """
    server = ServerProcess(os.path.join(PROGRESS, "server.py"), "0")
    try:
        port = server.port()
        with Browser(debian_program("chromium", "chromium"), timeout=60) as browser:
            browser.goto(f"http://127.0.0.1:{port}/#start")
            shown = browser.evaluate(PAGE_WHEN_DONE, timeout=60)
    finally:
        server.kill()
    assert shown["status"] == "finished 40 steps", shown
    assert shown["value"] == 100 and shown["percent"] == "100%", shown
    assert shown["updates"] > 2, shown  # it moved, live
