"""CI runs every test it can: skips are listed (``-rs``) and, with ``CI=true``, fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .support import ROOT

CI_RUN = os.path.join(ROOT, ".ci", "run")


def readme_test_command() -> str:
    """The line of README.rst that ``.ci/run`` extracts and runs."""
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as readme:
        return next(line.strip() for line in readme if "pip install '.[test]'" in line)


def test_the_readme_test_command_lists_skipped_tests():
    command = readme_test_command()
    assert command.startswith("pip install '.[test]' && python -m pytest")
    assert re.search(r"\s-rs(\s|$)", command), command


def test_ci_installs_what_skipping_tests_need_and_says_it_is_ci():
    with open(CI_RUN, encoding="utf-8") as script:
        text = script.read()
    assert "export CI=true" in text
    assert "command -v nginx" in text and "apt-get install -y -qq nginx" in text


def test_a_test_that_cannot_run_fails_in_ci_and_skips_elsewhere(tmp_path):
    (tmp_path / "test_needs.py").write_text(
        "from tests.support import skip_unless_ci\n"
        "def test_needs_a_tool():\n"
        "    skip_unless_ci('the tool is missing')\n"
    )

    def outcome(ci: str) -> str:
        env = dict(os.environ, CI=ci, PYTHONPATH=ROOT)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(tmp_path),
            timeout=120,
        )
        return result.stdout

    assert "1 skipped" in outcome("false")
    failed = outcome("true")
    assert (
        "1 failed" in failed and "CI=true, yet this test cannot run: the tool is missing" in failed
    )
