"""How the app gives freed heap memory back to the operating system.

Why: Python hands every block over 512 bytes to the C library's malloc
(dict and list tables, message buffers, journal batches).  A burst of
attachments grows thousands of per-NVE tables step by step and sends
megabytes of flow-mods; what is freed behind them stays in glibc's heap as
holes between live blocks, and glibc only returns memory at the top of the
heap.  After a capacity run (1,000 NVEs, 100,000 tenant systems) the heap
held ~24 MB free of ~75 MB, about 200 bytes of resident memory per mapping
entry that nothing used (benchmarks/README.md, "capacity").
``malloc_trim(0)`` gives the whole free pages inside those holes back
(``MADV_DONTNEED``) without moving a live block.

The policy, checked on the app's timer tick:

* only where the C library has ``malloc_trim`` (glibc); elsewhere nothing
  is done and the app logs so at start (:attr:`HeapTrimmer.available`);
* when the free heap is at least ``min_free`` bytes (``mallinfo2``);
* when the switches were quiet since the previous tick (no packet-in, no
  flow change): during a burst the pages would be faulted straight back
  in, and the trim (1-1.5 ms on a 75 MB heap) would delay packet-ins;
  after a burst, it runs on the first quiet tick;
* at most once per ``interval`` seconds, and under load that never
  pauses, once per ``busy_interval`` seconds all the same.

What it did is counted in the app's counters (``heap_trims``,
``heap_trimmed_bytes``, ``heap_trim_seconds``): ``nvo3_heap_trims_total``
and the other ``nvo3_heap_*`` metrics.
"""

import collections
import ctypes
import os
import time


class _MallInfo2(ctypes.Structure):
    # glibc >= 2.33 (Debian 12 has 2.36); mallinfo() wraps at 4 GiB.
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
        'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


class Glibc:
    """The two calls of the process's C library the policy needs."""

    def __init__(self):
        libc = ctypes.CDLL(None)        # the process's own C library
        self._trim = libc.malloc_trim   # AttributeError where it is not glibc
        self._trim.argtypes = [ctypes.c_size_t]
        self._trim.restype = ctypes.c_int
        self._info = libc.mallinfo2
        self._info.argtypes = []
        self._info.restype = _MallInfo2

    def free_bytes(self):
        """Bytes free inside the main heap and its arenas."""
        return self._info().fordblks

    def trim(self):
        """Return free pages to the system; True if any was."""
        return bool(self._trim(0))


def _glibc():
    try:
        return Glibc()
    except (OSError, AttributeError):
        return None


_PAGE = os.sysconf('SC_PAGE_SIZE')


def resident_bytes():
    """This process's resident set size."""
    with open('/proc/self/statm', 'rb') as handle:
        return int(handle.read().split()[1]) * _PAGE


class HeapTrimmer:
    """Apply the policy; :meth:`tick` is called from the app's timer with
    a number that changes whenever the app handled switch traffic."""

    def __init__(self, interval=5.0, min_free=4 << 20, busy_interval=60.0,
                 clock=time.monotonic, libc=None, rss=resident_bytes,
                 counters=None):
        self.interval = interval
        self.min_free = min_free
        self.busy_interval = busy_interval
        self.clock = clock
        self.libc = _glibc() if libc is None else libc
        self.rss = rss
        self.counters = collections.Counter() if counters is None \
            else counters
        self._last_trim = clock()
        self._activity = None

    @property
    def available(self):
        """Does this C library trim (glibc)?"""
        return self.libc is not None

    def tick(self, activity):
        """Trim if the policy says so; returns the bytes given back (0 when
        it did not trim)."""
        quiet, self._activity = activity == self._activity, activity
        if self.libc is None or self.interval <= 0:
            return 0
        since = self.clock() - self._last_trim
        if since < self.interval or (not quiet and since < self.busy_interval):
            return 0
        if self.libc.free_bytes() < self.min_free:
            return 0
        before = self.rss()
        started = time.perf_counter()
        self.libc.trim()
        # The event loop waits this long: counted, as GC pauses are.
        self.counters['heap_trim_seconds'] += time.perf_counter() - started
        released = max(0, before - self.rss())
        self._last_trim = self.clock()
        self.counters['heap_trims'] += 1
        self.counters['heap_trimmed_bytes'] += released
        return released
