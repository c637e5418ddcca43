"""
:class:`RunningServer`: one running houweb server on a reactor: its thread pool, its
listening ports, and its graceful shutdown.

``run()`` (of a :class:`houweb.Server`, which starts one of these each time
it runs), the ``twistd houweb`` plugin and the tests all start servers
through this class.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._auth import TokenCheck
from ._config import ServerConfig
from ._cors import install_cors
from ._errors import OperationFailed
from ._guards import HeaderGuard, OriginPolicy, default_allowed_hosts
from ._metrics import install_metrics
from ._pool import HandlerPool
from ._port_binding import plan_ports
from ._port_runtime import configure_ports
from ._registry import Registry
from ._settings import load_settings
from ._site import HouwebSite, ServerContext
from ._statuspage import install_status_page
from ._target import Extension, ExtensionFactory
from ._uploads import remove_stale_uploads

log = Logger(namespace="houweb")


def _reach(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"interface {host}"
    if address.is_unspecified:
        return "all interfaces"
    if address.is_loopback:
        return "loopback only"
    return f"interface {host}"


def url_of(description: str, port: Any) -> str:
    """:returns: ``http://127.0.0.1:8008/ (loopback only)`` for a listening port."""
    address = port.getHost()
    scheme = "https" if description.lower().startswith("ssl:") else "http"
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{scheme}://{host}:{address.port}/ ({_reach(address.host)})"


class _Notifier:
    """
    Hands out Deferreds that all fire when :meth:`fire` is called. ``run()``
    asks for them from its calling thread while the server's thread may fire
    them: the lock makes "not fired yet, so wait" and "fire every waiter" one
    step each, so no waiter is added after the list was taken (and lost).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired = False
        self._waiting: list[defer.Deferred[None]] = []

    def when(self) -> defer.Deferred[None]:
        with self._lock:
            if self._fired:
                return defer.succeed(None)
            d: defer.Deferred[None] = defer.Deferred()
            self._waiting.append(d)
            return d

    @property
    def fired(self) -> bool:
        return self._fired

    def fire(self) -> None:
        with self._lock:
            self._fired = True
            waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class RunningServer:
    """
    One running houweb server: a site on every endpoint of ``config``,
    answering from ``registry`` (its server object's) with a pool of
    ``config.max_num_threads`` threads.
    """

    def __init__(
        self, config: ServerConfig, reactor: Any, registry: Registry, name: str = ""
    ) -> None:
        self.config = config
        #: Its server object's name, in its log lines; ``""`` for the default server.
        self.name = name
        self.reactor = reactor
        self.pool = HandlerPool(config.max_num_threads)
        settings = load_settings(config.settings)
        self.context = ServerContext(
            config=config,
            reactor=reactor,
            pool=self.pool,
            registry=registry,
            settings=settings,
        )
        table = self.context.registry.ports
        #: The main port's settings: setSettingsForPort's over the settings file's.
        self.main_settings = table.main(settings.main_port)
        #: What to listen on, in order (see houweb._port_binding).
        self.plans = plan_ports(config, table, self.main_settings)
        # The settings file's whitelist and setCORSWhitelist()'s: one whitelist.
        cors_origins = (*settings.cors_origins, *self.context.registry.cors_whitelist)
        cors = install_cors(self.context, cors_origins)
        forwarded = self.main_settings.use_x_forwarded_host
        self.context.guard = HeaderGuard(
            allowed_hosts(
                config,
                self.main_settings.allowed_hosts or settings.allowed_hosts,
                [plan.interface_of() for plan in self.plans if plan.serves_main],
            ),
            OriginPolicy((*cors_origins, *settings.csrf_trusted_origins)),
            token=TokenCheck(config.token) if config.token is not None else None,
            cors=cors,
            use_x_forwarded_host=settings.use_x_forwarded_host if forwarded is None else forwarded,
        )
        self._ports_undo = lambda: None
        self.site = HouwebSite(self.context)
        self.metrics = install_metrics(self.context, self.site)
        self.status_page = install_status_page(self.context, self.site)
        #: What this server's targets add to it (see houweb._target.Extension),
        #: as its registry says, and MCP's.
        mcp = _mcp_tools(self) if config.mcp else None  # may refuse: before the registry holds us
        self.extensions: list[Extension] = []
        factories, self._unwatch_lifecycles = registry.on_lifecycle(self._add_extension)
        self.extensions[:0] = [factory(self) for factory in factories]
        if mcp is not None:
            self.extensions.append(mcp)
        self.listening: list[Any] = []
        self._descriptions: list[str] = []
        self._port_numbers: list[int] = []
        self._requested = _Notifier()
        self._stopped = _Notifier()
        self._ports_closed = _Notifier()
        #: Set (from any thread) once shutdown is asked for, before it begins.
        self.stop_asked = False
        self._stopped_event = threading.Event()
        self._unwatch = lambda: None

    def _add_extension(self, factory: ExtensionFactory) -> None:
        """
        A target registered while this server exists needs ``factory``'s
        part: it is made now and stopped with the others. If the server
        already started, its part is not started here (this may be any
        thread): the ASGI lifespans start an app's at its first request.
        """
        self.extensions.append(factory(self))

    @property
    def registry(self) -> Registry:
        return self.context.registry

    def port_numbers(self) -> list[int]:
        """
        :returns: the bound port numbers, main first, each once; recorded at
            start, so asking during shutdown is safe.
        """
        return list(self._port_numbers)

    @defer.inlineCallbacks
    def start(self) -> Any:
        """
        Listen on every endpoint, in order, then start the pool.

        :raises OperationFailed: naming the port that could not be bound;
            whatever was already listening is closed again first.
        """
        for plan in self.plans:
            description = plan.description
            try:
                taken = frozenset(p.getHost().port for p in self.listening)
                port = yield plan.listen(self.reactor, self.site, taken)
            except CannotListenError as exc:
                self.close_ports_now()
                raise OperationFailed(_cannot_listen(exc)) from None
            except OperationFailed:
                self.close_ports_now()
                raise
            except Exception as exc:  # noqa: BLE001 - any endpoint failure (TLS keys...) is reported
                self.close_ports_now()
                raise OperationFailed(f"Could not listen on {description}: {exc}") from None
            self.listening.append(port)
            self._descriptions.append(description)
        for port in self.listening:
            number = port.getHost().port
            if number not in self._port_numbers:
                self._port_numbers.append(number)
        self.context.main_port = self._port_numbers[0]
        remove_stale_uploads()  # a process killed mid-upload left them
        self.context.main_aliases = self._listen_numbers() - {self.context.main_port}
        try:
            self._ports_undo = configure_ports(self.context, self.site, self.plans, self.listening)
        except OperationFailed:
            self.close_ports_now()
            raise
        self.pool.start()
        self._start_extensions()
        for description, port in zip(self._descriptions, self.listening):
            url = url_of(description, port)
            if self.name:  # "(loopback only; server 'a')": which of several
                url = f"{url[:-1]}; server {self.name!r})"
            log.info("houweb: listening on {url}", url=url)
        self._warn_about_registrations()

    def _start_extensions(self) -> None:
        """
        Start what modules added (ASGI lifespans, the MCP session manager):
        they live on the reactor's asyncio loop. ``run()`` in the foreground
        starts the server before the reactor runs: they then start on the
        loop's first turn, before any request is read (a connection is only
        accepted in that turn, its bytes are read in a later one).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # callWhenRunning fires before the loop runs: callLater puts it on the loop.
            self.reactor.callWhenRunning(self.reactor.callLater, 0, self._start_extensions)
            return
        if self._requested.fired:
            return  # shut down (a signal) before the loop ran: nothing to start, or stop
        for extension in self.extensions:
            extension.start()

    def _listen_numbers(self) -> frozenset[int]:
        """:returns: the numbers the ``listen`` endpoints (listed last) were bound to."""
        count = len(self.config.listen)
        listen_ports = self.listening[len(self.listening) - count :] if count else []
        return frozenset(port.getHost().port for port in listen_ports)

    def _warn_about_registrations(self) -> None:
        guard = self.context.guard
        if guard.policy.any_origin and guard.token is None:
            log.warn(
                "houweb: the CORS whitelist has '*' and there is no token: any web page "
                "a browser shows may change state here (POST to handlers, call API "
                "functions{mcp}, open WebSockets); set a token or name the origins",
                mcp=" and MCP tools" if self.config.mcp else "",
            )
        if self.registry.is_empty():
            log.warn("houweb: nothing is registered; every request will get 404")
        for overlap in self.registry.main_port_overlaps(self.context.main_port):
            log.warn("houweb: {overlap}", overlap=overlap)
        for port in sorted(self.registry.bound_port_numbers() - set(self.port_numbers())):
            log.warn("houweb: handlers are bound to port {port}, which does not listen", port=port)
        for name in sorted(self.registry.bound_port_names() - set(self.registry.ports.bound)):
            log.warn(
                "houweb: handlers are bound to port {name!r}, which does not listen "
                "(give it a PORT with setSettingsForPort)",
                name=name,
            )

        def registered(bindings: frozenset[int | str], what: str) -> None:
            numbers = [p for p in bindings if isinstance(p, int)]
            for port in sorted(p for p in numbers if p > 0 and p not in self.port_numbers()):
                log.warn(
                    "houweb: {what} is bound to port {port}, which does not listen",
                    what=what,
                    port=port,
                )

        self._unwatch = self.registry.on_register(registered)

    def close_ports_now(self) -> None:
        """
        Close the ports opened so far before returning. start() may run before
        the reactor does (a foreground run(), twistd), where stopListening()
        would only close them on a reactor turn that never comes: run() then
        served nothing instead of raising.

        Only a server that failed to start (or to run) closes them so: it will
        not shut down, so it stops following its registry's lifecycles here
        (or the registry would hold it, and tell it of each later ASGI app).
        """
        self._unwatch_lifecycles()
        ports, self.listening = self.listening, []
        for port in ports:
            port.stopReading()
            port.connectionLost(Failure(ConnectionDone()))

    def _close_ports(self) -> defer.Deferred[Any]:
        ports, self.listening = self.listening, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    def ports_closed(self) -> defer.Deferred[None]:
        """:returns: a Deferred that fires once shutdown has closed the listening ports."""
        return self._ports_closed.when()

    def shutdown_requested(self) -> defer.Deferred[None]:
        """:returns: a Deferred that fires when shutdown begins."""
        return self._requested.when()

    def stopped(self) -> defer.Deferred[None]:
        """:returns: a Deferred that fires when shutdown is complete."""
        return self._stopped.when()

    def ask_to_stop(self) -> None:
        """Begin :meth:`shutdown` on the reactor thread; callable from any thread."""
        self.stop_asked = True
        self.reactor.callFromThread(self.shutdown)

    def stop_now(self) -> None:
        """
        Shut down without the grace (a second Ctrl-C): begin :meth:`shutdown`
        if it has not begun, and drop every connection now, abandoning the
        handlers still running. Callable from any thread.
        """
        self.stop_asked = True
        self.reactor.callFromThread(self._stop_now)

    def _stop_now(self) -> None:
        self.shutdown()
        for channel in list(self.site.houweb_connections):
            cast(ITCPTransport, channel.transport).abortConnection()

    def wait_stopped(self, timeout: float) -> bool:
        """
        Block (not on the reactor thread) until shutdown is complete.

        :returns: whether it completed within ``timeout`` seconds.
        """
        return self._stopped_event.wait(timeout)

    def shutdown(self) -> defer.Deferred[None]:
        """
        Stop accepting, let requests in flight finish for up to
        ``shutdown_grace`` seconds, drop the connections left, stop the pool.
        Calling it again just waits for the same shutdown.
        """
        self.stop_asked = True
        if not self._requested.fired:
            self._requested.fire()
            d = defer.ensureDeferred(self._shutdown())
            d.addErrback(lambda f: log.failure("houweb: shutdown failed", f))
            d.addBoth(lambda _: self._has_stopped())
        return self.stopped()

    def _has_stopped(self) -> None:
        self._ports_closed.fire()  # if closing them failed: nothing more to wait for
        self._stopped_event.set()
        self._stopped.fire()

    async def _shutdown(self) -> None:
        try:
            await self._shut_down()
        finally:
            # Last: the requests finishing in the grace are routed to the named
            # ports and logged to their LOG_FILEs until then.
            self._ports_undo()

    async def _shut_down(self) -> None:
        self._unwatch()
        self._unwatch_lifecycles()
        await self._close_ports()
        self._ports_closed.fire()
        for channel in list(self.site.houweb_connections):
            channel.stopWhenIdle()  # each closes once its response is sent
        closed = self.site.all_closed()
        closed.addTimeout(self.config.shutdown_grace, self.reactor)
        try:
            await closed
        except defer.TimeoutError:
            log.warn(
                "houweb: {count} request(s) still running after the {grace}s shutdown grace; abandoned",
                count=self.site.in_flight(),
                grace=self.config.shutdown_grace,
            )
            for channel in list(self.site.houweb_connections):
                cast(ITCPTransport, channel.transport).abortConnection()
        self.pool.stop()  # first: then every call has started (named below) or never runs
        self._report_abandoned()
        await self._stop_extensions()
        log.info("houweb: stopped{which}", which=f" (server {self.name!r})" if self.name else "")

    async def _stop_extensions(self) -> None:
        """Stop what modules added (ASGI lifespans), for at most the shutdown grace."""
        if not self.extensions:
            return
        stopped = defer.gatherResults([defer.maybeDeferred(e.stop) for e in self.extensions])
        stopped.addTimeout(self.config.shutdown_grace, self.reactor)
        try:
            await stopped
        except defer.TimeoutError:
            log.warn("houweb: shutdown of the ASGI lifespans took longer than the shutdown grace")
        except Exception:  # noqa: BLE001 - logged, shutdown goes on
            log.failure("houweb: an extension failed to stop")

    def _report_abandoned(self) -> None:
        """Name each call of user code still running (its client may be gone)."""
        for call in self.context.running.snapshot():
            log.warn("houweb: abandoned {call}", call=str(call))


def _mcp_tools(server: RunningServer) -> Any:
    """
    :returns: the MCP tools of ``server`` (imported only when asked for: the MCP SDK is big).
    :raises OperationFailed: when the MCP SDK is not installed.
    """
    try:
        from ._mcp import MCPTools
    except ImportError as exc:
        raise OperationFailed(
            f"mcp=True needs the MCP Python SDK (pip install 'houweb[mcp]'): {exc}"
        ) from None
    return MCPTools(server)


def allowed_hosts(
    config: ServerConfig,
    from_settings: tuple[str, ...] | None,
    interfaces: list[str] | None = None,
) -> tuple[str, ...]:
    """
    :param interfaces: the addresses the ports that take the server's
        allow-list listen on (``config.interfaces()`` if not given).
    :returns: the server's ALLOWED_HOSTS: ``run()``'s (``--allowed-host``),
        else the settings file's, else the loopback names when every address
        listened on is loopback, else ``*``. An empty list means the default
        (as Django's ``ALLOWED_HOSTS = []`` does in debug mode), not "no host".
    """
    if config.allowed_hosts:
        return config.allowed_hosts
    if from_settings:
        return from_settings
    return default_allowed_hosts(config.interfaces() if interfaces is None else interfaces)


def _cannot_listen(exc: CannotListenError) -> str:
    reason = getattr(exc.socketError, "strerror", None) or str(exc.socketError)
    return (
        f"Could not listen on port {exc.port} (interface {exc.interface or '0.0.0.0'}): "
        f"{str(reason).lower()}"
    )
