"""Giving the freed C heap back: when the policy trims, and that it does."""

import pytest

from nvo3_ryu_app import heaptrim
from nvo3_ryu_app.heaptrim import HeapTrimmer


class FakeLibc:
    """A heap with ``free`` bytes free; a trim gives them all back."""

    def __init__(self, free):
        self.free = free
        self.resident = 100 << 20
        self.trims = 0

    def free_bytes(self):
        return self.free

    def trim(self):
        self.trims += 1
        self.resident -= self.free
        self.free = 0
        return True


@pytest.fixture
def trimmer():
    now = [0.0]
    libc = FakeLibc(10 << 20)
    tr = HeapTrimmer(interval=5.0, min_free=4 << 20, busy_interval=60.0,
                     clock=lambda: now[0], libc=libc,
                     rss=lambda: libc.resident)
    tr.now, tr.fake = now, libc
    return tr


def test_a_quiet_tick_after_the_interval_gives_the_free_heap_back(trimmer):
    trimmer.now[0] = 6.0
    assert trimmer.tick(10) == 0          # activity since the last tick
    trimmer.now[0] = 6.5
    assert trimmer.tick(10) == 10 << 20   # quiet: trimmed
    assert trimmer.counters['heap_trims'] == 1
    assert trimmer.counters['heap_trimmed_bytes'] == 10 << 20
    assert trimmer.counters['heap_trim_seconds'] >= 0.0


def test_no_trim_while_the_switches_are_busy_until_the_busy_interval(
        trimmer):
    activity = 0
    for tick in range(1, 125):
        trimmer.now[0] = tick * 0.5
        activity += 1
        trimmer.tick(activity)
        if trimmer.now[0] < 60.0:
            assert trimmer.fake.trims == 0
    assert trimmer.fake.trims == 1        # once, at 60 s, all the same


def test_at_most_one_trim_per_interval(trimmer):
    trimmer.now[0] = 5.0
    trimmer.tick(1)
    trimmer.tick(1)
    assert trimmer.fake.trims == 1
    trimmer.fake.free = 8 << 20
    trimmer.now[0] = 9.0
    trimmer.tick(1)
    assert trimmer.fake.trims == 1
    trimmer.now[0] = 10.0
    trimmer.tick(1)
    assert trimmer.fake.trims == 2


def test_a_heap_with_little_free_is_left_alone(trimmer):
    trimmer.fake.free = (4 << 20) - 1
    trimmer.now[0] = 10.0
    trimmer.tick(1)
    trimmer.tick(1)
    assert trimmer.fake.trims == 0
    assert trimmer.counters['heap_trims'] == 0


def test_interval_zero_never_trims(trimmer):
    trimmer.interval = 0
    trimmer.now[0] = 1000.0
    trimmer.tick(1)
    trimmer.tick(1)
    assert trimmer.fake.trims == 0


def test_without_malloc_trim_nothing_is_done():
    tr = HeapTrimmer(libc=None)
    tr.libc = None                          # a C library other than glibc
    assert not tr.available
    assert tr.tick(1) == 0 and tr.tick(1) == 0


def test_glibc_gives_back_the_holes_a_burst_leaves():
    """The real C library: blocks Python hands to malloc (over 512 B),
    most freed and a few kept between them, leave holes that only a trim
    returns."""
    libc = heaptrim._glibc()   # pylint: disable=protected-access
    assert libc is not None, 'Debian 12 has glibc 2.36: malloc_trim'
    blocks = [bytes(4000) for _ in range(20000)]     # ~80 MB
    kept = blocks[::16]                               # pin the heap
    del blocks
    assert libc.free_bytes() > 50 << 20
    now = [100.0]
    tr = HeapTrimmer(interval=1.0, min_free=4 << 20, clock=lambda: now[0],
                     libc=libc)
    now[0] += 2.0
    tr.tick(0)
    released = tr.tick(0)
    assert released > 40 << 20
    assert libc.free_bytes() > 0        # the holes are still free: reused
    assert tr.counters['heap_trims'] == 1
    assert len(kept) == 1250
