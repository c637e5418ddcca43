"""
Which source files are the application's (not the standard library's, an
installed package's, nor houweb's), whether a changed one compiles, and
:class:`SourceWatcher`, which reports their changes as they are saved.

Used by ``reload_source_changes`` (``_restart``): a change that compiles
restarts the program; a syntax error is logged and the server keeps serving.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

if TYPE_CHECKING:
    import watchfiles

log = Logger(namespace="houweb")

#: How often (ms) the watcher looks for modules imported since it started.
RESCAN_MS = 1000

_HOUWEB_DIR = Path(__file__).resolve().parent


# -- Which files are the application's ------------------------------------


@lru_cache(maxsize=1)
def _library_roots() -> tuple[Path, ...]:
    """:returns: the directories of the standard library and installed packages."""
    names = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
    roots = {sysconfig.get_paths().get(name) for name in names}
    roots.update(getattr(site, "getsitepackages", list)())
    roots.add(site.getusersitepackages())
    return (*(Path(root).resolve() for root in roots if root), _HOUWEB_DIR)


def is_application_file(path: str) -> bool:
    """
    :returns: whether ``path`` is an existing ``.py`` file of the application:
        not of the standard library, an installed package, or houweb.
    """
    if not path.endswith(".py") or not os.path.isfile(path):
        return False
    resolved = Path(path).resolve()
    if any(part in ("site-packages", "dist-packages") for part in resolved.parts):
        return False
    return not any(resolved.is_relative_to(root) for root in _library_roots())


def application_files(extra: Iterable[str] = ()) -> set[str]:
    """
    :param extra: more files to include (the settings file), if they exist.
    :returns: the real paths of the application's loaded source files.
    """
    candidates = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    files = {os.path.realpath(f) for f in candidates if f and is_application_file(f)}
    return files | {os.path.realpath(f) for f in extra if os.path.isfile(f)}


def traceback_files(tb: TracebackType | None) -> set[str]:
    """:returns: the application files a traceback passes through."""
    return {
        os.path.realpath(frame.filename)
        for frame in traceback.extract_tb(tb)
        if is_application_file(frame.filename)
    }


def compiles(paths: Iterable[str]) -> bool:
    """
    Compile each Python file in ``paths``; log the first syntax error with its
    traceback.

    :returns: whether they all compile.
    """
    for path in paths:
        try:
            with open(path, "rb") as file:
                compile(file.read(), path, "exec")
        except (SyntaxError, ValueError):
            log.failure("houweb: {file} has an error; still running the previous code", file=path)
            return False
        except OSError:
            continue  # gone again: the next event tells
    return True


# -- Watching ---------------------------------------------------------------


class SourceWatcher:
    """
    Reports changes to a set of files that may grow (modules imported later
    are picked up within :data:`RESCAN_MS`), with ``watchfiles``. Directories
    are watched, not files, so editors that save by renaming are seen too.
    """

    def __init__(
        self,
        files: Callable[[], set[str]],
        any_python_file: bool = False,
        since: float | None = None,
    ) -> None:
        """
        :param files: returns the files to watch; called again now and then.
        :param any_python_file: report every ``.py`` file in their
            directories, not only these files (used while the application
            cannot start, when the fix may be a new file).
        :param since: also report, once watching, the files modified after
            this time (a ``time.time()``): saved while the program started,
            before there was anything to notice it.
        """
        self._files = files
        self._any_python_file = any_python_file
        self._since = since
        #: Every file watched so far: one deleted stays watched, so that
        #: saving it again (editors that delete, then write) is seen.
        self._watched: set[str] = set()

    def _wanted(self, change: watchfiles.Change, path: str) -> bool:
        if self._any_python_file:
            return path.endswith(".py")
        return os.path.realpath(path) in self._watched

    def _modified_before_watching(self) -> set[str]:
        """:returns: once, the watched files modified since ``since`` (not in the future)."""
        since, self._since = self._since, None
        if since is None:
            return set()
        now = time.time()
        return {f for f in self._watched if since < _modified(f) <= now}

    def changes(self, stop: threading.Event | None = None) -> Iterator[list[str]]:
        """
        :param stop: ends the iteration when set.
        :returns: lists of changed files that exist, as they happen.
        """
        import watchfiles  # here: it costs start-up time a server that does not reload need not pay

        stop = stop if stop is not None else threading.Event()
        while not stop.is_set():
            self._watched |= self._files()
            directories = sorted(
                {d for d in map(os.path.dirname, self._watched) if os.path.isdir(d)}
            )
            if not directories:
                stop.wait(RESCAN_MS / 1000)
                continue
            for batch in watchfiles.watch(
                *directories,
                watch_filter=self._wanted,
                stop_event=stop,
                rust_timeout=RESCAN_MS,
                yield_on_timeout=True,
                recursive=False,
            ):
                changed = sorted(
                    {os.path.realpath(p) for _, p in batch if os.path.isfile(p)}
                    | self._modified_before_watching()
                )
                if changed:
                    yield changed
                elif not self._files() <= self._watched:
                    break  # more modules loaded: watch their directories too


def _modified(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
