"""
A script as written for Houdini's hython, unchanged: ``import hwebserver``,
handlers and an API function, and ``run()`` called by the script itself.
Run as ``python -m houweb run hwebserver_script.py PORT``.
"""

import sys

import hwebserver


@hwebserver.urlHandler("/hello")
def hello(request):
    return hwebserver.Response("Hello from " + __name__ + " " + " ".join(sys.argv[1:]))


@hwebserver.apiFunction("geo")
def vector_length(request, x, y, z):
    return (x * x + y * y + z * z) ** 0.5


@hwebserver.urlHandler("/stop")
def stop(request):
    hwebserver.requestShutdown()
    return hwebserver.Response("stopping")


if __name__ == "__main__":
    hwebserver.run(int(sys.argv[1]), debug=False)
    print("SCRIPT RETURNED", flush=True)
