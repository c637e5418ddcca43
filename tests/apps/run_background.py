"""run() in the background: ports, debug mode, restart, double run, clean exit."""

import urllib.request

import houweb


@houweb.urlHandler("/hello")
def hello(request):
    return "hello"


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=10) as response:
        return response.read().decode()


print("BEFORE", houweb.serverPorts(), houweb.isInDebugMode(), flush=True)
houweb.run(port=0, ports=[0], debug=True, in_background=True)
first = houweb.serverPorts()
print("RUNNING", len(first), houweb.isInDebugMode(), get(first[0]), flush=True)
try:
    houweb.run(port=0, in_background=True)
except houweb.OperationFailed as exc:
    print("DOUBLE", exc, flush=True)
houweb.requestShutdown()
import time  # noqa: E402

deadline = time.monotonic() + 10
while houweb.serverPorts() and time.monotonic() < deadline:
    time.sleep(0.05)
print("AFTER", houweb.serverPorts(), houweb.isInDebugMode(), flush=True)
houweb.requestShutdown()  # not running: nothing happens
houweb.run(port=0, in_background=True)
print("AGAIN", get(houweb.serverPorts()[0]), flush=True)
print("PORT", houweb.serverPorts()[0], flush=True)
# The script ends here with the server running: it must shut down and exit.
