"""The garbage-collection policy: frozen state, bounded full collections."""

import gc
import weakref

import pytest

from nvo3_ryu_app.gcpolicy import GcPolicy


class Node:
    def __init__(self):
        self.other = None


def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


@pytest.fixture
def policy():
    saved = gc.get_threshold()
    now = [0.0]
    pol = GcPolicy(threshold0=5000, full_interval=60.0, clock=lambda: now[0])
    pol.now = now
    yield pol
    pol.close()
    gc.unfreeze()
    gc.set_threshold(*saved)
    gc.collect()


def test_state_at_start_is_frozen_and_young_collections_are_rarer(policy):
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == 5000


@pytest.mark.parametrize('generation', [0, 1, 2])
def test_survivors_of_a_collection_are_not_walked_again(policy, generation):
    kept = [cycle() for _ in range(1000)]
    frozen = gc.get_freeze_count()
    gc.collect(generation)            # as CPython runs them
    assert gc.get_freeze_count() >= frozen + 2 * len(kept)


def test_frozen_objects_are_still_freed_by_reference_counting(policy):
    obj = Node()                      # no cycle
    probe = weakref.ref(obj)
    gc.collect()
    del obj
    assert probe() is None


def test_a_cycle_that_dies_after_freezing_is_reclaimed_by_the_full_interval(
        policy):
    doomed = cycle()
    probe = weakref.ref(doomed)
    gc.collect()                      # frozen with the survivors
    del doomed
    gc.collect()
    assert probe() is not None        # frozen: not collected yet
    assert policy.tick() is False     # not due
    policy.now[0] += 61.0
    assert policy.tick() is True      # unfreeze, collect, freeze again
    assert probe() is None
    assert gc.get_freeze_count() > 0
