"""run() in the background: ports, debug mode, restart, double run, clean exit."""

import sys
import urllib.request

import houweb


def say(*parts):
    """Print one line in one write: print() writes each part and separator
    on its own, and the reactor thread's log lines (debug mode logs each
    request) could land between them ("RUNNING<log line> 2 True hello")."""
    sys.stdout.write(" ".join(str(part) for part in parts) + "\n")
    sys.stdout.flush()


@houweb.urlHandler("/hello")
def hello(request):
    return "hello"


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=10) as response:
        return response.read().decode()


say("BEFORE", houweb.serverPorts(), houweb.isInDebugMode())
houweb.run(port=0, ports=[0], debug=True, in_background=True)
first = houweb.serverPorts()
say("RUNNING", len(first), houweb.isInDebugMode(), get(first[0]))
try:
    houweb.run(port=0, in_background=True)
except houweb.OperationFailed as exc:
    say("DOUBLE", exc)
houweb.requestShutdown()
import time  # noqa: E402

deadline = time.monotonic() + 10
while houweb.serverPorts() and time.monotonic() < deadline:
    time.sleep(0.05)
say("AFTER", houweb.serverPorts(), houweb.isInDebugMode())
houweb.requestShutdown()  # not running: nothing happens
houweb.run(port=0, in_background=True)
say("AGAIN", get(houweb.serverPorts()[0]))
say("PORT", houweb.serverPorts()[0])
# The script ends here with the server running: it must shut down and exit.
