"""The public face: houweb exports exactly the names of spec §2."""

from __future__ import annotations

import houweb

#: hou.webServer's names houweb provides, plus its extensions (spec §2).
EXPECTED = {
    "run",
    "requestShutdown",
    "isInDebugMode",
    "serverPorts",
    "urlHandler",
    "apiFunction",
    "APIError",
    "Request",
    "Response",
    "errorResponse",
    "notFoundResponse",
    "fileResponse",
    "redirect",
    "Error",
    "OperationFailed",
}


def test_every_expected_name_is_exported():
    assert EXPECTED <= set(houweb.__all__)


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
