"""
run() in a script, for the lifecycle tests. ``python lifecycle_app.py MODE ...``:

- ``foreground GRACE``: serve until stopped, then print ``RETURNED``.
- ``background GRACE``: serve in the background, start a request that never
  ends, print ``ENDING`` and end the script.
- ``stopping GRACE``: serve in the background, start a 3 s request, call
  requestShutdown() once it runs, wait for shutdown to begin, print ``ENDING`` and end the script; the
  request's client prints ``CLIENT <answer or error>``.
- ``busy MAIN BUSY``: run() on a free main port and a busy extra port;
  print ``FAILED <message>`` and the ports still reported, then wait to be
  ended.
"""

import sys
import threading
import time
import urllib.request

import houweb

MESSAGE = "x" * 1_000_000
reached = threading.Event()


@houweb.urlHandler("/slow")
def slow(request):
    reached.set()
    print("REACHED /slow", flush=True)  # the tests wait for this line, not for a while
    time.sleep(float(request.GET().get("seconds", "1")))
    return "slow done"


@houweb.urlHandler("/stop")
def stop(request):
    started = time.perf_counter()
    houweb.requestShutdown()
    took = time.perf_counter() - started
    return f"{took:.6f} {MESSAGE}"


def foreground(grace):
    houweb.run(port=0, in_background=False, shutdown_grace=float(grace))
    print("RETURNED", flush=True)


def background(grace):
    houweb.run(port=0, in_background=True, shutdown_grace=float(grace))
    url = f"http://127.0.0.1:{houweb.serverPorts()[0]}/slow?seconds=3600"
    threading.Thread(target=lambda: urllib.request.urlopen(url), daemon=True).start()
    reached.wait(10)
    print("ENDING", flush=True)


def stopping(grace):
    houweb.run(port=0, in_background=True, shutdown_grace=float(grace))
    url = f"http://127.0.0.1:{houweb.serverPorts()[0]}/slow?seconds=3"

    def client():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                print(
                    f"CLIENT {response.read().decode()}", flush=True
                )  # one write: log lines share the pipe
        except OSError as exc:
            print(f"CLIENT {exc!r}", flush=True)

    threading.Thread(target=client).start()  # not a daemon: joined as the script ends
    reached.wait(10)
    houweb.requestShutdown()
    deadline = time.monotonic() + 10  # until shutdown has begun (the race made plain)
    while houweb.serverPorts() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ENDING", flush=True)


def busy(main, taken):
    try:
        houweb.run(port=int(main), ports=[int(taken)], in_background=False)
    except houweb.OperationFailed as exc:
        print("FAILED", exc, houweb.serverPorts(), flush=True)
        threading.Event().wait(60)


{"foreground": foreground, "background": background, "stopping": stopping, "busy": busy}[
    sys.argv[1]
](*sys.argv[2:])
