"""
The ``twistd houweb`` plugin (found through ``twisted/plugins/houweb_plugin.py``)
and the options it shares with ``python -m houweb``.

``twistd -n houweb --app myapp.py --port 8008`` imports ``myapp.py`` (so its
decorators register handlers) and serves it from one :class:`HouwebService`
under a ``MultiService``, so twistd's start and stop, daemonising, pid file
and logging apply unchanged. Options are checked by
:meth:`houweb._config.ServerConfig.from_arguments`, the same checks
:func:`houweb.run` makes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage

from . import _run
from ._application import default_server
from ._config import ServerConfig
from ._reactor import get_reactor
from ._server import RunningServer

log = Logger(namespace="houweb")

_EXAMPLES = """\
Examples:
  Serve myapp.py (its @urlHandler functions) on http://127.0.0.1:8008/:
    {command} --app myapp.py
  Port 8080 on every interface, plus TLS on 8443:
    {command} --app myapp.py --port 8080 --interface 0.0.0.0 \\
        --listen ssl:8443:privateKey=key.pem:certKey=cert.pem
  An application package, and the files of ./public under /static:
    {command} --app mypackage.web --static public:/static
{more}Without --app, houweb serves its demo application.
"""


def _integer(text: str) -> int:
    return int(text, 10)


def _number(text: str) -> float:
    return float(text)


def _text(text: str) -> str:
    return text


def _token_from_file(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read().strip()


@dataclass(frozen=True)
class Setting:
    """One ``--option VALUE`` that becomes one ``run()`` argument."""

    option: str
    short: str | None
    default: str | None
    help: str
    convert: Callable[[str], Any]
    #: The run() parameter, if not the option's name with ``_`` for ``-``.
    run_name: str | None = None

    @property
    def parameter(self) -> str:
        """:returns: the name of the ``run()`` argument this option sets."""
        return self.run_name or self.option.replace("-", "_")


#: The single-valued options shared by ``twistd houweb`` and ``python -m houweb``.
SETTINGS = (
    Setting("port", "p", "8008", "The main port (0: the system picks a free one).", _integer),
    Setting(
        "interface",
        "i",
        "127.0.0.1",
        "The address --port and --extra-port listen on; 0.0.0.0 or :: exposes the server.",
        _text,
    ),
    Setting("max-num-threads", "t", "4", "How many plain handlers may run at once.", _integer),
    Setting(
        "max-in-memory-file-upload-size",
        None,
        None,
        "Uploads up to this many bytes stay in memory [default: 2621440].",
        _integer,
    ),
    Setting(
        "max-request-size",
        None,
        None,
        "The largest request body accepted, in bytes [default: 3221225472].",
        _integer,
    ),
    Setting(
        "settings",
        "s",
        None,
        "A settings file (Python, like Django's): CORS whitelist, ALLOWED_HOSTS, "
        "CSRF_TRUSTED_ORIGINS, form limits.",
        _text,
    ),
    Setting(
        "shutdown-grace",
        "g",
        "10",
        "Seconds requests in flight get to finish when the server stops.",
        _number,
    ),
    Setting(
        "idle-timeout", None, "60", "Seconds a connection may stay idle between requests.", _number
    ),
    Setting(
        "request-timeout",
        None,
        "300",
        "Seconds a request's headers and body may take to arrive.",
        _number,
    ),
    Setting(
        "max-connections",
        None,
        "1000",
        "The most connections open at once; one more is answered 503 and closed.",
        _integer,
    ),
    Setting(
        "token-file",
        None,
        None,
        "A file holding a shared secret every request must send as 'Authorization: Bearer <secret>'.",
        _token_from_file,
        run_name="token",
    ),
    Setting("metrics-path", None, "/metrics", "Where --metrics serves the metrics.", _text),
    Setting(
        "health-path",
        None,
        "/healthz",
        "Where --metrics serves the health check ('': nowhere).",
        _text,
    ),
)

_VALUE_ERRORS: dict[Callable[[str], Any], str] = {
    _integer: "an integer",
    _number: "a number",
}


def _usage_error(option: str, problem: object) -> usage.UsageError:
    return usage.UsageError(f"--{option}: {problem}")


def _checked(option: str, **arguments: Any) -> None:
    """Check one option's value(s) the way ``run()`` checks its arguments."""
    try:
        ServerConfig.from_arguments(**arguments)
    except (TypeError, ValueError) as exc:
        raise _usage_error(option, exc) from None


def split_static(spec: str) -> tuple[str, str]:
    """
    :returns: ``(directory, url_prefix)`` from ``DIR[:PREFIX]``; the prefix
        defaults to ``/static`` (a colon not followed by ``/`` is part of the
        directory, as in ``C:\\web``).
    """
    directory, colon, prefix = spec.rpartition(":")
    if colon and directory and prefix.startswith("/"):
        return directory, prefix
    return spec, "/static"


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_application(spec: str) -> ModuleType:
    """
    Import an application so its decorators register its handlers.

    :param spec: a Python file (``myapp.py``, ``web/app.py``), imported as a
        module named after the file with its directory first on ``sys.path``
        (as ``python web/app.py`` would have it); or a module name
        (``mypackage.web``).
    :returns: the imported module.
    """
    if not _is_file_spec(spec):
        return importlib.import_module(spec)
    path = os.path.abspath(spec)
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class Options(usage.Options):
    """
    houweb's options, mirroring :func:`houweb.run`'s arguments. After
    parsing, :meth:`run_arguments` gives them as ``run()`` keyword arguments.
    """

    longdesc = (
        "Serve the URL handlers and API functions of the applications given with "
        "--app, with the API of Houdini's web server (hou.webServer)."
    )
    #: How the examples in --help start the server.
    command = "twistd -n houweb"
    #: More examples for --help, with ``{command}`` in them.
    more_examples = ""
    optFlags: list[list[Any]] = [
        ["debug", "d", "Tracebacks in 500 answers and one log line per request."],
        ["access-log", None, "One Common Log Format line per request (the default)."],
        ["no-access-log", None, "No access log."],
        [
            "metrics",
            None,
            "Serve Prometheus metrics and a health check (pip install 'houweb[metrics]').",
        ],
        [
            "status-page",
            None,
            "A live status page at /houweb/status (for loopback clients, or with the token).",
        ],
        ["mcp", None, "Serve every API function as an MCP tool at /mcp (Streamable HTTP)."],
    ]
    optParameters: list[list[Any]] = [[s.option, s.short, s.default, s.help] for s in SETTINGS]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["extra-port"] = []
        self["static"] = []
        self["app"] = []
        self["allowed-host"] = []
        self._arguments: dict[str, Any] = {}

    def getUsage(self, width: int | None = None) -> str:
        """:returns: the option list and description, then examples, unwrapped."""
        more = self.more_examples.format(command=self.command)
        return super().getUsage(width) + "\n" + _EXAMPLES.format(command=self.command, more=more)

    def opt_listen(self, endpoint: str) -> None:
        """
        Also listen on this Twisted endpoint (repeatable): tcp:9000,
        tcp6:9000:interface=\\:\\:1, ssl:8443:privateKey=key.pem:certKey=cert.pem.
        Without interface= a tcp: endpoint listens on every interface.
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_extra_port(self, port: str) -> None:
        """Also listen on this port, on --interface (repeatable)."""
        self["extra-port"].append(port)

    opt_e = opt_extra_port

    def opt_allowed_host(self, host: str) -> None:
        """
        A host name requests may be addressed to (repeatable; Django's
        ALLOWED_HOSTS): name, .domain (with its subdomains) or * (any).
        Default: localhost names when every address is loopback, else *.
        """
        self["allowed-host"].append(host)

    def opt_static(self, spec: str) -> None:
        """
        Serve the files of directory DIR under the URL prefix PREFIX
        (DIR[:PREFIX], default prefix /static; repeatable).
        """
        self["static"].append(spec)

    def opt_app(self, spec: str) -> None:
        """
        Import this Python file or module (repeatable) so its decorators
        register handlers.
        """
        self["app"].append(spec)

    opt_a = opt_app

    def postOptions(self) -> None:
        """Check every value now, so nothing starts with a bad one."""
        if self["access-log"] and self["no-access-log"]:
            raise usage.UsageError("--access-log and --no-access-log contradict each other")
        arguments: dict[str, Any] = {
            "debug": bool(self["debug"]),
            "access_log": not self["no-access-log"],
            "mcp": bool(self["mcp"]),
        }
        if self["metrics"]:
            arguments["metrics"] = True
        if self["status-page"]:
            arguments["status_page"] = True
        for setting in SETTINGS:
            arguments[setting.parameter] = self._converted(setting)
            _checked(setting.option, **{setting.parameter: arguments[setting.parameter]})
        arguments["ports"] = [self._port(value) for value in self["extra-port"]]
        for entry in self["listen"]:
            _checked("listen", listen=[entry])
        arguments["listen"] = list(self["listen"])
        if self["allowed-host"]:
            arguments["allowed_hosts"] = list(self["allowed-host"])
            _checked("allowed-host", allowed_hosts=arguments["allowed_hosts"])
        # Each value was fine alone; what is left is an extra port that
        # repeats another one or the main port.
        _checked("extra-port", **arguments)
        self._check_statics()
        self._check_applications()
        self._arguments = arguments

    def _converted(self, setting: Setting) -> Any:
        raw = self[setting.option]
        if raw is None:
            return None
        try:
            return setting.convert(raw)
        except ValueError:
            expected = _VALUE_ERRORS.get(setting.convert, "a valid value")
            raise _usage_error(setting.option, f"expected {expected}, not {raw!r}") from None
        except OSError as exc:
            raise _usage_error(setting.option, f"cannot read {raw!r}: {exc.strerror}") from None

    def _port(self, raw: str) -> int:
        try:
            port = _integer(raw)
        except ValueError:
            raise _usage_error("extra-port", f"expected an integer, not {raw!r}") from None
        _checked("extra-port", port=0, ports=[port])
        return port

    def _check_statics(self) -> None:
        for spec in self["static"]:
            directory, prefix = split_static(spec)
            if not os.path.isdir(directory):
                raise _usage_error("static", f"{directory!r} is not a directory")
            if not prefix.startswith("/"):
                raise _usage_error("static", f"URL prefix {prefix!r} must start with /")

    def _check_applications(self) -> None:
        for spec in self["app"]:
            if _is_file_spec(spec):
                if not os.path.isfile(spec):
                    raise _usage_error("app", f"no such file: {spec!r}")
            elif importlib.util.find_spec(spec.split(".")[0]) is None:
                raise _usage_error("app", f"no module named {spec!r}")

    def run_arguments(self) -> dict[str, Any]:
        """
        :returns: the options as :func:`houweb.run` keyword arguments (not
            ``in_background`` nor ``reload_source_changes``).
        """
        return dict(self._arguments)

    def server_config(self) -> ServerConfig:
        """:returns: the checked configuration the options describe."""
        return ServerConfig.from_arguments(**self._arguments)


def load_applications(options: Options) -> None:
    """
    Import every ``--app`` (or the demo application when there is none),
    then register every ``--static`` directory.
    """
    if not options["app"]:
        from . import _demo

        _demo.register()
    for spec in options["app"]:
        load_application(spec)
    for spec in options["static"]:
        default_server().registerStaticFilesDirectory(*split_static(spec))


class HouwebService(service.Service):
    """
    One houweb server as a Twisted service: its listening ports and its
    handler pool start with the service and stop gracefully with it.

    Ports are bound in :meth:`privilegedStartService`, as Twisted's own
    listening services do, so twistd reports a busy port (and exits) before
    it drops privileges or reports a successful start.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.setName("houweb")
        self.config = config
        self.server: RunningServer | None = None
        self._stopping = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._start_server()

    def startService(self) -> None:
        super().startService()
        if self.server is None:
            self._start_server()

    def _start_server(self) -> None:
        server = RunningServer(self.config, get_reactor(), default_server().registry)
        failures: list[Any] = []
        server.start().addErrback(failures.append)
        if failures:  # binding is synchronous: the error is known at once
            failures[0].raiseException()
        self.server = server
        # requestShutdown(), isInDebugMode() and serverPorts() see this
        # server, as under run(); requestShutdown() stops twistd.
        _run.adopt(server, default_server().lifecycle)
        server.shutdown_requested().addCallback(self._stop_twistd)

    def _stop_twistd(self, _: object) -> None:
        """
        The server was asked to stop (requestShutdown()): stop the reactor,
        so twistd stops every service, this one gracefully, and exits 0.
        """
        if not self._stopping:
            log.info("houweb: requestShutdown() stops twistd")
            try:
                get_reactor().stop()
            except ReactorNotRunning:
                pass  # stopping already

    def stopService(self) -> defer.Deferred[None] | None:
        """
        Stop accepting, let requests in flight finish (up to the shutdown
        grace), then stop the pool. Ctrl-C again stops at once.
        """
        super().stopService()
        self._stopping = True
        if self.server is None:
            return None
        stopped: defer.Deferred[None] = defer.Deferred()
        self.server.shutdown().addBoth(lambda _: _fire(stopped))
        _fire_on_interrupt(stopped)
        return stopped


def _fire(d: defer.Deferred[None]) -> None:
    if not d.called:
        d.callback(None)


def _fire_on_interrupt(stopped: defer.Deferred[None]) -> None:
    """
    Until ``stopped`` fires, a SIGINT fires it: the reactor then stops
    without waiting for the requests still running.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    reactor = get_reactor()
    previous = signal.signal(
        signal.SIGINT, lambda signum, frame: reactor.callFromThread(_fire, stopped)
    )
    stopped.addBoth(lambda _: signal.signal(signal.SIGINT, previous))
    log.info("houweb: stopping; Ctrl-C again stops at once")


def makeService(options: Options) -> service.MultiService:
    """
    Import the applications and build the service tree twistd runs.

    :returns: a ``MultiService`` holding the :class:`HouwebService`.
    """
    load_applications(options)
    top = service.MultiService()
    HouwebService(options.server_config()).setServiceParent(top)
    return top
