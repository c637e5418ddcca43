"""
What a server does with its ports' settings once they listen (the numbers
are known only then): it records the number of each named port (so
``ports=["name"]`` registrations answer there), gives each port its Host
allow-list and ``USE_X_FORWARDED_HOST``, its ``SSL_REDIRECT``, its
``Strict-Transport-Security`` header and its log file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from twisted.logger import Logger

from ._cors import CORSPolicy, install_cors
from ._errors import OperationFailed
from ._guards import OriginPolicy, default_allowed_hosts
from ._port_binding import PortPlan
from ._port_log import PortLogFile
from ._port_settings import MAIN

log = Logger(namespace="houweb")


def configure_ports(
    context: Any, site: Any, plans: Sequence[PortPlan], listening: Sequence[Any]
) -> Callable[[], None]:
    """
    Apply each bound port's settings to the server of ``context``.

    :param site: the server's site (its requests are logged to the ports' files).
    :param plans: what was listened on, in order.
    :param listening: the listening ports, in the same order.
    :returns: a function that undoes what outlives the server (the named
        ports' numbers, the log files); called at shutdown.
    """
    guard = context.guard
    numbers = [port.getHost().port for port in listening]
    _refuse_shared_numbers(plans, numbers)
    named: dict[str, int] = {}
    main_numbers = {numbers[0], *context.main_aliases} if numbers else set()
    tls_ports = [
        n for plan, n in zip(plans, numbers) if plan.settings is not None and plan.settings.tls
    ]
    tls_ports += [
        n
        for plan, n in zip(plans, numbers)
        if plan.settings is None and plan.description.lower().startswith("ssl:")
    ]
    # The default allow-lists follow the addresses the sockets were bound to,
    # not ADDRESS as written: "127.1", "2130706433" or a host name that
    # resolves to 127.0.1.1 are loopback too (else the default is "*").
    bound_hosts = [str(getattr(port.getHost(), "host", "")) for port in listening]
    if _main_hosts_defaulted(context, plans):
        guard.set_allowed_hosts(
            default_allowed_hosts(
                [host for plan, host in zip(plans, bound_hosts) if plan.serves_main]
            )
        )
    hsts: dict[int, str] = {}
    logs: list[PortLogFile] = []
    for plan, number, host in zip(plans, numbers, bound_hosts):
        settings = plan.settings
        if settings is None or plan.name is None:
            continue
        own = [number] if plan.name != MAIN else sorted(main_numbers)
        if plan.name != MAIN:
            named[plan.name] = number
            guard.set_allowed_hosts(
                settings.allowed_hosts or default_allowed_hosts([host]), port=number
            )
            # Its own setting or False: never the main port's (a named port has
            # its own allow-list, which a trusted X-Forwarded-Host would bypass).
            guard.set_use_x_forwarded_host(bool(settings.use_x_forwarded_host), port=number)
        if settings.ssl_redirect and not settings.tls:
            from ._https import HTTPSRedirect  # only for ports that use it: cold start

            redirect = HTTPSRedirect.of(settings, tls_ports[0] if tls_ports else None)
            for port in own:
                guard.port_checks[port] = redirect.refusal
        if settings.tls:
            from ._https import hsts_value

            value = hsts_value(settings)
            if value is not None:
                hsts[number] = value
        if settings.log_file is not None:
            try:
                logs.append(PortLogFile.open(plan.name, settings, own))
            except Exception:
                for opened in logs:
                    opened.close()
                raise
    if hsts:
        from ._https import HSTS

        context.response_filters.append(HSTS(hsts))
    for name, origins in context.registry.ports.cors.items():
        if name in named:
            _own_cors(context, named[name], origins)
        else:
            log.warn(
                "houweb: setCORSWhitelist(..., {name!r}) ignored: no port of that name "
                "listens (give it a PORT with setSettingsForPort)",
                name=name,
            )
    table = context.registry.ports
    table.record_bound(named)
    for log_file in logs:
        log_file.attach(site)

    def undo() -> None:
        if table.bound is not None and all(table.bound.get(k) == v for k, v in named.items()):
            table.record_bound({}, serving=False)
        for log_file in logs:
            log_file.close()

    return undo


def _main_hosts_defaulted(context: Any, plans: Sequence[PortPlan]) -> bool:
    """:returns: whether the server's allow-list is the default (see ``_server.allowed_hosts``)."""
    main = next((plan.settings for plan in plans if plan.name == MAIN), None)
    return not (
        context.config.allowed_hosts
        or (main is not None and main.allowed_hosts)
        or context.settings.allowed_hosts
    )


def _refuse_shared_numbers(plans: Sequence[PortPlan], numbers: Sequence[int]) -> None:
    """
    houweb tells its ports apart by number (routing, Host allow-lists,
    SSL_REDIRECT): a named port bound to a number another of the server's
    sockets also has (on another address: ``ADDRESS``, ``IPV6``) would
    answer that socket's requests with its handlers and settings, and the
    other way round.

    :raises OperationFailed: naming the port and the number.
    """
    for index, (plan, number) in enumerate(zip(plans, numbers)):
        if plan.name is None or plan.name == MAIN:
            continue
        others = [
            other
            for other_index, (other, other_number) in enumerate(zip(plans, numbers))
            if other_index != index and other_number == number
        ]
        if others:
            other = others[0]
            what = (
                "the main port"
                if other.name == MAIN
                else f"named port {other.name!r}"
                if other.name is not None
                else other.description
            )
            raise OperationFailed(
                f"named port {plan.name!r} is bound to port {number} on {plan.interface or '0.0.0.0'}, "
                f"and {what} listens on port {number} too (on another address): houweb tells "
                "ports apart by number, so give them different PORTs"
            )


def _own_cors(context: Any, port: int, origins: tuple[str, ...]) -> None:
    """
    A named port's CORS whitelist (``setCORSWhitelist(origins, name)``): it
    replaces the main port's on ``port``, for the CORS headers, the
    preflights and the origins trusted to change state.
    """
    guard = context.guard
    if guard.cors is not None:
        guard.cors.other_ports.add(port)
    policy = install_cors(context, origins, only_ports=[port]) or CORSPolicy((), [port])
    guard.cors_by_port[port] = policy
    guard.policy_by_port[port] = OriginPolicy((*origins, *context.settings.csrf_trusted_origins))
