"""
``python -m houweb`` (or the ``houweb`` command): serve applications in the
foreground, with the options of ``twistd houweb`` plus ``--log-format`` and
reload switches. Without ``--app`` it serves the demo application on
http://127.0.0.1:8008/. ``python -m houweb --help`` lists everything.

``python -m houweb run SCRIPT [ARGS...]`` runs a script written for
Houdini's server unchanged instead (see :mod:`houweb._script`).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from ._application import run
from ._errors import OperationFailed
from ._logging import LOG_FORMATS, begin_logging
from ._tap import Options, load_applications

log = Logger(namespace="houweb")


class CommandLineOptions(Options):
    """``twistd houweb``'s options, plus what only a foreground server has."""

    command = "python -m houweb"
    more_examples = """\
  While developing: tracebacks in answers, and a restart whenever a source
  file of the application is saved:
    {command} --app myapp.py --debug
  Plain handlers on two cores: two processes serving the same port:
    {command} --app myapp.py --workers 2
  A script written for Houdini (import hwebserver, calls run() itself),
  unchanged, with its own arguments:
    {command} run myscript.py ARGS...
"""
    optFlags: list[list[Any]] = [
        ["reload", "r", "Restart when a source file of the application changes (on with --debug)."],
        ["no-reload", None, "Do not restart on changes, even with --debug."],
    ]
    optParameters: list[list[Any]] = [
        [
            "log-format",
            None,
            LOG_FORMATS[0],
            f"How the log is written to stderr: {' or '.join(LOG_FORMATS)}.",
        ],
        [
            "workers",
            "w",
            "1",
            "How many processes serve the ports (POSIX); each has its own memory and threads.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format: expected {' or '.join(LOG_FORMATS)}, not {self['log-format']!r}"
            )
        if self["reload"] and self["no-reload"]:
            raise usage.UsageError("--reload and --no-reload contradict each other")
        try:
            self["workers"] = int(self["workers"], 10)
        except (TypeError, ValueError):
            raise usage.UsageError(
                f"--workers: expected an integer, not {self['workers']!r}"
            ) from None
        if self["workers"] < 1:
            raise usage.UsageError(f"--workers: must be at least 1, not {self['workers']}")

    def reload_source_changes(self) -> bool | None:
        """:returns: ``run()``'s ``reload_source_changes``: forced, refused, or left to --debug."""
        if self["reload"]:
            return True
        return False if self["no-reload"] else None


def parse(argv: list[str]) -> CommandLineOptions:
    """
    :returns: the parsed options.
    :raises SystemExit: with status 2 and the problem on stderr, for bad options.
    """
    options = CommandLineOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as exc:
        print(f"{options.command}: {exc}\nTry '{options.command} --help'.", file=sys.stderr)
        raise SystemExit(2) from None
    return options


def main(argv: list[str] | None = None) -> None:
    """
    Serve in the foreground until Ctrl-C, SIGTERM or ``requestShutdown()``.

    :param argv: the arguments, ``sys.argv[1:]`` by default.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        if len(argv) < 2:
            print("usage: python -m houweb run SCRIPT [ARGS...]", file=sys.stderr)
            raise SystemExit(2)
        from ._script import run_script

        run_script(argv[1], argv[2:])
        return
    options = parse(argv)
    # The applications first: one that configures Python's logging gets
    # houweb's log through it (events logged meanwhile wait for the choice).
    load_applications(options)
    begin_logging(options["log-format"], use_logging=options["log-format"] == "text")
    try:
        run(
            in_background=False,
            reload_source_changes=options.reload_source_changes(),
            workers=options["workers"],
            **options.run_arguments(),
        )
    except OperationFailed as exc:
        log.critical("houweb: {problem}", problem=exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
