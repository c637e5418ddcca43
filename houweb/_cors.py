"""
CORS for the origins the settings whitelist: every response to a whitelisted
origin (errors, 404, 413 and static files included) names it in
``Access-Control-Allow-Origin``, and its preflight ``OPTIONS`` is answered
without calling any handler. Other origins get no CORS headers and are
otherwise served normally: the browser, not houweb, blocks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._request import Request
from ._response import Response
from ._settings import is_origin

if TYPE_CHECKING:  # for the hints: the registry is the server's, not this module's
    from ._registry import Registry

#: Fixed answers of a preflight (spec §12.2).
PREFLIGHT_HEADERS = (
    ("Access-Control-Allow-Methods", "DELETE, GET, OPTIONS, PATCH, POST, PUT"),
    (
        "Access-Control-Allow-Headers",
        "accept, authorization, content-type, origin, user-agent, x-csrftoken, x-requested-with",
    ),
    ("Access-Control-Max-Age", "86400"),
)


class CORSPolicy:
    """
    Which origins may make cross-origin requests; its :meth:`preflight` is a
    request filter and its :meth:`add_headers` a response filter of the site.

    :param origins: ``"*"`` (any origin), ``"null"`` or ``scheme://host[:port]``
        entries, compared case-insensitively after dropping a trailing ``/``.
    """

    def __init__(self, origins: Iterable[str], only_ports: Iterable[int] | None = None) -> None:
        entries = {origin.rstrip("/").lower() for origin in origins}
        self._any = "*" in entries
        self._origins = frozenset(entries - {"*"})
        #: The listening ports it applies to (a named port's); ``None``: all
        #: but :attr:`other_ports`.
        self.only_ports = None if only_ports is None else frozenset(only_ports)
        #: Ports with a whitelist of their own (``setCORSWhitelist(origins, name)``).
        self.other_ports: set[int] = set()

    def applies(self, port: int) -> bool:
        """:returns: whether requests on the listening ``port`` follow this whitelist."""
        if self.only_ports is not None:
            return port in self.only_ports
        return port not in self.other_ports

    def allows(self, origin: str) -> bool:
        """:returns: whether the ``Origin`` value ``origin`` is whitelisted."""
        return bool(origin) and (self._any or origin.lower() in self._origins)

    def allowed_origin(self, request: Request) -> str | None:
        """:returns: the request's ``Origin`` if it is whitelisted, else ``None``."""
        origin = request.header("Origin")
        return origin if self.allows(origin) else None

    def is_preflight(self, method: str, request_method: str, origin: str) -> bool:
        """
        :returns: whether a request is a whitelisted origin's preflight
            (``OPTIONS`` with a non-empty ``Access-Control-Request-Method``),
            which :meth:`preflight` answers and the token check lets in.
        """
        return method == "OPTIONS" and bool(request_method.strip()) and self.allows(origin)

    def preflight(self, request: Request) -> Response | None:
        """
        :returns: the answer to a whitelisted origin's preflight (``OPTIONS``
            with ``Access-Control-Request-Method``), or ``None`` for anything
            else, which is routed as usual.
        """
        if not self.applies(request.port()) or not self.is_preflight(
            request.method(),
            request.header("Access-Control-Request-Method"),
            request.header("Origin"),
        ):
            return None
        response = Response(b"", 200)
        for name, value in PREFLIGHT_HEADERS:
            response.setHeader(name, value)
        return response

    def add_headers(self, request: Request, response: Response) -> None:
        """Name a whitelisted origin in ``response`` and add ``Origin`` to its ``Vary``."""
        origin = self.allowed_origin(request) if self.applies(request.port()) else None
        if origin is None:
            return
        response.setHeader("Access-Control-Allow-Origin", origin)
        vary = response.header("Vary")
        if not vary:
            response.setHeader("Vary", "Origin")
        elif "origin" not in (v.strip().lower() for v in vary.split(",")):
            response.setHeader("Vary", f"{vary}, Origin")


def install_cors(
    context: Any, origins: Iterable[str], only_ports: Iterable[int] | None = None
) -> CORSPolicy | None:
    """
    Turn CORS on for ``origins`` in a server's context; nothing happens for
    an empty whitelist.

    :param only_ports: the listening ports it applies to (a named port's);
        ``None``: every port without a whitelist of its own.
    :returns: the policy, or ``None`` for an empty whitelist.
    """
    origins = list(origins)
    if not origins:
        return None
    policy = CORSPolicy(origins, only_ports)
    context.request_filters.insert(0, policy.preflight)
    context.response_filters.append(policy.add_headers)
    return policy


def set_cors_whitelist(registry: Registry, origins: Sequence[str], port_name: str = "") -> None:
    """
    Set ``registry``'s CORS whitelist: see :func:`houweb.setCORSWhitelist`,
    which is this on the default server's registry.
    """
    if not isinstance(port_name, str):
        raise TypeError(f"port_name must be a str, not {type(port_name).__name__}")
    if isinstance(origins, str) or not isinstance(origins, (list, tuple)):
        raise TypeError(f"origins must be a list or tuple of str, not {type(origins).__name__}")
    for entry in origins:
        if not is_origin(entry):
            raise ValueError(
                f"setCORSWhitelist: {entry!r} is not an origin "
                "('*', 'null' or scheme://host[:port], without a path)"
            )
    if port_name in ("", "main"):
        registry.cors_whitelist = tuple(origins)
    else:
        registry.ports.cors[port_name] = tuple(origins)
