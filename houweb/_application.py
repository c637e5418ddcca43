"""
:class:`Server`: one web server object, Houdini 21's ``hwebserver.Server(name)``
(from observed use), with everything that is its own: its registry (handlers,
API functions, static directories, WebSockets, WSGI/ASGI apps, archives, the
CORS whitelist), its settings per port, and its run state (the running
server, with its pool and ports). Several run side by side in one process, on
the one reactor, each on its own ports.

The module-level functions (``houweb.urlHandler``, ``houweb.run``, ...) act
on the default server, :func:`default_server`: code written for one server
never sees a server object. What is one per process whatever the number of
servers (the reactor and its thread, signal handlers, the worker role) is in
``_run``, which says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.logger import Logger

from . import _run
from ._api import api_function
from ._config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_GRACE,
    ServerConfig,
)
from ._cors import set_cors_whitelist
from ._port_settings import MAIN, check_settings, set_settings_for_port
from ._registry import Ports, Registry, url_handler
from ._static import PathLike, register_static_directory

if TYPE_CHECKING:
    from ._opdef import Provider

log = Logger(namespace="houweb")

F = TypeVar("F", bound=Callable[..., Any])
W = TypeVar("W", bound=type)


class Server:
    """
    A web server object (Houdini 21's ``hwebserver.Server(name)``): register
    handlers on it, then :meth:`run` it. Its handlers, API functions,
    settings, pool and lifecycle are its own: it never answers with another
    server's handlers, and stopping it leaves the others serving.

    :param name: names the server in messages and logs; not empty (the
        default server, which the module-level functions act on, has none).
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a server's name must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("a server's name must not be empty (the default server has none)")
        self._setup(name)

    @classmethod
    def _default(cls) -> Server:
        """:returns: a nameless server: the default one."""
        server = cls.__new__(cls)
        server._setup("")
        return server

    def _setup(self, name: str) -> None:
        self._name = name
        #: What it answers: handlers, API functions, static directories...
        self.registry = Registry()
        #: ``setSecurity(allowed_hosts=...)``: the ALLOWED_HOSTS used when
        #: neither ``run()`` nor the main port's settings give them.
        self.security_allowed_hosts: tuple[str, ...] | None = None
        #: Its run state: the running server (pool, ports), the last one.
        self.lifecycle = _run.Lifecycle(name)

    def __repr__(self) -> str:
        return f"<houweb.Server {self._name!r}>" if self._name else "<houweb default server>"

    def name(self) -> str:
        """:returns: the name it was created with (``""`` for the default server)."""
        return self._name

    # -- Registration: the same code as the module-level functions' --------

    def urlHandler(self, path: str, is_prefix: bool = False, ports: Ports = []) -> Callable[[F], F]:
        """As :func:`houweb.urlHandler`, on this server."""
        return url_handler(self.registry, path, is_prefix, ports)

    def apiFunction(
        self,
        namespace: str | None = None,
        return_binary: bool = False,
        arg_types: Mapping[str, Callable[[Any], Any]] | None = None,
        ports: Ports = [],
    ) -> Callable[[F], F]:
        """As :func:`houweb.apiFunction`, on this server (its own ``/api``)."""
        return api_function(self.registry, namespace, return_binary, arg_types, ports)

    def registerStaticFilesDirectory(
        self, directory: PathLike, url_prefix: str = "/static", port: int | str = -1
    ) -> None:
        """As :func:`houweb.registerStaticFilesDirectory`, on this server."""
        register_static_directory(self.registry, directory, url_prefix, port)

    def webSocket(self, path: str, is_prefix: bool = False, ports: Ports = []) -> Callable[[W], W]:
        """As :func:`houweb.webSocket`, on this server."""
        from ._websocket import web_socket  # autobahn: loaded only when used

        return web_socket(self.registry, path, is_prefix, ports)

    def registerWSGIApp(self, application: Any, path: str, ports: Ports = []) -> None:
        """As :func:`houweb.registerWSGIApp`, on this server."""
        from ._wsgi import register_wsgi_app

        register_wsgi_app(self.registry, application, path, ports)

    def registerASGIApp(self, application: Any, path: str | None = None, ports: Ports = []) -> None:
        """As :func:`houweb.registerASGIApp`, on this server."""
        from ._asgi import register_asgi_app

        register_asgi_app(self.registry, application, path, ports)

    def registerArchiveFile(
        self, archive_file: PathLike, url_prefix: str, port: int | str = -1
    ) -> None:
        """As :func:`houweb.registerArchiveFile`, on this server."""
        from ._archive import register_archive_file

        register_archive_file(self.registry, archive_file, url_prefix, port)

    def registerOpdefPath(
        self, prefix: str = "/opdef", *, provider: Provider | None = None
    ) -> None:
        """As :func:`houweb.registerOpdefPath`, on this server."""
        from ._opdef import register_opdef_path  # on first use: cold start

        register_opdef_path(self.registry, prefix, provider=provider)

    def setCORSWhitelist(self, origins: Sequence[str], port_name: str = "") -> None:
        """As :func:`houweb.setCORSWhitelist`, on this server."""
        set_cors_whitelist(self.registry, origins, port_name)

    # -- Settings ----------------------------------------------------------

    def setSettingsForPort(self, settings: Mapping[str, Any], port_name: str = "") -> None:
        """As :func:`houweb.setSettingsForPort`, on this server's ports."""
        set_settings_for_port(self.registry, settings, port_name)

    def setPortInfo(
        self,
        port_name: str,
        port: int,
        max_port: int,
        allow_system_port: bool,
        address: str,
        ipv6: bool,
        allowed_hosts: Sequence[str],
        use_x_forwarded_host: bool,
    ) -> None:
        """:meth:`setSettingsForPort` with its main keys as arguments (Houdini 21, observed use)."""
        self.setSettingsForPort(
            {
                "PORT": port,
                "MAX_PORT": max_port,
                "ALLOW_SYSTEM_PORT": allow_system_port,
                "ADDRESS": address,
                "IPV6": ipv6,
                "ALLOWED_HOSTS": allowed_hosts,
                "USE_X_FORWARDED_HOST": use_x_forwarded_host,
            },
            port_name,
        )

    def setSecurity(self, allowed_hosts: Sequence[str] | None = None, **others: Any) -> None:
        """
        :param allowed_hosts: the host names requests may be addressed to,
            used when neither ``run()`` nor the main port's settings give them.
        :param others: not honoured: each gets a warning naming it.
        """
        if allowed_hosts is not None:
            self.security_allowed_hosts = check_settings({"ALLOWED_HOSTS": allowed_hosts})[
                "allowed_hosts"
            ]
        for key in sorted(others):
            log.warn("houweb: setSecurity: {key} is not honoured; ignored", key=key)

    # -- Lifecycle ---------------------------------------------------------

    def run(
        self,
        port: int | None = None,
        debug: bool = False,
        max_num_threads: int = 4,
        in_background: bool | None = None,
        reload_source_changes: bool | None = None,
        max_in_memory_file_upload_size: int | None = None,
        max_request_size: int | None = None,
        settings: Any = None,
        ports: Sequence[int] = [],
        *,
        interface: str | None = None,
        listen: Sequence[str] = [],
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        token: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        workers: int = 1,
        allowed_hosts: Sequence[str] | None = None,
        access_log: bool = False,
        metrics: bool = False,
        metrics_path: str = "/metrics",
        health_path: str = "/healthz",
        status_page: bool = False,
        mcp: bool = False,
        port_callback: Callable[..., object] | None = None,
    ) -> None:
        """
        Start this server: as :func:`houweb.run`, with its own handlers, pool
        and ports, beside the other servers of the process.

        :param port: ``None``: the main port's ``PORT`` setting, else 8008.
        :param interface: ``None``: the main port's ``ADDRESS`` setting, else
            loopback (Houdini's default is 0.0.0.0).
        :param allowed_hosts: ``None``: the main port's ``ALLOWED_HOSTS``
            setting, else :meth:`setSecurity`'s, else as for ``run()``.
        :param port_callback: called with the main port's number (or, if it
            takes two arguments, as Houdini 21 calls it: ``("main", "8008")``,
            the port's name and number as text) once every port listens, in the thread that called ``run()``: before it
            returns (in the background), before serving (in the foreground).
            An exception it raises is logged; the server serves on.
        :param reload_source_changes: as for ``run()``; like ``workers > 1``
            it needs a foreground ``run()`` that owns the process: refused
            while another server runs, and no other server may start while
            it does (restarting or copying the program would not carry it).
        :raises OperationFailed: as ``run()``; also when this server runs
            already (each server object runs once at a time).
        """
        if port is None:
            port = -1  # the main port's PORT, else 8008
        if interface is None:
            interface = "127.0.0.1"  # unless the main port's ADDRESS says
        if allowed_hosts is None and self.registry.ports.get(MAIN).allowed_hosts is None:
            allowed_hosts = self.security_allowed_hosts
        config = ServerConfig.from_arguments(
            port=port,
            debug=debug,
            max_num_threads=max_num_threads,
            max_in_memory_file_upload_size=max_in_memory_file_upload_size,
            max_request_size=max_request_size,
            settings=settings,
            ports=ports,
            interface=interface,
            listen=listen,
            shutdown_grace=shutdown_grace,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
            token=token,
            max_connections=max_connections,
            allowed_hosts=allowed_hosts,
            access_log=access_log,
            metrics=metrics,
            metrics_path=metrics_path,
            health_path=health_path,
            status_page=status_page,
            mcp=mcp,
        )
        if port_callback is not None and not callable(port_callback):
            raise TypeError("port_callback must be callable")
        _run.run(
            self.lifecycle,
            self.registry,
            config,
            in_background,
            reload_source_changes,
            workers,
            port_callback,
        )

    def requestShutdown(self) -> None:
        """As :func:`houweb.requestShutdown`, for this server only: the others serve on."""
        _run.requestShutdown(self.lifecycle)

    def serverPorts(self) -> list[int]:
        """As :func:`houweb.serverPorts`, for this server."""
        return _run.serverPorts(self.lifecycle)

    def isInDebugMode(self) -> bool:
        """As :func:`houweb.isInDebugMode`, for this server."""
        return _run.isInDebugMode(self.lifecycle)


_DEFAULT = Server._default()


def default_server() -> Server:
    """:returns: the server the module-level functions act on."""
    return _DEFAULT


# -- The module-level functions: the default server's ----------------------


def urlHandler(path: str, is_prefix: bool = False, ports: Ports = []) -> Callable[[F], F]:
    """
    Register the decorated function to answer requests for ``path``.

    :param path: starts with ``/``; a trailing slash does not matter.
    :param is_prefix: also answer every path below ``path``.
    :param ports: which listening ports it answers on: ``[]``/``[0]`` the main
        port, ``[-1]`` all of them, port numbers, or the names of named ports
        (``setSettingsForPort``), resolved when the server starts.
    :returns: a decorator that returns the function unchanged.
    """
    return _DEFAULT.urlHandler(path, is_prefix, ports)


def apiFunction(
    namespace: str | None = None,
    return_binary: bool = False,
    arg_types: Mapping[str, Callable[[Any], Any]] | None = None,
    ports: Ports = [],
) -> Callable[[F], F]:
    """
    Make the decorated function callable through ``POST /api`` as
    ``namespace.name`` (or ``name`` without a namespace).

    The function's first parameter is the :class:`~houweb.Request`; the rest
    come from the client. Plain functions run in the thread pool, ``async
    def`` ones on the reactor.

    :param return_binary: always answer ``application/octet-stream``.
    :param arg_types: parameter name → callable that converts the client's
        value (``{"x": float}``) before the call.
    :param ports: the ports it is callable on, as for :func:`urlHandler`.
    :returns: a decorator that returns the function unchanged.
    """
    return _DEFAULT.apiFunction(namespace, return_binary, arg_types, ports)


def registerStaticFilesDirectory(
    directory: PathLike, url_prefix: str = "/static", port: int | str = -1
) -> None:
    """
    Serve the files below ``directory`` under ``url_prefix``: with
    ``("static", "/static")``, ``GET /static/css/main.css`` answers with
    ``static/css/main.css``. No directory listings, no index files.

    :param directory: made absolute now; it must exist.
    :param url_prefix: a URL path, as for ``urlHandler``; a more specific URL
        handler below it wins.
    :param port: ``-1`` every listening port (the default), ``0`` the main
        port, a port number, or the name of a named port.
    :raises OperationFailed: if ``directory`` is missing or not a directory.
    """
    _DEFAULT.registerStaticFilesDirectory(directory, url_prefix, port)


def webSocket(path: str, is_prefix: bool = False, ports: Ports = []) -> Callable[[W], W]:
    """
    Register the decorated :class:`~houweb.WebSocket` subclass for ``path``.

    :param path: starts with ``/``; a trailing slash does not matter.
    :param is_prefix: also take connections for every path below ``path``.
    :param ports: which listening ports it answers on, as for ``urlHandler``.
    :returns: a decorator that returns the class unchanged.
    """
    return _DEFAULT.webSocket(path, is_prefix, ports)


def registerWSGIApp(application: Any, path: str, ports: Ports = []) -> None:
    """
    Serve every request for ``path`` and below with the WSGI ``application``,
    in houweb's thread pool. The application sees ``SCRIPT_NAME`` = ``path``
    and ``PATH_INFO`` = the rest of the request path.

    :param ports: which listening ports it answers on, as for ``urlHandler``.
    """
    _DEFAULT.registerWSGIApp(application, path, ports)


def registerASGIApp(application: Any, path: str | None = None, ports: Ports = []) -> None:
    """
    Serve every request for ``path`` and below (HTTP and WebSocket) with the
    ASGI ``application``, on the reactor's asyncio loop. The application
    sees ``root_path`` = ``path`` and ``path`` = the whole request path (the
    ASGI spec's mount convention, as Starlette, FastAPI and Django expect).

    :param application: an ASGI 3 application (an ASGI 2 one is adapted).
    :param path: where to mount it; ``None`` for ``/`` (everything no more
        specific handler takes).
    :param ports: which listening ports it answers on, as for ``urlHandler``.
    """
    _DEFAULT.registerASGIApp(application, path, ports)


def registerArchiveFile(archive_file: PathLike, url_prefix: str, port: int | str = -1) -> None:
    """
    Serve the files inside the zip ``archive_file`` under ``url_prefix``:
    with ``("site.zip", "/site")``, ``GET /site/css/main.css`` answers with
    the member ``css/main.css``.

    :param archive_file: made absolute now; it must be a zip archive.
    :param url_prefix: a URL path, as for ``urlHandler``; a more specific URL
        handler below it wins.
    :param port: ``-1`` every listening port (the default), ``0`` the main
        port, a port number, or the name of a named port.
    :raises OperationFailed: if the archive is missing or not a zip archive.
    """
    _DEFAULT.registerArchiveFile(archive_file, url_prefix, port)


def registerOpdefPath(prefix: str = "/opdef", *, provider: Provider | None = None) -> None:
    """
    Answer requests below ``prefix`` on every port, as Houdini answers its
    node-type help there.

    :param prefix: a URL path, as for ``urlHandler``.
    :param provider: ``provider(request, path)`` returns the Response for the
        path below ``prefix`` (runs in the thread pool, or on the reactor if
        ``async def``). Without it every such request gets 501.
    """
    _DEFAULT.registerOpdefPath(prefix, provider=provider)


def setSettingsForPort(settings: Mapping[str, Any], port_name: str = "") -> None:
    """
    Set the settings of one port (Houdini's ``hwebserver.setSettingsForPort``):
    ``PORT``, ``MAX_PORT``, ``ALLOW_SYSTEM_PORT``, ``ADDRESS``, ``IPV6``,
    ``ALLOWED_HOSTS``, ``USE_X_FORWARDED_HOST``, ``LOG_FILE``,
    ``MIN_LOG_SEVERITY``, the ``SSL_*`` keys and the ``SECURE_HSTS_*`` keys
    (see the README's table). A later call for the same port changes only
    the keys it gives. Call it before :func:`houweb.run`: a server reads the
    settings when it starts.

    :param settings: the keys and values; an unknown key is a logged warning
        naming it, and is ignored.
    :param port_name: ``""`` or ``"main"`` for the main port; any other name
        is a named port, which listens (on its ``PORT``) when the server runs
        and answers what ``ports=[name]`` binds to it.
    :raises TypeError: ``settings`` is not a dict, ``port_name`` not a str,
        or a value has the wrong type (naming the key).
    :raises ValueError: a value out of range (naming the key).
    """
    _DEFAULT.setSettingsForPort(settings, port_name)


def setCORSWhitelist(origins: Sequence[str], port_name: str = "") -> None:
    """
    Set the CORS whitelist of a port (hwebserver). The main port's (``""``
    or ``"main"``) is the same whitelist as the settings file's
    ``CORS_ORIGIN_WHITELIST``, which it is added to, and applies on every
    port without a whitelist of its own. A named port's (see
    ``setSettingsForPort``) replaces it on that port. Either way these
    origins also pass the Origin check of requests that change state on
    the ports the whitelist applies to. Call it before :func:`run`: a server
    takes the whitelists when it starts.

    :param origins: ``"*"``, ``"null"`` or ``scheme://host[:port]`` entries;
        ``[]`` clears what an earlier call set.
    :param port_name: ``""`` or ``"main"``, or a named port.
    :raises ValueError: for an entry that is not an origin.
    :raises TypeError: for ``origins`` that is not a list or tuple of str.
    """
    _DEFAULT.setCORSWhitelist(origins, port_name)


def run(
    port: int = 8008,
    debug: bool = False,
    max_num_threads: int = 4,
    in_background: bool | None = None,
    reload_source_changes: bool | None = None,
    max_in_memory_file_upload_size: int | None = None,
    max_request_size: int | None = None,
    settings: Any = None,
    ports: Sequence[int] = [],
    *,
    interface: str = "127.0.0.1",
    listen: Sequence[str] = [],
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    token: str | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    workers: int = 1,
    allowed_hosts: Sequence[str] | None = None,
    access_log: bool = False,
    metrics: bool = False,
    metrics_path: str = "/metrics",
    health_path: str = "/healthz",
    status_page: bool = False,
    mcp: bool = False,
) -> None:
    """
    Start the web server on ``port`` (and ``ports``, and ``listen``).

    :param port: the main port; 0 lets the system pick (see :func:`serverPorts`).
    :param debug: tracebacks in 500 answers and one log line per request.
    :param max_num_threads: how many plain handlers may run at once.
    :param in_background: ``True``: serve from a background thread and return
        once listening. ``False``: serve here and return after
        :func:`requestShutdown`, Ctrl-C or SIGTERM. ``None``: background when
        Python is interactive, foreground otherwise.
    :param reload_source_changes: restart when the application's source files
        change; ``None`` means on in debug mode in the foreground.
    :param max_in_memory_file_upload_size: uploads up to this many bytes stay
        in memory (default 2.5 MB).
    :param max_request_size: the largest request body accepted (default 3 GB).
    :param settings: a settings file (or dict) like Django's: the CORS
        whitelist, ``ALLOWED_HOSTS``, ``CSRF_TRUSTED_ORIGINS``, the form limits.
    :param ports: more ports to listen on.
    :param interface: the address to listen on; loopback unless you say so.
    :param listen: more Twisted endpoint strings (``tcp:``, ``tcp6:``, ``ssl:``).
    :param shutdown_grace: seconds requests in flight get to finish at shutdown.
    :param idle_timeout: seconds a connection may stay idle between requests.
    :param request_timeout: seconds a request's headers and body may take to
        arrive, however slowly they trickle in (answered 408 after that).
    :param token: a shared secret: when set, every request must send
        ``Authorization: Bearer <token>`` or gets 401.
    :param max_connections: the most connections open at once (default
        1000, per process); a connection beyond them is answered 503 and
        closed at once.
    :param workers: how many processes serve the ports (foreground only,
        POSIX): this one and ``workers - 1`` copies of the program, each with
        its own memory and thread pool.
    :param allowed_hosts: Django's ``ALLOWED_HOSTS``, the host names requests
        may be addressed to (``"name"``, ``".domain"`` with its subdomains,
        ``"*"``); others get 400. Wins over the settings file's. ``None``: the
        settings file's, else the loopback names when every address is
        loopback, else ``"*"``.
    :param access_log: log one line per request in the Common Log Format
        (``twistd houweb`` and ``python -m houweb`` do by default).
    :param metrics: serve Prometheus metrics at ``metrics_path`` and a health
        check at ``health_path`` (needs ``pip install 'houweb[metrics]'``).
    :param metrics_path: where the metrics are served.
    :param health_path: where the health check is served; ``""``: nowhere.
    :param status_page: a live status page at ``/houweb/status`` (what runs
        now, the pool, connections, recent errors), for loopback clients, or
        for those with the ``token``.
    :param mcp: also serve every API function a port shows as an MCP tool
        at ``/mcp`` (Streamable HTTP transport; needs the ``mcp`` package).
    :raises OperationFailed: a port cannot be bound, houweb already runs, the
        settings cannot be loaded, or ``workers`` cannot be had here.
    """
    _DEFAULT.run(
        port,
        debug,
        max_num_threads,
        in_background,
        reload_source_changes,
        max_in_memory_file_upload_size,
        max_request_size,
        settings,
        ports,
        interface=interface,
        listen=listen,
        shutdown_grace=shutdown_grace,
        idle_timeout=idle_timeout,
        request_timeout=request_timeout,
        token=token,
        max_connections=max_connections,
        workers=workers,
        allowed_hosts=allowed_hosts,
        access_log=access_log,
        metrics=metrics,
        metrics_path=metrics_path,
        health_path=health_path,
        status_page=status_page,
        mcp=mcp,
    )


def requestShutdown() -> None:
    """
    Ask the running server to stop: it stops accepting, lets requests in
    progress finish, then stops. Returns at once; callable from any thread,
    handlers included. Does nothing when no server runs.
    """
    _DEFAULT.requestShutdown()


def isInDebugMode() -> bool:
    """:returns: whether the running server was started with ``debug=True``."""
    return _DEFAULT.isInDebugMode()


def serverPorts() -> list[int]:
    """
    :returns: the ports the running server listens on, main port first
        (revealing the one picked for ``port=0``); ``[]`` when not running.
    """
    return _DEFAULT.serverPorts()
