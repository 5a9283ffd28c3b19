"""Persisting the mapping database: records, save_changes, restore, and a
property test of random operations against a reopened JournalStore."""

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvo3_ryu_app.authority import model
from nvo3_ryu_app.authority import persist
from nvo3_ryu_app.authority.authority import Authority
from nvo3_ryu_app.authority.errors import MappingError
from nvo3_ryu_app.authority.owners import TsOwner
from nvo3_ryu_app.authority.model import (NVE, VN, Attachment, MappingDB,
                                          Mobility, PortBinding, Registration)
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import JournalStore, MemoryStore

MAC = '02:00:00:00:00:%02x'


def reopened(path, **kwargs):
    store = JournalStore(str(path), fsync=False, **kwargs)
    records = store.load()
    store.close()
    return records


def restored(records):
    db = MappingDB()
    persist.restore(db, records)
    return db


def indexes(db):
    """The derived state that does not depend on the switches (redirects
    and port membership are not restored: see reconnected())."""
    return {
        'by_vn': {vnid: sorted(atts) for vnid, atts in db._by_vn.items()},
        'by_nve': {dpid: sorted(keys) for dpid, keys in db._by_nve.items()},
        'by_ip': dict(db._by_ip),
        'member_counts': db._members,
        'entries': sorted(
            (e['vnid'], e['mac'], e['ip'] or '', e['nve'], e['seq'])
            for att in db.attachments.values()
            for e in db.mapping_entries(att, {'vxlan': 'vx', 'gre': 'gr'})),
    }


def membership(db):
    return ({vnid: db.members(vnid) for vnid in db.vns},
            {dpid: db.vns_of(dpid) for dpid in db.nves})


def reconnected(db, like):
    """The switches of ``like`` connect again to the restored ``db``."""
    for dpid, nve in like.nves.items():
        if nve.dyn_connected:
            db.nve_connected(dpid, nve.dyn_ports, nve.dyn_mac, 100.0)
    return db


def assert_same(db, other):
    assert persist.all_records(other) == persist.all_records(db)
    assert indexes(other) == indexes(db)
    assert membership(reconnected(other, db)) == membership(db)


def scenario(db, store):
    """A little of everything, saved after every step."""
    steps = [
        lambda: db.create_vn(100, 'red'),
        lambda: db.create_vn(200, 'blue', service='l3', encap='gre',
                             gateway_mac='02:00:00:00:ff:01',
                             gateway_ips=['10.2.0.1/24']),
        lambda: db.register_nve(1, vtep_ip='192.0.2.1', name='nve1'),
        lambda: db.nve_connected(2, {'p1': 1, 'p2': 2}, '02:aa:00:00:00:02',
                                 now=1),
        lambda: db.bind_port(1, 'p1', vnid=100),
        lambda: db.bind_port(2, 'p1', vnid=100),
        lambda: db.bind_port(2, 'p2', vlans={10: 100, '20': 200}),
        lambda: db.learn(1, 'p1', None, MAC % 1, '10.1.0.1', 2.5),
        lambda: db.learn(2, 'p2', 20, MAC % 2, '10.2.0.2', 3),
        lambda: db.learn(2, 'p2', 10, MAC % 3, None, 4),
        lambda: db.learn(2, 'p1', None, MAC % 1, '10.1.0.9', 5),   # move
        lambda: db.mark_unreachable(2, 6),
        lambda: db.update_vn(100, name='crimson'),
    ]
    for step in steps:
        step()
        persist.save_changes(db, store)


def test_every_model_field_is_kept_or_deliberately_not():
    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}
    assert names(VN) == {'vnid'} | set(persist.VN_FIELDS)
    assert names(NVE) == {'dpid'} | set(persist.NVE_FIELDS) | set(
        persist.NVE_NOT_KEPT)
    assert names(PortBinding) == {'port'} | set(persist.BINDING_FIELDS)
    # vnid and mac: the key's; a slot that holds several fields
    # (Attachment.PARTS) stands for them
    att_names = set()
    for name in names(Attachment):
        att_names.update(Attachment.PARTS.get(name, (name,)))
    assert att_names == set(
        persist.ATT_FIELDS) | set(persist.ATT_NOT_KEPT) | set(
            persist.ATT_MOBILITY) | set(persist.ATT_REGISTRATION)
    assert names(Mobility) == set(persist.MOBILITY_IF_SET) | set(
        persist.MOBILITY_NOT_KEPT)
    assert names(Registration) == set(persist.REGISTRATION_IF_SET) | set(
        persist.REGISTRATION_IN_IPS)


def test_records_of_every_kind():
    db = MappingDB()
    scenario(db, MemoryStore())
    assert persist.record_of(db, 'vn', 200) == {
        'name': 'blue', 'service': 'l3', 'encap': 'gre',
        'gateway_mac': '02:00:00:00:ff:01', 'gateway_ips': ['10.2.0.1/24'],
        'origin': 'rest'}
    assert persist.record_of(db, 'nve', 2) == {
        'name': None, 'vtep_ip': None, 'origin': 'switch',
        'bindings': {'p1': {'vnid': 100, 'origin': 'rest'},
                     'p2': {'vlans': {'10': 100, '20': 200},
                            'origin': 'rest'}},
        'role': 'nve'}
    assert persist.record_of(db, 'att', (100, MAC % 1)) == {
        'nve': 2, 'port': 'p1', 'vlan': None,
        'ips': {'10.1.0.1': None, '10.1.0.9': None}, 'seq': 2,
        'source': 'learned', 'reachable': False, 'first_seen': 2.5,
        'last_seen': 5, 'moved_at': 5, 'move_times': [5]}
    assert persist.record_of(db, 'att', (200, MAC % 2)) == {
        'nve': 2, 'port': 'p2', 'vlan': 20, 'ips': {'10.2.0.2': None},
        'seq': 1, 'source': 'learned', 'reachable': False, 'first_seen': 3,
        'last_seen': 3}
    assert persist.record_of(db, 'att', (100, MAC % 9)) is None
    assert persist.record_of(db, 'vn', 7) is None
    with pytest.raises(ValueError):
        persist.record_of(db, 'bogus', 1)


def test_scenario_survives_a_reopen(tmp_path):
    db = MappingDB()
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    scenario(db, store)
    store.close()
    db2 = restored(reopened(tmp_path))
    assert persist.all_records(db2) == persist.all_records(db)
    assert indexes(db2) == indexes(db)
    assert db2.take_changed_records() == set()
    vns, nves, entries, members = db2.take_touched()
    assert vns == {100, 200} and nves == {1, 2}
    assert entries == set(db.attachments)
    assert members == {(100, 2), (200, 2)}
    assert not any(nve.dyn_connected or nve.dyn_ports
                   for nve in db2.nves.values())
    assert len(db2.event_log) == 0
    assert db.flow_members(100) == {1, 2}        # nve 1 still redirects
    assert db2.flow_members(100) == {2}          # not after a restart
    assert db2.attachments[(100, MAC % 1)].redirect_from is None
    # The store gives plain tuples back; an attachment's key is still the
    # owner of its flows (the planner reads its kind).
    assert all(type(att.key) is TsOwner and att.key == key
               for key, att in db2.attachments.items())
    assert membership(reconnected(db2, db)) == membership(db)
    # the restored database keeps working, and keeps persisting
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    db2.detach(100, MAC % 1, 7)
    db2.learn(2, 'p2', 10, MAC % 4, '10.1.0.4', 8)
    with pytest.raises(MappingError):
        db2.learn(2, 'p2', 10, MAC % 5, '10.1.0.4', 9)   # IP in use
    persist.save_changes(db2, store)
    store.close()
    assert_same(db2, restored(reopened(tmp_path)))


def test_a_restart_from_the_journal_keeps_the_attachments_owner_keys(
        tmp_path):
    """Keys read back from a journal are plain tuples; an attachment's key
    is its flows' owner all the same, and the authority plans from it."""
    db = MappingDB()
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    scenario(db, store)
    store.close()
    records = reopened(tmp_path)
    assert all(type(key) is tuple for (kind, key) in records
               if kind == 'att')
    db2 = restored(records)
    for key, att in db2.attachments.items():
        assert key is att.key and att.key.kind == 'ts'
    auth = Authority(FlowTables(), store=JournalStore(str(tmp_path),
                                                     fsync=False))
    assert set(auth.db.attachments) == set(db.attachments)
    assert all(att.key.kind == 'ts' for att in auth.db.attachments.values())
    auth.store.close()


def test_save_changes_counts_and_skips_empty_commits():
    calls = []

    class Spy(MemoryStore):
        def commit(self, changes):
            calls.append(changes)
            super().commit(changes)

    db, store = MappingDB(), Spy()
    assert persist.save_changes(db, store) == 0
    db.create_vn(5, 'five')
    db.register_nve(9)
    assert persist.save_changes(db, store) == 2
    assert persist.save_changes(db, store) == 0
    assert len(calls) == 1
    db.delete_vn(5)
    assert persist.save_changes(db, store) == 1
    assert calls[-1] == [('vn', 5, None)]
    assert set(store.load()) == {('nve', 9)}


def test_a_failed_commit_keeps_the_records_to_save():
    class Broken(MemoryStore):
        fail = True

        def commit(self, changes):
            if self.fail:
                raise OSError('disk full')
            super().commit(changes)

    db, store = MappingDB(), Broken()
    db.create_vn(5, 'five')
    with pytest.raises(OSError):
        persist.save_changes(db, store)
    store.fail = False
    assert persist.save_changes(db, store) == 1
    assert store.load() == {('vn', 5): persist.record_of(db, 'vn', 5)}


def test_mobility_state_round_trips(tmp_path):
    db = MappingDB()
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    scenario(db, store)
    att = db.attachments[(100, MAC % 1)]
    db.freeze(att, 70.0)
    db.block(att, (1, 'p1'), 65.0, 0.0)
    db.block(att, (2, 'p2'), 66.5, 0.0)
    db.set_bid(att, 12)
    persist.save_changes(db, store)
    store.close()
    again = restored(reopened(tmp_path)).attachments[(100, MAC % 1)]
    assert again.blocked == {(1, 'p1'): 65.0, (2, 'p2'): 66.5}
    assert again.bid == 12
    assert (again.frozen_until, again.moved_at, again.move_times) == (
        70.0, 5, [5])


def test_address_bids_round_trip_in_the_ips_map(tmp_path):
    """The attachment keeps its addresses as a sorted tuple and the BIDs
    apart; the record keeps the one map ip -> BID it always had."""
    db = MappingDB()
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    scenario(db, store)
    att = db.attachments[(100, MAC % 1)]
    db.add_ip(att, '10.1.0.5', 7, 6.0)
    assert att.ips == ('10.1.0.1', '10.1.0.5', '10.1.0.9')
    assert att.ip_bids == {'10.1.0.5': 7}
    persist.save_changes(db, store)
    assert persist.record_of(db, 'att', att.key)['ips'] == {
        '10.1.0.1': None, '10.1.0.5': 7, '10.1.0.9': None}
    store.close()
    again = restored(reopened(tmp_path)).attachments[(100, MAC % 1)]
    assert (again.ips, again.ip_bids) == (att.ips, att.ip_bids)
    db.add_ip(att, '10.1.0.5', None, 7.0)     # registered again, no BID
    assert att.addresses() == {'10.1.0.1': None, '10.1.0.5': None,
                               '10.1.0.9': None}
    assert not att.ip_bids and att.ip_bids is model.EMPTY_MAP
    db.add_ip(att, '10.1.0.9', 8, 8.0)
    db.remove_ip(att, '10.1.0.9')
    assert att.ips == ('10.1.0.1', '10.1.0.5') and not att.ip_bids


def test_mobility_state_is_made_only_for_attachments_that_need_it():
    db = MappingDB()
    scenario(db, MemoryStore())
    still = db.attachments[(200, MAC % 2)]
    assert still.mobility is None
    assert (still.redirect_from, still.moved_at, still.move_times,
            still.frozen_until, still.blocked) == (None, 0.0, (), 0.0, {})
    still.frozen_until = 0.0            # the default: nothing to keep
    still.blocked = model.EMPTY_MAP
    assert still.mobility is None
    moved = db.attachments[(100, MAC % 1)]
    assert moved.mobility is not None and moved.move_times == [5]
    db.freeze(still, 9.0)
    assert still.mobility == Mobility(frozen_until=9.0)
    again = restored(persist.all_records(db))
    assert again.attachments[(200, MAC % 2)].mobility == Mobility(
        frozen_until=9.0)
    assert again.attachments[(100, MAC % 3)].mobility is None


def test_registration_state_is_made_only_for_attachments_that_need_it():
    db = MappingDB()
    scenario(db, MemoryStore())
    att = db.attachments[(200, MAC % 2)]
    assert att.registration is None
    assert (att.bid, att.ip_bids) == (None, {})
    att.bid = None                      # the default: nothing to keep
    att.ip_bids = model.EMPTY_MAP
    assert att.registration is None
    db.set_bid(att, 4)
    assert att.registration == Registration(bid=4)
    again = restored(persist.all_records(db))
    assert again.attachments[(200, MAC % 2)].registration == Registration(
        bid=4)
    assert again.attachments[(100, MAC % 3)].registration is None


def test_restore_refuses_inconsistent_records():
    db = MappingDB()
    scenario(db, MemoryStore())
    records = persist.all_records(db)
    with pytest.raises(ValueError):
        persist.restore(db, records)                  # not a fresh db
    broken = {k: v for k, v in records.items() if k != ('vn', 100)}
    with pytest.raises(persist.RestoreError, match='missing VN'):
        restored(broken)
    with pytest.raises(persist.RestoreError, match='unknown record kind'):
        restored({**records, ('tunnel', 1): {}})
    dup = dict(records)
    dup[('att', (100, MAC % 7))] = dict(records[('att', (100, MAC % 1))])
    with pytest.raises(persist.RestoreError, match='belongs to both'):
        restored(dup)


def lagging(records):
    """Records with last_seen rounded down to the persistence interval:
    a refresh is written only once it moved that far (one fsync per frame
    would bound packet-ins by the disk)."""
    out = {}
    for key, rec in records.items():
        if key[0] == 'att':
            rec = dict(rec, last_seen=None)
        out[key] = rec
    return out


def test_last_seen_refresh_is_persisted_once_it_moved_enough():
    db, store = MappingDB(), MemoryStore()
    scenario(db, store)
    db.learn(1, 'p1', None, MAC % 9, None, 10)
    persist.save_changes(db, store)
    db.learn(1, 'p1', None, MAC % 9, None, 20)          # same place, later
    assert persist.save_changes(db, store) == 0
    assert store.load()[('att', (100, MAC % 9))]['last_seen'] == 10
    db.learn(1, 'p1', None, MAC % 9, None, 10 + model.LAST_SEEN_PERSIST)
    persist.save_changes(db, store)
    assert store.load()[('att', (100, MAC % 9))]['last_seen'] == \
        10 + model.LAST_SEEN_PERSIST


# --- property test -----------------------------------------------------------

VNIDS = st.sampled_from([1, 2, 3])
DPIDS = st.sampled_from([1, 2, 3])
PORTS = st.sampled_from(['p1', 'p2'])
MACS = st.integers(1, 6).map(lambda i: MAC % i)
IPS = st.none() | st.integers(1, 4).map(lambda i: '10.0.0.%d' % i)
VLANS = st.sampled_from([10, 20])

WHERE = st.sampled_from([('p1', None), ('p2', 10), ('p2', 20), ('p1', 10),
                         ('p2', None)])
LEARN = st.tuples(st.just('learn'), DPIDS, WHERE, MACS, IPS)
# Every example starts from a few VNs, NVEs and bindings, so that the random
# operations mostly land; half of the operations are learns (and moves).
PRELUDE = [('create_vn', 1, False), ('create_vn', 2, False),
           ('create_vn', 3, True)] + [
    op for dpid in (1, 2, 3) for op in (
        ('nve_connected', dpid), ('bind_port', dpid, 'p1', 1),
        ('bind_vlans', dpid, 'p2', {10: 2, 20: 3}))]
OTHER = st.one_of(
    st.tuples(st.just('create_vn'), VNIDS, st.booleans()),
    st.tuples(st.just('update_vn'), VNIDS, st.integers(0, 3)),
    st.tuples(st.just('delete_vn'), VNIDS),
    st.tuples(st.just('register_nve'), DPIDS, st.none() | st.integers(1, 3)),
    st.tuples(st.just('nve_connected'), DPIDS),
    st.tuples(st.just('bind_port'), DPIDS, PORTS, VNIDS),
    st.tuples(st.just('bind_vlans'), DPIDS, PORTS,
              st.dictionaries(VLANS, VNIDS, min_size=1)),
    st.tuples(st.just('unbind_port'), DPIDS, PORTS),
    st.tuples(st.just('detach'), VNIDS, MACS),
    st.tuples(st.just('mark_unreachable'), DPIDS),
    st.tuples(st.just('end_redirect'), VNIDS, MACS),
    st.tuples(st.just('block'), VNIDS, MACS, DPIDS, PORTS),
)
# one_of picks each distinct branch alike; weigh learns by hand.
OPS = st.integers(0, 2).flatmap(lambda i: OTHER if i == 0 else LEARN)


def apply(db, op, now):
    name, args = op[0], op[1:]
    if name == 'create_vn':
        vnid, l3 = args
        if l3:
            db.create_vn(vnid, 'vn%d' % vnid, service='l3',
                         gateway_mac='02:00:00:00:ff:%02x' % vnid,
                         gateway_ips=['10.%d.0.1/24' % vnid], now=now)
        else:
            db.create_vn(vnid, 'vn%d' % vnid, now=now)
    elif name == 'update_vn':
        db.update_vn(args[0], name='n%d' % args[1], now=now)
    elif name == 'delete_vn':
        db.delete_vn(args[0], now=now)
    elif name == 'register_nve':
        dpid, ip = args
        db.register_nve(dpid, vtep_ip=ip and '192.0.2.%d' % ip,
                        name='nve%d' % dpid, now=now)
    elif name == 'nve_connected':
        db.nve_connected(args[0], {'p1': 1, 'p2': 2},
                         '02:aa:00:00:00:%02x' % args[0], now)
    elif name == 'bind_port':
        db.bind_port(args[0], args[1], vnid=args[2], now=now)
    elif name == 'bind_vlans':
        db.bind_port(args[0], args[1], vlans=args[2], now=now)
    elif name == 'unbind_port':
        db.unbind_port(args[0], args[1], now=now)
    elif name == 'learn':
        dpid, (port, vlan), mac, ip = args
        db.learn(dpid, port, vlan, mac, ip, now)
    elif name == 'detach':
        db.detach(args[0], args[1], now)
    elif name == 'mark_unreachable':
        db.mark_unreachable(args[0], now)
    elif name in ('end_redirect', 'block'):
        att = db.attachments.get(args[:2])
        if att is None:
            return
        if name == 'end_redirect':
            db.end_redirect(att)
        else:                     # what mobility.MoveArbiter does
            db.block(att, args[2:], now + 60, now)
            db.freeze(att, now + 30)


_runs = itertools.count()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=15, max_size=50),
       snapshot_every=st.sampled_from([10, 10000]))
def test_random_operations_survive_a_reopen(tmp_path, ops, snapshot_every):
    path = tmp_path / ('run%d' % next(_runs))
    db = MappingDB()
    store = JournalStore(str(path), fsync=False,
                         snapshot_every=snapshot_every)
    store.load()
    for now, op in enumerate(PRELUDE + ops, 1):
        try:
            apply(db, op, float(now))
        except MappingError:
            pass
        persist.save_changes(db, store)
    store.close()
    records = reopened(path)
    assert lagging(records) == lagging(persist.all_records(db))
    db2 = restored(records)
    assert persist.all_records(db2) == records
    assert indexes(db2) == indexes(db)
    assert db2._redirects == {}
    assert db2.take_changed_records() == set()
    vns, nves, entries, _ = db2.take_touched()
    assert (vns, nves, entries) == (set(db.vns), set(db.nves),
                                    set(db.attachments))
    assert membership(reconnected(db2, db)) == membership(db)


# --- records with a good checksum and bad content ----------------------------

def test_every_record_the_database_writes_passes_the_check():
    db = MappingDB()
    scenario(db, MemoryStore())
    for (kind, key), value in persist.all_records(db).items():
        persist.check_record(kind, key, value)


BAD_RECORDS = [
    ('vn', 100, {'service': 'l2'}, 'missing field'),
    ('vn', 0, {'name': 'x', 'service': 'l2', 'encap': 'vxlan',
               'gateway_mac': None, 'gateway_ips': [], 'origin': 'rest'},
     'vnid'),
    ('vn', 7, {'name': 'x', 'service': 'l3', 'encap': 'vxlan',
               'gateway_mac': '02:00:00:00:00:01',
               'gateway_ips': ['fe80::1%eth0/64'], 'origin': 'rest'},
     'gateway'),
    ('nve', 1, {'name': None, 'vtep_ip': 'fe80::1%eth0', 'origin': 'rest',
                'bindings': {}}, 'zone'),
    ('nve', 1, {'name': None, 'vtep_ip': '10.0.0.1', 'origin': 'rest',
                'bindings': {'..': {'vnid': 5, 'origin': 'rest'}}},
     'port_name'),
    ('nve', 1, {'name': None, 'vtep_ip': '10.0.0.1', 'origin': 'rest',
                'bindings': {'p1': {'vlans': {'010': 5},
                                    'origin': 'rest'}}}, 'VLAN'),
    ('att', (5, '02:00:00:00:00:0A'), {}, 'canonical'),
    ('att', (5, MAC % 1, 3), {}, 'key'),
    ('att', (5, MAC % 1), {
        'nve': 1, 'port': 'p1', 'vlan': None,
        'ips': {'fe80::1%eth0': None}, 'seq': 1, 'source': 'learned',
        'reachable': True, 'first_seen': 0, 'last_seen': 0}, 'zone'),
    ('att', (5, MAC % 1), {
        'nve': 1, 'port': 'p1', 'vlan': None, 'ips': {'FE80::1': None},
        'seq': 1, 'source': 'learned', 'reachable': True,
        'first_seen': 0, 'last_seen': 0}, 'canonical'),
    ('att', (5, MAC % 1), {
        'nve': 1, 'port': 'p1', 'vlan': None, 'ips': {}, 'seq': '1',
        'source': 'learned', 'reachable': True, 'first_seen': 0,
        'last_seen': 0}, 'seq'),
    ('other', 1, {}, 'unknown kind'),
]


@pytest.mark.parametrize('kind,key,value,why', BAD_RECORDS)
def test_bad_record_content_is_refused(kind, key, value, why):
    with pytest.raises(ValueError, match=why):
        persist.check_record(kind, key, value)


def test_a_bad_record_in_the_journal_names_file_and_byte(tmp_path):
    """A scoped address written by an older version (or by hand, with a
    good CRC) stops the start at its frame instead of a KeyError."""
    from nvo3_ryu_app.authority import authority
    from nvo3_ryu_app.southbound.flowtable import FlowTables
    from nvo3_ryu_app.storage.store import JOURNAL, StoreCorrupt
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    store.commit([('vn', 5, {'name': 'blue', 'service': 'l2',
                             'encap': 'vxlan', 'gateway_mac': None,
                             'gateway_ips': [], 'origin': 'rest'})])
    offset = store.stats()['journal_bytes']
    store.commit([('nve', 1, {'name': None, 'vtep_ip': 'fe80::1%eth0',
                              'origin': 'rest', 'bindings': {}})])
    store.close()
    with pytest.raises(StoreCorrupt) as err:
        authority.Authority(FlowTables(), store=JournalStore(str(tmp_path),
                                                             fsync=False))
    assert err.value.path == str(tmp_path / JOURNAL)
    assert err.value.offset == offset
    assert 'zone' in str(err.value)
    recovered = authority.Authority(FlowTables(), store=JournalStore(
        str(tmp_path), fsync=False, recover_from_snapshot=True))
    assert set(recovered.db.vns) == {5} and not recovered.db.nves


def test_a_learned_address_is_stored_as_the_check_expects():
    """os-ken writes an IPv4-mapped IPv6 source as ::ffff:10.0.0.5; the
    database (and so the store) keeps every address in one form, or the
    next start would refuse its own record."""
    from os_ken.lib.packet import ethernet, ipv6, packet
    from nvo3_ryu_app.authority import authority, packets
    from nvo3_ryu_app.authority import pipeline as P
    from nvo3_ryu_app.southbound.flowtable import FlowTables
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('02:00:00:00:00:02', MAC % 1, 0x86DD))
    pkt.add_protocol(ipv6.ipv6(src='::ffff:10.0.0.5', dst='fd00::2', nxt=59))
    pkt.serialize()
    data = bytes(pkt.data)
    assert packets.parse_frame(data).ip == '::ffff:a00:5'
    auth = authority.Authority(FlowTables(), store=MemoryStore())
    auth.db.create_vn(100, 'red')
    auth.switch_connected(1, {'p1': 1}, '02:aa:00:00:00:01', 0.0)
    auth.db.bind_port(1, 'p1', vnid=100)
    outs = auth.packet_in(1, P.SOURCE, 1, 'p1', {}, data, 1.0)
    att = auth.db.attachments[(100, MAC % 1)]
    assert att.addresses() == {'::ffff:a00:5': None} and outs
    auth.db.add_ip(att, 'FD00::5', None, 2.0)
    assert set(att.ips) == {'::ffff:a00:5', 'fd00::5'}
    for (kind, key), value in persist.all_records(auth.db).items():
        persist.check_record(kind, key, value)
