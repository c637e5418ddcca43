"""
The servers under test, one module each, all answering the same endpoints
(see :mod:`bench.servers.common`). Each is started as
``python -m bench.servers.<module> --port N --files DIR``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSpec:
    """One server under test."""

    #: The name in tables and on the command line.
    name: str
    #: The module under ``bench.servers`` that runs it.
    module: str
    #: Modules it needs; a server whose modules are missing is skipped.
    needs: tuple[str, ...] = ()


#: The reference every figure is divided by.
BASELINE = "klein-pool"

SERVERS = (
    ServerSpec("houweb", "houweb_app", ("houweb",)),
    ServerSpec(BASELINE, "klein_pool", ("klein",)),
    ServerSpec("twisted-web", "twisted_web", ("twisted",)),
    ServerSpec("flask", "flask_app", ("flask",)),
    ServerSpec("aiohttp", "aiohttp_app", ("aiohttp",)),
    ServerSpec("uvicorn", "starlette_app", ("uvicorn", "starlette")),
)
