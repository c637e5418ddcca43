"""
Handlers the reload tests copy to a temporary directory, serve, and edit
(the VERSION line) while the server runs.
"""

import os
import threading

import houweb

VERSION = "one"


@houweb.urlHandler("/version", ports=[-1])
def version(request):
    return houweb.Response(f"{VERSION} {os.getpid()}", content_type="text/plain")


@houweb.urlHandler("/threads", ports=[-1])
def threads(request):
    """The names of the running threads: a reloading server has its watcher, houweb-reload."""
    names = sorted(thread.name for thread in threading.enumerate())
    return houweb.Response(" ".join(names), content_type="text/plain")


@houweb.urlHandler("/role", ports=[-1])
def role(request):
    """What started this process (houweb._role): the program, or a restart of it."""
    from houweb._role import this_process

    return houweb.Response(this_process.role.value, content_type="text/plain")
