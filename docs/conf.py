"""Sphinx configuration of houweb's documentation: ``sphinx-build -W -b html docs <dir>``."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

import houweb  # noqa: E402 - after sys.path: the houweb of this tree

project = "houweb"
author = "houweb's authors"
copyright = "houweb's authors"
version = release = houweb.__version__

# benchcharts: the charts of benchmarks.rst, drawn from bench/RESULTS.md.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "benchcharts"]
# Docstrings use Sphinx's own :param x: fields; the signature shows the types.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
exclude_patterns = ["_build", "_charts"]
html_theme = "alabaster"
html_static_path: list = []
html_title = f"houweb {release}"
# The README's links to files of the repository (examples/...) are not pages here.
linkcheck_ignore = [r"^examples/"]
