"""
A port's ``LOG_FILE`` (``setSettingsForPort``): while its server runs, the
file gets the server's own log entries (namespace ``houweb``) at or above
the port's ``MIN_LOG_SEVERITY`` (default ``WarningSeverity``), and one line
per request answered on that port, which is an ``InfoSeverity`` entry.
Lines are Twisted's text format (time, system, message; tracebacks in
full), appended to the file, which is closed when the server stops.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any, Callable, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    PredicateResult,
    globalLogPublisher,
    textFileLogObserver,
)
from zope.interface import implementer

from ._access import escaped
from ._errors import OperationFailed
from ._port_settings import PortSettings, Severity

_log = Logger(namespace="houweb")

if TYPE_CHECKING:  # for the hints: the twisted.web request houweb receives
    from ._channel import HouwebRequest

_ORDER = {
    LogLevel.debug: 0,
    LogLevel.info: 1,
    LogLevel.warn: 2,
    LogLevel.error: 3,
    LogLevel.critical: 4,
}


@implementer(ILogFilterPredicate)
class _Predicate:
    """A Twisted log filter predicate from a function saying yes or no."""

    def __init__(self, wanted: Callable[[LogEvent], bool]) -> None:
        self._wanted = wanted

    def __call__(self, event: LogEvent) -> PredicateResult:
        result: PredicateResult = PredicateResult.yes if self._wanted(event) else PredicateResult.no
        return result


class PortLogFile:
    """
    The log file of one port.

    :param stream: the open file.
    :param minimum: the least severity written.
    :param ports: the listening port numbers whose requests it logs.
    """

    def __init__(
        self, stream: IO[str], minimum: Severity, ports: Iterable[int], what: str = "LOG_FILE"
    ) -> None:
        self._stream = stream
        self._ports = frozenset(ports)
        self._minimum = minimum.log_level()
        self._what = what
        self._writer: Any = textFileLogObserver(stream)
        #: Set once a write failed (disk full, a FIFO's reader gone): then
        #: nothing more is written, and the server never sees the error.
        self._failed = False
        # An observer is any callable taking an event (what ILogObserver
        # declares); a bound method does not declare that it provides it.
        write = cast(ILogObserver, self._write)
        self._observer: Any = FilteringLogObserver(write, [_Predicate(self._wanted)])
        self._requests = Logger(namespace="houweb.port", observer=self._observer)
        self._site: Any = None

    def _write(self, event: LogEvent) -> None:
        if self._failed:
            return
        try:
            self._writer(event)
        except Exception as exc:  # noqa: BLE001 - a log file must not break what is logged
            self._failed = True
            _log.warn(
                "houweb: {what}: writing failed ({error}); nothing more is written to it",
                what=self._what,
                error=getattr(exc, "strerror", None) or exc,
            )

    @classmethod
    def open(cls, name: str, settings: PortSettings, ports: Iterable[int]) -> PortLogFile:
        """
        :raises OperationFailed: naming the port and the file when it cannot
            be opened for appending.
        """
        assert settings.log_file is not None
        path = settings.log_file
        try:
            # O_NONBLOCK: opening a FIFO nobody reads would block the reactor
            # (and run()) forever; it fails with ENXIO instead.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.ENXIO:
                reason = "it is a FIFO that no process reads"
            raise OperationFailed(
                f"port {name!r}: cannot open LOG_FILE {path!r}: {reason}"
            ) from None
        os.set_blocking(fd, True)  # the writes are whole lines, as to any log file
        stream = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - closed at stop
        return cls(stream, settings.min_log_severity, ports, f"port {name!r}: LOG_FILE {path!r}")

    def _wanted(self, event: LogEvent) -> bool:
        """:returns: whether ``event`` goes to the file: houweb's, at or above the severity."""
        namespace = str(event.get("log_namespace", ""))
        level = event.get("log_level", LogLevel.info)
        if namespace.split(".")[0] != "houweb" or namespace == "houweb.access":
            return False
        return _ORDER.get(level, 1) >= _ORDER[self._minimum]

    def attach(self, site: Any) -> None:
        """Start writing: the server's entries, and the requests answered by ``site`` on our ports."""
        self._site = site
        globalLogPublisher.addObserver(self._observer)
        site.houweb_on_finish.append(self._request_done)

    def _request_done(self, web_request: HouwebRequest, seconds: float) -> None:
        host = web_request.getHost()
        if getattr(host, "port", None) not in self._ports:
            return
        method, target = web_request.method.decode("latin-1"), web_request.uri.decode("latin-1")
        self._requests.info(
            '"{request}" {status} {size} {ms:.1f}ms',
            request=escaped(f"{method} {target}"),
            status=web_request.code,
            size=web_request.sentLength,
            ms=seconds * 1000,
        )

    def close(self) -> None:
        """Stop writing and close the file."""
        globalLogPublisher.removeObserver(self._observer)
        if self._site is not None and self._request_done in self._site.houweb_on_finish:
            self._site.houweb_on_finish.remove(self._request_done)
        try:
            self._stream.close()
        except OSError:  # its last lines could not be flushed: the write said so already
            pass
