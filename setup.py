"""
The computed part of houweb's metadata; the rest is in pyproject.toml
(PEP 621), which lists what this file gives as ``dynamic``: the extras.
"""

from setuptools import setup


def _requirements(path: str) -> list[str]:
    """The requirement lines of ``path`` (comments dropped), or none if it is absent."""
    try:
        with open(path, encoding="utf-8") as lines:
            return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    except FileNotFoundError:  # an sdist without bench/
        return []


# One list for both: pip install '.[bench]' and the harness's setup step.
bench_requirements = _requirements("bench/requirements.txt")

#: run(metrics=True), --metrics: the Prometheus endpoint.
metrics_requirements = ["prometheus_client>=0.17"]
#: The documentation site (docs/): sphinx-build -W -b html docs <dir>; its
#: benchmark charts are drawn from bench/RESULTS.md with matplotlib.
docs_requirements = ["sphinx>=7", "matplotlib>=3.5"]

setup(
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
            # The metrics, scraped and parsed by prometheus_client's parser.
            *metrics_requirements,
            # The docs build without a warning (tests/test_docs.py).
            *docs_requirements,
            # python -m build makes the sdist and wheel tests/test_packaging.py installs.
            "build>=1.0",
            "starlette",  # a real ASGI framework (HTTP, streaming, WebSocket, lifespan) mounted
            "fastapi",  # a FastAPI app mounted through registerASGIApp
            "django>=4.2",  # Django's ASGI handler mounted through registerASGIApp
            "mcp>=2",  # run(mcp=True): the MCP SDK's server, and its client in tests/test_mcp.py
            # tests/test_types.py: mypy --strict; mypy-zope understands zope.interface,
            # which declares Twisted's interfaces (ITransport, IProtocol, ...).
            "mypy>=1.10",
            "mypy-zope>=1.0",
        ],
        "metrics": metrics_requirements,
        "docs": docs_requirements,
        # run(mcp=True) / --mcp: the official MCP Python SDK serves /mcp.
        "mcp": ["mcp>=2"],
        # python -m bench: the peer servers and the profiler.
        "bench": bench_requirements,
    },
)
