"""
``setSettingsForPort`` (Houdini's per-port settings) and named ports, over
real sockets: the port range, the system-picked port, addresses, a named
port's own handlers, TLS, the HTTPS redirect, HSTS, per-port Host
allow-lists and log files, and the checks of the call itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl as stdlib_ssl

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, ssl
from twisted.internet.threads import deferToThread
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

import houweb
from houweb import hwebserver

from .conftest import messages
from .support import raw_request
from .test_tls import self_signed


def busy_port() -> socket.socket:
    """A socket listening on a free loopback port, for the server to step past."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def tls_agent(cert: str) -> Agent:
    """A treq agent that trusts the self-signed ``cert``."""
    trust = ssl.Certificate.loadPEM(open(cert, "rb").read())
    return Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))


async def get(port: int, path: str, host: str = "127.0.0.1", **headers: str) -> tuple[int, bytes]:
    """GET over a raw socket (so the Host is exactly ``host``); the status and the body."""
    lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    reply = await raw_request(
        port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n".encode()
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def header_of(reply_head: bytes, name: str) -> str | None:
    for line in reply_head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode()
    return None


# The call and its checks


def test_severity_constants_are_exported_and_ordered():
    assert hwebserver.WarningSeverity is houweb.WarningSeverity
    assert (
        houweb.DebugSeverity
        < houweb.InfoSeverity
        < houweb.WarningSeverity
        < houweb.ErrorSeverity
        < houweb.CriticalSeverity
    )
    assert houweb.MessageSeverity == houweb.InfoSeverity


@pytest.mark.parametrize(
    ("settings", "error", "named"),
    [
        ({"PORT": "8080"}, TypeError, "PORT"),
        ({"PORT": True}, TypeError, "PORT"),
        ({"PORT": 70000}, ValueError, "PORT"),
        ({"PORT": 9000, "MAX_PORT": 8999}, ValueError, "MAX_PORT"),
        ({"ALLOW_SYSTEM_PORT": 1}, TypeError, "ALLOW_SYSTEM_PORT"),
        ({"ADDRESS": 127}, TypeError, "ADDRESS"),
        ({"ADDRESS": "not an address!"}, ValueError, "ADDRESS"),
        ({"ALLOWED_HOSTS": "example.com"}, TypeError, "ALLOWED_HOSTS"),
        ({"MIN_LOG_SEVERITY": 7}, ValueError, "MIN_LOG_SEVERITY"),
        ({"MIN_LOG_SEVERITY": "warning"}, TypeError, "MIN_LOG_SEVERITY"),
        ({"SSL_VERIFY_PEER": "yes"}, TypeError, "SSL_VERIFY_PEER"),
        ({"SECURE_HSTS_SECONDS": -1}, ValueError, "SECURE_HSTS_SECONDS"),
        ({"SSL_REDIRECT_EXEMPT": "/health"}, TypeError, "SSL_REDIRECT_EXEMPT"),
        ({"LOG_FILE": 3}, TypeError, "LOG_FILE"),
        ({"IPV6": True, "ADDRESS": "10.1.2.3"}, ValueError, "IPV6"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key_and_changes_nothing(
    registry, settings, error, named
):
    with pytest.raises(error, match=named):
        houweb.setSettingsForPort(settings, "api")
    assert registry.ports.named() == {}


def test_settings_that_are_not_a_dict_or_a_port_name_that_is_not_a_str_are_type_errors(registry):
    with pytest.raises(TypeError, match="settings must be a dict"):
        houweb.setSettingsForPort([("PORT", 80)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="port_name must be a str"):
        houweb.setSettingsForPort({"PORT": 80}, 8080)  # type: ignore[arg-type]


def test_an_unknown_key_is_a_warning_naming_it_and_the_rest_is_kept(registry, logged):
    houweb.setSettingsForPort({"PORT": 9000, "MAXPORT": 9010}, "api")
    assert "unknown setting 'MAXPORT' ignored" in messages(logged)
    assert registry.ports.get("api").port == 9000


def test_main_is_named_empty_or_main_and_later_calls_change_only_their_keys(registry):
    houweb.setSettingsForPort({"PORT": 9000, "ADDRESS": "127.0.0.1"}, "")
    houweb.setSettingsForPort({"MAX_PORT": 9005}, "main")
    main = registry.ports.main()
    assert (main.port, main.max_port, main.address) == (9000, 9005, "127.0.0.1")
    assert registry.ports.named() == {}


@pytest_twisted.ensureDeferred
async def test_set_settings_for_port_while_the_server_runs_warns_that_it_waits_for_the_next_run(
    serve, logged, monkeypatch
):
    await serve()
    houweb.setSettingsForPort({"PORT": 0}, "late")
    assert "setSettingsForPort(..., 'late') while the server runs" in messages(logged)
    assert houweb._application.default_server().registry.ports.number_of("late") is None


@pytest_twisted.ensureDeferred
async def test_keys_without_effect_are_warnings_naming_them(serve, logged):
    houweb.setSettingsForPort({"SECURE_HSTS_SECONDS": 60, "SSL_REDIRECT_HOST": "x.example"}, "main")
    houweb.setSettingsForPort({"PORT": 0, "MIN_LOG_SEVERITY": houweb.DebugSeverity}, "quiet")
    houweb.setSettingsForPort({"ADDRESS": "127.0.0.1", "MAX_PORT": 9000}, "portless")
    await serve()
    text = messages(logged)
    assert "the main port: SSL_REDIRECT_HOST, SECURE_HSTS_SECONDS ignored" in text
    assert "named port 'quiet': MIN_LOG_SEVERITY ignored" in text
    assert "named port 'portless' has settings but no PORT: it does not listen" in text


@pytest_twisted.ensureDeferred
async def test_a_cors_whitelist_for_a_port_that_does_not_listen_is_a_warning(serve, logged):
    houweb.setCORSWhitelist(["https://app.example"], "typo")
    await serve()
    assert "setCORSWhitelist(..., 'typo') ignored: no port of that name listens" in messages(logged)


# Binding: the range, the system's port, the address


@pytest_twisted.ensureDeferred
async def test_max_port_steps_past_a_busy_port(serve, client):
    blocker = busy_port()
    busy = blocker.getsockname()[1]
    try:
        houweb.setSettingsForPort({"PORT": busy, "MAX_PORT": busy + 40}, "main")
        houweb.urlHandler("/")(lambda request: "here")
        server = await serve(port=-1)  # -1: the main port's PORT setting
        bound = server.port_numbers()[0]
        assert busy < bound <= busy + 40
        assert (await client.get(bound, "/")).text == "here"
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_run_port_overrides_port_with_a_warning_and_max_port_still_applies(
    serve, client, logged
):
    blocker = busy_port()
    busy = blocker.getsockname()[1]
    try:
        houweb.setSettingsForPort({"PORT": 1, "MAX_PORT": busy + 40}, "main")
        server = await serve(port=busy)
        assert busy < server.port_numbers()[0] <= busy + 40
        assert f"run(port={busy}) is used instead of the main port's PORT 1" in messages(logged)
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_run_port_minus_one_without_port_is_8008(registry):
    from houweb._config import ServerConfig
    from houweb._port_binding import main_port_number

    config = ServerConfig.from_arguments(port=-1)
    assert main_port_number(config, registry.ports.main()) == 8008


@pytest_twisted.ensureDeferred
async def test_a_busy_port_without_a_range_fails_naming_it(serve):
    blocker = busy_port()
    busy = blocker.getsockname()[1]
    try:
        houweb.setSettingsForPort({"PORT": busy}, "api")
        with pytest.raises(houweb.OperationFailed, match=f"port {busy} .*'api'.*in use"):
            await serve()
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_allow_system_port_takes_any_free_port_when_the_range_is_busy(serve, client):
    blocker = busy_port()
    busy = blocker.getsockname()[1]
    try:
        houweb.setSettingsForPort(
            {"PORT": busy, "MAX_PORT": busy, "ALLOW_SYSTEM_PORT": True}, "api"
        )
        houweb.urlHandler("/", ports=["api"])(lambda request: "api")
        await serve()
        bound = houweb._application.default_server().registry.ports.number_of("api")
        assert bound is not None and bound != busy
        assert (await client.get(bound, "/")).text == "api"
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_ipv6_binds_the_ipv6_loopback(serve):
    houweb.setSettingsForPort({"PORT": 0, "IPV6": True}, "v6")
    houweb.urlHandler("/", ports=["v6"])(lambda request: request.serverAddress()[0])
    server = await serve()
    number = houweb._application.default_server().registry.ports.number_of("v6")
    assert number in server.port_numbers()

    def fetch() -> bytes:
        with socket.create_connection(("::1", number), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    reply = await deferToThread(fetch)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"::1")


@pytest_twisted.ensureDeferred
async def test_address_binds_the_main_port_there(serve, client):
    houweb.setSettingsForPort({"ADDRESS": "127.0.0.2"}, "main")
    houweb.urlHandler("/")(lambda request: "on 127.0.0.2")
    server = await serve()
    assert server.listening[0].getHost().host == "127.0.0.2"
    status, body = await get_from("127.0.0.2", server.port_numbers()[0], "/")
    assert (status, body) == (200, b"on 127.0.0.2")


async def get_from(address: str, port: int, path: str) -> tuple[int, bytes]:
    def fetch() -> bytes:
        with socket.create_connection((address, port), timeout=10) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    reply = await deferToThread(fetch)
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


# Named ports


@pytest_twisted.ensureDeferred
async def test_a_named_port_serves_only_what_is_bound_to_it(serve, client, tmp_path):
    ran: list[str] = []
    # Registered before the port has settings: names are resolved at start.
    houweb.urlHandler("/a", ports=["api"])(lambda request: ran.append("api") or "api")
    houweb.urlHandler("/m")(lambda request: ran.append("main") or "main")
    houweb.urlHandler("/both", ports=["main", "api"])(lambda request: "both")

    @houweb.apiFunction("named", ports=["api"])
    def ping(request: houweb.Request) -> str:
        ran.append("ping")
        return "pong"

    (tmp_path / "f.txt").write_text("static")
    houweb.registerStaticFilesDirectory(str(tmp_path), "/files", port="api")
    houweb.setSettingsForPort({"PORT": 0}, "api")
    server = await serve()
    main = server.port_numbers()[0]
    api = houweb._application.default_server().registry.ports.number_of("api")
    assert api is not None and api in server.port_numbers() and api != main

    assert (await client.get(api, "/a")).text == "api"
    assert (await client.get(main, "/a")).status == 404
    assert (await client.get(api, "/m")).status == 404
    assert (await client.get(main, "/both")).text == "both"
    assert (await client.get(api, "/both")).text == "both"
    assert (await client.get(api, "/files/f.txt")).text == "static"
    assert (await client.get(main, "/files/f.txt")).status == 404
    call = {"json": '["named.ping", [], {}]'}
    assert (await client.post(api, "/api", data=call)).text == '"pong"'
    assert (await client.post(main, "/api", data=call)).status == 404
    assert ran == ["api", "ping"]


def free_number() -> int:
    """A port number free on 127.0.0.1 and 127.0.0.2 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_a_named_port_never_shares_a_number_with_another_port_on_another_address(
    serve, tmp_path
):
    # Ports are told apart by number: "admin" on 127.0.0.2:N would answer its
    # handlers on the main port 127.0.0.1:N too (and take its settings).
    ran: list[str] = []
    houweb.urlHandler("/admin", ports=["admin"])(lambda request: ran.append("admin") or "admin")
    number = free_number()
    houweb.setSettingsForPort({"PORT": number, "ADDRESS": "127.0.0.1"}, "main")
    houweb.setSettingsForPort({"PORT": number, "ADDRESS": "127.0.0.2"}, "admin")
    with pytest.raises(
        houweb.OperationFailed, match=f"port {number} .*'admin'.*another of the server's ports"
    ):
        await serve(port=-1)
    assert houweb._application.default_server().registry.ports.number_of("admin") is None
    for address in ("127.0.0.1", "127.0.0.2"):  # nothing is left listening
        with socket.socket() as probe:
            assert probe.connect_ex((address, number)) != 0
    # With a range, it steps past the number as past a busy one.
    houweb.setSettingsForPort({"MAX_PORT": number + 20}, "admin")
    server = await serve(port=-1)
    admin = houweb._application.default_server().registry.ports.number_of("admin")
    assert number < admin <= number + 20
    assert await get_from("127.0.0.2", admin, "/admin") == (200, b"admin")
    assert (await get(number, "/admin", host="localhost"))[0] == 404
    assert ran == ["admin"]
    await server.shutdown()
    # A ``listen`` entry (bound last) on the named port's number is refused too.
    houweb.setSettingsForPort({"PORT": admin, "MAX_PORT": admin}, "admin")
    entry = f"tcp:{admin}:interface=127.0.0.3"
    with pytest.raises(houweb.OperationFailed, match=f"'admin'.*{admin}.*{entry} listens"):
        await serve(port=0, listen=[entry])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.3", admin)) != 0


def test_a_system_picked_number_the_server_already_has_is_asked_for_again():
    from houweb._port_binding import PortPlan
    from houweb._port_settings import PortSettings

    class Port:
        def __init__(self, number: int) -> None:
            self.number, self.closed = number, False

        def getHost(self) -> object:  # noqa: N802 - Twisted's name
            return type("Address", (), {"port": self.number})()

        def stopReading(self) -> None:  # noqa: N802
            pass

        def connectionLost(self, reason: object) -> None:  # noqa: N802
            self.closed = True

    class Reactor:
        def __init__(self, picks: list[int]) -> None:
            self.picks, self.ports = picks, []

        def listenTCP(self, number: int, factory: object, interface: str) -> Port:  # noqa: N802
            self.ports.append(Port(self.picks.pop(0)))
            return self.ports[-1]

    plan = PortPlan("api", "tcp:0", PortSettings(port=0), 0, "127.0.0.2")
    reactor = Reactor([8000, 8000, 8001])
    port = plan._bind(reactor, None, frozenset({8000}))
    assert port.number == 8001
    assert [p.closed for p in reactor.ports] == [True, True, False]
    with pytest.raises(houweb.OperationFailed, match="another of the server's ports"):
        plan._bind(Reactor([8000] * 20), None, frozenset({8000}))


@pytest_twisted.ensureDeferred
async def test_a_named_port_does_not_take_the_main_ports_use_x_forwarded_host(serve):
    # Behind a proxy, the main port trusts X-Forwarded-Host; a loopback named
    # port must still check Host, or a DNS-rebinding page that sets the
    # header itself (same-origin: no preflight) gets in.
    ran: list[str] = []
    houweb.urlHandler("/x", ports=["local"])(lambda request: ran.append("x") or "x")
    houweb.setSettingsForPort(
        {"USE_X_FORWARDED_HOST": True, "ALLOWED_HOSTS": ["public.example"]}, "main"
    )
    houweb.setSettingsForPort({"PORT": 0}, "local")
    await serve()
    local = houweb._application.default_server().registry.ports.number_of("local")
    status, _ = await get(local, "/x", host="rebound.example", X_Forwarded_Host="localhost")
    assert status == 400
    assert ran == []
    assert await get(local, "/x", host="localhost") == (200, b"x")


@pytest_twisted.ensureDeferred
async def test_a_name_without_a_port_is_a_warning_and_serves_nowhere(serve, client, logged):
    houweb.urlHandler("/x", ports=["nowhere"])(lambda request: "x")
    server = await serve()
    assert "bound to port 'nowhere', which does not listen" in messages(logged)
    assert (await client.get(server.port_numbers()[0], "/x")).status == 404


@pytest_twisted.ensureDeferred
async def test_handler_classes_and_websockets_take_port_names(serve, client):
    class Item(houweb.URLHandler):
        def handle(self, request: houweb.Request) -> houweb.Response:
            return houweb.Response("item")

    Item("/item", ports=["api"])
    houweb.setSettingsForPort({"PORT": 0}, "api")
    server = await serve()
    api = houweb._application.default_server().registry.ports.number_of("api")
    assert (await client.get(api, "/item")).text == "item"
    assert (await client.get(server.port_numbers()[0], "/item")).status == 404


# TLS


@pytest_twisted.ensureDeferred
async def test_an_ssl_certificate_port_serves_https(serve, tmp_path):
    key, cert = self_signed(tmp_path)
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key}, "tls"
    )
    houweb.urlHandler("/s", ports=["tls"])(lambda request: f"secure={request.isSecure()}")
    await serve()
    port = houweb._application.default_server().registry.ports.number_of("tls")
    response = await treq.get(f"https://localhost:{port}/s", agent=tls_agent(cert))
    assert await response.text() == "secure=True"


@pytest_twisted.ensureDeferred
async def test_certificate_and_key_may_be_one_pem_given_as_text(serve, tmp_path):
    key, cert = self_signed(tmp_path)
    combined = open(cert).read() + open(key).read()
    houweb.setSettingsForPort({"PORT": 0, "SSL_CERTIFICATE": combined}, "tls")
    houweb.urlHandler("/s", ports=["tls"])(lambda request: "ok")
    await serve()
    port = houweb._application.default_server().registry.ports.number_of("tls")
    response = await treq.get(f"https://localhost:{port}/s", agent=tls_agent(cert))
    assert await response.text() == "ok"


@pytest_twisted.ensureDeferred
async def test_a_missing_certificate_file_fails_naming_the_port_and_leaves_nothing_open(
    serve, tmp_path
):
    houweb.setSettingsForPort({"PORT": 0, "SSL_CERTIFICATE": str(tmp_path / "none.pem")}, "tls")
    houweb.urlHandler("/")(lambda request: "ok")
    main = free_number()
    with pytest.raises(houweb.OperationFailed, match="'tls'.*none.pem"):
        await serve(port=main)  # the main port listens first, then "tls" fails
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", main)) != 0
    # A mismatched key fails the same way; fixed, the next start serves.
    (tmp_path / "other").mkdir()
    key, cert = self_signed(tmp_path)
    other_key, _ = self_signed(tmp_path / "other")
    houweb.setSettingsForPort({"SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": other_key}, "tls")
    with pytest.raises(houweb.OperationFailed, match="'tls'.*not the private key of"):
        await serve(port=main)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", main)) != 0
    houweb.setSettingsForPort({"SSL_CERTIFICATE_KEY": key}, "tls")
    await serve(port=main)
    assert await get(main, "/", host="localhost") == (200, b"ok")


@pytest_twisted.ensureDeferred
async def test_a_certificate_that_is_not_a_regular_file_fails_at_once(serve):
    # Read as files, /dev/zero was read until memory ran out and a FIFO with
    # no writer blocked run() (neither is tried here: the broken case never
    # returns); /dev/null stands for them.
    houweb.setSettingsForPort({"PORT": 0, "SSL_CERTIFICATE": "/dev/null"}, "tls")
    with pytest.raises(houweb.OperationFailed, match="'tls'.*SSL_CERTIFICATE.*not a regular file"):
        await serve()


def _encrypted_key(tmp_path) -> tuple[str, str]:
    """The certificate of ``self_signed`` and its key encrypted with a passphrase."""
    from cryptography.hazmat.primitives import serialization

    key, cert = self_signed(tmp_path)
    loaded = serialization.load_pem_private_key(open(key, "rb").read(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return str(encrypted), cert


@pytest_twisted.ensureDeferred
async def test_an_encrypted_key_fails_naming_it(serve, tmp_path):
    key, cert = _encrypted_key(tmp_path)
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key}, "tls"
    )
    with pytest.raises(houweb.OperationFailed, match="'tls'.*SSL_CERTIFICATE_KEY is encrypted"):
        await serve()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_an_encrypted_key_never_asks_for_a_passphrase_on_the_terminal(tmp_path):
    # With a terminal, OpenSSL's default prompt blocked run() on "Enter PEM pass phrase:".
    import subprocess
    import sys

    from .support import ROOT

    key, cert = _encrypted_key(tmp_path)
    program = tmp_path / "app.py"
    program.write_text(
        "import houweb\n"
        f"houweb.setSettingsForPort({{'PORT': 0, 'SSL_CERTIFICATE': {cert!r}, "
        f"'SSL_CERTIFICATE_KEY': {key!r}}}, 'main')\n"
        "try:\n"
        "    houweb.run(port=-1, in_background=True)\n"
        "except houweb.OperationFailed as exc:\n"
        "    print('FAILED', exc, flush=True)\n"
    )
    command = f"{sys.executable} {program}"
    done = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    output = done.stdout.decode(errors="replace")
    assert "pass phrase" not in output
    assert "FAILED" in output and "is encrypted" in output


def _https_get(port: int, cafile: str, client_cert: tuple[str, str] | None) -> bytes:
    """A blocking HTTPS GET with Python's ssl module, optionally with a client certificate."""
    context = stdlib_ssl.create_default_context(cafile=cafile)
    if client_cert is not None:
        context.load_cert_chain(client_cert[1], client_cert[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data


@pytest_twisted.ensureDeferred
async def test_ssl_verify_peer_refuses_a_client_certificate_it_cannot_verify(serve, tmp_path):
    (tmp_path / "server").mkdir()
    (tmp_path / "client").mkdir()
    key, cert = self_signed(tmp_path / "server")
    stranger = self_signed(tmp_path / "client")
    ran: list[str] = []
    houweb.urlHandler("/s", ports=[-1])(lambda request: ran.append("s") or "ok")
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key}, "on"
    )
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key, "SSL_VERIFY_PEER": False},
        "off",
    )
    await serve()
    on, off = (
        houweb._application.default_server().registry.ports.number_of(n) for n in ("on", "off")
    )
    # Without a client certificate both serve; SSL_VERIFY_PEER only checks one that is sent.
    assert (await deferToThread(_https_get, on, cert, None)).startswith(b"HTTP/1.1 200")
    assert (await deferToThread(_https_get, off, cert, None)).startswith(b"HTTP/1.1 200")
    # One the server cannot verify: refused with verification on, not even asked for off.
    with pytest.raises((stdlib_ssl.SSLError, ConnectionError)):
        await deferToThread(_https_get, on, cert, stranger)
    assert (await deferToThread(_https_get, off, cert, stranger)).startswith(b"HTTP/1.1 200")
    assert ran == ["s", "s", "s"]


# SSL_REDIRECT and HSTS


@pytest_twisted.ensureDeferred
async def test_ssl_redirect_sends_upgrading_requests_to_https_and_refuses_the_others(
    serve, tmp_path
):
    ran: list[str] = []
    key, cert = self_signed(tmp_path)
    houweb.urlHandler("/page", ports=[-1])(lambda request: ran.append("page") or "page")
    houweb.urlHandler("/health", ports=[-1])(lambda request: ran.append("health") or "ok")
    houweb.setSettingsForPort({"SSL_REDIRECT": True, "SSL_REDIRECT_EXEMPT": ["/health"]}, "main")
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key}, "tls"
    )
    server = await serve()
    main = server.port_numbers()[0]
    tls = houweb._application.default_server().registry.ports.number_of("tls")

    reply = await raw_request(
        main,
        b"GET /page?q=1 HTTP/1.1\r\nHost: localhost:%d\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
        % main,
    )
    head = reply.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 301")
    assert header_of(head, "Location") == f"https://localhost:{tls}/page?q=1"

    status, body = await get(main, "/page", host="localhost")
    assert status == 403 and b"HTTPS" in body
    assert ran == []  # neither reached the handler

    assert await get(main, "/health", host="localhost") == (200, b"ok")
    response = await treq.get(f"https://localhost:{tls}/page", agent=tls_agent(cert))
    assert await response.text() == "page"
    assert ran == ["health", "page"]


@pytest_twisted.ensureDeferred
async def test_ssl_redirect_host_and_exempt_hosts(serve):
    ran: list[str] = []
    houweb.urlHandler("/p")(lambda request: ran.append("p") or "p")
    houweb.setSettingsForPort(
        {
            "SSL_REDIRECT": True,
            "SSL_REDIRECT_HOST": "secure.example:8443",
            "SSL_REDIRECT_EXEMPT": ["internal.localhost"],
            "ALLOWED_HOSTS": ["localhost", ".localhost"],
        },
        "main",
    )
    server = await serve()
    main = server.port_numbers()[0]
    reply = await raw_request(
        main, b"GET /p HTTP/1.1\r\nHost: localhost\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
    )
    assert header_of(reply.partition(b"\r\n\r\n")[0], "Location") == "https://secure.example:8443/p"
    assert await get(main, "/p", host="internal.localhost") == (200, b"p")
    assert ran == ["p"]


@pytest_twisted.ensureDeferred
async def test_hsts_header_is_sent_on_the_tls_port_only(serve, client, tmp_path):
    key, cert = self_signed(tmp_path)
    hsts = {
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
    }
    houweb.urlHandler("/", ports=[-1])(lambda request: "x")
    houweb.setSettingsForPort(hsts, "main")  # plain HTTP: never sent there
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key, **hsts}, "tls"
    )
    server = await serve()
    tls = houweb._application.default_server().registry.ports.number_of("tls")
    response = await treq.get(f"https://localhost:{tls}/", agent=tls_agent(cert))
    await response.content()
    assert response.headers.getRawHeaders("Strict-Transport-Security") == [
        "max-age=3600; includeSubDomains; preload"
    ]
    plain = await client.get(server.port_numbers()[0], "/")
    assert plain.header("Strict-Transport-Security") is None


@pytest_twisted.ensureDeferred
async def test_no_hsts_header_by_default(serve, tmp_path):
    key, cert = self_signed(tmp_path)
    houweb.urlHandler("/", ports=[-1])(lambda request: "x")
    houweb.setSettingsForPort(
        {"PORT": 0, "SSL_CERTIFICATE": cert, "SSL_CERTIFICATE_KEY": key}, "tls"
    )
    await serve()
    tls = houweb._application.default_server().registry.ports.number_of("tls")
    response = await treq.get(f"https://localhost:{tls}/", agent=tls_agent(cert))
    await response.content()
    assert not response.headers.hasHeader("Strict-Transport-Security")


# Host allow-lists per port


@pytest_twisted.ensureDeferred
async def test_allowed_hosts_apply_to_their_port_only(serve):
    ran: list[str] = []
    houweb.urlHandler("/", ports=[-1])(lambda request: ran.append(request.port()) or "ok")
    houweb.setSettingsForPort({"PORT": 0, "ALLOWED_HOSTS": ["api.example"]}, "api")
    server = await serve()
    main = server.port_numbers()[0]
    api = houweb._application.default_server().registry.ports.number_of("api")
    assert await get(api, "/", host="api.example") == (200, b"ok")
    assert (await get(api, "/", host="localhost"))[0] == 400
    assert await get(main, "/", host="localhost") == (200, b"ok")
    assert (await get(main, "/", host="api.example"))[0] == 400
    assert ran == [api, main]


@pytest.mark.parametrize("address", ["127.1", "2130706433", "0x7f000001"])
@pytest_twisted.ensureDeferred
async def test_a_loopback_address_not_written_in_full_keeps_the_loopback_allow_list(serve, address):
    # The OS binds "127.1" to 127.0.0.1: the default allow-list must be the
    # loopback one there too, not "*" (DNS rebinding), on the main port and a named one.
    ran: list[int] = []
    houweb.urlHandler("/x", ports=[-1])(lambda request: ran.append(request.port()) or "x")
    houweb.setSettingsForPort({"ADDRESS": address}, "main")
    houweb.setSettingsForPort({"PORT": 0, "ADDRESS": address}, "n")
    server = await serve()
    named = houweb._application.default_server().registry.ports.number_of("n")
    for port in (server.port_numbers()[0], named):
        assert server.listening[0].getHost().host == "127.0.0.1"
        assert (await get(port, "/x", host="rebound.example"))[0] == 400
        assert await get(port, "/x", host="localhost") == (200, b"x")
    assert ran == [server.port_numbers()[0], named]


@pytest_twisted.ensureDeferred
async def test_use_x_forwarded_host_per_port(serve):
    houweb.urlHandler("/", ports=[-1])(lambda request: "ok")
    houweb.setSettingsForPort(
        {"PORT": 0, "ALLOWED_HOSTS": ["public.example"], "USE_X_FORWARDED_HOST": True}, "proxied"
    )
    await serve()
    port = houweb._application.default_server().registry.ports.number_of("proxied")
    assert await get(port, "/", host="10.0.0.5", X_Forwarded_Host="public.example") == (200, b"ok")
    assert (await get(port, "/", host="public.example", X_Forwarded_Host="evil.example"))[0] == 400


# Log files


@pytest_twisted.ensureDeferred
async def test_log_file_gets_entries_at_or_above_its_severity(serve, client, tmp_path):
    def boom(request: houweb.Request) -> str:
        raise RuntimeError("kaboom")

    houweb.urlHandler("/ok", ports=[-1])(lambda request: "ok")
    houweb.urlHandler("/boom", ports=[-1])(boom)
    verbose, quiet = tmp_path / "verbose.log", tmp_path / "quiet.log"
    houweb.setSettingsForPort(
        {"PORT": 0, "LOG_FILE": str(verbose), "MIN_LOG_SEVERITY": hwebserver.InfoSeverity}, "v"
    )
    houweb.setSettingsForPort({"PORT": 0, "LOG_FILE": str(quiet)}, "q")  # WarningSeverity
    server = await serve()
    table = houweb._application.default_server().registry.ports
    for name in ("v", "q"):
        assert (await client.get(table.number_of(name), "/ok")).text == "ok"
        assert (await client.get(table.number_of(name), "/boom")).status == 500
    await client.close()
    await server.shutdown()
    verbose_text, quiet_text = verbose.read_text(), quiet.read_text()
    assert '"GET /ok" 200' in verbose_text and '"GET /boom" 500' in verbose_text
    assert "kaboom" in verbose_text and "kaboom" in quiet_text
    assert '"GET /ok"' not in quiet_text  # an Info entry, below Warning


@pytest_twisted.ensureDeferred
async def test_a_log_file_that_is_a_fifo_nobody_reads_fails_instead_of_hanging(serve, tmp_path):
    import os
    import threading

    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    readers: list[int] = []

    def unblock() -> None:  # only for the broken case: a hung open() returns, the test fails
        readers.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))

    rescue = threading.Timer(10, unblock)
    rescue.start()
    try:
        houweb.setSettingsForPort({"PORT": 0, "LOG_FILE": str(fifo)}, "logged")
        with pytest.raises(houweb.OperationFailed, match="'logged'.*FIFO that no process reads"):
            await serve()
        houweb.setSettingsForPort({"LOG_FILE": str(tmp_path)}, "logged")
        with pytest.raises(houweb.OperationFailed, match="LOG_FILE.*directory"):
            await serve()
    finally:
        rescue.cancel()
        rescue.join()
        for fd in readers:
            os.close(fd)
    assert readers == []


@pytest_twisted.ensureDeferred
async def test_a_request_finishing_during_the_shutdown_grace_is_in_its_ports_log(
    serve, client, tmp_path
):
    import threading

    started, release = threading.Event(), threading.Event()

    def slow(request: houweb.Request) -> str:
        started.set()
        release.wait(30)
        raise RuntimeError("failed during the grace")

    houweb.urlHandler("/slow", ports=["api"])(slow)
    log_file = tmp_path / "api.log"
    houweb.setSettingsForPort(
        {"PORT": 0, "LOG_FILE": str(log_file), "MIN_LOG_SEVERITY": houweb.InfoSeverity}, "api"
    )
    server = await serve()
    api = houweb._application.default_server().registry.ports.number_of("api")
    answer = defer.ensureDeferred(client.get(api, "/slow"))
    await deferToThread(started.wait, 30)
    stopping = server.shutdown()  # the grace lets the request finish
    release.set()
    assert (await answer).status == 500
    await stopping
    text = log_file.read_text()
    assert "failed during the grace" in text
    assert '"GET /slow" 500' in text


@pytest_twisted.ensureDeferred
async def test_a_log_file_that_cannot_be_written_is_a_warning_not_a_broken_server(
    serve, client, logged
):
    houweb.urlHandler("/x", ports=[-1])(lambda request: "x")
    houweb.setSettingsForPort(
        {"PORT": 0, "LOG_FILE": "/dev/full", "MIN_LOG_SEVERITY": houweb.InfoSeverity}, "api"
    )
    server = await serve(access_log=True)
    api = houweb._application.default_server().registry.ports.number_of("api")
    for _ in range(2):
        assert (await client.get(api, "/x")).text == "x"
    await client.close()
    await server.shutdown()
    text = messages(logged)
    assert text.count("port 'api': LOG_FILE '/dev/full': writing failed") == 1
    assert text.count('"GET /x HTTP/1.1" 200') == 2  # the access log, after the port's
    assert "Unhandled error" not in text and "shutdown failed" not in text
    assert "houweb: stopped" in text


# setCORSWhitelist on a named port


@pytest_twisted.ensureDeferred
async def test_cors_whitelist_of_a_named_port_applies_there_only(serve, client):
    houweb.urlHandler("/", ports=[-1])(lambda request: "ok")
    houweb.setSettingsForPort({"PORT": 0}, "api")
    houweb.setCORSWhitelist(["https://app.example"], "api")
    server = await serve()
    api = houweb._application.default_server().registry.ports.number_of("api")
    origin = {"Origin": "https://app.example"}
    there = await client.get(api, "/", headers=origin)
    assert there.header("Access-Control-Allow-Origin") == "https://app.example"
    main = await client.get(server.port_numbers()[0], "/", headers=origin)
    assert main.header("Access-Control-Allow-Origin") is None
    preflight = await client.request(
        "OPTIONS", api, "/", headers={**origin, "Access-Control-Request-Method": "PUT"}
    )
    assert preflight.status == 200 and preflight.header("Access-Control-Allow-Methods")
    # The whitelisted origin may change state on that port, not on the main one.
    assert (await client.post(api, "/", headers=origin)).status == 200
    assert (await client.post(server.port_numbers()[0], "/", headers=origin)).status == 403


# The settings file


@pytest_twisted.ensureDeferred
async def test_the_settings_file_takes_the_main_ports_keys(serve, client, tmp_path):
    blocker = busy_port()
    busy = blocker.getsockname()[1]
    settings = tmp_path / "settings.py"
    settings.write_text(f"PORT = {busy}\nMAX_PORT = {busy + 40}\n")
    try:
        houweb.urlHandler("/")(lambda request: "ok")
        server = await serve(port=-1, settings=str(settings))
        assert busy < server.port_numbers()[0] <= busy + 40
    finally:
        blocker.close()


@pytest_twisted.ensureDeferred
async def test_a_bad_value_in_the_settings_file_is_operation_failed(serve, tmp_path):
    settings = tmp_path / "settings.py"
    settings.write_text("MAX_PORT = 'high'\n")
    with pytest.raises(houweb.OperationFailed, match="MAX_PORT"):
        await serve(settings=str(settings))


# A Houdini-style script, through run()

HOUDINI_SCRIPT = """
import time
from houweb import hwebserver

hwebserver.setSettingsForPort({"PORT": 0, "ADDRESS": "127.0.0.1"}, "main")
hwebserver.setSettingsForPort({"PORT": 0}, "api")


@hwebserver.urlHandler("/where", ports=["api"])
def where(request):
    return hwebserver.Response("api port")


@hwebserver.urlHandler("/stop")
def stop(request):
    hwebserver.requestShutdown()
    return hwebserver.Response("bye")


hwebserver.run(port=-1, in_background=True)
print("PORT", *hwebserver.serverPorts(), flush=True)
for _ in range(600):  # bounded: 60 s at most
    if not hwebserver.serverPorts():
        break
    time.sleep(0.1)
print("DONE", flush=True)
"""


def test_a_houdini_script_with_a_named_port_runs_through_run(tmp_path):
    from .support import ServerProcess
    from .support import get as blocking_get

    script = tmp_path / "houdini_app.py"
    script.write_text(HOUDINI_SCRIPT)
    child = ServerProcess(str(script))
    try:
        main, api = (int(p) for p in child.wait_for_line("PORT").split()[1:])
        assert blocking_get(f"http://127.0.0.1:{api}/where") == (200, b"api port")
        assert blocking_get(f"http://127.0.0.1:{main}/where")[0] == 404
        assert blocking_get(f"http://127.0.0.1:{main}/stop") == (200, b"bye")
        child.wait_for_line("DONE")
    finally:
        child.kill()
