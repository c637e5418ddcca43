# ruff: noqa: I001 - houweb must be imported first: it installs the asyncio reactor
"""Fixtures: a fresh registry, servers on free loopback ports, an HTTP client."""

from __future__ import annotations

from typing import Any

import houweb  # noqa: F401 - first: installs Twisted's asyncio reactor
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from houweb._application import default_server
from houweb._config import ServerConfig
from houweb._registry import Registry
from houweb._server import RunningServer

from .support import Client


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """An empty registry that the decorators fill during this test."""
    fresh = Registry()
    monkeypatch.setattr(default_server(), "registry", fresh)
    return fresh


@pytest.fixture
def serve(registry: Registry) -> Any:
    """``await serve(**run_arguments)`` starts a server on port 0 and returns it."""
    servers: list[RunningServer] = []

    async def start(**arguments: Any) -> RunningServer:
        arguments.setdefault("port", 0)
        server = RunningServer(ServerConfig.from_arguments(**arguments), reactor, registry)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        pytest_twisted.blockon(server.shutdown())


@pytest.fixture
def client() -> Any:
    """An HTTP client (treq) with its own connection pool."""
    http = Client()
    yield http
    pytest_twisted.blockon(http.close())


@pytest.fixture
def logged() -> Any:
    """The log events emitted during the test, as a list of dicts."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def messages(events: list[dict[str, Any]]) -> str:
    """All formatted log messages, one per line."""
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(event) for event in events)
