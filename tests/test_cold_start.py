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
        "    'enabled': gc.isenabled(), 'threshold': gc.get_threshold(),\n"
        "    'frozen_before': frozen,\n"
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


def test_importing_houweb_puts_the_applications_threshold_back():
    assert _gc_after_import("gc.set_threshold(1234, 5, 6)")["threshold"] == [1234, 5, 6]
    # 0: the application turned automatic collection off, and it stays off.
    assert _gc_after_import("gc.set_threshold(0)")["threshold"][0] == 0


def test_an_import_that_fails_midway_puts_the_collector_back():
    code = (
        "import gc, sys\n"
        "before = gc.get_threshold()\n"
        "sys.modules['klein'] = None  # Klein missing: import houweb fails while held\n"
        "try:\n"
        "    import houweb\n"
        "except ImportError as exc:\n"
        "    print(repr(exc))\n"
        "print(gc.isenabled(), gc.get_threshold() == before, gc.get_freeze_count())\n"
    )
    error, state = _run_fresh(code).splitlines()
    assert "klein" in error
    assert state == "True True 0"


#: A hook that runs ``{action}`` in the middle of ``import houweb``, when
#: Klein is looked for: what another thread might do meanwhile.
_DURING_IMPORT = (
    "import sys\n"
    "class AtKlein:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'klein':\n"
    "            {action}\n"
    "        return None\n"
    "sys.meta_path.insert(0, AtKlein())\n"
)


def test_what_the_application_sets_during_the_import_is_kept():
    state = _gc_after_import(_DURING_IMPORT.format(action="gc.set_threshold(4321, 7, 8)"))
    assert state["threshold"] == [4321, 7, 8]
    state = _gc_after_import(_DURING_IMPORT.format(action="gc.disable()"))
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


def test_another_threads_garbage_is_collected_while_houweb_imports():
    # The collector's settings are the process's: a thread that makes cyclic
    # garbage while another imports houweb must not keep all of it until the
    # import ends (gc.disable() did: 3.4 GB from a thread churning through a
    # 7 s import). The importing thread is held inside the import, at
    # Klein's, while this one makes 400,000 cycles.
    code = (
        "import sys, threading\n"
        "inside, churned = threading.Event(), threading.Event()\n"
        "class HoldAtKlein:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'klein' and not inside.is_set():\n"
        "            inside.set()\n"
        "            assert churned.wait(60)\n"
        "        return None\n"
        "sys.meta_path.insert(0, HoldAtKlein())\n"
        "importer = threading.Thread(target=__import__, args=('houweb',))\n"
        "importer.start()\n"
        "assert inside.wait(60)\n"
        "freed = [0]\n"
        "class Node:\n"
        "    __slots__ = ('other',)\n"
        "    def __del__(self):\n"
        "        freed[0] += 1\n"
        "made = 0\n"
        "for _ in range(400_000):\n"
        "    a, b = Node(), Node()\n"
        "    a.other, b.other = b, a\n"
        "    made += 2\n"
        "del a, b\n"
        "churned.set()\n"
        "importer.join(60)\n"
        "assert 'houweb' in sys.modules\n"
        "print(made - freed[0])\n"
    )
    kept = int(_run_fresh(code))
    assert kept <= 300_000  # of 800,000: the rest was collected meanwhile


def test_the_imports_garbage_is_collected_or_frozen_in_bounds():
    # import houweb runs no collection: the ~2,000 unreachable objects its
    # imports leave (attrs' rebuilt classes, datetime's pure-Python ones) are
    # left to the collector, and a gc.collect() frees them...
    assert int(_run_fresh("import gc, houweb\nprint(gc.collect())")) > 100
    # ...while a foreground run() freezes them with the start-up heap, for
    # the process's life: a bounded amount, once (_run.freeze_start_up_heap).
    code = (
        "import gc, tracemalloc\n"
        "tracemalloc.start()\n"
        "import houweb\n"
        "from twisted.internet import reactor\n"
        "found = []\n"
        "def frozen_garbage():\n"
        "    gc.unfreeze()\n"
        "    before = tracemalloc.get_traced_memory()[0]\n"
        "    gc.collect()\n"
        "    found.append(tracemalloc.get_traced_memory()[0] - before)\n"
        "    houweb.requestShutdown()\n"
        "reactor.callWhenRunning(frozen_garbage)\n"
        "houweb.run(port=0, in_background=False)\n"
        "print(-found[0])\n"
    )
    freed = int(_run_fresh(code))
    assert 0 < freed < 2 * 1024 * 1024
