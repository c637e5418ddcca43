from setuptools import setup

with open("README.rst", encoding="utf-8") as readme:
    long_description = readme.read()


def _requirements(path: str) -> list[str]:
    """The requirement lines of ``path`` (comments dropped), or none if it is absent."""
    try:
        with open(path, encoding="utf-8") as lines:
            return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    except FileNotFoundError:  # an sdist without bench/
        return []


# One list for both: pip install '.[bench]' and the harness's setup step.
bench_requirements = _requirements("bench/requirements.txt")

setup(
    name="houweb",
    version="0.1.0",
    description="Houdini's embedded web server API (hou.webServer) as a plain Python package, on Twisted",
    long_description=long_description,
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.9",
    packages=["houweb", "twisted.plugins"],
    package_data={"houweb": ["py.typed", "_web/*.js", "_web/*.html"]},
    install_requires=[
        # 24.7.0 fixes out-of-order pipelined responses (CVE-2023-46137) and
        # request smuggling (CVE-2022-24801).
        # [tls]: pyOpenSSL and service_identity, for ssl: endpoints.
        # Below the next major release: houweb uses a few private names of
        # Twisted (tests/test_private_names.py lists them); raise the bound
        # once that test passes against the new release.
        "twisted[tls]>=24.7.0,<27",
        "klein>=23.12.0",
        # Streaming multipart/form-data parser (treq depends on it too); never
        # python-multipart, which installs the same import name.
        "multipart>=1.1.0",
        # A faster event loop under Twisted's asyncio reactor (+10% req/s on
        # hello-world); houweb falls back to asyncio's loop without it.
        'uvloop>=0.19; sys_platform != "win32" and platform_python_implementation == "CPython"',
        # Watches the application's sources for reload_source_changes: native
        # file events (inotify, FSEvents, ReadDirectoryChangesW) with batching.
        "watchfiles>=0.21",
        # WebSockets (hwebserver's webSocket): autobahn's RFC 6455 protocol on
        # Twisted (handshake checks, framing, masking, fragmentation, ping/pong,
        # UTF-8 checks, close handshake) instead of a hand-written one.
        # Below the next major release, for the private name in
        # tests/test_private_names.py.
        "autobahn>=24.4.2,<27",
        # registerASGIApp: the ASGI reference library (Django's), for the
        # spec's ASGI 2 -> 3 adapter instead of a hand-written one.
        "asgiref>=3.7",
    ],
    extras_require={
        "test": [
            "treq>=23.11.0",
            "pytest>=7.4",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "cryptography",  # self-signed certificates for the TLS tests
            # /api/openapi.json must validate with a standard validator ...
            "openapi-spec-validator>=0.7",
            # ... and a standard generator must build a working client from it.
            "openapi-python-client>=0.28",
            # Checks real calls against the JSON Schemas it documents.
            "jsonschema>=4.18",
            "flask",  # a real WSGI framework's multipart upload through registerWSGIApp
            "starlette",  # a real ASGI framework (HTTP, streaming, WebSocket, lifespan) mounted
            "fastapi",  # a FastAPI app mounted through registerASGIApp
            "django>=4.2",  # Django's ASGI handler mounted through registerASGIApp
            "mcp>=2",  # run(mcp=True): the MCP SDK's server, and its client in tests/test_mcp.py
        ],
        # run(mcp=True) / --mcp: the official MCP Python SDK serves /mcp.
        "mcp": ["mcp>=2"],
        # python -m bench: the peer servers and the profiler.
        "bench": bench_requirements,
    },
    entry_points={"console_scripts": ["houweb = houweb.__main__:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
    ],
)
