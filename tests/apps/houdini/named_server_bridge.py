"""
A bridge as the observed Houdini 21 bridges are written, unchanged: its own
named server object (so it leaves the application's other servers alone),
port settings, a handler registered on the instance, ``run()`` in the
background with a ``port_callback``. Run as
``python -m houweb run named_server_bridge.py``.
"""

import threading

import hwebserver

SERVER_NAME = "bridge"
reported = []
stopped = threading.Event()


def _ping(request):
    return hwebserver.Response("pong from " + SERVER_NAME)


def _stop(request):
    stopped.set()
    return hwebserver.Response("stopping")


def _note_port(*args):
    for value in args:
        try:
            reported.append(int(value))
        except (TypeError, ValueError):
            continue


srv = hwebserver.Server(SERVER_NAME)
srv.setPortInfo("main", 0, 0, False, "127.0.0.1", False, ["127.0.0.1", "localhost"], False)
srv.setCORSWhitelist(["http://cors.invalid"], "main")
srv.urlHandler("/bridge/ping")(_ping)
srv.urlHandler("/bridge/stop")(_stop)
srv.run(
    port=0,
    in_background=True,
    reload_source_changes=False,
    max_request_size=512 * 1024,
    max_num_threads=4,
    port_callback=_note_port,
)
print("REPORTED", reported == srv.serverPorts()[:1], flush=True)
stopped.wait(60)
srv.requestShutdown()
print("BRIDGE STOPPED", flush=True)
