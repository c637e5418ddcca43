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
