"""run() in the foreground: /stop asks for shutdown from a handler; /slow takes 1 s."""

import sys
import time

import houweb


@houweb.urlHandler("/stop")
def stop(request):
    houweb.requestShutdown()
    return "stopping"


@houweb.urlHandler("/slow")
def slow(request):
    print("REACHED /slow", flush=True)  # the tests wait for this line, not for a while
    time.sleep(1)
    return "slow done"


@houweb.urlHandler("/ports")
def ports(request):
    return repr(houweb.serverPorts())


def announce():
    print("PORT", houweb.serverPorts()[0], flush=True)


from twisted.internet import reactor  # noqa: E402

reactor.callWhenRunning(announce)
houweb.run(port=0, in_background=False, shutdown_grace=5)
print("RETURNED", flush=True)
try:
    houweb.run(port=0, in_background=True)
except houweb.OperationFailed as exc:
    print("AGAIN", exc, flush=True)
sys.exit(0)
