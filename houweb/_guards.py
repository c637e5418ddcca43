"""
What a request's headers must pass before houweb reads its body or routes it:
the Host allow-list (Django's ``ALLOWED_HOSTS``, against DNS rebinding), the
Origin check of requests that can change state (against cross-site request
forgery and cross-site WebSocket hijacking) and the shared-secret token.

The channel asks :meth:`HeaderGuard.refusal` once a request's headers are in,
so a refused request has no body read, no ``100 Continue`` sent, nothing
spooled to disk, and no handler, static file, API function or WebSocket sees
it. Everything that can be worked out once per server (the allowed names, the
trusted origins) is, so the per-request cost is a few dict lookups.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable

from ._auth import CHALLENGE, MESSAGE, TokenCheck
from ._cors import CORSPolicy

#: Django's default ALLOWED_HOSTS when every listening address is loopback
#: (as Django has when DEBUG is on and ALLOWED_HOSTS is empty).
LOOPBACK_HOSTS = ("localhost", ".localhost", "127.0.0.1", "[::1]")
#: Methods a foreign page may have a browser send (RFC 9110 "safe" methods,
#: less TRACE, and less OPTIONS: every page can make a browser send OPTIONS
#: to any URL, as the preflight of a fetch() with another method or a custom
#: header, and a handler that acts on "anything but GET" would act on it).
SAFE_METHODS = frozenset({b"GET", b"HEAD"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Django's host_validation_re: a name or an IPv6 literal, then a port.
_HOST = re.compile(r"^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:[0-9]+)?$")


def split_domain_port(host: str) -> tuple[str, str]:
    """
    :returns: ``(domain, port)`` of a Host header value, lowercased and the
        domain without a trailing dot (Django's ``split_domain_port``);
        ``("", "")`` for a value that is not a host.
    """
    host = host.lower()
    match = _HOST.match(host)
    if match is None:
        return "", ""
    domain, port = match.group(1), (match.group(2) or "")[1:]
    return domain.removesuffix("."), port


class HostAllowList:
    """
    Django's ``ALLOWED_HOSTS``: exact names, ``.example.com`` for a domain
    and all its subdomains, ``*`` for any host. The port is ignored.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        entries = [p.lower() for p in self.patterns]
        self.any = "*" in entries
        # ".example.com" is example.com itself and every name ending in it.
        self._exact = frozenset(p.removeprefix(".") for p in entries)
        self._suffixes = tuple(p for p in entries if p.startswith("."))
        #: Host header values seen and allowed, so a repeat is one lookup.
        self._seen: dict[bytes, bool] = {}

    def allows(self, raw: bytes) -> bool:
        """:returns: whether the Host header value ``raw`` names an allowed host."""
        if self.any:
            return True
        known = self._seen.get(raw)
        if known is not None:
            return known
        domain, _ = split_domain_port(raw.decode("latin-1"))
        allowed = bool(domain) and (domain in self._exact or domain.endswith(self._suffixes))
        if len(self._seen) < 256:  # bounded: an attacker cannot grow it
            self._seen[raw] = allowed
        return allowed


def default_allowed_hosts(interfaces: Iterable[str]) -> tuple[str, ...]:
    """
    :returns: the loopback names when every interface listened on is a
        loopback address (and those addresses themselves: a server on
        ``127.0.0.2`` answers ``http://127.0.0.2:8008/``), else ``("*",)``
        (Houdini's default).
    """
    extra: list[str] = []
    for interface in interfaces:
        if interface.lower() == "localhost":
            continue
        try:
            address = ipaddress.ip_address(interface.strip("[]"))
        except ValueError:
            return ("*",)
        if not address.is_loopback:
            return ("*",)
        name = f"[{address.compressed}]" if address.version == 6 else address.compressed
        if name not in LOOPBACK_HOSTS and name not in extra:
            extra.append(name)
    return (*LOOPBACK_HOSTS, *extra)


@dataclass(frozen=True)
class Origin:
    """A ``scheme://host:port`` origin, the port made explicit."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """:returns: the origin ``text`` names, or ``None`` for ``null`` or garbage."""
        scheme, sep, rest = text.strip().lower().rstrip("/").partition("://")
        if not sep or scheme not in _DEFAULT_PORTS:
            return None
        domain, port = split_domain_port(rest)
        if not domain:
            return None
        return cls(scheme, domain, int(port) if port else _DEFAULT_PORTS[scheme])


class OriginPolicy:
    """
    Which origins may send requests that change state (every method but GET
    and HEAD, and every WebSocket handshake): the request's own
    origin, the CORS whitelist's and ``CSRF_TRUSTED_ORIGINS``' (which, as in
    Django, may name ``https://*.example.com`` for every subdomain).

    :param trusted: the origins of the CORS whitelist and of
        ``CSRF_TRUSTED_ORIGINS``; ``"*"`` trusts every origin, ``"null"``
        the opaque one.
    """

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        entries = [t.strip().lower().rstrip("/") for t in trusted]
        self.any_origin = "*" in entries
        self._null = "null" in entries
        self._exact = frozenset(o for o in map(Origin.parse, entries) if o is not None)
        self._wildcards = tuple(
            (scheme, rest[1:])
            for scheme, _, rest in (e.partition("://") for e in entries)
            if rest.startswith("*.")
        )

    def foreign(self, origin: bytes | None, fetch_site: bytes | None, own: Origin | None) -> bool:
        """
        :param origin: the ``Origin`` header, if sent.
        :param fetch_site: the ``Sec-Fetch-Site`` header, if sent.
        :param own: the request's own origin (scheme, Host and port as received).
        :returns: whether the request comes from a page it must not trust.
        """
        if origin is None:
            return fetch_site is not None and fetch_site.strip().lower() == b"cross-site"
        if self.any_origin:
            return False
        text = origin.decode("latin-1")
        if text.strip().lower() == "null":
            return not self._null
        parsed = Origin.parse(text)
        if parsed is None:
            return True
        if parsed == own or parsed in self._exact:
            return False
        return not any(
            parsed.scheme == scheme and parsed.host.endswith(suffix)
            for scheme, suffix in self._wildcards
        )


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused before its body is read."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


BAD_HOST = "Invalid Host header: the name is not in ALLOWED_HOSTS"
#: A per-port check of a request's headers once its Host passed (see
#: :attr:`HeaderGuard.port_checks`): headers, Host, target, TLS -> refusal.
PortCheck = Callable[[object, "list[bytes] | None", bytes, bool], "Refusal | None"]
FOREIGN_ORIGIN = "Forbidden: cross-site request refused (Origin not trusted)"


class HeaderGuard:
    """
    The checks a request's headers must pass, for one server. The Host
    allow-list may differ per port (Houdini's ``setSettingsForPort``).

    :param allowed_hosts: the server-wide ``ALLOWED_HOSTS``.
    :param policy: the origins trusted to change state.
    :param token: the shared-secret check, if the server has a token.
    :param cors: the CORS whitelist, if any: its preflights need no token.
    :param use_x_forwarded_host: check ``X-Forwarded-Host`` instead of ``Host``.
    """

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        policy: OriginPolicy,
        token: TokenCheck | None = None,
        cors: CORSPolicy | None = None,
        use_x_forwarded_host: bool = False,
    ) -> None:
        self.cors = cors
        self.hosts = HostAllowList(allowed_hosts)
        self._hosts_by_port: dict[int, HostAllowList] = {}
        self.policy = policy
        self.token = token
        self._host_header = b"x-forwarded-host" if use_x_forwarded_host else b"host"
        self._use_forwarded = use_x_forwarded_host
        #: Listening port -> USE_X_FORWARDED_HOST of that port (setSettingsForPort).
        self._forwarded_by_port: dict[int, bool] = {}
        #: Listening port -> a check after the Host's (SSL_REDIRECT): called
        #: with the headers, the checked Host, the target and whether it is TLS.
        self.port_checks: dict[int, PortCheck] = {}
        #: Listening port -> the origins trusted there and its CORS whitelist,
        #: for a named port with a whitelist of its own.
        self.policy_by_port: dict[int, OriginPolicy] = {}
        self.cors_by_port: dict[int, CORSPolicy] = {}

    def set_allowed_hosts(self, patterns: Iterable[str], port: int | None = None) -> None:
        """Replace the allow-list: the server's, or that of one listening ``port``."""
        if port is None:
            self.hosts = HostAllowList(patterns)
        else:
            self._hosts_by_port[port] = HostAllowList(patterns)

    def set_use_x_forwarded_host(self, value: bool, port: int) -> None:
        """Check ``X-Forwarded-Host`` instead of ``Host`` on one listening ``port`` (or not)."""
        self._forwarded_by_port[port] = value

    def _effective_host(self, headers: object, port: int = 0) -> list[bytes] | None:
        forwarded = self._forwarded_by_port.get(port, self._use_forwarded)
        raw: list[bytes] | None = headers.getRawHeaders(  # type: ignore[attr-defined]
            b"x-forwarded-host" if forwarded else b"host"
        )
        if raw is None and forwarded:
            raw = headers.getRawHeaders(b"host")  # type: ignore[attr-defined]
        return raw

    def refusal(
        self, method: bytes, headers: object, port: int, secure: bool, target: bytes = b"/"
    ) -> Refusal | None:
        """
        :param method: the request's method, as sent.
        :param headers: its twisted.web ``Headers``.
        :param port: the local port it arrived on.
        :param secure: whether it arrived over TLS.
        :param target: the request target, as sent.
        :returns: why the request must be refused, or ``None`` to serve it.
        """
        host = self._effective_host(headers, port)
        if host is not None:
            hosts = self._hosts_by_port.get(port, self.hosts) if self._hosts_by_port else self.hosts
            if len(host) != 1 or not hosts.allows(host[0]):
                return Refusal(400, BAD_HOST)
        check = self.port_checks.get(port) if self.port_checks else None
        if check is not None:
            refused = check(headers, host, target, secure)
            if refused is not None:
                return refused
        get = headers.getRawHeaders  # type: ignore[attr-defined]
        if method not in SAFE_METHODS or get(b"upgrade") is not None:
            origin = get(b"origin")
            fetch_site = get(b"sec-fetch-site")
            if origin is not None or fetch_site is not None:
                own = _own_origin(host, secure)
                policy = (
                    self.policy_by_port.get(port, self.policy)
                    if self.policy_by_port
                    else self.policy
                )
                if policy.foreign(
                    b", ".join(origin) if origin else None,  # two Origins parse as none
                    fetch_site[-1] if fetch_site else None,
                    own,
                ):
                    return Refusal(403, FOREIGN_ORIGIN)
        if (
            self.token is not None
            and not self.token.accepts(get(b"authorization"))
            and not self._cors_preflight(method, get, port)
        ):
            return Refusal(401, MESSAGE, (CHALLENGE,))
        return None

    def _cors_preflight(
        self, method: bytes, get: Callable[[bytes], list[bytes] | None], port: int = 0
    ) -> bool:
        """
        A CORS preflight of a whitelisted origin (browsers send it without
        credentials): exactly what :meth:`CORSPolicy.preflight` answers
        itself, so nothing let in without the token reaches a handler.
        """
        cors = self.cors_by_port.get(port, self.cors) if self.cors_by_port else self.cors
        if cors is None or method != b"OPTIONS":
            return False
        return cors.is_preflight(
            "OPTIONS", _joined(get(b"access-control-request-method")), _joined(get(b"origin"))
        )


def _joined(values: list[bytes] | None) -> str:
    """A header's values as :meth:`houweb.Request.header` gives them: repeats joined."""
    if not values:
        return ""
    return ", ".join(_text(value) for value in values)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _own_origin(host: list[bytes] | None, secure: bool) -> Origin | None:
    if not host:
        return None
    scheme = "https" if secure else "http"
    domain, port = split_domain_port(host[0].decode("latin-1"))
    if not domain:
        return None
    return Origin(scheme, domain, int(port) if port else _DEFAULT_PORTS[scheme])
