"""
Per-port settings: Houdini's ``hwebserver.setSettingsForPort(settings,
port_name="")``, the severity constants of ``MIN_LOG_SEVERITY``, and the
:class:`PortTable` that holds what was set, port by port.

A port is a name: ``""`` or ``"main"`` is the main port (the one ``run()``
opens), any other non-empty string a *named port*, which listens when the
server runs once its settings give it a ``PORT``. Handlers bind to a named
port with ``ports=["name"]``; the name is resolved to the number bound when
the server starts (``MAX_PORT`` and ``ALLOW_SYSTEM_PORT`` decide it only then).

Setting is data: every value is checked at the call (a wrong type is a
``TypeError``, a bad value a ``ValueError``, naming the key), nothing listens
or opens a file until a server starts. The table lives on the
:class:`~houweb._registry.Registry`, so it belongs to the server that owns
that registry.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Union

from twisted.logger import Logger, LogLevel

if TYPE_CHECKING:
    from ._registry import Registry

log = Logger(namespace="houweb")

#: The names of the main port.
MAIN_NAMES = ("", "main")
#: The key under which the table holds the main port's settings.
MAIN = "main"


class Severity(enum.IntEnum):
    """
    How severe a log entry is, for ``MIN_LOG_SEVERITY`` (the values are the
    :mod:`logging` levels, so they compare as those do).
    """

    Debug = 10
    Info = 20
    Warning = 30
    Error = 40
    Critical = 50

    def log_level(self) -> LogLevel:
        """:returns: the :class:`twisted.logger.LogLevel` of this severity."""
        level: LogLevel = _LEVELS[self]
        return level


_LEVELS = {
    Severity.Debug: LogLevel.debug,
    Severity.Info: LogLevel.info,
    Severity.Warning: LogLevel.warn,
    Severity.Error: LogLevel.error,
    Severity.Critical: LogLevel.critical,
}

DebugSeverity = Severity.Debug
InfoSeverity = Severity.Info
#: The name one Houdini application uses for informational entries.
MessageSeverity = Severity.Info
#: ``MIN_LOG_SEVERITY``'s default, as Houdini documents it.
WarningSeverity = Severity.Warning
ErrorSeverity = Severity.Error
CriticalSeverity = Severity.Critical

#: PEM text (``str`` starting with ``-----BEGIN`` or ``bytes``) or a file path.
PEMSource = Union[str, bytes]


@dataclass(frozen=True)
class PortSettings:
    """The settings of one port, checked; ``None``: not set (houweb's default)."""

    port: int | None = None
    max_port: int | None = None
    allow_system_port: bool = False
    address: str | None = None
    ipv6: bool = False
    allowed_hosts: tuple[str, ...] | None = None
    use_x_forwarded_host: bool | None = None
    log_file: str | None = None
    min_log_severity: Severity = Severity.Warning
    ssl_certificate: PEMSource | None = None
    ssl_certificate_key: PEMSource | None = None
    ssl_dh_params: str | None = None
    ssl_verify_peer: bool = True
    ssl_redirect: bool = False
    ssl_redirect_host: str | None = None
    ssl_redirect_exempt: tuple[str, ...] = ()
    secure_hsts_seconds: int = 0
    secure_hsts_include_subdomains: bool = False
    secure_hsts_preload: bool = False

    @property
    def tls(self) -> bool:
        """:returns: whether the port serves TLS (it has a certificate)."""
        return self.ssl_certificate is not None

    def interface(self, default: str) -> str:
        """
        :param default: the address when ``ADDRESS`` is not set (houweb's
            loopback, or ``run()``'s ``interface``).
        :returns: the address to bind: ``ADDRESS`` (or ``default``), made
            its IPv6 counterpart when ``IPV6`` is on (``0.0.0.0`` → ``::``,
            ``127.0.0.1`` → ``::1``).
        """
        address = self.address if self.address is not None else default
        if not self.ipv6:
            return address
        return _IPV6_OF.get(address, address)

    def candidates(self, port: int) -> list[int]:
        """
        :param port: the first port to try (``PORT``, or ``run()``'s).
        :returns: the port numbers to try in order: ``port`` up to
            ``MAX_PORT``, then ``0`` (the system picks) if ``ALLOW_SYSTEM_PORT``.
        """
        last = self.max_port if self.max_port is not None and port > 0 else port
        numbers = list(range(port, max(port, last) + 1))
        if self.allow_system_port and port != 0:
            numbers.append(0)
        return numbers


def ignored_keys(settings: PortSettings) -> list[str]:
    """
    :returns: the keys set away from their defaults that have no effect
        with the others (HSTS on a plain-HTTP port...), to warn about.
    """
    default = PortSettings()
    changed = {
        key for key, (name, _) in KEYS.items() if getattr(settings, name) != getattr(default, name)
    }
    ignored = []
    if not settings.tls:
        ignored += [
            key
            for key in changed
            if key.startswith(("SSL_CERTIFICATE_KEY", "SSL_DH_PARAMS", "SSL_VERIFY_PEER"))
            or key.startswith("SECURE_HSTS_")
        ]
    elif "SSL_REDIRECT" in changed:
        ignored.append("SSL_REDIRECT")  # already HTTPS
    if not settings.ssl_redirect or settings.tls:
        ignored += [key for key in changed if key.startswith("SSL_REDIRECT_")]
    if settings.log_file is None and "MIN_LOG_SEVERITY" in changed:
        ignored.append("MIN_LOG_SEVERITY")
    if settings.port is None or settings.port == 0:
        ignored += [key for key in changed if key in ("MAX_PORT", "ALLOW_SYSTEM_PORT")]
    return [key for key in KEYS if key in ignored]


#: IPv4 addresses and the IPv6 ones ``IPV6=True`` binds instead.
_IPV6_OF = {"0.0.0.0": "::", "": "::", "127.0.0.1": "::1", "localhost": "::1"}


def _ipv4_only(address: str) -> bool:
    """:returns: whether ``address`` is an IPv4 literal ``IPV6`` cannot turn into an IPv6 one."""
    if address in _IPV6_OF:
        return False
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"setSettingsForPort: {key} must be True or False, not {value!r}")
    return value


def _port(key: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"setSettingsForPort: {key} must be an int, not {type(value).__name__}")
    if not low <= value <= 65535:
        raise ValueError(f"setSettingsForPort: {key} must be between {low} and 65535, not {value}")
    return value


def _address(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"setSettingsForPort: {key} must be a str, not {type(value).__name__}")
    if value and not _is_address(value):
        raise ValueError(f"setSettingsForPort: {key} {value!r} is not an IP address or host name")
    return value


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return all(part and part.replace("-", "").isalnum() for part in value.split("."))
    return True


def _strings(key: str, value: object) -> tuple[str, ...]:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, (list, tuple))
        or not all(isinstance(entry, str) and entry for entry in value)
    ):
        raise TypeError(f"setSettingsForPort: {key} must be a list of non-empty str, not {value!r}")
    return tuple(value)


def _path(key: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"setSettingsForPort: {key} must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ValueError(f"setSettingsForPort: {key} must be a non-empty path")
    return path


def _pem(key: str, value: object) -> PEMSource:
    """PEM text (``bytes``, or ``str`` starting with ``-----BEGIN``) or a file path."""
    if isinstance(value, bytes):
        if b"-----BEGIN" not in value:
            raise ValueError(f"setSettingsForPort: {key} bytes are not PEM text")
        return value
    return _path(key, value)


def _severity(key: str, value: object) -> Severity:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"setSettingsForPort: {key} must be a severity (hwebserver.WarningSeverity...), "
            f"not {value!r}"
        )
    try:
        return Severity(value)
    except ValueError:
        raise ValueError(
            f"setSettingsForPort: {key} {value!r} is not a severity "
            "(DebugSeverity, InfoSeverity, WarningSeverity, ErrorSeverity, CriticalSeverity)"
        ) from None


def _redirect_host(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"setSettingsForPort: {key} must be a str, not {type(value).__name__}")
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not value or not _is_address(host.strip("[]")) or (port and not port.isdigit()):
        raise ValueError(f"setSettingsForPort: {key} {value!r} is not a host[:port]")
    return value


def _seconds(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"setSettingsForPort: {key} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"setSettingsForPort: {key} must be at least 0, not {value}")
    return value


#: Every key Houdini documents: the field it sets and the check of its value.
KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "PORT": ("port", lambda k, v: _port(k, v, 0)),
    "MAX_PORT": ("max_port", lambda k, v: _port(k, v, 0)),  # 0 with PORT 0: the system picks
    "ALLOW_SYSTEM_PORT": ("allow_system_port", _bool),
    "ADDRESS": ("address", _address),
    "IPV6": ("ipv6", _bool),
    "ALLOWED_HOSTS": ("allowed_hosts", _strings),
    "USE_X_FORWARDED_HOST": ("use_x_forwarded_host", _bool),
    "LOG_FILE": ("log_file", _path),
    "MIN_LOG_SEVERITY": ("min_log_severity", _severity),
    "SSL_CERTIFICATE": ("ssl_certificate", _pem),
    "SSL_CERTIFICATE_KEY": ("ssl_certificate_key", _pem),
    "SSL_DH_PARAMS": ("ssl_dh_params", _path),
    "SSL_VERIFY_PEER": ("ssl_verify_peer", _bool),
    "SSL_REDIRECT": ("ssl_redirect", _bool),
    "SSL_REDIRECT_HOST": ("ssl_redirect_host", _redirect_host),
    "SSL_REDIRECT_EXEMPT": ("ssl_redirect_exempt", _strings),
    "SECURE_HSTS_SECONDS": ("secure_hsts_seconds", _seconds),
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": ("secure_hsts_include_subdomains", _bool),
    "SECURE_HSTS_PRELOAD": ("secure_hsts_preload", _bool),
}
assert {field for field, _ in KEYS.values()} == {f.name for f in fields(PortSettings)}


def port_key(port_name: object) -> str:
    """
    :returns: the table's key for ``port_name``: ``"main"`` for ``""`` and
        ``"main"``, else the name.
    :raises TypeError: unless it is a str.
    """
    if not isinstance(port_name, str):
        raise TypeError(f"port_name must be a str, not {type(port_name).__name__}")
    return MAIN if port_name in MAIN_NAMES else port_name


def check_settings(settings: object, where: str = "setSettingsForPort") -> dict[str, Any]:
    """
    Check a settings mapping without storing it.

    :returns: the known keys' checked values, by :class:`PortSettings` field;
        an unknown key is a logged warning naming it, and is dropped.
    :raises TypeError: ``settings`` is not a mapping, or a value has the wrong type.
    :raises ValueError: a value is out of range.
    """
    if not isinstance(settings, Mapping):
        raise TypeError(f"{where}: settings must be a dict, not {type(settings).__name__}")
    checked: dict[str, Any] = {}
    for key, value in settings.items():
        known = KEYS.get(key) if isinstance(key, str) else None
        if known is None:
            log.warn(
                "houweb: {where}: unknown setting {key!r} ignored (houweb knows {known})",
                where=where,
                key=key,
                known=", ".join(KEYS),
            )
            continue
        name, check = known
        checked[name] = check(key, value)
    return checked


class PortTable:
    """
    The settings of the main port and of every named port, as
    ``setSettingsForPort`` left them; safe to change from any thread.

    Once a server has bound its ports it records the number each named port
    got (:meth:`record_bound`), which the registry reads to answer a request
    for a handler bound by name.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, PortSettings] = {}
        #: The checked values each port was given, by field (to merge under
        #: them the settings file's, for the main port).
        self._given: dict[str, dict[str, Any]] = {}
        #: Named port -> the number it is bound to while a server runs.
        self.bound: dict[str, int] = {}
        #: Whether a server runs with these settings (later changes wait for its next run).
        self.serving = False
        #: Named port -> its CORS whitelist (``setCORSWhitelist(origins, name)``).
        self.cors: dict[str, tuple[str, ...]] = {}

    def update(self, port_name: str, settings: Mapping[str, Any]) -> PortSettings:
        """
        Merge ``settings`` (checked by :func:`check_settings`) into those of
        ``port_name``: a key given again replaces its earlier value.

        :raises ValueError: when ``MAX_PORT`` ends up below ``PORT``.
        """
        key = port_key(port_name)
        with self._lock:
            merged = replace(self._settings.get(key, PortSettings()), **settings)
            if (
                merged.port is not None
                and merged.max_port is not None
                and merged.max_port < merged.port
            ):
                raise ValueError(
                    f"setSettingsForPort: MAX_PORT {merged.max_port} is below PORT {merged.port}"
                )
            if merged.ipv6 and merged.address is not None and _ipv4_only(merged.address):
                raise ValueError(
                    f"setSettingsForPort: IPV6 is True but ADDRESS {merged.address!r} "
                    "is an IPv4 address (give an IPv6 one, or 0.0.0.0 / 127.0.0.1)"
                )
            self._settings[key] = merged
            self._given[key] = {**self._given.get(key, {}), **settings}
        return merged

    def get(self, port_name: str) -> PortSettings:
        """:returns: the settings of ``port_name`` (the defaults if none were set)."""
        return self._settings.get(port_key(port_name), PortSettings())

    def main(self, defaults: Mapping[str, Any] | None = None) -> PortSettings:
        """
        :param defaults: checked values (by field) that what
            ``setSettingsForPort`` gave overrides: the settings file's.
        :returns: the main port's settings.
        """
        if not defaults:
            return self.get(MAIN)
        merged = {**defaults, **self._given.get(MAIN, {})}
        return PortSettings(**merged)

    def named(self) -> dict[str, PortSettings]:
        """:returns: every named port's settings, in the order they were first set."""
        return {name: s for name, s in self._settings.items() if name != MAIN}

    def number_of(self, name: str) -> int | None:
        """:returns: the number named port ``name`` is bound to, ``None`` if it does not listen."""
        return self.bound.get(name)

    def record_bound(self, bound: Mapping[str, int], serving: bool = True) -> None:
        """
        A server listens (``serving``): each named port's number (replaces
        what an earlier run left); or it stopped (``{}``, ``serving=False``).
        """
        self.bound = dict(bound)
        self.serving = serving


def set_settings_for_port(
    registry: Registry, settings: Mapping[str, Any], port_name: str = ""
) -> None:
    """
    Merge ``settings`` into ``registry``'s port table: see
    :func:`houweb.setSettingsForPort`, which is this on the default server.
    """
    registry.ports.update(port_key(port_name), check_settings(settings))
    if registry.ports.serving:
        log.warn(
            "houweb: setSettingsForPort(..., {name!r}) while the server runs: "
            "its settings take effect at the next run()",
            name=port_name,
        )
