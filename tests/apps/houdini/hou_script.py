"""
A script as written for Houdini's Python shell: ``hou.webServer``, and the
scene API where it exists (here it does not: houweb's ``hou`` stand-in says so).
"""

import sys

import hou


@hou.webServer.urlHandler("/hello")
def hello(request):
    try:
        hou.node("/obj")
    except AttributeError as exc:
        return hou.webServer.Response(str(exc))
    return hou.webServer.Response("a scene")


@hou.webServer.urlHandler("/stop")
def stop(request):
    hou.webServer.requestShutdown()
    return hou.webServer.Response("stopping")


hou.webServer.run(int(sys.argv[1]), in_background=False)
