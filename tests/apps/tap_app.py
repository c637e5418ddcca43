"""
An application for ``twistd houweb --app`` and ``python -m houweb --app``:
imported, never run as a script.
"""

import time

import houweb


@houweb.urlHandler("/hello", ports=[-1])
def hello(request):
    return houweb.Response(f"hello from port {request.port()}", content_type="text/plain")


@houweb.urlHandler("/slow")
def slow(request):
    print("REACHED /slow", flush=True)  # the tests wait for this line, not for a while
    time.sleep(float(request.GET().get("seconds", "1")))
    return houweb.Response("slow done", content_type="text/plain")


@houweb.urlHandler("/stop")
def stop(request):
    houweb.requestShutdown()
    return houweb.Response("stopping", content_type="text/plain")


@houweb.urlHandler("/state")
def state(request):
    return houweb.Response(
        f"debug={houweb.isInDebugMode()} ports={houweb.serverPorts()}", content_type="text/plain"
    )


@houweb.urlHandler("/restart")
async def restart(request):
    """requestShutdown() then run() on the reactor thread: refused at once."""
    houweb.requestShutdown()
    started = time.monotonic()
    try:
        houweb.run(port=0, in_background=True)
    except houweb.OperationFailed as exc:
        return houweb.Response(
            f"{exc} after {time.monotonic() - started:.1f}s", content_type="text/plain"
        )
    return houweb.Response("started", content_type="text/plain")
