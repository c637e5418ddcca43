"""
The application the WebSocket flow-control tests (issue 15.2) measure from
outside: its RSS is read from /proc while clients push or refuse data.

- ``/held``: ``receive()`` waits until ``/release`` is requested, then
  answers each message with the count received so far.
- ``/flood``: on ``"await"``, sends FLOOD messages of 1 MiB, awaiting each;
  on ``"thread"``, the same from a thread of its own, waiting on each
  future; on ``"forget"``, sends them without awaiting. Prints ``SENT ALL``
  after the last, ``DISCONNECT <code>`` when the connection ends.
"""

import asyncio
import threading

import houweb

CHUNK = b"x" * (1024 * 1024)
FLOOD = 200
RELEASED = asyncio.Event()


@houweb.urlHandler("/release")
async def release(request):
    RELEASED.set()
    return "released"


@houweb.webSocket("/held")
class Held(houweb.WebSocket):
    count = 0

    async def receive(self, text_data=None, bytes_data=None):
        await RELEASED.wait()
        Held.count += 1
        await self.send(str(Held.count))


@houweb.webSocket("/flood")
class Flood(houweb.WebSocket):
    max_pending_send = 8 * 1024 * 1024

    async def receive(self, text_data=None, bytes_data=None):
        if text_data == "thread":
            threading.Thread(target=self.flood_from_a_thread, daemon=True).start()
            return
        for _ in range(FLOOD):
            if text_data == "await":
                await self.send(bytes_data=CHUNK)
            else:
                self.send(bytes_data=CHUNK)
        print("SENT ALL", flush=True)

    def flood_from_a_thread(self):
        for _ in range(FLOOD):
            self.send(bytes_data=CHUNK).result(timeout=120)
        print("SENT ALL", flush=True)

    async def disconnect(self, code):
        print("DISCONNECT", code, flush=True)


houweb.run(port=0, in_background=True)
print("PORT", houweb.serverPorts()[0], flush=True)

threading.Event().wait()
