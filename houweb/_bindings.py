"""
What a registration binds: its ports (numbers, names, the main port, every
port) and its path, with the paths houweb reserves for the API functions.
Plain values and checks, imported by the registry and by the modules that
answer on those paths (``_api``, ``_snapshot``, ``_cors``), which therefore
need nothing of the registry itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Union

ALL_PORTS = -1
MAIN_PORT = 0


Ports = Sequence["int | str"]
#: What a registration is bound to (a set of these): ``0`` the main port, ``-1`` every port,
#: port numbers, and the names of named ports (``setSettingsForPort``).
Bindings = frozenset[Union[int, str]]


def normalize_ports(ports: Ports) -> frozenset[int | str]:
    """
    Turn a ``ports`` argument into the set of bindings it means: ``0`` for the
    main port (also ``[]``, ``""`` and ``"main"``), ``-1`` for every port, port
    numbers, or the names of named ports (resolved when a server starts,
    so ``setSettingsForPort`` may come later).

    :raises TypeError: for a ``ports`` that is not a list or tuple of ints and names.
    :raises ValueError: for a number outside -1..65535.
    """
    if not isinstance(ports, (list, tuple)):
        raise TypeError(f"ports must be a list or tuple, not {type(ports).__name__}")
    bindings: set[int | str] = set()
    for entry in ports:
        if isinstance(entry, str):
            if entry not in ("", "main"):
                bindings.add(entry)
                continue
            entry = MAIN_PORT
        if isinstance(entry, bool) or not isinstance(entry, int):
            raise TypeError(f"ports entry {entry!r} must be an int")
        if not ALL_PORTS <= entry <= 65535:
            raise ValueError(f"ports entry {entry} is outside -1..65535")
        bindings.add(entry)
    return frozenset(bindings or {MAIN_PORT})


def serves(
    bindings: frozenset[int | str],
    port: int,
    main_port: int,
    aliases: frozenset[int] = frozenset(),
    names: Mapping[str, int] | None = None,
) -> bool:
    """
    :param aliases: the numbers of the main port's other addresses (the
        ``listen`` endpoints): they answer what the main port answers.
    :param names: the number each named port is bound to.
    :returns: whether a registration with ``bindings`` answers on ``port``.
    """
    if ALL_PORTS in bindings or port in bindings:
        return True
    if (port == main_port or port in aliases) and (MAIN_PORT in bindings or main_port in bindings):
        return True
    return bool(names) and any(
        isinstance(b, str) and names.get(b) == port  # type: ignore[union-attr]
        for b in bindings
    )


def sorted_bindings(bindings: Iterable[int | str]) -> list[int | str]:
    """:returns: ``bindings`` sorted: numbers first, then names."""
    return sorted(bindings, key=lambda b: (1, b, 0) if isinstance(b, str) else (0, "", b))


#: Where API functions are called (on every port).
API_PATH = "/api"


#: houweb's descriptions of the API functions (``_api_views``), by path;
#: like ``/api`` they are on every port and no handler may take them.
API_VIEW_PATHS = {
    "/api/openapi.json": "openapi",
    "/api/docs": "docs",
    "/api/client.js": "client",
    "/api/client.d.ts": "types",
}


def is_api_path(path: str) -> bool:
    """:returns: whether a decoded request path is the ``/api`` endpoint (``/api/`` too)."""
    return normalize_path(path) == API_PATH


def check_path(path: str) -> str:
    """
    Validate a registered URL path and return its normalised form.

    :raises ValueError: unless it starts with ``/`` and holds no ``?`` or ``#``.
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError(f"URL path {path!r} must start with '/' and have no '?' or '#'")
    return normalize_path(path)


def check_handler_path(path: str) -> str:
    """
    Validate the path of a handler (anything but an API function).

    :raises ValueError: as :func:`check_path` does, and for ``/api``, which is
        reserved for API functions.
    """
    norm = check_path(path)
    if norm == API_PATH:
        raise ValueError("/api is reserved for API functions (use apiFunction)")
    if norm in API_VIEW_PATHS:
        raise ValueError(f"{norm} is reserved for houweb's description of the API functions")
    return norm


def normalize_path(path: str) -> str:
    """Drop one trailing slash, so ``/a/`` and ``/a`` are the same (``/`` stays)."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path
