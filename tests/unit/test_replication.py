"""Replication of the mapping database between the instances of a cluster.

One instance changes its database (random operations, as the persistence
property test makes them); another applies the records it wrote, commit by
commit, through ``persist.apply`` (what the etcd watch feeds it).  After
every run the replica holds exactly the records of the original, the same
derived indexes and membership as a database restored from those records,
and its planner's flow tables equal a from-scratch computation.  The
generic path (a kind with no primitive: rebuild from the records) must give
the same result, so a new record kind replicates correctly the day
persist.py learns to restore it.
"""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from nvo3_ryu_app.authority import model, persist
from nvo3_ryu_app.authority.planner import Planner
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import MemoryStore

from test_persist import (MAC, OPS, PRELUDE, apply as run_op, indexes,
                          membership, restored, scenario)

PORTS = {'p1': 1, 'p2': 2}


class Recorder(MemoryStore):
    """A store that keeps every commit, as the watch would deliver them."""

    def __init__(self):
        super().__init__()
        self.commits = []

    def commit(self, changes):
        super().commit(changes)
        self.commits.append({(kind, key): value
                             for kind, key, value in changes})


def replica_of(records, rebuild=False):
    """A replica: restored from ``records``, its switches connected, a
    planner over it; and how to feed it a commit."""
    db = model.MappingDB()
    persist.restore(db, records)
    tables = FlowTables()
    planner = Planner(db, Settings(), tables)
    for dpid in list(db.nves):
        db.nve_connected(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 0.0,
                         decides=False)   # another instance decides
    planner.plan()

    def feed(changes, now):
        skipped = persist.apply(db, changes, now, rebuild=rebuild)
        assert not db.changed_records, 'applied records are not re-written'
        planner.plan()
        return skipped
    return db, planner, feed


def assert_replica(db, store):
    """``db`` holds what ``store`` holds (what the original wrote: a
    tenant system's ``last_seen`` is written now and then, not on every
    frame), and what a restore of it derives."""
    records = store.load()
    assert persist.all_records(db) == records
    fresh = restored(records)
    assert indexes(db) == indexes(fresh)
    for dpid, nve in db.nves.items():
        if nve.dyn_connected:
            fresh.nve_connected(dpid, nve.dyn_ports, nve.dyn_mac, 0.0)
    assert membership(db) == membership(fresh)


def assert_flows_recomputed(db, planner):
    for dpid in db.nves:
        assert planner.tables.table(dpid).desired == planner.expected(dpid), \
            dpid


_runs = itertools.count()


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(OPS, min_size=10, max_size=40),
       rebuild=st.booleans())
def test_a_replica_fed_the_commits_equals_the_original(ops, rebuild):
    original = model.MappingDB()
    recorder = Recorder()
    now = itertools.count(1)
    for op in PRELUDE:
        run_op(original, op, next(now))
        persist.save_changes(original, recorder)
    db, planner, feed = replica_of(recorder.load(), rebuild)
    recorder.commits.clear()
    for op in ops:
        try:
            run_op(original, op, next(now))
        except Exception:        # a refused operation changes nothing
            pass
        persist.save_changes(original, recorder)
        for changes in recorder.commits:
            assert feed(changes, next(now)) == {}
        recorder.commits.clear()
    assert_replica(db, recorder)
    assert_flows_recomputed(db, planner)


def test_the_scenario_replicates_by_either_path():
    original = model.MappingDB()
    recorder = Recorder()
    scenario(original, recorder)
    for rebuild in (False, True):
        db, planner, feed = replica_of({}, rebuild)
        for changes in recorder.commits:
            assert feed(changes, 10.0) == {}
        assert_replica(db, recorder)
        assert_flows_recomputed(db, planner)


def test_replicated_records_keep_the_switch_view_and_record_no_events():
    original = model.MappingDB()
    recorder = Recorder()
    scenario(original, recorder)
    db, planner, feed = replica_of(recorder.load())
    seq = db.event_log.seq
    att = original.attachments[(100, MAC % 1)]
    original.move(att, 1, 'p1', None, 50.0, 'packet-in')
    original.detach(200, MAC % 2, 50.0)
    original.update_vn(200, name='navy')
    recorder.commits.clear()
    persist.save_changes(original, recorder)
    feed(recorder.commits[0], 51.0)
    assert db.attachments[(100, MAC % 1)].nve == 1
    assert (200, MAC % 2) not in db.attachments
    assert db.vns[200].name == 'navy'
    # The switches' view (ports, connected) is this instance's own.
    assert db.nves[1].dyn_connected and db.nves[1].dyn_ports == PORTS
    kinds = {e['type'] for e in db.event_log.since(seq)}
    assert kinds <= {'vn-join', 'vn-leave'}, kinds
    assert_flows_recomputed(db, planner)


def test_a_record_whose_vn_is_missing_is_left_out_and_said():
    db, _, feed = replica_of({})
    skipped = feed({('nve', 1): {'name': None, 'vtep_ip': None,
                                 'origin': 'rest', 'bindings': {}},
                    ('att', (77, MAC % 1)): {
                        'nve': 1, 'port': 'p1', 'vlan': None, 'ips': {},
                        'seq': 1, 'source': 'learned', 'reachable': True,
                        'first_seen': 1.0, 'last_seen': 1.0}}, 1.0)
    assert list(skipped) == [('att', (77, MAC % 1))]
    assert db.attachments == {} and 1 in db.nves


def test_a_malformed_replicated_record_is_left_out():
    db, _, feed = replica_of({})
    skipped = feed({('vn', 5): {'name': 'bad name!', 'service': 'l2',
                                'encap': 'vxlan', 'gateway_mac': None,
                                'gateway_ips': [], 'origin': 'rest'}}, 1.0)
    assert list(skipped) == [('vn', 5)] and db.vns == {}


def test_a_vn_deleted_elsewhere_takes_what_is_left_of_it():
    """Its tenant systems and bindings go in the same change; whatever a
    race left here (a tenant system learned meanwhile) goes with it."""
    original = model.MappingDB()
    recorder = Recorder()
    scenario(original, recorder)
    db, planner, feed = replica_of(recorder.load())
    feed({('vn', 100): None}, 60.0)
    assert 100 not in db.vns
    assert all(key[0] != 100 for key in db.attachments)
    assert all(100 not in b.vnids() for nve in db.nves.values()
               for b in nve.bindings.values())
    assert_flows_recomputed(db, planner)
