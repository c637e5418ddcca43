"""
A server object takes the port another one was just asked to release, as a
bridge that restarts itself does (``stop()``: ``requestShutdown()``, then
``start()``: a new ``hwebserver.Server`` on the same port). Prints
``HANDOVER <outcome>``, then ``END``.
"""

import sys
import threading
import urllib.request

from houweb import OperationFailed, hwebserver


def say(*parts):
    """Print a line in one write: the servers' log lines go to the same stdout
    from the reactor thread, and print()'s several writes let one land inside."""
    sys.stdout.write(" ".join(str(part) for part in parts) + "\n")
    sys.stdout.flush()


entered, release = threading.Event(), threading.Event()


def make(name):
    server = hwebserver.Server(name)

    @server.urlHandler("/who")
    def who(request):
        return name

    @server.urlHandler("/slow")
    def slow(request):
        entered.set()
        release.wait(10)
        return "slow " + name

    return server


old = make("bridge_1")
old.run(port=0, in_background=True)
port = old.serverPorts()[0]
answers = []
slow = threading.Thread(
    target=lambda: answers.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/slow").read())
)
slow.start()
entered.wait(10)
old.requestShutdown()  # returns at once: its ports close on the reactor thread
new = make("bridge_2")
try:
    new.run(port=port, in_background=True)
except OperationFailed as exc:
    say("HANDOVER failed:", exc)
else:
    who = urllib.request.urlopen(f"http://127.0.0.1:{port}/who").read().decode()
    say("HANDOVER", who)
release.set()
slow.join(10)
say("OLD", answers)
new.requestShutdown()
new.lifecycle.last.wait_stopped(10)
say("END")
sys.exit(0)
