"""
The cyclic garbage collector while ``import houweb`` runs: held back, so that
loading Twisted, Klein and houweb (some 90,000 new objects, none of them
garbage worth finding) does not set off collection after collection, each
scanning the growing heap again. Measured on bench/servers/houweb_app.py:
about 40-50 ms of a 0.3 s cold start, more than houweb's own modules cost.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: The first generation's threshold while ``import houweb`` runs: above the
#: ~90,000 objects the import keeps, so that it sets off no collection, yet a
#: bound. The collector's settings are the process's: another thread making
#: cyclic garbage meanwhile still has it collected, every this many objects
#: (``gc.disable()`` kept all of it until the import ended: gigabytes from a
#: thread that churns, the import itself slowed down by sharing the GIL).
IMPORT_THRESHOLD = 250_000


@contextmanager
def collector_paused() -> Iterator[None]:
    """
    Raise the collector's first threshold to :data:`IMPORT_THRESHOLD` for
    the ``with`` block, if it is lower and automatic collection is on (an
    application that disabled the collector, or set its threshold to 0,
    keeps it so); the threshold is put back after, unless someone set
    another meanwhile (theirs is kept).

    On the way out, what the block allocated goes into the oldest generation
    without a collection (``gc.freeze()`` then ``gc.unfreeze()``), as if it
    had survived the collections it skipped: restoring the threshold alone
    would scan the whole block's objects at the next allocation, and full
    collections soon after, which costs what pausing saved. Nothing stays
    frozen: the unreachable objects among them (some 2,000 from Twisted's
    and attrs' imports) go at the next full collection, or ``gc.collect()``
    (:func:`houweb.run` in the foreground freezes them with the rest of the
    start-up heap). Skipped when objects are frozen already (an embedding
    application's ``gc.freeze()``), since ``gc.unfreeze()`` would thaw those
    too.
    """
    threshold = gc.get_threshold()
    if not gc.isenabled() or not 0 < threshold[0] < IMPORT_THRESHOLD:
        yield
        return
    raised = (IMPORT_THRESHOLD, *threshold[1:])
    gc.set_threshold(*raised)
    try:
        yield
    finally:
        if gc.get_threshold() == raised:
            gc.set_threshold(*threshold)
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
