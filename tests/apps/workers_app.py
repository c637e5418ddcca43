"""A foreground server with two workers, for tests/test_workers.py."""

import os
import sys

import houweb


@houweb.urlHandler("/pid")
def pid(request):
    return houweb.Response(str(os.getpid()), content_type="text/plain")


@houweb.urlHandler("/parent")
def parent(request):
    return houweb.Response(str(os.getppid()), content_type="text/plain")


@houweb.urlHandler("/role")
def role(request):
    """``<pid> <role>``: what started this process (houweb._role)."""
    from houweb._role import this_process

    return houweb.Response(f"{os.getpid()} {this_process.role.value}", content_type="text/plain")


@houweb.urlHandler("/stop-other")
def stop_other(request):
    """``<pid> <role> <asked>``: another server object's requestShutdown(), and
    whether this worker then asked its parent to stop them all."""
    from houweb._role import this_process

    houweb.Server("other").requestShutdown()  # it does not run: nothing to do
    worker = this_process.worker
    asked = worker.asked_parent_to_stop if worker is not None else None
    return houweb.Response(
        f"{os.getpid()} {this_process.role.value} {asked}", content_type="text/plain"
    )


houweb.run(port=0, workers=int(sys.argv[1]) if len(sys.argv) > 1 else 2, in_background=False)
print("run() returned", os.getpid(), flush=True)
