"""
Where houweb's log goes when houweb starts logging itself.

houweb logs through ``twisted.logger`` (namespace ``houweb``, and
``houweb.access`` for access lines). Where those events end up is decided once,
when a server starts:

- The program set up Twisted logging itself (``twistd`` does, and so does a
  program that called ``globalLogBeginner.beginLoggingTo``): houweb adds
  nothing; the program's observers see houweb's events.
- The program configured Python's :mod:`logging` (the **root logger has a
  handler**, as after :func:`logging.basicConfig` or ``dictConfig``, or the
  ``houweb`` logger has one): every event goes to the ``logging`` logger named
  by its Twisted namespace: ``houweb``, ``houweb.access``, ``twisted...``
  (``twisted`` for events without one, and for those of the legacy
  ``twisted.python.log``), at the matching level, with the
  traceback of a failure as ``exc_info``.
- Otherwise: readable lines on stderr, or one JSON object per line for
  machines (``python -m houweb --log-format json``).

An embedded :func:`houweb.run` undoes what it did when its server stops: the
observer it added is removed, and ``warnings.showwarning``, which Twisted's
``beginLoggingTo`` replaces, is left as the program had it all along.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import IO, Any, Callable, cast

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
    textFileLogObserver,
)

#: The values ``--log-format`` accepts; the first is the default.
LOG_FORMATS = ("text", "json")

# Per process, not per server: Twisted's log publisher and its beginner are
# global to the process, so what houweb did to them is too (every server of
# the process logs through the one publisher).
#: What houweb chose when it began Twisted logging (empty until it did):
#: the format (read by restarted children and workers, to log alike).
_started_format: list[str] = []
#: The observers houweb has added to Twisted's global publisher and not removed.
_active: list[ILogObserver] = []

#: The namespace of events logged through ``twisted.python.log`` (twisted.web's
#: "Site starting on", the reactor's "Port closed"): they go to ``twisted``.
_LEGACY_NAMESPACE = "log_legacy"

_LEVELS = {
    LogLevel.debug: logging.DEBUG,
    LogLevel.info: logging.INFO,
    LogLevel.warn: logging.WARNING,
    LogLevel.error: logging.ERROR,
    LogLevel.critical: logging.CRITICAL,
}


def _json_line(event: LogEvent) -> str:
    """
    :returns: ``event`` as one line of JSON: Twisted's own encoding (which
        :func:`twisted.logger.eventFromJSON` reads back), plus ``level`` and
        the formatted ``text`` so a reader needs no Twisted to use it.
    """
    readable = dict(event, level=event["log_level"].name, text=formatEvent(event))
    return eventAsJSON(readable) + "\n"


def observer_for(log_format: str, stream: IO[Any]) -> ILogObserver:
    """
    :param log_format: ``"text"`` (Twisted's classic lines: time, system,
        message, tracebacks in full) or ``"json"`` (one object per line).
    :param stream: the text file to write to.
    :returns: an observer writing events at level info and above.
    :raises ValueError: for another format, naming it.
    """
    writer: Any  # zope interfaces, which mypy does not see provided
    if log_format == "text":
        writer = textFileLogObserver(stream)
    elif log_format == "json":
        writer = FileLogObserver(stream, _json_line)
    else:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    at_least_info: list[Any] = [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)]
    return cast(ILogObserver, FilteringLogObserver(writer, at_least_info))


def logging_configured() -> bool:
    """
    :returns: whether the application configured Python's :mod:`logging`:
        the root logger, or the ``houweb`` logger, has a handler. (Python's
        last-resort handler, used when none is configured, does not count.)
    """
    return bool(logging.getLogger().handlers or logging.getLogger("houweb").handlers)


class StdlibObserver:
    """
    A Twisted log observer that hands each event to the :mod:`logging` logger
    named by the event's namespace, so an application's logging configuration
    (handlers, levels, formats) applies to houweb's log.
    """

    def __call__(self, event: LogEvent) -> None:
        namespace = event.get("log_namespace")
        logger = logging.getLogger(
            "twisted" if namespace in (None, "", _LEGACY_NAMESPACE) else namespace
        )
        level = _LEVELS.get(event.get("log_level"), logging.INFO)
        if not logger.isEnabledFor(level):
            return
        failure = event.get("log_failure")
        exc_info = None
        if failure is not None:
            exc_info = (failure.type, failure.value, failure.getTracebackObject())
        logger.log(
            level, "%s", formatEvent(event), exc_info=exc_info, extra={"twisted_event": event}
        )


def logging_started() -> bool:
    """:returns: whether Twisted logging was started, by houweb or anyone."""
    return globalLogBeginner._temporaryObserver is None


def houweb_began() -> bool:
    """:returns: whether houweb began Twisted logging in this process."""
    return bool(_started_format)


def begin_logging(
    log_format: str = "text", stream: IO[Any] | None = None, use_logging: bool = True
) -> Callable[[], None] | None:
    """
    Send Twisted's log (houweb's included) where the module docstring says,
    unless the program set up Twisted logging itself or houweb's observer is
    in place already.

    :param log_format: how lines on ``stream`` look when :mod:`logging` is
        not configured.
    :param stream: where those lines go (stderr by default).
    :param use_logging: go through Python's :mod:`logging` when it is
        configured; ``False``: write ``stream`` regardless (an explicit
        ``--log-format json``).
    :returns: a function that removes what this call added (call it when the
        server stops), or ``None`` if it added nothing.
    """
    console = observer_for(log_format, stream if stream is not None else sys.stderr)
    if _active or (logging_started() and not houweb_began()):
        return None
    stdlib = use_logging and logging_configured()
    observer = cast(ILogObserver, StdlibObserver()) if stdlib else console
    if houweb_began():
        globalLogPublisher.addObserver(observer)
    else:
        # beginLoggingTo takes over warnings.showwarning for good: keep the
        # program's. It also replays the events buffered until now.
        showwarning = warnings.showwarning
        try:
            globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
        finally:
            warnings.showwarning = showwarning
        _started_format.append(log_format)
    _active.append(observer)

    def end() -> None:
        if observer in _active:
            _active.remove(observer)
            globalLogPublisher.removeObserver(observer)

    return end


def current_format() -> str:
    """:returns: the format houweb began logging in (``"text"`` if it did not)."""
    return _started_format[0] if _started_format else LOG_FORMATS[0]
