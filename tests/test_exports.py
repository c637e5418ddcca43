"""The public face: houweb exports exactly the names of spec §2."""

from __future__ import annotations

import houweb

#: hou.webServer's names houweb provides, plus its extensions (spec §2):
#: exactly the public surface, nothing more, nothing less.
EXPECTED = {
    "run",
    "requestShutdown",
    "isInDebugMode",
    "serverPorts",
    "urlHandler",
    "apiFunction",
    "registerOpdefPath",
    "APIError",
    "Request",
    "Response",
    "errorResponse",
    "notFoundResponse",
    "fileResponse",
    "redirect",
    "Error",
    "OperationFailed",
    # hwebserver's extras (spec §15)
    "URLHandler",
    "AsyncURLHandler",
    "webSocket",
    "WebSocket",
    "registerWSGIApp",
    "registerASGIApp",
    "registerArchiveFile",
    "setCORSWhitelist",  # Houdini 21, from observed use
    "Server",  # Houdini 21, from observed use
    "setSettingsForPort",
    "WarningSeverity",  # MIN_LOG_SEVERITY's documented default
    "DebugSeverity",
    "InfoSeverity",
    "MessageSeverity",  # Houdini, from observed use
    "ErrorSeverity",
    "CriticalSeverity",
    # houweb's own additions
    "UploadedFile",
    "registerStaticFilesDirectory",
}


def test_all_is_exactly_the_public_surface():
    assert set(houweb.__all__) == EXPECTED
    assert len(houweb.__all__) == len(EXPECTED)  # no name twice


def test_every_public_name_imports():
    namespace: dict[str, object] = {}
    exec("from houweb import *", namespace)  # noqa: S102 - what a star import gives
    assert EXPECTED <= set(namespace)
    for name in EXPECTED:
        assert getattr(houweb, name) is namespace[name], name


def test_all_lists_only_names_that_exist_and_is_sorted():
    for name in houweb.__all__:
        assert hasattr(houweb, name), name
    assert list(houweb.__all__) == sorted(houweb.__all__)


def test_errors_behave_like_hou_errors():
    error = houweb.OperationFailed("port 8008 is busy")
    assert isinstance(error, houweb.Error)
    assert str(error) == error.instanceMessage() == "port 8008 is busy"
    assert error.exceptionTypeName() == "OperationFailed"
    assert error.description() == "The requested operation failed."
    assert houweb.Error("x").description() == "houweb error"


def test_hwebserver_and_webServer_are_houweb_under_houdinis_names():
    from houweb import hwebserver, webServer

    for alias in (hwebserver, webServer):
        assert alias.__all__ == houweb.__all__
        for name in houweb.__all__:
            assert getattr(alias, name) is getattr(houweb, name), name


def _modules_loaded_by(statement: str) -> set[str]:
    """:returns: the names in ``sys.modules`` after a fresh interpreter ran ``statement``."""
    import subprocess
    import sys

    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


def test_importing_the_houdini_named_modules_does_not_load_autobahn():
    # ``from houweb import *`` in them resolved every name imported on first
    # use, webSocket (and autobahn with it) included.
    for module in ("houweb.hwebserver", "houweb.webServer"):
        loaded = _modules_loaded_by(f"import {module}")
        assert module in loaded
        assert not any(name.split(".")[0] == "autobahn" for name in loaded), module


def test_star_import_of_hwebserver_gives_every_public_name():
    loaded = _modules_loaded_by(
        "from houweb.hwebserver import *\n"
        "import houweb\n"
        "assert all(globals()[n] is getattr(houweb, n) for n in houweb.__all__)"
    )
    assert "houweb.hwebserver" in loaded
