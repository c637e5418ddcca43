"""
What a server listens on, port by port, and how each is bound: the main port
(``run()``'s ``port`` and ``interface`` with the main port's
``setSettingsForPort`` settings), ``run()``'s ``ports`` and ``listen``, and
every named port that has a ``PORT``.

A port with settings is bound by trying ``PORT`` up to ``MAX_PORT`` and, if
all are taken, port 0 when ``ALLOW_SYSTEM_PORT`` is on; on ``ADDRESS`` (or
houweb's loopback), on its IPv6 counterpart with ``IPV6``; over TLS with
``SSL_CERTIFICATE``. Listening goes through the reactor's ``listenTCP`` and
``listenSSL``, so a reloading program adopts these sockets as any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._config import ServerConfig, listen_interface
from ._errors import OperationFailed
from ._port_settings import MAIN, PortSettings, PortTable, ignored_keys

log = Logger(namespace="houweb")

#: The main port when neither ``run(port=-1)`` nor ``PORT`` says (Houdini's default).
DEFAULT_PORT = 8008


@dataclass(frozen=True)
class PortPlan:
    """
    One port to listen on.

    :param name: ``"main"``, a named port, or ``None`` for ``run()``'s
        ``ports`` and ``listen`` entries (which have no settings).
    :param description: a Twisted endpoint string: what is listened on for
        ``ports``/``listen``, what the log line shows for the others.
    :param settings: the port's settings (``None`` for ``ports``/``listen``).
    :param first: the first port number to try.
    :param interface: the address to bind.
    """

    name: str | None
    description: str
    settings: PortSettings | None = None
    first: int = 0
    interface: str = ""

    @property
    def serves_main(self) -> bool:
        """:returns: whether the port takes the server-wide settings (not a named port)."""
        return self.name is None or self.name == MAIN

    def interface_of(self) -> str:
        """:returns: the address this port listens on (``""``: every interface)."""
        if self.settings is not None:
            return self.interface
        return listen_interface(self.description)

    def listen(
        self, reactor: Any, factory: Any, taken: frozenset[int] = frozenset()
    ) -> defer.Deferred[Any]:
        """
        :param taken: the numbers the server's other sockets have: skipped
            (houweb tells ports apart by number, so one on another address
            would answer for that other port).
        :returns: a Deferred firing with the listening port.
        :raises OperationFailed: (through the Deferred) naming the port and
            its range when no number of it could be bound, or its TLS files
            are bad.
        """
        if self.settings is None:
            endpoint: Any = serverFromString(reactor, self.description)
            listening: defer.Deferred[Any] = endpoint.listen(factory)
            return listening
        return defer.maybeDeferred(self._bind, reactor, factory, taken)

    def _bind(self, reactor: Any, factory: Any, taken: frozenset[int] = frozenset()) -> Any:
        assert self.settings is not None and self.name is not None
        tls = None
        if self.settings.tls:
            from ._https import context_factory  # only for TLS ports: cold start

            tls = context_factory(self.settings, self.name)
        numbers = self.settings.candidates(self.first)
        reason = ""
        for number in numbers:
            if number in taken:
                reason = "another of the server's ports has that number"
                continue
            # The system's pick (0) may be a number the server has on another address.
            for _ in range(_SYSTEM_PICKS if number == 0 else 1):
                try:
                    if tls is not None:
                        port = reactor.listenSSL(number, factory, tls, interface=self.interface)
                    else:
                        port = reactor.listenTCP(number, factory, interface=self.interface)
                except CannotListenError as exc:
                    error = exc.socketError
                    reason = str(getattr(error, "strerror", None) or error).lower()
                    break
                if port.getHost().port not in taken:
                    return port
                _close_now(port)
                reason = "another of the server's ports has that number"
        tried = f"port {numbers[0]}" if len(numbers) == 1 else f"ports {_ranges(numbers)}"
        which = "" if self.name == MAIN and len(numbers) == 1 else f"{_port_label(self.name)}, "
        raise OperationFailed(
            f"Could not listen on {tried} ({which}interface "
            f"{self.interface or '0.0.0.0'}): {reason}"
        )


#: How often a system-picked port number is asked for again when it is one
#: the server already has (on another address).
_SYSTEM_PICKS = 20


def _close_now(port: Any) -> None:
    """Close a listening ``port`` before returning (no reactor turn needed)."""
    port.stopReading()
    port.connectionLost(Failure(ConnectionDone()))


def _port_label(name: str) -> str:
    return "the main port" if name == MAIN else f"named port {name!r}"


def _ranges(numbers: list[int]) -> str:
    """``[9000, 9001, 9002, 0]`` → ``9000-9002 and a system-picked one``."""
    system = numbers[-1] == 0
    span = [n for n in numbers if n != 0]
    text = f"{span[0]}-{span[-1]}" if len(span) > 1 else str(span[0]) if span else ""
    return f"{text} and a system-picked one" if system else text


def _endpoint(settings: PortSettings, number: int, interface: str) -> str:
    kind = "ssl" if settings.tls else "tcp"
    return f"{kind}:{number}:interface={interface.replace(':', chr(92) + ':')}"


def main_port_number(config: ServerConfig, settings: PortSettings) -> int:
    """
    :returns: the main port's first number: ``run()``'s ``port``, unless it
        is ``-1``, which means the main port's ``PORT`` setting (8008 if unset).
    """
    if config.port < 0:
        return settings.port if settings.port is not None else DEFAULT_PORT
    if settings.port is not None and settings.port != config.port:
        log.warn(
            "houweb: run(port={port}) is used instead of the main port's PORT {setting} "
            "(pass port=-1 to use PORT)",
            port=config.port,
            setting=settings.port,
        )
    return config.port


def plan_ports(config: ServerConfig, table: PortTable, main: PortSettings) -> list[PortPlan]:
    """
    :param main: the main port's settings (the table's over the settings file's).
    :returns: what to listen on, in order: the main port, ``run()``'s
        ``ports``, the named ports that have a ``PORT`` (in the order they
        were first set), then ``run()``'s ``listen`` entries.
    """
    return list(_plans(config, table, main))


def _warn_ignored(name: str, settings: PortSettings, listens: bool = True) -> None:
    """Log the keys of port ``name`` that have no effect (never silence)."""
    if not listens:
        log.warn(
            "houweb: named port {name!r} has settings but no PORT: it does not listen",
            name=name,
        )
        return
    ignored = ignored_keys(settings)
    if ignored:
        log.warn(
            "houweb: {port}: {keys} ignored (no effect with its other settings: "
            "SSL_* and SECURE_HSTS_* need SSL_CERTIFICATE, SSL_REDIRECT_* need "
            "SSL_REDIRECT on a plain port, MIN_LOG_SEVERITY needs LOG_FILE, "
            "MAX_PORT and ALLOW_SYSTEM_PORT a PORT other than 0)",
            port=_port_label(name),
            keys=", ".join(ignored),
        )


def _plans(config: ServerConfig, table: PortTable, main: PortSettings) -> Iterator[PortPlan]:
    number = main_port_number(config, main)
    _warn_ignored(MAIN, replace(main, port=main.port if main.port is not None else number))
    interface = main.interface(config.interface)
    yield PortPlan(MAIN, _endpoint(main, number, interface), main, number, interface)
    escaped = config.interface.replace(":", "\\:")
    for extra in config.ports:
        yield PortPlan(None, f"tcp:{extra}:interface={escaped}")
    for name, settings in table.named().items():
        _warn_ignored(name, settings, listens=settings.port is not None)
        if settings.port is None:
            continue
        interface = settings.interface(config.interface)
        yield PortPlan(
            name, _endpoint(settings, settings.port, interface), settings, settings.port, interface
        )
    for entry in config.listen:
        yield PortPlan(None, entry)
