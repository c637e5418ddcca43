"""The ``twistd houweb`` plugin: see houweb._tap."""

from twisted.application.service import ServiceMaker

houweb = ServiceMaker(
    "houweb",
    "houweb._tap",
    "Houdini's web server API (hou.webServer) on Twisted",
    "houweb",
)
