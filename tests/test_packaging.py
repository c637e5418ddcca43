"""
Packaging: one version, metadata in pyproject.toml that setup.py does not
contradict, a changelog entry for the version, and an sdist and a wheel
(``python -m build``) that install in a fresh virtualenv (with their
dependencies, from the package index pip is configured with) and serve.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import venv
import zipfile

import pytest
import tomllib

import houweb

from .children import LISTENING, TWISTD
from .support import ROOT, skip_unless_ci

#: Seconds any one step (build, venv, install, the smoke test) may take.
STEP = 180


def test_houweb_version_is_the_package_metadata_version():
    assert houweb.__version__ == importlib.metadata.version("houweb")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        dynamic = tomllib.load(file)["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "houweb._version.__version__"}


def test_setup_py_gives_only_what_pyproject_lists_as_dynamic():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        project = tomllib.load(file)["project"]
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as file:
        tree = ast.parse(file.read())
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    ]
    assert [keyword.arg for keyword in call.keywords] == ["extras_require"]
    assert set(project["dynamic"]) == {"version", "optional-dependencies"}
    assert "version" not in project and "optional-dependencies" not in project


def test_the_changelog_has_this_version():
    with open(os.path.join(ROOT, "CHANGELOG.rst"), encoding="utf-8") as file:
        text = file.read()
    assert re.search(rf"^{re.escape(houweb.__version__)}\n-+$", text, re.M)


def _run(command: list[str], cwd: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _fresh_venv(path: str) -> str:
    """:returns: the Python of a new, empty virtualenv at ``path``."""
    venv.create(path, with_pip=True)
    return os.path.join(path, "bin", "python")


SMOKE = """
import houweb, importlib.metadata, sys, twisted.plugins.houweb_plugin as plugin
from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker
print("FILE", houweb.__file__)
print("PLUGIN", plugin.__file__)
print("VERSIONS", houweb.__version__, importlib.metadata.version("houweb"))
print("TAPS", sorted(p.tapname for p in getPlugins(IServiceMaker)))
"""


def _smoke(python: str, where: str) -> None:
    """houweb, its twistd plugin and its version come from ``where``; it serves the demo."""
    out = _run([python, "-c", SMOKE], cwd=where)
    prefix = os.path.dirname(os.path.dirname(python))
    assert re.search(rf"^FILE {re.escape(prefix)}/", out, re.M), out
    assert re.search(rf"^PLUGIN {re.escape(prefix)}/", out, re.M), out
    assert f"VERSIONS {houweb.__version__} {houweb.__version__}" in out
    assert "'houweb'" in out.split("TAPS", 1)[1]
    server = subprocess.Popen(
        [python, "-c", TWISTD, "-n", "--pidfile=", "houweb", "--port=0"],
        cwd=where,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = []
        for line in server.stdout:  # ends if the server exits; killed below otherwise
            lines.append(line)
            found = LISTENING.search(line)
            if found:
                import urllib.request

                url = f"http://127.0.0.1:{found.group(1)}/"
                with urllib.request.urlopen(url, timeout=10) as reply:
                    assert reply.status == 200
                    assert b"houweb" in reply.read()
                break
        else:
            raise AssertionError("the installed twistd houweb did not start:\n" + "".join(lines))
    finally:
        server.kill()
        server.wait(10)


def test_build_makes_an_sdist_and_a_wheel_that_install_fresh_and_serve(tmp_path):
    try:
        import build  # noqa: F401 - the test extra's
    except ImportError:
        skip_unless_ci("the build package is not installed (pip install '.[test]')")
    dist = str(tmp_path / "dist")
    _run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=str(tmp_path))
    wheel = next(os.path.join(dist, n) for n in os.listdir(dist) if n.endswith(".whl"))
    sdist = next(os.path.join(dist, n) for n in os.listdir(dist) if n.endswith(".tar.gz"))
    assert os.path.basename(wheel).startswith(f"houweb-{houweb.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "twisted/plugins/houweb_plugin.py",
        "houweb/py.typed",
        "houweb/_web/status.html",
        "houweb/_web/explorer.html",
        "houweb/_web/client.js",
    ):
        assert needed in names, needed
    assert not any(n.startswith("twisted/plugins/dropin") or n.startswith("tests/") for n in names)
    for name, archive in (("wheel", wheel), ("sdist", sdist)):
        where = str(tmp_path / name)
        python = _fresh_venv(where)
        # Its dependencies come from the package index pip is configured with.
        _run([python, "-m", "pip", "install", "-q", archive], cwd=where)
        _smoke(python, where)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
