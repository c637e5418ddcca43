"""
houweb under the name of Houdini's ``hou.webServer`` module, so code written
for it runs after changing one import::

    from houweb import webServer       # instead of: webServer = hou.webServer

Every name is houweb's own (``webServer.run is houweb.run``).
"""

from houweb import *  # noqa: F403
from houweb import __all__  # noqa: F401
