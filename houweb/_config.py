"""
:class:`ServerConfig`: ``run()``'s arguments, checked and with defaults applied.

Used by :func:`houweb.run` and by the ``twistd houweb`` plugin alike, so both
accept and reject exactly the same values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Django's FILE_UPLOAD_MAX_MEMORY_SIZE, Houdini's 2.5 MB.
DEFAULT_MAX_IN_MEMORY_FILE_UPLOAD_SIZE = 2_621_440
#: Houdini's 3 GB.
DEFAULT_MAX_REQUEST_SIZE = 3 * 1024**3
DEFAULT_SHUTDOWN_GRACE = 10.0
#: Seconds a connection may sit idle between requests (slowloris).
DEFAULT_IDLE_TIMEOUT = 60.0
#: Seconds a request's headers and body may take to arrive (trickled bodies).
DEFAULT_REQUEST_TIMEOUT = 300.0
#: Connections one server keeps open at once; more are answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 1000
_ENDPOINT_TYPES = ("tcp", "tcp6", "ssl")


def _int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {limit}, not {value}")
    return value


def _size(name: str, value: object, default: int) -> int:
    return default if value is None else _int(name, value, 0)


def _seconds(name: str, value: object, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(
            f"{name} must be {'at least 0' if allow_zero else 'more than 0'}, not {value}"
        )
    return float(value)


def _path(name: str, value: object, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not (value.startswith("/") or (allow_empty and value == "")):
        off = " (or empty: off)" if allow_empty else ""
        raise ValueError(f"{name} must be a URL path starting with /{off}, not {value!r}")
    return value


def check_listen(entry: object) -> str:
    """
    :returns: ``entry`` if it is a Twisted ``tcp:``, ``tcp6:`` or ``ssl:``
        server endpoint string with a port.
    :raises ValueError: naming the entry otherwise.
    """
    if not isinstance(entry, str):
        raise TypeError(f"listen entry {entry!r} must be a str")
    kind, _, rest = entry.partition(":")
    port = rest.split(":", 1)[0]
    if kind.lower() not in _ENDPOINT_TYPES or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"listen entry {entry!r} must be a Twisted endpoint string "
            "like 'tcp:9000:interface=::1' or 'ssl:8443:privateKey=key.pem' (tcp, tcp6 or ssl)"
        )
    return entry


def listen_interface(entry: str) -> str:
    """:returns: the ``interface=`` of a ``listen`` entry, ``""`` (every interface) without one."""
    parts = re.split(r"(?<!\\):", entry)
    for part in parts[2:]:
        name, eq, value = part.partition("=")
        if eq and name == "interface":
            return value.replace("\\:", ":")
    return ""


def listen_port(entry: str) -> int:
    """:returns: the port number a ``listen`` entry asks for."""
    return int(entry.split(":")[1])


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server needs to know to start, validated."""

    port: int = 8008
    debug: bool = False
    max_num_threads: int = 4
    max_in_memory_file_upload_size: int = DEFAULT_MAX_IN_MEMORY_FILE_UPLOAD_SIZE
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    settings: Mapping[str, Any] | str | None = None
    ports: tuple[int, ...] = ()
    interface: str = "127.0.0.1"
    listen: tuple[str, ...] = ()
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    token: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Django's ALLOWED_HOSTS given to run() (it wins over the settings
    #: file's); ``None``: the settings file's, else the default.
    allowed_hosts: tuple[str, ...] | None = None
    #: One Common Log Format line per request (see ``houweb._access``).
    access_log: bool = False
    #: A Prometheus endpoint and a health check (see ``houweb._metrics``).
    metrics: bool = False
    metrics_path: str = "/metrics"
    #: ``""``: no health check.
    health_path: str = "/healthz"
    #: The live status page at /houweb/status (see ``houweb._statuspage``).
    status_page: bool = False
    #: Serve every API function a port shows as an MCP tool at ``/mcp``.
    mcp: bool = False

    @classmethod
    def from_arguments(
        cls,
        port: object = 8008,
        debug: object = False,
        max_num_threads: object = 4,
        max_in_memory_file_upload_size: object = None,
        max_request_size: object = None,
        settings: object = None,
        ports: object = (),
        interface: object = "127.0.0.1",
        listen: object = (),
        shutdown_grace: object = DEFAULT_SHUTDOWN_GRACE,
        idle_timeout: object = DEFAULT_IDLE_TIMEOUT,
        request_timeout: object = DEFAULT_REQUEST_TIMEOUT,
        token: object = None,
        max_connections: object = DEFAULT_MAX_CONNECTIONS,
        allowed_hosts: object = None,
        access_log: object = False,
        metrics: object = False,
        metrics_path: object = "/metrics",
        health_path: object = "/healthz",
        status_page: object = False,
        mcp: object = False,
    ) -> ServerConfig:
        """
        Check ``run()``-style arguments.

        :raises TypeError: a value of the wrong type, naming the parameter.
        :raises ValueError: a value out of range, naming the parameter.
        """
        # -1: the main port's PORT setting (setSettingsForPort), as Houdini apps pass it.
        main = -1 if port == -1 and type(port) is int else _int("port", port, 0, 65535)
        if not isinstance(ports, (list, tuple)):
            raise TypeError(f"ports must be a list or tuple, not {type(ports).__name__}")
        extra_ports = tuple(_int("ports entry", p, 0, 65535) for p in ports)
        taken = [p for p in extra_ports if p != 0]
        if len(set(taken)) != len(taken) or (main > 0 and main in taken):
            raise ValueError(f"ports {list(ports)} repeats a port or the main port {main}")
        if not isinstance(listen, (list, tuple)):
            raise TypeError(f"listen must be a list or tuple, not {type(listen).__name__}")
        if not isinstance(interface, str):
            raise TypeError(f"interface must be a str, not {type(interface).__name__}")
        if token is not None and (not isinstance(token, str) or not token):
            raise TypeError("token must be a non-empty str or None")
        if settings is not None and not isinstance(settings, (str, os.PathLike, dict)):
            raise TypeError(f"settings must be a path or a dict, not {type(settings).__name__}")
        if allowed_hosts is not None and (
            not isinstance(allowed_hosts, (list, tuple))
            or not all(isinstance(h, str) and h for h in allowed_hosts)
        ):
            raise TypeError("allowed_hosts must be a list of host names (non-empty str) or None")
        if not isinstance(mcp, bool):
            raise TypeError(f"mcp must be True or False, not {type(mcp).__name__}")
        return cls(
            mcp=mcp,
            allowed_hosts=None if allowed_hosts is None else tuple(allowed_hosts),
            port=main,
            debug=bool(debug),
            max_num_threads=_int("max_num_threads", max_num_threads, 1),
            max_in_memory_file_upload_size=_size(
                "max_in_memory_file_upload_size",
                max_in_memory_file_upload_size,
                DEFAULT_MAX_IN_MEMORY_FILE_UPLOAD_SIZE,
            ),
            max_request_size=_size("max_request_size", max_request_size, DEFAULT_MAX_REQUEST_SIZE),
            settings=os.fspath(settings) if isinstance(settings, os.PathLike) else settings,
            ports=extra_ports,
            interface=interface,
            listen=tuple(check_listen(entry) for entry in listen),
            shutdown_grace=_seconds("shutdown_grace", shutdown_grace, allow_zero=True),
            idle_timeout=_seconds("idle_timeout", idle_timeout),
            request_timeout=_seconds("request_timeout", request_timeout),
            token=token,
            max_connections=_int("max_connections", max_connections, 1),
            access_log=bool(access_log),
            metrics=bool(metrics),
            metrics_path=_path("metrics_path", metrics_path),
            health_path=_path("health_path", health_path, allow_empty=True),
            status_page=bool(status_page),
        )

    def endpoint_descriptions(self) -> list[str]:
        """:returns: the Twisted endpoint strings to listen on, main port first."""
        interface = self.interface.replace(":", "\\:")
        tcp = [f"tcp:{p}:interface={interface}" for p in (self.port, *self.ports)]
        return tcp + list(self.listen)

    def interfaces(self) -> list[str]:
        """
        :returns: the address each endpoint listens on (``""`` for every
            interface), decided before listening, for the default ALLOWED_HOSTS.
        """
        found = [self.interface] * (1 + len(self.ports))
        for entry in self.listen:
            found.append(listen_interface(entry))
        return found
