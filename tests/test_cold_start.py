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
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _gc_after_import(before: str = "") -> dict[str, object]:
    """:returns: the collector's state around ``import houweb``, ``before`` run first."""
    code = (
        "import gc, json\n"
        f"{before}\n"
        "runs = [each['collections'] for each in gc.get_stats()]\n"
        "frozen = gc.get_freeze_count()\n"
        "import houweb\n"
        "after = [each['collections'] for each in gc.get_stats()]\n"
        "print(json.dumps({'collections': [b - a for a, b in zip(runs, after)],\n"
        "    'enabled': gc.isenabled(), 'frozen_before': frozen,\n"
        "    'frozen_after': gc.get_freeze_count()}))\n"
    )
    result: dict[str, object] = json.loads(_run_fresh(code))
    return result


def test_importing_houweb_runs_no_full_garbage_collection():
    # Loading Twisted and Klein set off a full collection and some 120
    # younger ones over the growing heap: about 40-50 ms of the cold start.
    collections = _gc_after_import()["collections"]
    assert isinstance(collections, list)
    young, middle, full = collections
    assert full == 0 and middle == 0
    assert young < 10  # before houweb pauses the collector, and after


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


#: Modules (and what they alone load) a server answering plain requests does
#: not need, each imported on first use: introspection's descriptions
#: (``houweb.functions``, OpenAPI, client.js), TLS ports and SSL_REDIRECT,
#: registerOpdefPath, the status page's HTML. Under ``-X importtime``: about
#: 1.2, 0.8, 0.5 and 0.9 ms.
ON_FIRST_USE = ("houweb._describe", "houweb._https", "houweb._opdef", "importlib.resources")


def _modules_after(code: str) -> set[str]:
    """:returns: the names in ``sys.modules`` once a fresh interpreter ran ``code``."""
    return set(_run_fresh(f"import sys\n{code}\nprint(' '.join(sys.modules))").split())


def test_importing_houweb_leaves_out_what_only_some_servers_use():
    loaded = _modules_after("import houweb")
    assert "houweb._api" in loaded and "houweb._port_runtime" in loaded
    for module in ON_FIRST_USE:
        assert module not in loaded, module


def test_a_plain_server_answers_without_loading_them():
    code = (
        "import threading, urllib.request, houweb\n"
        "from twisted.internet import reactor\n"
        "answers = []\n"
        "@houweb.urlHandler('/hello')\n"
        "def hello(request):\n"
        "    return houweb.Response('hi')\n"
        "@houweb.apiFunction()\n"
        "def add(request, a: int, b: int) -> int:\n"
        "    return a + b\n"
        "def ask(port):\n"
        "    try:\n"
        "        answers.append(urllib.request.urlopen(f'http://127.0.0.1:{port}/hello').read())\n"
        "    finally:\n"
        "        reactor.callFromThread(houweb.requestShutdown)\n"
        "def listening():\n"
        "    threading.Thread(target=ask, args=(houweb.serverPorts()[0],)).start()\n"
        "reactor.callWhenRunning(listening)\n"
        "houweb.run(port=0, in_background=False)\n"
        "assert answers == [b'hi'], answers\n"
    )
    loaded = _modules_after(code)
    for module in ON_FIRST_USE:
        assert module not in loaded, module
