"""
The site: the Klein application every listening port serves. It turns each
twisted.web request into a :class:`houweb.Request`, picks the target in the
registry, has the target answer (:meth:`houweb._target.Target.answer`, the
way twisted.web renders a resource), and writes the Response.

Each kind of target answers for itself: its class, in the module that owns
that kind (URL handlers in ``_registry`` answered below, API functions in
``_api``, ...), carries the code, so routing depends on no module having
been imported first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from klein import Klein
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource
from werkzeug.exceptions import BadHost

from ._access import escaped, log_access, log_rejected
from ._auth import CHALLENGE, MESSAGE
from ._channel import BodySink, HouwebChannel, HouwebRequest, LocalAddress
from ._config import ServerConfig
from ._date import HttpDate
from ._dispatch import RunningCalls, failure_response
from ._forms import parse_form
from ._guards import HeaderGuard, OriginPolicy
from ._pool import HandlerPool
from ._priority import SmallFirst
from ._registry import EXACT, Match, Registry, is_api_path
from ._render import discard, raw_response, write_response
from ._request import Request
from ._response import Response, errorResponse, json_error, notFoundResponse
from ._settings import Settings
from ._snapshot import BadRequest, decode_path, snapshot
from ._target import Target
from ._uploads import MemoryBudget

log = Logger(namespace="houweb")

#: The 400 of a Host header that is not a valid host name.
BAD_HOST_NAME = "Invalid Host header: not a valid host name"
#: The status logged and counted for a request whose client left before any
#: of its answer was sent (nginx's 499 "client closed request").
CLIENT_CLOSED_REQUEST = 499

T = TypeVar("T")


@dataclass
class ServerContext:
    """What answering a request needs from the running server."""

    config: ServerConfig
    reactor: Any
    pool: HandlerPool
    registry: Registry = field(default_factory=Registry)
    main_port: int = 0
    #: The numbers of the main port's other addresses: the ``listen``
    #: endpoints answer what the main port answers (plus their own bindings).
    main_aliases: frozenset[int] = frozenset()
    #: The settings file's values (CORS, ALLOWED_HOSTS, form limits...).
    settings: Settings = field(default_factory=Settings)
    #: Each may answer a request before routing (a CORS preflight, say).
    request_filters: list[Callable[[Request], Response | None]] = field(default_factory=list)
    #: Each may add headers to every response (CORS, say).
    response_filters: list[Callable[[Request, Response], None]] = field(default_factory=list)
    #: The calls of user code in progress (named at shutdown if they hang).
    running: RunningCalls = field(default_factory=RunningCalls)
    #: Large API results step aside for the other calls running.
    small_first: SmallFirst = field(init=False)
    #: The bytes the forms of all requests may hold in memory at once.
    form_memory: MemoryBudget = field(default_factory=MemoryBudget)
    #: Paths houweb itself answers on this server alone, before the
    #: registry (the status page's WebSocket): path -> target.
    own_targets: dict[str, Target] = field(default_factory=dict)
    #: What a request's headers must pass before its body is read (Host
    #: allow-list, Origin check, token).
    guard: HeaderGuard = field(default_factory=lambda: HeaderGuard(("*",), OriginPolicy()))
    #: What this server's targets added to it (the ASGI lifespans), by name,
    #: for their requests to find: see :class:`houweb._target.Extension`.
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.small_first = SmallFirst(self.running.started)


@dataclass
class Call:
    """One request on its way to a target: what its ``answer`` works with."""

    context: ServerContext
    web_request: HouwebRequest
    request: Request
    match: Match

    def run(
        self, function: Callable[..., Any], *args: Any, shown_as: object = None, **kwargs: Any
    ) -> Deferred[Any]:
        """
        Call user code: in the pool, or on the reactor if it is ``async def``.

        :param shown_as: what names the call if shutdown finds it still
            running (its ``str()``); ``function`` itself by default.
        """
        subject = function if shown_as is None else shown_as
        return self.context.running.call(
            function, args, kwargs, self.context.reactor, self.context.pool, subject, self.request
        )

    def failed(self, failure: Failure, what: str) -> Response:
        """The 500 answer for user code that raised."""
        return failure_response(self.request, failure, self.context.config.debug, what)


#: The methods of the requests the router may answer before routing: the
#: request filters (a CORS preflight, the metrics, the status page) answer
#: only these, and ``OPTIONS`` without the token is refused there. A request
#: filter that answers another method must be added here, or the body of such
#: a request would reach its target before the filter saw it (see
#: :meth:`HouwebSite.houweb_body_streamer`).
ANSWERED_BEFORE_ROUTING = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def _check_query(target: bytes) -> None:
    """:raises BadRequest: for a query the router would answer 400 to (see ``snapshot``)."""
    query = target.partition(b"?")[2]
    if query:
        try:
            parse_form(query.decode("latin-1"))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("invalid query") from None


def _klein_takes_host(web_request: HouwebRequest) -> bool:
    """:returns: whether Klein can bind to the request's Host (see ``_Guard.render``)."""
    try:
        web_request.getRequestHostname().decode("utf-8").encode("idna")
    except UnicodeError:
        return False
    return True


#: What takes a request's body as it arrives: a target's ``stream_body``,
#: called with the server's context, the twisted.web request, the match and
#: the decoded path once the headers passed the guard; returns the body's sink.
BodyStreamer = Callable[[ServerContext, HouwebRequest, Match, str], BodySink]


class _Router:
    """The one Klein route: everything below ``/`` comes here."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context

    def route(self, web_request: HouwebRequest) -> Deferred[None] | None:
        """
        Answer ``web_request``: at once when no user code is involved, else through
        a Deferred that fires once the answer was written (Klein's route,
        which Klein cancels if the client leaves first).
        """
        answered = self._answer(web_request)
        if not isinstance(answered, tuple):
            return answered
        request, answer = answered
        if isinstance(answer, Deferred):
            return self._deliver_later(web_request, request, answer)
        if isinstance(answer, Failure):
            return self._deliver_later(web_request, request, fail(answer))
        return self._deliver_later(web_request, request, succeed(answer))

    def _answer(
        self, web_request: HouwebRequest
    ) -> Deferred[None] | None | tuple[Request, Response | Deferred[Response] | Failure]:
        """
        Route ``web_request`` and have its target answer.

        :returns: what :meth:`send` returned when the router answered itself
            (an error, a request filter's answer), else the request and its
            target's answer: a Response, a Deferred of one, or the Failure of
            a target that raised.
        """
        path = web_request.houweb_path  # decoded by _Guard
        try:
            request = snapshot(web_request, path, settings=self.context.settings)
        except BadRequest as exc:
            request = snapshot(web_request, path, parse=False)
            return self.send(web_request, request, exc.response(request))
        # What answers here, before routing, houweb_body_streamer must leave
        # alone too (it may start an ASGI app before this runs).
        for request_filter in self.context.request_filters:
            early = request_filter(request)
            if early is not None:
                return self.send(web_request, request, early)
        token = self.context.guard.token
        if (
            token is not None
            and web_request.method == b"OPTIONS"
            and not token.accepts(web_request.requestHeaders.getRawHeaders(b"authorization"))
        ):
            # Let in without the token as a CORS preflight, yet not answered
            # as one: no handler may see it.
            refused = errorResponse(request, MESSAGE, 401)
            refused.setHeader(*CHALLENGE)
            return self.send(web_request, request, refused)
        own = self.context.own_targets.get(path) if self.context.own_targets else None
        if own is not None:
            match: Match | None = Match(own, path, EXACT)
        else:
            match = self.context.registry.match(
                path, request.port(), self.context.main_port, self.context.main_aliases
            )
        if match is None:
            return self.send(web_request, request, notFoundResponse(request))
        web_request.houweb_target_type = type(match.target)  # for the metrics
        # As maybeDeferred would, without its Deferred for an answer that is
        # a Response: a target that raises is a Failure, answered 500.
        try:
            answer = match.target.answer(Call(self.context, web_request, request, match))
        except BaseException:  # noqa: BLE001 - as maybeDeferred: the 500 of broken()
            return request, Failure()
        return request, answer

    def render(self, web_request: HouwebRequest) -> Any:
        """
        Answer ``web_request`` as Klein's resource does for the one route (see
        :func:`klein_routes_here`): an exception is twisted.web's 500, and
        the request is finished once the route's Deferred fires. Klein's
        cancellation when the client leaves is not needed: the route checks
        for a departed client itself before writing.
        """
        try:
            answered = self._answer(web_request)
        except Exception:  # noqa: BLE001 - answered as Klein would: twisted.web's 500
            web_request.processingFailed(Failure())
            return server.NOT_DONE_YET
        if not isinstance(answered, tuple):
            _finish_when(answered, web_request)
            return server.NOT_DONE_YET
        # Nobody cancels here (Klein's route does when the client leaves):
        # the answer is written and the request finished straight from the
        # target's answer, without _deliver_later's Deferred and closures.
        request, answer = answered
        if isinstance(answer, Deferred):
            answer.addCallbacks(
                self._write_and_finish,
                self._broken_and_finish,
                callbackArgs=(web_request, request),
                errbackArgs=(web_request, request),
            )
        elif isinstance(answer, Failure):
            self._broken_and_finish(answer, web_request, request)
        else:
            self._write_and_finish(answer, web_request, request)
        return server.NOT_DONE_YET

    def _write_and_finish(
        self, response: Response, web_request: HouwebRequest, request: Request
    ) -> None:
        """
        Write the target's answer and finish the request (once a streamed
        file is sent); an answer whose client left is discarded (its file
        deleted if asked). What ``deliver`` and ``_finish_open`` do on
        Klein's way.
        """
        if web_request.finished or web_request._disconnected:
            discard(response)
            return
        try:
            written = self.send(web_request, request, response)
        except Exception:  # noqa: BLE001 - as on Klein's way: broken() answers 500
            self._broken_and_finish(Failure(), web_request, request)
            return
        _finish_when(written, web_request)

    def _broken_and_finish(
        self, failure: Failure, web_request: HouwebRequest, request: Request
    ) -> None:
        """The target could not answer: log, answer 500 and finish."""
        if self._answer_failed(failure, web_request, request):
            _finish_open(None, web_request)

    def _answer_failed(
        self, failure: Failure, web_request: HouwebRequest, request: Request, gone: bool = False
    ) -> bool:
        """
        Log that the target could not answer, and answer 500 unless the
        client is ``gone`` (or left, or was answered).

        :returns: whether the 500 was sent.
        """
        log.failure("houweb: could not answer {request}", failure, request=request)
        if gone or web_request.finished or web_request._disconnected:
            return False
        self.send(web_request, request, errorResponse(request, "Internal server error"))
        return True

    def send(
        self, web_request: HouwebRequest, request: Request, response: Response
    ) -> Deferred[None] | None:
        """
        Write ``response`` to ``web_request`` now, after the response filters (CORS).

        :returns: ``None`` when the answer is complete, else (a file still
            streaming) a Deferred that fires once it is, so Klein does not
            finish the request under the producer.
        """
        for response_filter in self.context.response_filters:
            response_filter(request, response)
        write_response(web_request, response, lambda: notFoundResponse(request))
        if web_request.finished or web_request._disconnected:
            return None
        done: Deferred[None] = Deferred()
        web_request.notifyFinish().addBoth(lambda _: done.callback(None))
        return done

    def _deliver_later(
        self, web_request: HouwebRequest, request: Request, answer: Deferred[Response]
    ) -> Deferred[None]:
        """
        A Deferred for Klein that fires once the answer was written. If the
        client leaves first, Klein cancels it; the handler still finishes and
        its response is discarded (deleting its file if asked) instead of sent.
        """
        outer: Deferred[None] = Deferred()

        def deliver(response: Response) -> None:
            if outer.called or web_request.finished or web_request._disconnected:
                discard(response)
                return
            written = self.send(web_request, request, response)
            if written is None:
                outer.callback(None)
            else:
                written.addCallback(lambda _: None if outer.called else outer.callback(None))

        def broken(failure: Failure) -> None:
            if self._answer_failed(failure, web_request, request, gone=outer.called):
                outer.callback(None)

        answer.addCallback(deliver).addErrback(broken)
        return outer


#: How many Host headers a site remembers Klein's verdict on (see :func:`klein_routes_here`).
_KNOWN_HOSTS = 64


def klein_routes_here(
    web_request: HouwebRequest, path: str, hosts: dict[bytes, bool] | None = None
) -> bool:
    """
    :returns: whether Klein would route ``web_request`` to the router with nothing
        else to do: its werkzeug map binds to the Host (IDNA-encoded, as
        ``Map.bind`` does: the name before any ``:``), the method is UTF-8,
        and its matcher takes the path (its rules' ``.`` stops at a newline,
        so a path with one may not match them). Such a request skips Klein's
        per-request ``Map.bind``, ``match`` and its Deferreds (about a tenth
        of the reactor thread on hello-world); any other is Klein's to answer.

    :param hosts: the verdicts on Host headers seen before, by their value
        as sent (IDNA encoding is a slow codec, twisted.web's
        ``getRequestHostname`` a regular expression, and a server sees few
        Host values): updated, and cleared when it holds :data:`_KNOWN_HOSTS`.
        A request without a Host header (HTTP/1.0) is judged on the local
        address, as Klein's name for it, each time.
    """
    if "\n" in path:
        return False
    # The last Host, as twisted.web's getHeader reads it (the headers'
    # names are stored canonical: "Host").
    sent = web_request.requestHeaders._rawHeaders.get(b"Host")
    key = sent[-1] if sent and b"\n" not in sent[-1] else None
    binds = hosts.get(key) if hosts is not None and key is not None else None
    if binds is None:
        # twisted.web's name for the request's host: Host's without brackets
        # and port (a value without a line break always matches its
        # expression, so the name depends on the value alone), else the local
        # address's.
        binds = _werkzeug_binds(web_request.getRequestHostname())
        if hosts is not None and key is not None:
            if len(hosts) >= _KNOWN_HOSTS:
                hosts.clear()
            hosts[key] = binds
    if not binds:
        return False
    try:
        web_request.method.decode("utf-8")
    except UnicodeError:
        return False
    return True


def _werkzeug_binds(host: bytes) -> bool:
    """
    :returns: whether werkzeug's ``Map.bind`` takes ``host``: it IDNA-encodes
        the name before any ``:``.
    """
    try:
        host.decode("utf-8").partition(":")[0].encode("idna")
    except UnicodeError:
        return False
    return True


def _finish_when(written: Deferred[None] | None, web_request: HouwebRequest) -> None:
    """Finish ``web_request`` once what :meth:`_Router.send` returned says its answer is written."""
    if written is None:
        _finish_open(None, web_request)
    else:
        written.addCallbacks(
            _finish_open, _route_failed, callbackArgs=(web_request,), errbackArgs=(web_request,)
        )


def _finish_open(_: object, web_request: HouwebRequest) -> None:
    """The route is done: finish its request unless it is over (as Klein does)."""
    if not (web_request.finished or web_request._disconnected):
        web_request.finish()


def _route_failed(failure: Failure, web_request: HouwebRequest) -> None:
    """The route's Deferred failed: twisted.web's 500 if still possible (as Klein does)."""
    if web_request.finished or web_request._disconnected:
        log.failure("houweb: unhandled error answering a request", failure)
    else:
        web_request.processingFailed(failure)


class _Guard(Resource):
    """
    Answers requests Klein would reject with its own page (a path that is not
    UTF-8) in houweb's error style, and passes the rest to Klein.
    """

    isLeaf = True

    def __init__(self, router: _Router, klein_resource: Resource) -> None:
        super().__init__()
        self._router = router
        self._klein = klein_resource
        self._hosts: dict[bytes, bool] = {}

    def render(self, web_request: HouwebRequest) -> Any:
        try:
            web_request.houweb_path = decode_path(web_request.uri)
        except BadRequest as exc:
            request = snapshot(
                web_request, web_request.uri.split(b"?")[0].decode("latin-1"), parse=False
            )
            self._router.send(web_request, request, errorResponse(request, str(exc), 400))
            return server.NOT_DONE_YET
        if klein_routes_here(web_request, web_request.houweb_path, self._hosts):
            return self._router.render(web_request)
        try:
            return self._klein.render(web_request)
        except BadHost:
            # Klein binds its URL map to the Host, IDNA-encoded: a name with
            # an empty label (".localhost") or one over 63 characters passes
            # ALLOWED_HOSTS' patterns but cannot be encoded.
            request = snapshot(web_request, web_request.houweb_path, parse=False)
            self._router.send(web_request, request, errorResponse(request, BAD_HOST_NAME, 400))
            return server.NOT_DONE_YET


def _klein_app(router: _Router) -> Klein:
    app = Klein()
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.route("/", branch=True, endpoint="houweb")(router.route)
    return app


class HouwebSite(server.Site):
    """The twisted.web Site of one running server, shared by all its ports."""

    # Twisted declares Site.protocol as making its HTTP/2-capable wrapper;
    # buildProtocol takes any callable that makes an HTTP channel.
    protocol = HouwebChannel  # type: ignore[assignment]
    requestFactory = HouwebRequest

    def __init__(self, context: ServerContext) -> None:
        self.houweb = context
        self.router = _Router(context)
        super().__init__(
            _Guard(self.router, _klein_app(self.router).resource()),
            timeout=context.config.idle_timeout,
        )
        self.noisy = False
        #: The Date header's value of this server's answers (see HouwebRequest.process).
        self.houweb_date = HttpDate()
        self.houweb_connections: set[HouwebChannel] = set()
        self._refusing = False
        self._waiting_for_close: list[Deferred[None]] = []
        #: Called with (twisted.web request, seconds taken) as each request
        #: is over: the access log, the debug line, metrics. None: nothing
        #: is tracked, and a request costs no Deferred nor closure for it.
        self.houweb_on_finish: list[Callable[[Any, float], None]] = []
        #: Called with (twisted.web request, method, target, protocol,
        #: status, size) for each request answered when its headers arrived
        #: (a missing token, say), before routing.
        self.houweb_on_reject: list[Callable[[Any, bytes, bytes, bytes, int, int], None]] = []
        if context.config.access_log:
            self.houweb_on_finish.append(log_access)
            self.houweb_on_reject.append(log_rejected)
        elif context.config.debug:
            self.houweb_on_finish.append(_log_request)

    @property
    def houweb_max_request_size(self) -> int:
        return self.houweb.config.max_request_size

    def log(self, request: Any) -> None:
        """Not twisted.web's access log: houweb's is ``houweb_on_finish``."""

    def houweb_wants_raw_body(self, target: bytes, local: LocalAddress | None) -> bool:
        """
        :param target: the request target as sent.
        :param local: the local address the request arrived on.
        :returns: whether the target this request will be routed to reads the
            raw body itself (a WSGI app reads ``wsgi.input``), so that a
            multipart body must be stored, not parsed into fields and files.
            No route is looked up while no such target was registered (a
            lookup per form costs 2% of the reactor thread on an API call).
        """
        if not self.houweb.registry.raw_bodies:
            return False
        try:
            path = decode_path(target)
        except BadRequest:
            return False
        context = self.houweb
        # The ports the router answers on as the main port (its other
        # addresses) too, so that both look up the same target.
        match = context.registry.match(
            path, getattr(local, "port", 0), context.main_port, context.main_aliases
        )
        return match is not None and bool(getattr(match.target, "wants_raw_body", False))

    def houweb_body_streamer(
        self, method: bytes, target: bytes, local: LocalAddress | None, web_request: HouwebRequest
    ) -> BodySink | None:
        """
        :param method: the request's method, as sent.
        :param target: the request target as sent (origin form).
        :param local: the local address the request arrived on.
        :returns: the sink of a body its target takes as it arrives (its
            ``stream_body``: see :data:`BodyStreamer`), or ``None`` to receive
            it whole first.

        The target starts before the router has seen the request, so only a
        request that nothing but its target can answer is streamed: one the
        router answers itself (:data:`ANSWERED_BEFORE_ROUTING` methods: CORS
        preflights, token-less ``OPTIONS``, the metrics and status pages), a
        path houweb owns, a query or Host the router refuses with 400 all
        wait for the router, which then hands the stored body to the target
        if it is routed there after all.
        """
        context = self.houweb
        if not context.registry.streams_bodies or method in ANSWERED_BEFORE_ROUTING:
            return None  # no route lookup when no such target can be registered
        try:
            path = decode_path(target)
            _check_query(target)
        except BadRequest:
            return None
        if path in context.own_targets or not _klein_takes_host(web_request):
            return None
        port = getattr(local, "port", 0)
        match = context.registry.match(path, port, context.main_port, context.main_aliases)
        if match is None:
            return None
        start: BodyStreamer | None = getattr(match.target, "stream_body", None)
        return start(context, web_request, match, path) if start is not None else None

    def houweb_admit(self, channel: HouwebChannel) -> bool:
        """
        Count ``channel`` as open, unless ``max_connections`` are open
        already; the first refusal of a run of them is logged.

        :returns: whether ``channel`` may be served.
        """
        limit = self.houweb.config.max_connections
        if len(self.houweb_connections) >= limit:
            if not self._refusing:
                self._refusing = True
                log.warn(
                    "houweb: {limit} connections open (max_connections); "
                    "answering new ones 503 until some close",
                    limit=limit,
                )
            return False
        self._refusing = False
        self.houweb_connections.add(channel)
        return True

    def houweb_track(self, web_request: HouwebRequest) -> None:
        """
        A request is about to be answered: once it is over, tell each of
        :attr:`houweb_on_finish`. Nothing is done when there are none (a
        notifyFinish Deferred per request costs about 1% of hello-world's
        req/s).
        """
        if self.houweb_on_finish:
            web_request.notifyFinish().addBoth(self._finished, web_request, time.perf_counter())

    def _finished(self, result: object, web_request: HouwebRequest, started: float) -> None:
        seconds = time.perf_counter() - started
        if (
            isinstance(result, Failure)
            and not web_request.startedWriting
            and web_request.code != 101
        ):
            # The client left before any of its answer was sent: twisted.web's
            # code is still its default 200. Log and count what nginx does.
            web_request.code = CLIENT_CLOSED_REQUEST
        for on_finish in self.houweb_on_finish:
            on_finish(web_request, seconds)

    def houweb_rejection(
        self,
        status: int,
        message: str,
        method: bytes,
        target: bytes,
        web_request: HouwebRequest,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        """
        :param headers: more headers for the answer (``WWW-Authenticate``).
        :returns: the bytes of an error answer sent before the body was read.
        """
        path = target.split(b"?")[0].decode("latin-1")
        request = Request(
            method=method.decode("latin-1"),
            path=path,
            target=target.decode("latin-1"),
            header_lines=web_request.houweb_header_lines,
            local_address=("", 0),
            client_address=("", 0),
        )
        response = (
            json_error(message, status)
            if is_api_path(path)
            else errorResponse(request, message, status)
        )
        for name, value in headers:
            response.setHeader(name, value)
        for response_filter in self.houweb.response_filters:
            response_filter(request, response)
        payload = raw_response(response)
        if self.houweb_on_reject:
            # twisted.web's channel holds the request line's version until
            # the request is complete (tests/test_private_names.py).
            protocol = getattr(web_request.channel, "_version", None) or b"HTTP/1.1"
            for on_reject in self.houweb_on_reject:
                on_reject(web_request, method, target, protocol, status, len(payload))
        return payload

    def in_flight(self) -> int:
        """
        :returns: how many requests are being received or answered now (each
            channel holds its requests until their answers are finished).
        """
        return sum(len(channel.requests) for channel in self.houweb_connections)

    def connection_closed(self, channel: HouwebChannel) -> None:
        """Forget ``channel``; wake whoever waits for every connection to close."""
        self.houweb_connections.discard(channel)
        if not self.houweb_connections:
            waiting, self._waiting_for_close = self._waiting_for_close, []
            for d in waiting:
                d.callback(None)

    def all_closed(self) -> Deferred[None]:
        """:returns: a Deferred that fires once no connection is open."""
        if not self.houweb_connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting_for_close.append(d)
        return d


def _log_request(web_request: HouwebRequest, seconds: float) -> None:
    """Debug mode's line per request (when there is no access log)."""
    elapsed = seconds * 1000
    method, target = web_request.method.decode("latin-1"), web_request.uri.decode("latin-1")
    log.info(
        '"{request}" {status} {size} {ms:.1f}ms',
        request=escaped(f"{method} {target}"),
        method=method,
        target=target,
        status=web_request.code,
        size=web_request.sentLength,
        ms=elapsed,
    )
