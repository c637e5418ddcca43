"""
``python -m houweb run SCRIPT [ARGS...]``: run a script written for Houdini's
web server (``import hwebserver``, or ``hou.webServer``) unchanged, as
``__main__``, the way ``hython SCRIPT ARGS`` would.

Where no real module of that name can be imported, ``hwebserver`` is
:mod:`houweb.hwebserver` and ``hou`` is a stand-in whose only name is
``webServer`` (:mod:`houweb.webServer`); any other ``hou`` name (the scene
API: ``hou.node``, ``hou.hipFile``...) raises an ``AttributeError`` saying
that it needs Houdini. A real ``hwebserver`` or ``hou`` on ``sys.path`` (a
script run inside Houdini's Python) is left alone.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys
import types
from typing import Any

__all__ = ["run_script"]

_HOU_DOC = """\
houweb's stand-in for Houdini's ``hou`` module: only ``hou.webServer`` is
provided (by houweb); the rest of the ``hou`` API needs Houdini itself.
"""


class _HouStandIn(types.ModuleType):
    """A ``hou`` module that has ``webServer`` and says so for anything else."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"hou.{name} is part of Houdini's scene API, which houweb does not provide: "
            "only hou.webServer runs outside Houdini"
        )


def _missing(name: str) -> bool:
    """:returns: whether no real module ``name`` can be imported here."""
    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def install_houdini_names() -> list[str]:
    """
    Make ``import hwebserver`` and ``import hou`` (for ``hou.webServer``)
    work, where no real module of that name exists.

    :returns: the names it installed.
    """
    installed = []
    if _missing("hwebserver"):
        from . import hwebserver

        sys.modules["hwebserver"] = hwebserver
        installed.append("hwebserver")
    if _missing("hou"):
        from . import webServer

        hou = _HouStandIn("hou", _HOU_DOC)
        hou.webServer = webServer  # type: ignore[attr-defined]
        sys.modules["hou"] = hou
        installed.append("hou")
    return installed


def run_script(path: str, args: list[str]) -> None:
    """
    Run the Python file ``path`` as ``__main__`` with ``sys.argv`` set to
    ``[path, *args]`` and its folder first on ``sys.path``, as ``python
    path args`` would; the script calls ``run()`` itself.

    :raises SystemExit: with status 2 and a message, if ``path`` is not a file;
        else whatever the script raises (its own ``sys.exit`` included).
    """
    if not os.path.isfile(path):
        print(f"houweb run: no such script: {path}", file=sys.stderr)
        raise SystemExit(2)
    install_houdini_names()
    from ._handover import Program
    from ._role import this_process

    # A restart (reload_source_changes) or a worker runs `houweb run SCRIPT`
    # again, not the bare script, which would not find hwebserver or hou.
    houweb_main = f"{__package__}.__main__"
    this_process.runs(Program([sys.argv[0], "run", path, *args], os.getcwd(), module=houweb_main))
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")
