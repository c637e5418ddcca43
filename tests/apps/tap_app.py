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
