"""houweb's WebSocket echo at ``/ws`` (an ``houweb.webSocket``), and ``/hello``."""

from __future__ import annotations

import houweb

from .common import HELLO, parse_args
from .ws_common import MAX_MESSAGE, WS_PATH

options = parse_args(__doc__ or "")


@houweb.urlHandler("/hello")
def hello(request: houweb.Request) -> houweb.Response:
    return houweb.Response(HELLO, content_type="text/plain")


@houweb.webSocket(WS_PATH)
class Echo(houweb.WebSocket):
    """Sends every message back as it came."""

    max_message_size = MAX_MESSAGE
    max_pending_receive = MAX_MESSAGE

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


houweb.run(port=options.port, max_num_threads=4, in_background=False)
