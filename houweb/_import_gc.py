"""
The cyclic garbage collector while ``import houweb`` runs: paused, so that
loading Twisted, Klein and houweb (some 90,000 new objects, none of them
garbage worth finding) does not set off collection after collection, each
scanning the growing heap again. Measured on bench/servers/houweb_app.py:
about 40-50 ms of a 0.3 s cold start, more than houweb's own modules cost.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """
    Pause the cyclic garbage collector for the ``with`` block, if it was
    enabled (an application that disabled it keeps it so).

    On the way out, what the block allocated goes into the oldest generation
    without a collection (``gc.freeze()`` then ``gc.unfreeze()``), as if it
    had survived the collections it skipped: re-enabling alone would scan
    the whole block's objects at the next allocation, and full collections
    soon after, which costs what pausing saved. Nothing stays frozen, and the
    objects are collected as usual from then on. Skipped when objects are
    frozen already (an embedding application's ``gc.freeze()``), since
    ``gc.unfreeze()`` would thaw those too: the collector is only re-enabled.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
