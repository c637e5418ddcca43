"""
Live progress of a long API call, shown over a WebSocket.

The page (``index.html``, served at ``/``) opens a WebSocket to
``/progress?job=<id>``, then calls the API function ``jobs.render`` with the
same id. ``render`` runs in houweb's thread pool and reports each step to the
sockets watching its job; the page moves its progress bar as they arrive.

    python examples/progress/server.py [port]     # then open http://127.0.0.1:8008/

With port 0 it picks a free port and prints ``PORT <n>`` (the tests use this).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict

import houweb

HERE = os.path.dirname(os.path.abspath(__file__))

#: The sockets watching each job, by job id.
_watchers: dict[str, set[houweb.WebSocket]] = defaultdict(set)
_lock = threading.Lock()


def _report(job: str, message: dict[str, object]) -> None:
    """Send ``message`` to every socket watching ``job`` (from any thread)."""
    with _lock:
        watchers = list(_watchers.get(job, ()))
    for socket in watchers:
        socket.send(json.dumps(message))


@houweb.webSocket("/progress")
class Progress(houweb.WebSocket):
    """Subscribes the page to the progress of one job."""

    async def connect(self, request: houweb.Request) -> None:
        self.job = request.GET().get("job", "")
        if not self.job:
            return  # no job named: refused (403)
        await self.accept()
        with _lock:
            _watchers[self.job].add(self)

    async def disconnect(self, code: int) -> None:
        with _lock:
            _watchers[self.job].discard(self)
            if not _watchers[self.job]:
                del _watchers[self.job]


@houweb.apiFunction("jobs", arg_types={"steps": int, "seconds": float})
def render(request: houweb.Request, job: str, steps: int = 40, seconds: float = 2.0) -> dict:
    """A long call (in the thread pool): ``steps`` steps over ``seconds`` seconds."""
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)  # the real work would go here
        _report(job, {"done": step, "total": steps})
    return {"job": job, "steps": steps}


@houweb.urlHandler("/")
def index(request: houweb.Request) -> houweb.Response:
    return houweb.fileResponse(os.path.join(HERE, "index.html"))


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8008
    houweb.run(port=port, in_background=True)
    print(f"PORT {houweb.serverPorts()[0]}", flush=True)
    try:
        while houweb.serverPorts():
            time.sleep(0.5)
    except KeyboardInterrupt:
        houweb.requestShutdown()


if __name__ == "__main__":
    main()
