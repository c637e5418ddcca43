"""
Two named servers (Houdini 21's ``hwebserver.Server(name)``) in the
background, side by side, written the way the observed bridges write them.
Prints ``PORT <name> <n>`` lines; stopped through their own handlers.
"""

import json
import sys
import threading

import houweb
from houweb import hwebserver


def say(*parts):
    """One line in one write: the log lines of other threads share the pipe."""
    sys.stdout.write(" ".join(str(part) for part in parts) + "\n")


#: Every handler run, as "server:what": the side effect tests look at.
seen = []
done = threading.Event()
called = []


def make(name):
    server = hwebserver.Server(name)
    # As the bridges configure theirs: the port settings, then the whitelist.
    server.setSettingsForPort({"ADDRESS": "127.0.0.1", "PORT": 0, "MAX_PORT": 0}, "main")
    server.setCORSWhitelist(["http://cors.invalid"], "main")
    server.setSecurity(allowed_hosts=["127.0.0.1", "localhost"])

    @server.urlHandler("/who")
    def who(request):
        seen.append(f"{name}:/who")
        return name

    @server.urlHandler(f"/only-{name}")
    def only(request):
        seen.append(f"{name}:/only-{name}")
        return f"only {name}"

    @server.urlHandler("/seen")
    def show(request):
        return houweb.Response(json.dumps(seen), content_type="application/json")

    @server.urlHandler("/stop")
    def stop(request):
        server.requestShutdown()

        def report():
            server.lifecycle.last.wait_stopped(10)
            say("STOPPED", name)

        threading.Thread(target=report).start()
        return "stopping"

    @server.urlHandler("/quit")
    def quit_(request):
        done.set()
        return "bye"

    return server


a = make("a")
b = make("b")


@a.apiFunction("calc")
def add(request, x, y):
    seen.append("a:calc.add")
    return x + y


@b.apiFunction("calc")
def mul(request, x, y):
    seen.append("b:calc.mul")
    return x * y


@houweb.urlHandler("/default")
def default(request):
    seen.append("default:/default")
    return "default"


def note(name):
    def callback(port):
        called.append([name, port, threading.current_thread() is threading.main_thread()])

    return callback


def houdini_note(port_name, port):
    """As a bridge written for Houdini 21 takes it: the port's name and number, as text."""
    called.append(["b", port_name, port, threading.current_thread() is threading.main_thread()])


a.run(port=0, in_background=True, port_callback=note("a"))
b.run(0, in_background=True, port_callback=houdini_note)
say("CALLED", json.dumps(called))
say("DEFAULT", json.dumps([houweb.serverPorts(), houweb.isInDebugMode()]))
houweb.requestShutdown()  # the default server does not run: a and b serve on
reloading = hwebserver.Server("r")
for attempt in (
    lambda: a.run(port=0, in_background=True),
    lambda: hwebserver.Server("w").run(port=0, in_background=False, workers=2),
    # In the foreground too: it would restart the program without a and b.
    lambda: reloading.run(
        port=0,
        in_background=False,
        reload_source_changes=True,
        port_callback=lambda port: reloading.requestShutdown(),  # served: return
    ),
):
    try:
        attempt()
        say("REFUSED nothing: it ran")
    except houweb.OperationFailed as exc:
        say("REFUSED", exc)
say("PORT a", a.serverPorts()[0])
say("PORT b", b.serverPorts()[0])
done.wait(60)
b.requestShutdown()
b.lifecycle.last.wait_stopped(10)
stopped = [a.serverPorts(), b.serverPorts()]
a.run(port=0, in_background=True)  # a stopped server object runs again
say("AGAIN", len(a.serverPorts()))
a.requestShutdown()
a.lifecycle.last.wait_stopped(10)  # its "stopped" line is logged before END
say("END", json.dumps(stopped))
