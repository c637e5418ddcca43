"""
houweb under the name of Houdini's ``hwebserver`` module, so code written for
it runs after changing one import::

    from houweb import hwebserver      # instead of: import hwebserver

Every name is houweb's own (``hwebserver.urlHandler is houweb.urlHandler``).
"""

from houweb import *  # noqa: F403
from houweb import __all__  # noqa: F401
