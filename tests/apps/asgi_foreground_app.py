"""
registerASGIApp and ``mcp=True`` under ``run()`` in the foreground, where the
server starts before the reactor (and its asyncio loop) runs. Prints
``PORT <n>`` from the app's lifespan startup; ``/stop`` shuts down, then
``RETURNED`` is printed.
"""

import houweb


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print("PORT", houweb.serverPorts()[0], flush=True)
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi ok"})


@houweb.apiFunction("geo")
def add(request, a: int, b: int = 1) -> int:
    return a + b


@houweb.urlHandler("/stop")
def stop(request):
    houweb.requestShutdown()
    return "stopping"


houweb.registerASGIApp(app, "/app")
houweb.run(port=0, mcp=True, in_background=False)
print("RETURNED", flush=True)
