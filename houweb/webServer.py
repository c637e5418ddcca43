"""
houweb under the name of Houdini's ``hou.webServer`` module, so code written
for it runs after changing one import::

    from houweb import webServer       # instead of: webServer = hou.webServer

Every name is houweb's own (``webServer.run is houweb.run``).
"""

from typing import Any

import houweb
from houweb import __all__

# Names are forwarded on first use rather than star-imported: ``import *``
# would resolve houweb's names imported on first use (``WebSocket`` and
# autobahn with it) when this module is imported.


def __getattr__(name: str) -> Any:
    """:returns: houweb's ``name`` (imported now if houweb imports it on first use)."""
    if name in __all__:
        return getattr(houweb, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """:returns: this module's names, houweb's public ones included."""
    return sorted(set(globals()) | set(__all__))
