"""How the app runs Python's cyclic garbage collector.

Why: the mapping database, the NVEs' flow specs and os-ken's own state are
long-lived and almost free of reference cycles (they are freed by reference
counting), yet CPython's full collections walk all of them again and again,
and every one of them is a stall of the event loop that REST requests and
packet-ins wait behind.  The figures that chose this policy (capacity runs,
``nvo3_gc_pause_seconds``) are in benchmarks/README.md.

The policy:

* the state loaded at start is frozen (``gc.freeze()``: moved to a
  permanent generation the collector does not walk);
* the survivors of every collection are frozen too: no object is walked
  twice, so a collection only walks what was created since the last one.
  Freezing does not keep anything alive: an object is still freed when
  its last reference goes (reference counting), only a *cycle* that
  becomes garbage after it was frozen waits for the full collection below.
  Freezing less often (only after full, or generation-1 and 2,
  collections) left many more long young collections and a worse REST
  p99, and freezing after every collection did not grow memory per entry;
* every ``full_interval`` seconds everything is unfrozen and collected
  once, so a cycle that became garbage after being frozen is reclaimed
  (one long pause per interval instead of one per quarter of growth);
* ``threshold0`` (0: CPython's 700) young-generation allocations between
  collections.  Raising it made collections rarer but each one longer,
  and REST latency worse.

All of it is visible in the ``nvo3_gc_pause_seconds`` histogram and the
``nvo3_gc_frozen_objects`` gauge.
"""

import gc
import time


class GcPolicy:
    """Apply the policy; :meth:`tick` is called from the app's timer."""

    def __init__(self, threshold0=0, full_interval=3600.0,
                 clock=time.monotonic):
        self.full_interval = full_interval
        self.clock = clock
        self._last_full = clock()
        self._in_full = False
        _, t1, t2 = gc.get_threshold()
        if threshold0 > 0:
            gc.set_threshold(threshold0, t1, t2)
        gc.callbacks.append(self._on_gc)
        gc.collect()
        gc.freeze()

    def _on_gc(self, phase, _info):
        if phase == 'stop' and not self._in_full:
            gc.freeze()

    def tick(self):
        """Unfreeze and collect everything once per ``full_interval``."""
        if self.full_interval <= 0 or \
                self.clock() - self._last_full < self.full_interval:
            return False
        self._last_full = self.clock()
        self._in_full = True
        try:
            gc.unfreeze()
            gc.collect()
        finally:
            self._in_full = False
        gc.freeze()
        return True

    def close(self):
        """Stop freezing after collections (tests that build several apps)."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
