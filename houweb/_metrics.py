"""
Metrics and health for operators: a Prometheus endpoint (``/metrics``) and a
cheap health check for load balancers (``/healthz``), both on with
``run(..., metrics=True)`` or ``--metrics``.

Each server has its own :class:`prometheus_client.CollectorRegistry`, so
several servers in one process never mix their numbers. Counters and
histograms are updated as each request ends; the numbers of the moment
(calls in flight, pool threads busy, connections, WebSockets) are read when
the endpoint is scraped, so they cost nothing per request.

The endpoints answer on every port, before routing, and behind the same
Host, Origin and token checks as every request (they run when the headers
arrive). ``metrics_path`` and ``health_path`` move them; an empty
``health_path`` turns the health check off.

``prometheus_client`` is an optional dependency: ``pip install 'houweb[metrics]'``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._errors import OperationFailed
from ._request import Request
from ._response import Response

if TYPE_CHECKING:
    from ._channel import HouwebRequest
    from ._site import HouwebSite, ServerContext

#: Seconds: the buckets of the latency histograms (from 1 ms to 30 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: The ``kind`` label of a request no target answered (404, a CORS
#: preflight, the metrics and health endpoints themselves).
UNROUTED = "none"
#: The ``kind`` label of a request answered when its headers arrived, before
#: routing: a missing token (401), a Host not allowed (400), a body too large
#: (413), a request too slow (408).
REJECTED = "rejected"


@functools.cache
def kind_of(target_type: type | None) -> str:
    """
    :returns: the ``kind`` label for requests routed to a target of this
        type: its class name in snake case without ``Target``
        (``URLHandlerTarget``: ``url_handler``, ``APIFunctionTarget``:
        ``api_function``). Remembered: there are a handful of types.
    """
    if target_type is None:
        return UNROUTED
    name = target_type.__name__
    name = name[: -len("Target")] if name.endswith("Target") else name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise OperationFailed(
            "metrics need the prometheus_client package: pip install 'houweb[metrics]'"
        ) from None
    return prometheus_client


class ServerMetrics:
    """The metrics of one server, in a registry of its own."""

    def __init__(self, context: ServerContext, site: HouwebSite) -> None:
        client = _client()
        self._client = client
        self.context = context
        self.site = site
        self.registry = client.CollectorRegistry(auto_describe=True)
        self.requests = client.Counter(
            "houweb_requests",
            "Requests answered, by the kind of target that answered and the status.",
            ["kind", "status"],
            registry=self.registry,
        )
        self.latency = client.Histogram(
            "houweb_request_duration_seconds",
            "Seconds from a request's headers to the end of its answer, by kind of target.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upload_bytes = client.Counter(
            "houweb_upload_bytes",
            "Bytes of request bodies (uploads, forms, API calls) received.",
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(self))

    def observe(self, web_request: HouwebRequest, seconds: float) -> None:
        """A request is over: count it (a ``houweb_on_finish`` callback)."""
        kind = kind_of(getattr(web_request, "houweb_target_type", None))
        self.requests.labels(kind, str(web_request.code)).inc()
        self.latency.labels(kind).observe(seconds)
        received = getattr(web_request, "houweb_received", 0)
        if received:
            self.upload_bytes.inc(received)

    def rejected(
        self,
        web_request: HouwebRequest,
        method: bytes,
        target: bytes,
        protocol: bytes,
        status: int,
        size: int,
    ) -> None:
        """A request was answered when its headers arrived (``houweb_on_reject``)."""
        self.requests.labels(REJECTED, str(status)).inc()

    def exposition(self) -> Response:
        """:returns: the metrics in Prometheus's text format."""
        body = self._client.generate_latest(self.registry)
        return Response(body, content_type=self._client.CONTENT_TYPE_LATEST)


class _LiveCollector:
    """The numbers of the moment, read at each scrape."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import GaugeMetricFamily as gauge

        context, site = self.metrics.context, self.metrics.site
        calls = context.running.snapshot()
        pool = context.pool
        channels = list(site.houweb_connections)
        yield gauge(
            "houweb_calls_in_flight",
            "Calls of user code (handlers, API functions) started and not finished.",
            value=len(calls),
        )
        yield gauge(
            "houweb_calls_waiting",
            "Calls of user code waiting for a free pool thread.",
            value=len(context.running) - len(calls),
        )
        yield gauge("houweb_pool_threads", "Threads in the handler pool.", value=pool.max)
        yield gauge(
            "houweb_pool_threads_busy", "Pool threads running a call now.", value=pool.busy()
        )
        yield gauge(
            "houweb_pool_queued", "Calls queued for the pool, not started.", value=pool.queued()
        )
        yield gauge("houweb_connections_open", "Open connections.", value=len(channels))
        yield gauge(
            "houweb_websockets_open",
            "Open WebSocket connections.",
            value=sum(1 for c in channels if getattr(c, "houweb_upgraded", None) is not None),
        )
        yield gauge(
            "houweb_requests_in_flight",
            "Requests being received or answered now.",
            value=site.in_flight(),
        )


def health() -> Response:
    """:returns: the health check's answer: the server answers requests."""
    return Response('{"status": "ok"}', content_type="application/json")


def install_metrics(context: ServerContext, site: HouwebSite) -> ServerMetrics | None:
    """
    Turn on the server's metrics and health endpoints if its configuration
    asks for them.

    :returns: the server's metrics, or ``None`` when they are off.
    :raises OperationFailed: if ``prometheus_client`` is not installed.
    """
    config = context.config
    if not config.metrics:
        return None
    metrics = ServerMetrics(context, site)
    site.houweb_on_finish.append(metrics.observe)
    site.houweb_on_reject.append(metrics.rejected)
    metrics_path, health_path = config.metrics_path, config.health_path

    def answer(request: Request) -> Response | None:
        if request.method() not in ("GET", "HEAD"):
            return None
        path = request.path()
        if path == metrics_path:
            return metrics.exposition()
        if health_path and path == health_path:
            return health()
        return None

    context.request_filters.append(answer)
    return metrics
