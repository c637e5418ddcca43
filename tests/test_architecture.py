"""
ARCHITECTURE.md, the newcomer's map, names only what exists: every module,
every ``module.name`` and every class or function it sends the reader to.
A map that names a renamed module sends a newcomer to a file that is not
there.
"""

from __future__ import annotations

import importlib
import os
import re

import houweb

from .support import ROOT

MAP = os.path.join(ROOT, "ARCHITECTURE.md")

#: What the map names in backquotes that is not houweb's (Klein, Twisted).
NOT_HOUWEB = {"HTTPChannel", "Site", "Klein"}


def quoted() -> list[str]:
    """:returns: every backquoted span of the map."""
    with open(MAP, encoding="utf-8") as file:
        return re.findall(r"`([^`\n]+)`", file.read())


def houweb_references() -> set[str]:
    """:returns: the ``_module``, ``_module.py`` and ``_module.name[.attr]`` the map names."""
    found = set()
    for span in quoted():
        for reference in re.findall(r"(?<![\w./])(_[a-z][a-z_]*(?:\.[A-Za-z_]\w*)*)", span):
            found.add(reference.removesuffix(".py"))
    return found


def test_the_map_names_modules():
    references = houweb_references()
    assert {"_channel", "_site._Router.route", "_restart", "_role"} <= references


def test_every_module_and_name_the_map_gives_exists():
    missing = []
    for reference in sorted(houweb_references()):
        module_name, *names = reference.split(".")
        if not os.path.isfile(os.path.join(ROOT, "houweb", module_name + ".py")):
            missing.append(f"{reference}: no houweb/{module_name}.py")
            continue
        value = importlib.import_module(f"houweb.{module_name}")
        for name in names:
            if not hasattr(value, name):
                missing.append(f"{reference}: no {name}")
                break
            value = getattr(value, name)
    assert not missing, "ARCHITECTURE.md names what does not exist:\n" + "\n".join(missing)


def test_every_class_the_map_names_is_defined_in_houweb():
    defined: dict[str, object] = {}
    for name in sorted(os.listdir(os.path.join(ROOT, "houweb"))):
        if name.endswith(".py") and name not in ("__init__.py", "__main__.py"):
            defined.update(vars(importlib.import_module(f"houweb.{name[: -len('.py')]}")))
    named = [
        re.sub(r"\(.*\)$", "", span)
        for span in quoted()
        if re.fullmatch(r"[A-Z][a-z]\w*(\.\w+)?(\(.*\))?", span)
    ]
    assert "Registry.match" in named and "ReloadingReactor" in named
    missing = []
    for reference in named:
        class_name, _, attribute = reference.partition(".")
        if class_name in NOT_HOUWEB:
            continue
        if class_name not in defined:
            missing.append(reference)
        elif attribute and not hasattr(defined[class_name], attribute):
            missing.append(reference)
    assert not missing, f"ARCHITECTURE.md names what houweb does not define: {missing}"


def test_the_paths_the_map_gives_exist():
    paths = [span for span in quoted() if "/" in span and not span.startswith(("/", "GET"))]
    assert "houweb/__init__.py" in paths
    missing = [path for path in paths if not os.path.exists(os.path.join(ROOT, path))]
    # Klein's, twisted.web's and Starlette's files are named as in their repositories.
    missing = [path for path in missing if not path.startswith("src/klein")]
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
    assert houweb.__file__.endswith(os.path.join("houweb", "__init__.py"))
