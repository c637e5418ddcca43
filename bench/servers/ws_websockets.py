"""
The ``websockets`` library's echo at ``/ws`` (its asyncio server, on uvloop),
and ``/hello`` answered by its ``process_request`` hook.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from .common import HELLO, parse_args
from .ws_common import MAX_MESSAGE, WS_PATH

options = parse_args(__doc__ or "")


def hello(connection: ServerConnection, request: Any) -> Any:
    if request.path == "/hello":
        return connection.respond(HTTPStatus.OK, HELLO.decode("ascii"))
    if request.path != WS_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "not found")
    return None


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def main() -> None:
    async with serve(
        echo,
        "127.0.0.1",
        options.port,
        process_request=hello,
        max_size=MAX_MESSAGE,
        compression=None,
    ) as server:
        await server.serve_forever()


try:
    import uvloop

    uvloop.run(main())
except ImportError:  # pragma: no cover
    asyncio.run(main())
