"""
The ``settings`` argument of ``run()``: a Python file read like a Django
settings module (its module-level UPPERCASE names are the settings), or a
``dict`` of those names. For now it holds the CORS whitelist.

Loading happens before any port listens, so a broken file stops ``run()``
with :class:`~houweb.OperationFailed` naming the file and the problem.
"""

from __future__ import annotations

import os
import runpy
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from twisted.logger import Logger

from ._errors import OperationFailed

log = Logger(namespace="houweb")

#: The classic and the modern name of Django's usual CORS setting; same meaning.
CORS_NAMES = ("CORS_ORIGIN_WHITELIST", "CORS_ALLOWED_ORIGINS")
KNOWN_NAMES = frozenset(CORS_NAMES)

Source = Union[str, "os.PathLike[str]", Mapping[str, Any], None]


@dataclass(frozen=True)
class Settings:
    """The settings houweb understands, checked."""

    #: Origins allowed cross-origin requests: ``"*"``, ``"null"`` or
    #: ``scheme://host[:port]``; empty means CORS is off.
    cors_origins: tuple[str, ...] = ()


def load_settings(source: Source) -> Settings:
    """
    Read and check ``run()``'s ``settings``.

    :param source: the path of a Python settings file, a ``dict`` of
        UPPERCASE names, or ``None`` (no settings).
    :raises OperationFailed: naming the file and the problem: missing,
        unreadable, a syntax error, an exception while running, a bad value.
    """
    if source is None:
        return Settings()
    if isinstance(source, Mapping):
        return _settings_from(dict(source), "settings dict")
    path = os.fspath(source)
    return _settings_from(_run_file(path), f"settings file {path}")


def _run_file(path: str) -> dict[str, Any]:
    """:returns: the module-level names of the Python file at ``path``."""
    if not os.path.isfile(path):
        raise OperationFailed(f"settings file {path} does not exist")
    try:
        return runpy.run_path(path, run_name="houweb_settings")
    except SyntaxError as exc:
        raise OperationFailed(
            f"settings file {path} has a syntax error on line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported
        raise OperationFailed(f"settings file {path} raised {type(exc).__name__}: {exc}") from None


def _settings_from(namespace: dict[str, Any], where: str) -> Settings:
    names = {name: value for name, value in namespace.items() if name.isupper()}
    unknown = sorted(set(names) - KNOWN_NAMES)
    if unknown:
        log.warn(
            "houweb: {where} has settings houweb does not know (ignored): {names}",
            where=where,
            names=", ".join(unknown),
        )
    origins: list[str] = []
    for name in CORS_NAMES:
        if name in names:
            origins += _origins(names[name], name, where)
    return Settings(cors_origins=tuple(origins))


def _origins(value: object, name: str, where: str) -> list[str]:
    """
    :returns: the whitelist ``value``, checked.
    :raises OperationFailed: unless it is a list or tuple of origins.
    """
    if not isinstance(value, (list, tuple)):
        raise OperationFailed(
            f"{where}: {name} must be a list or tuple of origins, not {type(value).__name__}"
        )
    for entry in value:
        if not is_origin(entry):
            raise OperationFailed(
                f"{where}: {name} entry {entry!r} is not an origin "
                "('*', 'null' or scheme://host[:port], without a path)"
            )
    return list(value)


def is_origin(entry: object) -> bool:
    """:returns: whether ``entry`` is ``"*"``, ``"null"`` or ``scheme://host[:port]``."""
    if not isinstance(entry, str):
        return False
    if entry in ("*", "null"):
        return True
    try:
        parts = urllib.parse.urlsplit(entry.rstrip("/"))
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return bool(
        parts.scheme
        and parts.hostname
        and "@" not in parts.netloc
        and not (parts.path or parts.query or parts.fragment)
        and entry.rstrip("/").lower() == f"{parts.scheme}://{parts.netloc}".lower()
        and not any(c.isspace() for c in entry)
    )
