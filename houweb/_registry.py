"""
The registry: every URL handler, static directory and API function, with the
ports each is bound to, and the lookup that picks the target of a request.

Registering is data: nothing here dispatches, listens or starts anything.
Each :class:`houweb.Server` owns one :class:`Registry`; the module-level
decorators fill the default server's.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from twisted.logger import Logger
from twisted.python.failure import Failure

from ._bindings import (  # the registry's vocabulary, defined where nothing imports back
    ALL_PORTS as ALL_PORTS,
)
from ._bindings import (
    API_PATH as API_PATH,
)
from ._bindings import (
    API_VIEW_PATHS as API_VIEW_PATHS,
)
from ._bindings import (
    MAIN_PORT as MAIN_PORT,
)
from ._bindings import (
    Bindings as Bindings,
)
from ._bindings import (
    Ports as Ports,
)
from ._bindings import (
    check_handler_path as check_handler_path,
)
from ._bindings import (
    check_path as check_path,
)
from ._bindings import (
    is_api_path as is_api_path,
)
from ._bindings import (
    normalize_path as normalize_path,
)
from ._bindings import (
    normalize_ports as normalize_ports,
)
from ._bindings import (
    serves as serves,
)
from ._bindings import (
    sorted_bindings as sorted_bindings,
)
from ._dispatch import HandlerResultError, as_response, describe
from ._port_settings import PortTable

if TYPE_CHECKING:  # the targets' answer methods: _site imports this module
    from ._response import Response
    from ._site import Call
    from ._target import Answer, ExtensionFactory, Target

log = Logger(namespace="houweb")
#: What a table of the registry holds (a target, an API function).
_T = TypeVar("_T")

#: Kinds of path registrations, in the order they win on an equal path.
EXACT, STATIC, PREFIX = "exact", "static", "prefix"
_PREFIX_KINDS = (STATIC, PREFIX)

F = TypeVar("F", bound=Callable[..., Any])


def _ancestors(path: str) -> Iterable[str]:
    """
    ``/a/b`` → ``/a/b``, ``/a``, ``/``. Each step is shorter than the last,
    so the walk ends whatever it is given (``foo`` → ``foo``).
    """
    while True:
        yield path
        parent = path.rsplit("/", 1)[0] or "/"
        if len(parent) >= len(path):
            return
        path = parent


@dataclass(frozen=True)
class Match:
    """The registration chosen for a request: its target and registered path."""

    target: Target
    path: str
    kind: str


@dataclass(frozen=True)
class APIEndpoint:
    """The ``/api`` endpoint, on every port of every registry."""

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`houweb._api.answer_api`."""
        return _answer_api()(call)


@functools.cache
def _answer_api() -> Callable[[Call], Answer]:
    """
    :returns: :func:`houweb._api.answer_api`, imported on first use (``_api``
        imports this module) and then kept: a function-level import on each
        ``/api`` call cost some 2% of the reactor thread.
    """
    from ._api import answer_api

    return answer_api


@dataclass(frozen=True)
class APIViewEndpoint:
    """One of :data:`API_VIEW_PATHS`: ``view`` names which."""

    view: str

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`houweb._api_views.answer_api_view`."""
        from ._api_views import answer_api_view  # imported on first use: it imports this module

        return answer_api_view(call, self)


class Registry:
    """
    Registrations by path and kind, and functions by name, each with the ports
    it binds. Safe to change from any thread while the server reads it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[tuple[str, str], dict[Bindings, Target]] = {
            (EXACT, API_PATH): {frozenset({ALL_PORTS}): APIEndpoint()},
            **{
                (EXACT, path): {frozenset({ALL_PORTS}): APIViewEndpoint(view)}
                for path, view in API_VIEW_PATHS.items()
            },
        }
        self._functions: dict[str, dict[Bindings, object]] = {}
        #: The main port's CORS whitelist given by ``setCORSWhitelist``
        #: (added to the settings file's when a server starts).
        self.cors_whitelist: tuple[str, ...] = ()
        #: Whether a target that takes its body as it arrives (its
        #: ``stream_body``: an ASGI app) was ever registered here: until
        #: then, no request's body needs a route lookup before it arrives.
        self.streams_bodies = False
        #: Whether a target that reads the raw body itself (its
        #: ``wants_raw_body``: a WSGI or ASGI app) was ever registered here:
        #: until then, no form's body needs a route lookup before it arrives.
        self.raw_bodies = False
        #: What the targets registered here add to each server that serves
        #: them (the ASGI apps' lifespans): see :meth:`add_lifecycle`.
        self.lifecycles: list[ExtensionFactory] = []
        self._lifecycle_listeners: list[Callable[[ExtensionFactory], None]] = []
        self._listeners: list[Callable[[Bindings, str], None]] = []
        #: The main port's and the named ports' settings (``setSettingsForPort``).
        self.ports = PortTable()

    def add_path(self, kind: str, path: str, ports: Ports, target: Target) -> None:
        """
        Register ``target`` at ``path``: for the same path and kind, it
        replaces an earlier registration on every port both serve (see
        :func:`_pick`), with a warning.
        """
        bindings = normalize_ports(ports)
        key = (kind, check_path(path))
        if getattr(target, "wants_raw_body", False):
            self.raw_bodies = True  # before a request can be routed to it
        self._store("_paths", key, bindings, target, f"{kind} registration for {path}")
        if hasattr(target, "stream_body"):
            self.streams_bodies = True

    def add_function(self, name: str, ports: Ports, target: object) -> None:
        """Register an API function under its full dotted ``name``."""
        bindings = normalize_ports(ports)
        self._store("_functions", name, bindings, target, f"API function {name}")

    def _store(self, table: str, key: Any, bindings: Bindings, target: object, what: str) -> None:
        with self._lock:
            entries = dict(getattr(self, table))
            per_key = dict(entries.get(key, {}))
            # Removed first, so that the new one is the latest, last in order.
            replaced = per_key.pop(bindings, None) is not None
            shared = sorted({port for earlier in per_key for port in _overlap(earlier, bindings)})
            per_key[bindings] = target
            entries[key] = per_key
            setattr(self, table, entries)
            listeners = list(self._listeners)
        if replaced:
            log.warn("houweb: {what} replaced", what=what)
        elif shared:
            log.warn(
                "houweb: {what} replaces the earlier one on {ports}",
                what=what,
                ports=", ".join(_port_name(port) for port in shared),
            )
        for listener in listeners:
            listener(bindings, what)

    def main_port_overlaps(self, main_port: int) -> list[str]:
        """
        :returns: one line per registration that replaces an earlier one on
            the main port only because one is bound to the main port (``0``)
            and the other to its number, ``main_port``: known once the server
            listens, so :class:`~houweb._server.RunningServer` warns about them then.
        """
        found = []
        tables: list[tuple[Mapping[Any, Mapping[Bindings, object]], Callable[[Any], str]]] = [
            (self._paths, lambda key: f"{key[0]} registration for {key[1]}"),
            (self._functions, lambda key: f"API function {key}"),
        ]
        for table, name in tables:
            for key, per_binding in table.items():
                order = list(per_binding)
                for index, later in enumerate(order):
                    for earlier in order[:index]:
                        numbers = _overlap(
                            _as_numbers(earlier, main_port), _as_numbers(later, main_port)
                        )
                        if main_port in numbers and not _overlap(earlier, later):
                            found.append(
                                f"{name(key)} for ports {sorted_bindings(later)} replaces the one for "
                                f"ports {sorted_bindings(earlier)} on main port {main_port}"
                            )
        return found

    def add_lifecycle(self, factory: ExtensionFactory) -> None:
        """
        A target registered here needs ``factory``'s :class:`Extension` in
        each server that serves this registry (once, however many targets
        need it): servers made from now on make one, and a running server
        is told (see :meth:`on_lifecycle`).
        """
        with self._lock:
            if factory in self.lifecycles:
                return
            self.lifecycles.append(factory)
            listeners = list(self._lifecycle_listeners)
        for listener in listeners:
            listener(factory)

    def on_lifecycle(
        self, listener: Callable[[ExtensionFactory], None]
    ) -> tuple[list[ExtensionFactory], Callable[[], None]]:
        """
        Call ``listener(factory)`` for each later :meth:`add_lifecycle`.

        :returns: the factories added so far (read in the same step: none is
            missed or told twice, whatever another thread registers), and an
            undo (which may be called more than once).
        """
        with self._lock:
            self._lifecycle_listeners.append(listener)
            factories = list(self.lifecycles)

        def undo() -> None:
            with self._lock:
                if listener in self._lifecycle_listeners:
                    self._lifecycle_listeners.remove(listener)

        return factories, undo

    def on_register(self, listener: Callable[[Bindings, str], None]) -> Callable[[], None]:
        """Call ``listener(bindings, what)`` after each registration; returns an undo."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def match(
        self, path: str, port: int, main_port: int, aliases: frozenset[int] = frozenset()
    ) -> Match | None:
        """
        :returns: the most specific registration for the decoded request
            ``path`` on ``port``: the longest path wins; on an equal path an
            exact handler, then a static directory, then a prefix handler.
            ``aliases``: as for :func:`serves`.
        """
        paths = self._paths
        norm = normalize_path(path)
        names = self.ports.bound
        target = _pick(paths.get((EXACT, norm)), port, main_port, aliases, names)
        if target is not None:
            return Match(target, norm, EXACT)
        for ancestor in _ancestors(norm):
            for kind in _PREFIX_KINDS:
                target = _pick(paths.get((kind, ancestor)), port, main_port, aliases, names)
                if target is not None:
                    return Match(target, ancestor, kind)
        return None

    def function(
        self, name: str, port: int, main_port: int, aliases: frozenset[int] = frozenset()
    ) -> object | None:
        """:returns: the API function called ``name`` on ``port``, or ``None``."""
        return _pick(self._functions.get(name), port, main_port, aliases, self.ports.bound)

    def functions(
        self, port: int, main_port: int, aliases: frozenset[int] = frozenset()
    ) -> dict[str, object]:
        """:returns: every API function visible on ``port``, by name."""
        found = {}
        for name, per_binding in self._functions.items():
            target = _pick(per_binding, port, main_port, aliases, self.ports.bound)
            if target is not None:
                found[name] = target
        return found

    def targets(self) -> list[Target]:
        """:returns: every path registration's target (the mounted ASGI apps, say)."""
        return [target for per_binding in self._paths.values() for target in per_binding.values()]

    def _bound_ports(self) -> set[int | str]:
        """:returns: every port (number or name) some registration names in its ``ports``."""
        tables = list(self._paths.values()) + list(self._functions.values())
        return {port for per_binding in tables for bindings in per_binding for port in bindings}

    def bound_port_numbers(self) -> set[int]:
        """:returns: every explicit port number some registration binds to."""
        return {port for port in self._bound_ports() if isinstance(port, int) and port > 0}

    def bound_port_names(self) -> set[str]:
        """:returns: every named port some registration binds to."""
        return {port for port in self._bound_ports() if isinstance(port, str)}

    def is_empty(self) -> bool:
        """:returns: whether nothing at all is registered (``/api`` and its views aside)."""
        return len(self._paths) == 1 + len(API_VIEW_PATHS) and not self._functions


def _pick(
    per_binding: dict[Bindings, _T] | None,
    port: int,
    main_port: int,
    aliases: frozenset[int] = frozenset(),
    names: Mapping[str, int] | None = None,
) -> _T | None:
    """
    The registration that answers on ``port``, decided at lookup time (the
    main port's number is known only then): of those that serve it, one bound
    to this port specifically (by number, or as the main port) beats one bound
    to all (``-1``); among equals the latest registered wins. So a later
    registration replaces an earlier one on every port both serve: ``[0]``
    then ``[0, 9000]`` answers from the second on both; ``[8008]`` then
    ``[0]`` with main port 8008 answers from ``[0]`` on 8008.
    """
    if not per_binding:
        return None
    fallback = None
    for bindings, target in reversed(per_binding.items()):  # latest first
        if serves(bindings, port, main_port, aliases, names):
            if ALL_PORTS not in bindings:
                return target
            if fallback is None:
                fallback = target
    return fallback


def _overlap(earlier: Bindings, later: Bindings) -> Bindings:
    """
    :returns: the bindings two registrations share as written (``0`` the main
        port, ``-1`` every port, numbers), where the later replaces the
        earlier. A ``-1`` registration never replaces a specific one, nor the
        reverse: on each port the specific one wins.
    """
    if ALL_PORTS in earlier or ALL_PORTS in later:
        return (
            frozenset({ALL_PORTS}) if ALL_PORTS in earlier and ALL_PORTS in later else frozenset()
        )
    return earlier & later


def _as_numbers(bindings: Bindings, main_port: int) -> Bindings:
    """``bindings`` with the main port (``0``) written as its number."""
    return frozenset(main_port if port == MAIN_PORT else port for port in bindings)


def _port_name(port: int | str) -> str:
    if isinstance(port, str):
        return f"port {port!r}"
    if port == MAIN_PORT:
        return "the main port"
    return "every port" if port == ALL_PORTS else f"port {port}"


@dataclass(frozen=True)
class URLHandlerTarget:
    """A function registered with :func:`urlHandler`."""

    handler: Callable[..., Any]

    @functools.cached_property
    def what(self) -> str:
        """What names the handler in the log and at shutdown (made once, not per request)."""
        return f"URL handler {describe(self.handler)}"

    def answer(self, call: Call) -> Answer:
        """Answer a request routed here: call the handler in the pool (or on the reactor)."""
        what = self.what
        d = call.run(self.handler, call.request, shown_as=what)
        d.addCallbacks(_as_response_of, call.failed, callbackArgs=(call, what), errbackArgs=(what,))
        return d


def _as_response_of(result: object, call: Call, what: str) -> Response:
    """:returns: the handler's ``result`` as a Response, or the 500 of one houweb cannot send."""
    try:
        return as_response(result)
    except HandlerResultError:
        return call.failed(Failure(), what)


def url_handler(
    registry: Registry, path: str, is_prefix: bool = False, ports: Ports = []
) -> Callable[[F], F]:
    """
    :returns: a decorator registering a function into ``registry`` as a URL
        handler: see :func:`houweb.urlHandler`, which is this on the default
        server's registry.
    """
    check_handler_path(path)
    bindings = normalize_ports(ports)

    def register(handler: F) -> F:
        if not callable(handler):
            raise TypeError("urlHandler decorates a function")
        kind = PREFIX if is_prefix else EXACT
        registry.add_path(kind, path, list(bindings), URLHandlerTarget(handler))
        return handler

    return register
