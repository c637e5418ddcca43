"""
run() after run(), for the lifecycle tests. ``python restart_app.py MODE ...``:

- ``restart COUNT``: COUNT times, a background run() right after
  requestShutdown(); print ``RESTARTED <count>``.
- ``foreground_after_background [GRACE]``: a background run(),
  requestShutdown(), then a foreground run() (shutdown grace GRACE, default
  5) until a signal; print ``RETURNED``.
- ``waiting_foreground``: a background run() with a 3 s request in flight,
  requestShutdown(), then a foreground run() that waits for it; print
  ``HANDLING`` once run() handles SIGTERM, the client ``CLIENT <answer>``,
  then ``RETURNED``.
- ``from_async``: an async handler calls requestShutdown() then run();
  print ``ASYNC <its answer>``.
- ``stopped_reactor background|foreground``: other code runs and stops
  Twisted's reactor, then run(); print ``FAILED <message>``.
- ``race ROUNDS``: each round two threads call run() at once; print
  ``BOTH <how many rounds both started>``.
"""

import sys
import threading
import time
import urllib.request

import houweb


@houweb.urlHandler("/hello")
def hello(request):
    return "hello"


@houweb.urlHandler("/slow")
def slow(request):
    say("REACHED /slow")  # the tests wait for this line, not for a while
    time.sleep(float(request.GET().get("seconds", "1")))
    return "slow done"


reached = []


def say(line):
    """One write per line, so a log line from another thread cannot split it."""
    reached.append(line)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=10) as response:
        return response.read().decode()


def restart(count):
    done = 0
    for _ in range(int(count)):
        houweb.run(port=0, in_background=True, shutdown_grace=5)
        assert get(houweb.serverPorts()[0]) == "hello"
        houweb.requestShutdown()
        done += 1
    say(f"RESTARTED {done}")


def foreground_after_background(grace="5"):
    houweb.run(port=0, in_background=True)
    houweb.requestShutdown()
    houweb.run(port=0, in_background=False, shutdown_grace=float(grace))
    say("RETURNED")


def waiting_foreground():
    import signal

    houweb.run(port=0, in_background=True, shutdown_grace=30)
    url = f"http://127.0.0.1:{houweb.serverPorts()[0]}/slow?seconds=3"

    def client():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                say(f"CLIENT {response.read().decode()}")
        except OSError as exc:
            say(f"CLIENT {exc!r}")

    def handling():
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        say("HANDLING")

    threading.Thread(target=client).start()
    while "REACHED /slow" not in reached:
        time.sleep(0.01)
    houweb.requestShutdown()
    threading.Thread(target=handling, daemon=True).start()
    houweb.run(port=0, in_background=False)
    say("RETURNED")


def from_async():
    @houweb.urlHandler("/restart")
    async def restart_here(request):
        houweb.requestShutdown()
        started = time.monotonic()
        try:
            houweb.run(port=0, in_background=True, shutdown_grace=5)
        except houweb.OperationFailed as exc:
            return f"{exc} after {time.monotonic() - started:.1f}s"
        return "started"

    houweb.run(port=0, in_background=True, shutdown_grace=5)
    url = f"http://127.0.0.1:{houweb.serverPorts()[0]}/restart"
    with urllib.request.urlopen(url, timeout=30) as response:
        say(f"ASYNC {response.read().decode()}")


def stopped_reactor(mode):
    from twisted.internet import reactor

    reactor.callWhenRunning(reactor.stop)
    reactor.run()
    try:
        houweb.run(port=0, in_background=mode == "background")
    except houweb.OperationFailed as exc:
        say(f"FAILED {exc}")


def race(rounds):
    sys.setswitchinterval(1e-6)  # threads take turns as often as possible: races show
    both = 0
    for _ in range(int(rounds)):
        barrier = threading.Barrier(2)
        started = []

        def start(barrier=barrier, started=started):
            barrier.wait()
            try:
                houweb.run(port=0, in_background=True, shutdown_grace=5)
                started.append(True)
            except houweb.OperationFailed:
                pass

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        both += len(started) == 2
        houweb.requestShutdown()
        deadline = time.monotonic() + 10  # shutdown has begun: the next round may start
        while houweb.serverPorts() and time.monotonic() < deadline:
            time.sleep(0.01)
    say(f"BOTH {both}")


{
    "restart": restart,
    "foreground_after_background": foreground_after_background,
    "waiting_foreground": waiting_foreground,
    "from_async": from_async,
    "stopped_reactor": stopped_reactor,
    "race": race,
}[sys.argv[1]](*sys.argv[2:])
