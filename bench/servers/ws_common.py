"""What the WebSocket benchmark servers share: the echo's path and message limit."""

from __future__ import annotations

#: The path of every server's echo WebSocket.
WS_PATH = "/ws"
#: The largest message the echoes take (the 1 MiB run stays well inside).
MAX_MESSAGE = 16 * 1024 * 1024
