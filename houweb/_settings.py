"""
The ``settings`` argument of ``run()``: a Python file read like a Django
settings module (its module-level UPPERCASE names are the settings), or a
``dict`` of those names: the CORS whitelist, Django's names for the
Host allow-list, the trusted origins and the limits on form bodies, and
houweb's ``API_DOCS`` (describe the API functions, ``True`` by default).

Loading happens before any port listens, so a broken file stops ``run()``
with :class:`~houweb.OperationFailed` naming the file and the problem.
"""

from __future__ import annotations

import os
import runpy
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from twisted.logger import Logger

from ._errors import OperationFailed
from ._port_settings import KEYS as PORT_KEYS
from ._port_settings import check_settings

log = Logger(namespace="houweb")

#: The classic and the modern name of Django's usual CORS setting; same meaning.
CORS_NAMES = ("CORS_ORIGIN_WHITELIST", "CORS_ALLOWED_ORIGINS")
KNOWN_NAMES = frozenset(
    (
        *CORS_NAMES,
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "USE_X_FORWARDED_HOST",
        "DATA_UPLOAD_MAX_MEMORY_SIZE",
        "DATA_UPLOAD_MAX_NUMBER_FIELDS",
        "API_DOCS",
        "DATA_UPLOAD_MAX_NUMBER_FILES",
        *PORT_KEYS,  # the main port's, as setSettingsForPort takes them
    )
)

#: Django's defaults: 2.5 MB of url-encoded or JSON body, or of the non-file
#: fields of a multipart body, and 1000 fields.
DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DEFAULT_DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
#: Django's default: 100 files in one multipart body (each one past the
#: in-memory budget is a temp file, made on the reactor thread).
DEFAULT_DATA_UPLOAD_MAX_NUMBER_FILES = 100

Source = Union[str, "os.PathLike[str]", Mapping[str, Any], None]


@dataclass(frozen=True)
class Settings:
    """The settings houweb understands, checked."""

    #: Origins allowed cross-origin requests: ``"*"``, ``"null"`` or
    #: ``scheme://host[:port]``; empty means CORS is off.
    cors_origins: tuple[str, ...] = ()
    #: Django's ALLOWED_HOSTS; ``None`` means the default for the addresses
    #: the server listens on (loopback names when all are loopback, else ``*``).
    allowed_hosts: tuple[str, ...] | None = None
    #: Django's CSRF_TRUSTED_ORIGINS: more origins allowed to change state.
    csrf_trusted_origins: tuple[str, ...] = ()
    #: Django's USE_X_FORWARDED_HOST: check X-Forwarded-Host instead of Host.
    use_x_forwarded_host: bool = False
    #: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (bytes); ``None`` for no limit.
    data_upload_max_memory_size: int | None = DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE
    #: Django's DATA_UPLOAD_MAX_NUMBER_FIELDS; ``None`` for no limit.
    data_upload_max_number_fields: int | None = DEFAULT_DATA_UPLOAD_MAX_NUMBER_FIELDS
    #: houweb's API_DOCS: describe the API functions (``houweb.functions``,
    #: ``/api/openapi.json``, ``/api/docs``, ``/api/client.js``); ``False``
    #: answers 404 there, as if they did not exist.
    api_docs: bool = True
    #: Django's DATA_UPLOAD_MAX_NUMBER_FILES; ``None`` for no limit.
    data_upload_max_number_files: int | None = DEFAULT_DATA_UPLOAD_MAX_NUMBER_FILES
    #: The main port's ``setSettingsForPort`` keys given here (PORT,
    #: SSL_CERTIFICATE...), checked, by :class:`~houweb._port_settings.PortSettings` field.
    main_port: Mapping[str, Any] = field(default_factory=dict)


def load_settings(source: Source) -> Settings:
    """
    Read and check ``run()``'s ``settings``.

    :param source: the path of a Python settings file, a ``dict`` of
        UPPERCASE names, or ``None`` (no settings).
    :raises OperationFailed: naming the file and the problem: missing,
        unreadable, a syntax error, an exception while running, a bad value.
    """
    if source is None:
        return Settings()
    if isinstance(source, Mapping):
        return _settings_from(dict(source), "settings dict")
    path = os.fspath(source)
    return _settings_from(_run_file(path), f"settings file {path}")


def _run_file(path: str) -> dict[str, Any]:
    """:returns: the module-level names of the Python file at ``path``."""
    if not os.path.isfile(path):
        raise OperationFailed(f"settings file {path} does not exist")
    try:
        return runpy.run_path(path, run_name="houweb_settings")
    except SyntaxError as exc:
        raise OperationFailed(
            f"settings file {path} has a syntax error on line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported
        raise OperationFailed(f"settings file {path} raised {type(exc).__name__}: {exc}") from None


def _settings_from(namespace: dict[str, Any], where: str) -> Settings:
    names = {name: value for name, value in namespace.items() if name.isupper()}
    unknown = sorted(set(names) - KNOWN_NAMES)
    if unknown:
        log.warn(
            "houweb: {where} has settings houweb does not know (ignored): {names}",
            where=where,
            names=", ".join(unknown),
        )
    origins: list[str] = []
    for name in CORS_NAMES:
        if name in names:
            origins += _origins(names[name], name, where)
    allowed_hosts = None
    if "ALLOWED_HOSTS" in names:
        allowed_hosts = tuple(_strings(names["ALLOWED_HOSTS"], "ALLOWED_HOSTS", where))
    trusted: tuple[str, ...] = ()
    if "CSRF_TRUSTED_ORIGINS" in names:
        trusted = tuple(_origins(names["CSRF_TRUSTED_ORIGINS"], "CSRF_TRUSTED_ORIGINS", where))
    port_names = {
        key: names[key]
        for key in PORT_KEYS
        if key in names and key not in ("ALLOWED_HOSTS", "USE_X_FORWARDED_HOST")
    }
    try:
        main_port = check_settings(port_names, where)
    except (TypeError, ValueError) as exc:
        raise OperationFailed(f"{where}: {exc}".replace("setSettingsForPort: ", "")) from None
    return Settings(
        main_port=main_port,
        cors_origins=tuple(origins),
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=trusted,
        use_x_forwarded_host=bool(names.get("USE_X_FORWARDED_HOST", False)),
        data_upload_max_memory_size=_limit(
            names, "DATA_UPLOAD_MAX_MEMORY_SIZE", DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE, where
        ),
        data_upload_max_number_fields=_limit(
            names, "DATA_UPLOAD_MAX_NUMBER_FIELDS", DEFAULT_DATA_UPLOAD_MAX_NUMBER_FIELDS, where
        ),
        api_docs=_flag(names, "API_DOCS", True, where),
        data_upload_max_number_files=_limit(
            names, "DATA_UPLOAD_MAX_NUMBER_FILES", DEFAULT_DATA_UPLOAD_MAX_NUMBER_FILES, where
        ),
    )


def _strings(value: object, name: str, where: str) -> list[str]:
    """:raises OperationFailed: unless ``value`` is a list or tuple of strings."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise OperationFailed(f"{where}: {name} must be a list or tuple of strings")
    return list(value)


def _flag(names: Mapping[str, Any], name: str, default: bool, where: str) -> bool:
    """:raises OperationFailed: unless the setting is ``True`` or ``False``."""
    value = names.get(name, default)
    if not isinstance(value, bool):
        raise OperationFailed(f"{where}: {name} must be True or False, not {value!r}")
    return value


def _limit(names: Mapping[str, Any], name: str, default: int, where: str) -> int | None:
    """:returns: a Django-style limit: a number of at least 0, or ``None`` for none."""
    value = names.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OperationFailed(f"{where}: {name} must be an int of at least 0, or None")
    return value


def _origins(value: object, name: str, where: str) -> list[str]:
    """
    :returns: the whitelist ``value``, checked.
    :raises OperationFailed: unless it is a list or tuple of origins.
    """
    if not isinstance(value, (list, tuple)):
        raise OperationFailed(
            f"{where}: {name} must be a list or tuple of origins, not {type(value).__name__}"
        )
    for entry in value:
        if not is_origin(entry):
            raise OperationFailed(
                f"{where}: {name} entry {entry!r} is not an origin "
                "('*', 'null' or scheme://host[:port], without a path)"
            )
    return list(value)


def is_origin(entry: object) -> bool:
    """:returns: whether ``entry`` is ``"*"``, ``"null"`` or ``scheme://host[:port]``."""
    if not isinstance(entry, str):
        return False
    if entry in ("*", "null"):
        return True
    try:
        parts = urllib.parse.urlsplit(entry.rstrip("/"))
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return bool(
        parts.scheme
        and parts.hostname
        and "@" not in parts.netloc
        and not (parts.path or parts.query or parts.fragment)
        and entry.rstrip("/").lower() == f"{parts.scheme}://{parts.netloc}".lower()
        and not any(c.isspace() for c in entry)
    )
