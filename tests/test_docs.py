"""
The documentation site (docs/): it builds without a warning, and the
tutorial's example serves, answers from Python and works in a browser.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import threads

from houweb._tap import load_application
from houweb.client import APIError, Service

from .browser import Browser, chromium_or_skip
from .children import Child
from .support import ROOT, skip_unless_ci

DOCS = os.path.join(ROOT, "docs")
TUTORIAL_APP = os.path.join(DOCS, "examples", "tutorial_app.py")
#: Seconds the whole Sphinx build may take.
BUILD_TIMEOUT = 300


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    try:
        import sphinx  # noqa: F401 - the docs (and test) extra's
    except ImportError:
        skip_unless_ci("sphinx is not installed (pip install '.[test]')")
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, str(out)],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index", "tutorial", "houdini", "deployment", "security", "operations", "api"):
        assert (out / f"{page}.html").is_file(), page
    api = (out / "api.html").read_text(encoding="utf-8")
    assert "max_num_threads" in api and "Service" in api  # autodoc found the docstrings
    tutorial = (out / "tutorial.html").read_text(encoding="utf-8")
    assert "api.shop.total" in tutorial  # the example file, included
    for chart in ("load_rps", "load_p99", "upload", "cold_start"):
        assert (out / "_images" / f"{chart}.png").stat().st_size > 1000, chart


def test_the_charts_read_the_numbers_of_bench_results():
    sys.path.insert(0, os.path.join(DOCS, "_ext"))
    try:
        import benchcharts
    finally:
        sys.path.remove(os.path.join(DOCS, "_ext"))
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), encoding="utf-8") as file:
        tables = benchcharts.parse_tables(file.read())
    load = next(rows for name, rows in tables.items() if name.startswith("Load"))
    hello = next(r for r in load if r["endpoint"] == "hello" and r["server"] == "houweb")
    assert benchcharts.number(hello["req/s"]) > 0
    assert {r["server"] for r in load} >= {"houweb", "klein-pool"}


def test_the_tutorial_app_serves_and_answers_from_python():
    with Child.houweb(f"--app={TUTORIAL_APP}", "--port=0") as child:
        port = child.port()
        shop = Service(f"http://127.0.0.1:{port}/api", timeout=10).shop
        assert shop.total([2.5, 4], 0.2) == 7.8
        with pytest.raises(APIError) as refused:
            shop.total([1], -1)
        assert refused.value.status_code == 422
        assert "tax cannot be negative" in str(refused.value)


@pytest.fixture
def browser():
    chromium = chromium_or_skip()
    with Browser(chromium) as opened:
        yield opened


PRESS_TOTAL = """
(async () => {
  const out = document.getElementById("total");
  const changed = new Promise((resolve) => new MutationObserver((_, observer) => {
    observer.disconnect(); resolve();
  }).observe(out, { childList: true, characterData: true, subtree: true }));
  document.getElementById("tax").value = TAX;
  document.getElementById("go").click();
  await changed;
  return out.value;
})()
"""


@pytest_twisted.ensureDeferred
async def test_the_tutorial_page_calls_the_function_in_a_browser(serve, browser):
    load_application(TUTORIAL_APP)
    port = (await serve()).port_numbers()[0]
    await threads.deferToThread(browser.goto, f"http://127.0.0.1:{port}/")
    shown = await threads.deferToThread(browser.evaluate, PRESS_TOTAL.replace("TAX", '"0.2"'))
    assert shown == "7.8"
    refused = await threads.deferToThread(browser.evaluate, PRESS_TOTAL.replace("TAX", '"-1"'))
    assert refused == "422: tax cannot be negative"
