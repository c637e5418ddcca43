"""
HTTPS for a port given ``SSL_*`` and ``SECURE_HSTS_*`` settings
(``setSettingsForPort``): the TLS context a port with ``SSL_CERTIFICATE``
listens with, the redirect of plain-HTTP requests to HTTPS
(``SSL_REDIRECT``), and the ``Strict-Transport-Security`` header of answers
sent over TLS.

The redirect is decided when a request's headers are in (through the
:class:`~houweb._guards.HeaderGuard`), so a refused or redirected request
has no body read and reaches no handler. As Houdini documents it, a request
without ``Upgrade-Insecure-Requests: 1`` is refused with 403 instead of
redirected (a browser sends that header on navigations; a script that
posts in plain HTTP is told no rather than silently sent elsewhere).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from OpenSSL import crypto
from twisted.internet import ssl
from twisted.python.filepath import FilePath

from ._errors import OperationFailed
from ._guards import HostAllowList, Refusal, split_domain_port
from ._port_settings import PEMSource, PortSettings
from ._request import Request
from ._response import Response

#: The 403 of a plain-HTTP request to an ``SSL_REDIRECT`` port that did not
#: ask to be upgraded.
INSECURE_REFUSED = (
    "Forbidden: this port answers over HTTPS only "
    "(send Upgrade-Insecure-Requests: 1 to be redirected)"
)
#: The most a certificate chain or key file may hold (a chain is a few KiB).
_MAX_PEM = 1024 * 1024
_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _read(source: PEMSource, key: str, port_name: str) -> bytes:
    """:returns: the PEM bytes of ``source``: itself, or the file it names."""
    if isinstance(source, bytes):
        return source
    if source.lstrip().startswith("-----BEGIN"):
        return source.encode("ascii")
    try:
        # Non-blocking and regular files only: a FIFO without a writer would
        # block run(), /dev/zero would be read until memory runs out.
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OperationFailed(f"port {port_name!r}: {key} {source!r} is not a regular file")
            data = file.read(_MAX_PEM + 1)
    except OSError as exc:
        raise OperationFailed(
            f"port {port_name!r}: cannot read {key} {source!r}: {exc.strerror or exc}"
        ) from None
    if len(data) > _MAX_PEM:
        raise OperationFailed(
            f"port {port_name!r}: {key} {source!r} is over {_MAX_PEM // 1024**2} MiB: not PEM"
        )
    return data


def context_factory(settings: PortSettings, port_name: str) -> ssl.CertificateOptions:
    """
    :returns: the TLS options of a port with ``SSL_CERTIFICATE``: its
        certificate chain (the first certificate is the server's, the rest
        its chain), the key (``SSL_CERTIFICATE_KEY``, else looked for in the
        certificate's PEM), the Diffie-Hellman parameters if given, and
        ``SSL_VERIFY_PEER``: a client certificate is asked for, and one that
        is sent must verify against the system's trusted authorities (a
        client that sends none is served, as OpenSSL's ``SSL_VERIFY_PEER``
        means for a server).
    :raises OperationFailed: naming the port and the file that is missing or
        not PEM.
    """
    assert settings.ssl_certificate is not None
    chain_pem = _read(settings.ssl_certificate, "SSL_CERTIFICATE", port_name)
    key_source = settings.ssl_certificate_key or settings.ssl_certificate
    key_pem = _read(key_source, "SSL_CERTIFICATE_KEY", port_name)
    try:
        chain = [
            crypto.load_certificate(crypto.FILETYPE_PEM, c) for c in _CERTIFICATE.findall(chain_pem)
        ]
        if not chain:
            raise ValueError("no PEM certificate in SSL_CERTIFICATE")
        where = "SSL_CERTIFICATE_KEY" if settings.ssl_certificate_key else "SSL_CERTIFICATE"
        try:
            # A callback, never None: OpenSSL's default asks for an encrypted
            # key's passphrase on the terminal, blocking run() there.
            key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem, passphrase=_no_passphrase)
        except _Encrypted:
            raise ValueError(
                f"the private key in {where} is encrypted; houweb has no passphrase for it "
                "(decrypt it, e.g. openssl pkey -in key.pem -out plain.pem)"
            ) from None
        except crypto.Error:
            raise ValueError(f"no PEM private key in {where}") from None
        public = crypto.dump_publickey(crypto.FILETYPE_PEM, chain[0].get_pubkey())
        if crypto.dump_publickey(crypto.FILETYPE_PEM, key) != public:
            raise ValueError(
                "SSL_CERTIFICATE_KEY is not the private key of SSL_CERTIFICATE's "
                "(first) certificate"
            )
        options: dict[str, Any] = {}
        if settings.ssl_dh_params is not None:
            if not os.path.isfile(settings.ssl_dh_params):
                raise ValueError(f"SSL_DH_PARAMS {settings.ssl_dh_params!r} does not exist")
            options["dhParameters"] = ssl.DiffieHellmanParameters.fromFile(
                FilePath(settings.ssl_dh_params)
            )
        if settings.ssl_verify_peer:
            options["trustRoot"] = ssl.platformTrust()
        factory = ssl.CertificateOptions(
            privateKey=key, certificate=chain[0], extraCertChain=chain[1:], **options
        )
        if settings.ssl_verify_peer:
            factory.requireCertificate = False  # ask for one, serve clients without
        factory.getContext()  # the key must match the certificate: fail now, not per connection
    except Exception as exc:  # noqa: BLE001 - OpenSSL's errors are many; each names the problem
        raise OperationFailed(f"port {port_name!r}: bad TLS settings: {exc}") from None
    return factory


class _Encrypted(Exception):
    """The private key asks for a passphrase."""


def _no_passphrase(*_: object) -> bytes:
    raise _Encrypted


@dataclass(frozen=True)
class HTTPSRedirect:
    """
    ``SSL_REDIRECT`` on one plain-HTTP port: where its requests are sent.

    :param host: ``SSL_REDIRECT_HOST`` (``host[:port]``), or ``None``: the
        request's host, on ``tls_port``.
    :param tls_port: the server's first TLS port, if it has one (else 443).
    :param exempt_hosts: the ``SSL_REDIRECT_EXEMPT`` entries that are hosts.
    :param exempt_paths: those that are paths (``/health`` and below it).
    """

    host: str | None
    tls_port: int | None
    exempt_hosts: HostAllowList
    exempt_paths: tuple[str, ...]

    @classmethod
    def of(cls, settings: PortSettings, tls_port: int | None) -> HTTPSRedirect:
        """:returns: the redirect ``settings`` ask for."""
        exempt = settings.ssl_redirect_exempt
        return cls(
            settings.ssl_redirect_host,
            tls_port,
            HostAllowList(e for e in exempt if not e.startswith("/")),
            tuple(e.rstrip("/") or "/" for e in exempt if e.startswith("/")),
        )

    def refusal(
        self, headers: Any, host: list[bytes] | None, target: bytes, secure: bool
    ) -> Refusal | None:
        """
        :param headers: the request's twisted.web ``Headers``.
        :param host: the Host (or X-Forwarded-Host) the guard checked.
        :param target: the request target as sent.
        :param secure: whether it arrived over TLS.
        :returns: the redirect (301) or the refusal (403), or ``None`` to serve it.
        """
        if secure or self._exempt(host, target):
            return None
        upgrade = headers.getRawHeaders(b"upgrade-insecure-requests")
        if not upgrade or upgrade[-1].strip() != b"1":
            return Refusal(403, INSECURE_REFUSED)
        location = f"https://{self._host(host)}{target.decode('latin-1')}"
        return Refusal(
            301,
            "Moved Permanently",
            (("Location", location), ("Vary", "Upgrade-Insecure-Requests")),
        )

    def _exempt(self, host: list[bytes] | None, target: bytes) -> bool:
        if host and self.exempt_hosts.patterns and self.exempt_hosts.allows(host[0]):
            return True
        path = target.split(b"?", 1)[0].decode("latin-1")
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.exempt_paths)

    def _host(self, host: list[bytes] | None) -> str:
        if self.host is not None:
            return self.host
        domain, _ = split_domain_port(host[0].decode("latin-1")) if host else ("", "")
        domain = domain or "localhost"
        if self.tls_port is None or self.tls_port == 443:
            return domain
        return f"{domain}:{self.tls_port}"


def hsts_value(settings: PortSettings) -> str | None:
    """:returns: the ``Strict-Transport-Security`` value ``settings`` ask for, ``None`` for none."""
    if not settings.secure_hsts_seconds:
        return None
    value = f"max-age={settings.secure_hsts_seconds}"
    if settings.secure_hsts_include_subdomains:
        value += "; includeSubDomains"
    if settings.secure_hsts_preload:
        value += "; preload"
    return value


class HSTS:
    """
    A response filter: answers sent over TLS on a port with
    ``SECURE_HSTS_SECONDS`` get ``Strict-Transport-Security`` (never those
    in plain HTTP: a browser ignores it there, as RFC 6797 says).

    :param by_port: the header's value by listening port number.
    """

    def __init__(self, by_port: dict[int, str]) -> None:
        self.by_port = by_port

    def __call__(self, request: Request, response: Response) -> None:
        value = self.by_port.get(request.port())
        if (
            value is not None
            and request.isSecure()
            and not response.header("Strict-Transport-Security")
        ):
            response.setHeader("Strict-Transport-Security", value)
