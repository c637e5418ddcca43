"""
An application that configured Python's logging runs houweb in the
background, serves one request, stops it, then checks what houweb left
behind. Lines: ``PYLOG <logger> <level> <message>`` (from logging),
``CHECK <name> <value>``.
"""

import logging
import sys
import urllib.request
import warnings

from twisted.logger import Logger

import houweb
from houweb import _application

logging.basicConfig(
    stream=sys.stdout, level=logging.INFO, format="PYLOG %(name)s %(levelname)s %(message)s"
)
showwarning = warnings.showwarning
access = "--access-log" in sys.argv


@houweb.urlHandler("/hello")
def hello(request):
    return "hello"


@houweb.urlHandler("/boom")
def boom(request):
    raise RuntimeError("kaboom")


houweb.run(port=0, in_background=True, access_log=access)
port = houweb.serverPorts()[0]
print("CHECK showwarning-kept-while-running", warnings.showwarning is showwarning, flush=True)
for path in ("/hello", "/boom"):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()
    except OSError:
        pass
houweb.requestShutdown()
print("CHECK stopped", _application.default_server().lifecycle.last.wait_stopped(10), flush=True)
Logger(namespace="houweb").info("AFTER-STOP event")  # nobody forwards it to logging now
print("CHECK showwarning-kept", warnings.showwarning is showwarning, flush=True)
print("DONE", flush=True)
