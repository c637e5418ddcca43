"""The settings file: loading, checking, and failing before anything listens (spec §12.1)."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

import houweb
from houweb._settings import load_settings

from .children import free_port, refuses
from .conftest import messages
from .support import ROOT

EXAMPLE = os.path.join(ROOT, "examples", "cors_settings.py")


def write(tmp_path, text: str) -> str:
    path = tmp_path / "settings.py"
    path.write_text(text)
    return str(path)


def test_the_example_file_loads():
    settings = load_settings(EXAMPLE)
    assert settings.cors_origins == ("http://localhost:3000", "https://app.example.com")


def test_both_names_are_combined_and_lowercase_names_ignored(tmp_path):
    path = write(
        tmp_path,
        "CORS_ORIGIN_WHITELIST = ['http://a.test']\n"
        "CORS_ALLOWED_ORIGINS = ('https://b.test:8443',)\n"
        "helper = 'not a setting'\n",
    )
    assert load_settings(path).cors_origins == ("http://a.test", "https://b.test:8443")


def test_a_dict_works_like_a_file():
    assert load_settings({"CORS_ALLOWED_ORIGINS": ["*"]}).cors_origins == ("*",)


def test_no_settings_means_no_cors():
    assert load_settings(None).cors_origins == ()


def test_unknown_uppercase_names_are_named_in_a_warning(tmp_path, logged):
    load_settings(write(tmp_path, "DEBUG = True\nSECRET_KEY = 'x'\n"))
    assert "DEBUG, SECRET_KEY" in messages(logged)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("CORS_ALLOWED_ORIGINS = [\n", "syntax error on line"),
        ("raise RuntimeError('nope')\n", "raised RuntimeError: nope"),
        ("CORS_ALLOWED_ORIGINS = 'http://a.test'\n", "must be a list or tuple of origins, not str"),
        ("CORS_ALLOWED_ORIGINS = ['http://a.test/path']\n", "is not an origin"),
        ("CORS_ALLOWED_ORIGINS = ['a.test']\n", "is not an origin"),
        ("CORS_ALLOWED_ORIGINS = [3]\n", "is not an origin"),
    ],
)
def test_a_broken_file_is_operation_failed_naming_it(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(houweb.OperationFailed) as failed:
        load_settings(path)
    assert path in str(failed.value) and problem in str(failed.value)


def test_a_missing_file_is_operation_failed_naming_it(tmp_path):
    missing = str(tmp_path / "nope.py")
    with pytest.raises(houweb.OperationFailed, match="nope.py does not exist"):
        load_settings(missing)


@pytest_twisted.ensureDeferred
async def test_a_broken_file_stops_the_server_before_it_listens(serve, tmp_path):
    port = free_port()
    path = write(tmp_path, "CORS_ALLOWED_ORIGINS = 'http://a.test'\n")
    with pytest.raises(houweb.OperationFailed, match="settings.py"):
        await serve(port=port, settings=path)
    assert refuses(port)


def test_run_rejects_a_settings_value_of_the_wrong_type():
    with pytest.raises(TypeError, match="settings"):
        houweb.run(port=0, in_background=True, settings=3)
