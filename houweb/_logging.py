"""
Where houweb's log goes when houweb starts logging itself: ``twisted.logger``
events written to stderr, as readable text by default or as one JSON object
per line for machines (``python -m houweb --log-format json``).

houweb only starts logging when nothing else did: a program (or ``twistd``)
that set up Twisted logging keeps its own observers.
"""

from __future__ import annotations

import sys
from typing import IO, Any, cast

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
    textFileLogObserver,
)

#: The values ``--log-format`` accepts; the first is the default.
LOG_FORMATS = ("text", "json")

_started_format: list[str] = []


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


def logging_started() -> bool:
    """:returns: whether Twisted logging was started, by houweb or anyone."""
    return globalLogBeginner._temporaryObserver is None  # type: ignore[attr-defined]


def begin_logging(log_format: str = "text", stream: IO[Any] | None = None) -> bool:
    """
    Send Twisted's log to ``stream`` (stderr by default) in ``log_format``,
    unless logging was started already: the program's own choice wins.

    :returns: whether this call started logging.
    """
    observer = observer_for(log_format, stream if stream is not None else sys.stderr)
    if logging_started():
        return False
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    _started_format.append(log_format)
    return True


def current_format() -> str:
    """:returns: the format houweb began logging in (``"text"`` if it did not)."""
    return _started_format[0] if _started_format else LOG_FORMATS[0]
