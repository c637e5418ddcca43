"""TLS through a Twisted ``ssl:`` endpoint, with a certificate the test makes."""

from __future__ import annotations

import datetime
import ipaddress

import pytest_twisted
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

import houweb

from .conftest import messages


def self_signed(directory) -> tuple[str, str]:
    """Write a key and a certificate for ``localhost``; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


@pytest_twisted.ensureDeferred
async def test_https_endpoint_serves_handlers_and_requests_know_they_are_secure(
    serve, tmp_path, logged
):
    houweb.urlHandler("/s", ports=[-1])(lambda request: f"secure={request.isSecure()}")
    key, cert = self_signed(tmp_path)
    server = await serve(listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    tls_port = server.port_numbers()[1]
    trust = ssl.Certificate.loadPEM(open(cert, "rb").read())
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
    response = await treq.get(f"https://localhost:{tls_port}/s", agent=agent)
    assert await response.text() == "secure=True"
    assert f"listening on https://127.0.0.1:{tls_port}/ (loopback only)" in messages(logged)
    plain = await treq.get(f"http://127.0.0.1:{server.port_numbers()[0]}/s", persistent=False)
    assert await plain.text() == "secure=False"


@pytest_twisted.ensureDeferred
async def test_missing_key_file_is_operation_failed_naming_the_endpoint(registry, tmp_path):
    from houweb._config import ServerConfig
    from houweb._server import RunningServer

    entry = f"ssl:0:privateKey={tmp_path}/missing.pem"
    server = RunningServer(ServerConfig.from_arguments(port=0, listen=[entry]), reactor, registry)
    try:
        await server.start()
    except houweb.OperationFailed as exc:
        assert "missing.pem" in str(exc)
    else:
        raise AssertionError("no OperationFailed")
    assert server.port_numbers() == []


@pytest_twisted.ensureDeferred
async def test_the_readme_recipe_serves_ordinary_handlers_over_tls_with_the_token(serve, tmp_path):
    """
    README: run(port=8008, interface=..., token=..., listen=["ssl:8443:..."]).
    A listen endpoint is another address of the main port: it answers what is
    bound to the main port, to its own number or to -1; ports= extras do not.
    """
    ran: list[str] = []
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.txt").write_text("static file")
    houweb.urlHandler("/hello")(lambda request: ran.append("hello") or "hello")

    @houweb.apiFunction("scene")
    def double(request: houweb.Request, n: int) -> int:
        ran.append("api")
        return n * 2

    houweb.registerStaticFilesDirectory(str(tmp_path / "www"), "/files")
    key, cert = self_signed(tmp_path)
    server = await serve(
        interface="127.0.0.1",
        token="s3cret",
        ports=[0],
        listen=[f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
    )
    main, extra, tls = server.port_numbers()
    houweb.urlHandler("/extra", ports=[extra])(lambda request: "extra")
    houweb.urlHandler("/tls-only", ports=[tls])(lambda request: "tls only")
    trust = ssl.Certificate.loadPEM(open(cert, "rb").read())
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
    auth = {"Authorization": "Bearer s3cret"}
    base = f"https://localhost:{tls}"

    async def fetch(path: str, **kwargs: object) -> tuple[int, bytes]:
        response = await treq.request(
            kwargs.pop("method", "GET"), base + path, agent=agent, **kwargs
        )
        return response.code, await response.content()

    assert await fetch("/hello", headers=auth) == (200, b"hello")
    assert await fetch("/files/f.txt", headers=auth) == (200, b"static file")
    code, body = await fetch(
        "/api", method="POST", headers=auth, data={"json": '["scene.double", [21], {}]'}
    )
    assert code == 200 and body == b"42"
    assert (await fetch("/tls-only", headers=auth))[0] == 200
    assert (await fetch("/extra", headers=auth))[0] == 404  # bound to the extra port only
    assert ran == ["hello", "api"]
    # Without the token: 401 before anything runs.
    assert (await fetch("/hello"))[0] == 401
    assert (await fetch("/api", method="POST", data={"json": '["scene.double", [1], {}]'}))[
        0
    ] == 401
    assert ran == ["hello", "api"]
    # The main port does not answer what is bound to the TLS port's number.
    plain = await treq.get(f"http://127.0.0.1:{main}/tls-only", headers=auth, persistent=False)
    assert plain.code == 404
    await plain.content()
