"""
No import cycles inside ``houweb/``: every module can be read (and imported)
after the modules it imports, never half-initialised by one that imports it
back. The graph is read from the source with :mod:`ast`: module-level
imports and the ones inside functions alike (a lazy import that closes a
circle is still a circle, only a later one). Imports under
``if TYPE_CHECKING:`` never run and are left out: they are how a type hint
names a module that imports this one.
"""

from __future__ import annotations

import ast
import os
import re
from collections import deque

from .support import ROOT

PACKAGE = "houweb"

#: Cycles left for the engineers who own the files (issue 16), each with the
#: imports that close it. A cycle found must lie within one of these; remove
#: an entry once its cycle is broken (test_each_known_cycle_is_still_there
#: says when).
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def module_files(root: str = ROOT) -> dict[str, str]:
    """:returns: the dotted name of each module of the package, with its file."""
    found = {}
    for directory, _, files in os.walk(os.path.join(root, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            dotted = os.path.relpath(path, root)[: -len(".py")].replace(os.sep, ".")
            found[dotted.removesuffix(".__init__")] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """:returns: the ids of the nodes under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for statement in node.body:
                    skipped.update(id(inner) for inner in ast.walk(statement))
    return skipped


def imports_of(module: str, path: str, modules: dict[str, str]) -> dict[str, int]:
    """
    :returns: the package's modules that ``module`` imports (a name the
        package's ``__init__`` holds counts as importing the package), each
        with the line of its first import.
    """
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read(), path)
    skipped = _type_checking_only(tree)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target != module:
            found.setdefault(target, line)

    def absolute(name: str) -> str:
        """:returns: ``name`` as ``importlib.import_module(name, package)`` resolves it."""
        if not name.startswith("."):
            return name
        level = len(name) - len(name.lstrip("."))
        parts = package.split(".")
        return ".".join(parts[: len(parts) - level + 1] + [name.lstrip(".")]).rstrip(".")

    def add_dotted(name: str, line: int) -> None:
        name = absolute(name)
        if name.split(".")[0] != PACKAGE:
            return
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]  # a name in a module, or a missing module
        add(name, line)

    # importlib.import_module() or __import__() with a name written out is an
    # import too; with a name computed at run time (the lazy public names of
    # __init__), every string in the module that names a module of the
    # package counts as one.
    dynamic = False
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Call):
            continue
        function = node.func
        called = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
        if called in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                add_dotted(first.value, node.lineno)
            else:
                dynamic = True
    if dynamic:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"\.*[A-Za-z_][\w.]*", node.value):
                    named = absolute(node.value)
                    if named in modules and named != PACKAGE:
                        add(named, node.lineno)

    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name if alias.name in modules else PACKAGE, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else base, node.lineno)
    return found


def import_graph(root: str = ROOT) -> dict[str, dict[str, int]]:
    """:returns: for each module of the package, the modules it imports (with the line)."""
    modules = module_files(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """:returns: the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep package cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in graph:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def a_cycle_through(component: set[str], graph: dict[str, dict[str, int]]) -> str:
    """:returns: one circle of imports in ``component``, as ``a:line -> b:line -> a``."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                path.reverse()
                steps = [f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:] + [start])]
                return " -> ".join(steps + [start])
            if target in component and target not in came_from and target != start:
                came_from[target] = node
                queue.append(target)
    raise AssertionError("a strongly connected component has a cycle")


def describe(components: list[set[str]], graph: dict[str, dict[str, int]]) -> str:
    return "\n".join(
        f"- {', '.join(sorted(c))}\n  e.g. {a_cycle_through(c, graph)}" for c in components
    )


def test_no_import_cycles_inside_houweb():
    graph = import_graph()
    new = [c for c in cycles(graph) if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, "import cycles inside houweb/:\n" + describe(new, graph)


def test_each_known_cycle_is_still_there():
    found = cycles(import_graph())
    gone = [known for known in KNOWN_CYCLES if not any(c <= known for c in found)]
    assert not gone, f"these cycles are broken: remove them from KNOWN_CYCLES: {gone}"


def test_the_process_side_imports_no_module_that_imports_it():
    # run() (_run), the restart (_restart, _watch), workers (_workers) and what
    # they share (_handover, _role): one direction only, from _run down.
    graph = import_graph()
    process = {"houweb._run", "houweb._restart", "houweb._watch", "houweb._workers"}
    process |= {"houweb._handover", "houweb._role"}
    for component in cycles(graph):
        assert not component & process, describe([component], graph)
    assert "houweb._run" not in graph["houweb._restart"]
    assert "houweb._run" not in graph["houweb._workers"]
    assert not graph["houweb._handover"].keys() & process


def test_the_graph_sees_lazy_relative_and_absolute_imports(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("from ._a import x\n")
    (package / "_a.py").write_text("x = 1\n\ndef later():\n    from . import _b\n")
    (package / "_b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._c import y\n"
        "def later():\n    import houweb._a\n"
    )
    (package / "_c.py").write_text("from houweb import x\n")
    graph = import_graph(str(tmp_path))
    assert graph["houweb._a"] == {"houweb._b": 4}
    assert graph["houweb._b"] == {"houweb._a": 5}  # not _c: only for the type checker
    assert graph["houweb._c"] == {"houweb": 1}
    assert cycles(graph) == [{"houweb._a", "houweb._b"}]
    assert a_cycle_through({"houweb._a", "houweb._b"}, graph) == (
        "houweb._a (line 4) -> houweb._b (line 5) -> houweb._a"
    )


def test_importing_houweb_loads_no_restart_or_worker_machinery():
    # They cost start-up time a plain server need not pay: run() imports
    # them when reloading or workers are asked for (or this process is one).
    import subprocess
    import sys

    code = "import sys, houweb; print(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(done.stdout.split())
    assert "houweb._role" in loaded
    for module in ("_handover", "_restart", "_watch", "_workers", "watchfiles"):
        assert f"houweb.{module}" not in loaded and module not in loaded, module


def test_the_graph_sees_imports_by_name_written_out_or_in_a_table(tmp_path):
    # A cycle through importlib (the lazy public names of __init__ are
    # imported that way) was not seen: only import statements were read.
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text(
        "import importlib\n_LAZY = {'Thing': '._lazy'}\n"
        "def __getattr__(name):\n    return importlib.import_module(_LAZY[name], __name__)\n"
    )
    (package / "_lazy.py").write_text("def later():\n    import houweb\n")
    (package / "_a.py").write_text(
        "import importlib\ndef later():\n    importlib.import_module('._b', __package__)\n"
    )
    (package / "_b.py").write_text("def later():\n    __import__('houweb._a')\n")
    (package / "_c.py").write_text("NOT_A_MODULE = '.py'\nNAME = 'houweb._a'\n")
    graph = import_graph(str(tmp_path))
    assert graph["houweb"] == {"houweb._lazy": 2}
    assert graph["houweb._a"] == {"houweb._b": 3}
    assert graph["houweb._b"] == {"houweb._a": 2}
    # A string alone, where nothing imports by computed name, is not an import.
    assert graph["houweb._c"] == {}
    assert sorted(map(sorted, cycles(graph))) == [
        ["houweb", "houweb._lazy"],
        ["houweb._a", "houweb._b"],
    ]
