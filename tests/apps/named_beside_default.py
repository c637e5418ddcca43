# ruff: noqa: I001 - houweb must be imported first: it installs the asyncio reactor
"""
A named server started in the background while the default server runs in
the foreground (``houweb.run()`` in the main thread), on the same reactor.
"""

import sys
import threading

import houweb  # first: it installs the asyncio reactor
from houweb import hwebserver
from twisted.internet import reactor


def say(*parts):
    """One line in one write: the log lines of other threads share the pipe."""
    sys.stdout.write(" ".join(str(part) for part in parts) + "\n")


seen = []
c = hwebserver.Server("c")
# No port in run(): the main port's settings say where and for whom.
c.setSettingsForPort({"PORT": 0, "ADDRESS": "127.0.0.1", "ALLOWED_HOSTS": ["127.0.0.1"]}, "main")


@c.urlHandler("/who")
def c_who(request):
    seen.append("c:/who")
    return "c"


@c.urlHandler("/stop")
def c_stop(request):
    c.requestShutdown()

    def report():
        c.lifecycle.last.wait_stopped(10)
        say("STOPPED c")

    threading.Thread(target=report).start()
    return "stopping"


@houweb.urlHandler("/who")
def default_who(request):
    seen.append("default:/who")
    return "default"


@houweb.urlHandler("/seen")
def show(request):
    return ",".join(seen)


@houweb.urlHandler("/quit")
def quit_(request):
    houweb.requestShutdown()
    return "bye"


def start_c():
    # From another thread, once the foreground reactor runs.
    c.run(in_background=True, port_callback=lambda port: say("PORT c", port))
    say("PORT default", houweb.serverPorts()[0])


reactor.callWhenRunning(lambda: threading.Thread(target=start_c).start())
houweb.run(port=0, in_background=False)
say("RETURNED", houweb.serverPorts(), c.serverPorts())
