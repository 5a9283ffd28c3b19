"""The stamp (southbound/stamp.py): digests, and restarts that skip the dump.

The digest of an NVE's flow set is kept as specs change and always equals
the digest recomputed from the specs; it changes with the flow set and is
the same in every process.  A service restarted over the same store finds
NVEs that carry the stamp of what it restored in sync without dumping them
and sends nothing; the background verification then dumps them one at a
time and repairs what was changed while the app was away.  A stamp that
does not match means a dump and a repair, as without stamps.  Stamps are
written only once an NVE acknowledged everything, at most once per
``stamp_interval``, and a switch that refuses them is not stamped again.
"""

import os
import random
import subprocess
import sys

from fakeof import SimulatedNVEs, assert_same_items
from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import packets
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.service import Service
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound import stamp
from nvo3_ryu_app.southbound.channel import (Barrier, FlowChange,
                                             FlowStatsRequest, StampRequest)
from nvo3_ryu_app.southbound.flowtable import FlowTables, Memo, NveFlowTable
from nvo3_ryu_app.storage.store import MemoryStore

PORTS = {'vxlan0': 10, 'p1': 1, 'p2': 2}
MAC1, MAC2, MAC3 = '02:00:00:00:00:01', '02:00:00:00:00:02', \
    '02:00:00:00:00:03'


# --- the digest ---------------------------------------------------------------

def _specs(n):
    """Specs of distinct owners, as tuples of flows (an NVE's own are)."""
    return {('o', i): (P.flow(P.L2_FORWARD, P.PRIO_HOST,
                              {'metadata': 5001,
                               'eth_dst': '02:00:00:00:%02x:%02x' % (
                                   i // 256, i % 256)},
                              [('output', i % 7 + 1)], P.COOKIE_APP | i),)
            for i in range(n)}


def test_the_incremental_digest_equals_the_recomputed_one():
    rng = random.Random(18)
    pool = _specs(40)
    owners = list(pool)
    table = NveFlowTable(lambda spec: spec or ())
    assert table.digest() == 0
    for _ in range(400):
        batch = {}
        for owner in rng.sample(owners, rng.randint(1, 5)):
            # An owner's spec: its own, another owner's, or none.
            batch[owner] = rng.choice([pool[owner], None,
                                       pool[rng.choice(owners)]])
        table.set_owners(batch)
        assert table.digest() == stamp.digest_of(table.specs.values())
        fresh = NveFlowTable(lambda spec: spec or ())
        fresh.set_owners(dict(table.specs))
        assert fresh.digest() == table.digest()


def test_the_digest_changes_with_the_flow_set():
    pool = _specs(8)
    table = NveFlowTable(lambda spec: spec or ())
    table.set_owners(dict(pool))
    seen = {table.digest()}
    owner = ('o', 3)
    changed = (pool[owner][0]._replace(actions=(('output', 99),)),)
    table.set_owners({owner: changed})
    seen.add(table.digest())
    table.set_owners({owner: None})
    seen.add(table.digest())
    table.set_owners({owner: pool[owner]})
    assert table.digest() in seen and len(seen) == 3
    # The same flows under the other owner's name: another set of owners,
    # another digest only through the specs (the flows are the same).
    assert stamp.spec_digest(pool[owner]) != stamp.spec_digest(
        pool[('o', 4)])
    assert stamp.spec_digest(None) == 0


def test_the_digest_is_the_same_in_every_process():
    spec = next(iter(_specs(1).values()))
    code = ('import sys; sys.path.insert(0, %r); '
            'from nvo3_ryu_app.southbound import stamp; '
            'from nvo3_ryu_app.authority import pipeline as P; '
            'print(stamp.spec_digest(%r))' % (
                os.getcwd(), spec)).replace('Flow(', 'P.Flow(')
    values = set()
    for seed in ('1', '2'):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, '-c', code], env=env,
                             check=True, capture_output=True, text=True)
        values.add(int(out.stdout))
    assert values == {stamp.spec_digest(spec)}


def test_a_spec_digest_depends_on_the_code_that_builds_its_flows():
    spec = next(iter(_specs(1).values()))
    assert stamp.spec_digest(spec, salt=b'another version') != \
        stamp.spec_digest(spec)


def test_remembered_digests_are_bounded():
    digests = Memo(stamp.spec_digest, limit=4)
    pool = list(_specs(10).values())
    for spec in pool:
        assert digests.remember(spec) == stamp.spec_digest(spec)
    assert 0 < len(digests._memo) <= 4
    for spec in pool:
        assert digests(spec) == stamp.spec_digest(spec)
    assert digests(None) == 0
    digests.trim()
    assert digests._memo == {}


def test_only_what_is_asked_to_be_remembered_is_kept():
    """A layer's specs serve every member NVE: remembered; an NVE's own
    are only looked up (worked out when not there, and not kept)."""
    calls = []
    memo = Memo(lambda spec: calls.append(spec) or len(spec))
    own, shared = ('own',), ('shared', 1)
    assert memo(own) == 1 and memo(own) == 1
    assert calls == [own, own] and memo._memo == {}
    assert memo.remember(shared) == 2 and memo(shared) == 2
    assert memo.remember(shared) == 2
    assert calls == [own, own, shared] and memo._memo == {shared: 2}


def test_shared_counts_keep_the_number_of_desired_flows():
    rng = random.Random(21)
    pool = _specs(30)
    owners = list(pool)
    tables = FlowTables(build=lambda spec: spec or ())
    one, two = tables.table(1), tables.table(2)
    for _ in range(200):
        batch = {o: rng.choice([pool[o], None])
                 for o in rng.sample(owners, 4)}
        one.set_owners(batch)
        two.set_owners(batch)
        if rng.random() < 0.1:
            tables.trim()
        assert one.n_desired == two.n_desired == len(one.desired)


def test_only_our_stamp_flow_is_read_as_a_stamp():
    good = P.stamp_flow(0xABC)
    assert stamp.stamp_of([good]) == 0xABC
    assert stamp.stamp_of([]) is None
    assert stamp.stamp_of([good._replace(cookie=P.COOKIE_APP)]) is None
    assert stamp.stamp_of([good._replace(
        actions=(('metadata', 1), ('goto', 2)))]) is None


# --- restarts ---------------------------------------------------------------

def service_on(store, **settings):
    return Service(Settings(**settings), store, start_time=1.0)


def fleet(store, **settings):
    """Three NVEs of VN 5001, two tenant systems, all acknowledged and
    stamped."""
    service = service_on(store, **settings)
    service.execute(C.CreateVN(5001, 'blue'), 0.0)
    for dpid in (1, 2, 3):
        service.execute(C.RegisterNVE(dpid, '10.0.0.%d' % dpid), 0.0)
        service.execute(C.BindPort(dpid, 'p1', vnid=5001), 0.0)
    nves = SimulatedNVEs(service)
    for dpid in (1, 2, 3):
        nves.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 1.0)
    for dpid, mac in ((1, MAC1), (2, MAC2)):
        data = packets.build_arp_request(mac, '192.168.1.%d' % dpid,
                                         '192.168.1.254')
        service.packet_in(dpid, P.SOURCE, 1, 'p1', {}, data, 2.0)
    nves.drain(2.0)
    return service, nves


def ours(switch):
    return {k: v for k, v in switch.items().items()
            if k[0] != P.STAMP}


def stamp_on(switch):
    flows = [f for f in switch.flows() if f.table == P.STAMP]
    return stamp.stamp_of(flows)


def restart(nves, store, now=10.0, **settings):
    """The app dies and starts again over ``store``; the switches keep
    what they hold and connect again."""
    service = service_on(store, **settings)
    again = SimulatedNVEs(service)
    again.switches = nves.switches
    for dpid in sorted(nves.switches):
        again.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, now)
    again.drain(now)
    return service, again


def test_acknowledged_nves_carry_the_stamp_of_what_they_hold():
    store = MemoryStore()
    service, nves = fleet(store)
    for dpid, switch in nves.switches.items():
        table = service.tables[dpid]
        assert stamp_on(switch) == table.digest() == stamp.digest_of(
            table.specs.values())
        assert service.channels[dpid].stamped == table.digest()
    assert service.counters['stamp_writes'] >= 3


def test_a_restart_over_stamped_nves_sends_nothing_and_dumps_nothing():
    store = MemoryStore()
    _, nves = fleet(store)
    before = {d: ours(s) for d, s in nves.switches.items()}
    service, again = restart(nves, store)
    assert service.counters['flow_mods'] == 0
    assert service.counters['stamp_writes'] == 0
    assert service.counters['stamp_matches'] == 3
    for dpid in (1, 2, 3):
        got = again.received[dpid]
        assert [type(m) for m in got] == [StampRequest], got
        status = service.sync_status(dpid)
        assert status['in_sync'] and status['verified'] is False
        assert ours(nves.switches[dpid]) == before[dpid]
    assert service.unverified() == [1, 2, 3]


def test_the_verification_dumps_trusted_nves_one_at_a_time_and_repairs():
    store = MemoryStore()
    service0, nves = fleet(store)
    # While the app is down, someone deletes a flow of NVE 3.
    lost = next(f for f in nves.switches[3].flows()
                if ('eth_dst', MAC1) in f.match)
    nves.switches[3]._apply_one('delete', lost)
    service, again = restart(nves, store, stamp_verify_interval=0.5)
    assert service.counters['stamp_matches'] == 3
    done = []
    now = 10.0
    while service.unverified():
        due = service.audit_next(now)
        if due is not None:
            dpid, msgs = due
            done.append((now, dpid))
            assert [type(m) for m in msgs][0] is FlowStatsRequest
            again.deliver(dpid, msgs, now)
            again.drain(now)
        now += 0.25
    assert [d for _, d in done] == [1, 2, 3]
    assert [t for t, _ in done] == [10.0, 10.5, 11.0]
    assert service.counters['audit_repairs'] == 1
    assert service.counters['flow_mods'] == 1
    for dpid in (1, 2, 3):
        assert_same_items(ours(again.switches[dpid]),
                          service.authority.planner.expected(dpid),
                          'NVE %d verified' % dpid)
        assert service.sync_status(dpid)['verified'] is True
    assert service0.tables[3].digest() == service.tables[3].digest()


def test_a_stamp_that_does_not_match_means_a_dump_and_a_repair():
    store = MemoryStore()
    service0, nves = fleet(store)
    # The database changes while NVE 3 is away (its flows do not).
    service0.switch_disconnected(3, 3.0)
    data = packets.build_arp_request(MAC3, '192.168.1.3', '192.168.1.254')
    service0.packet_in(1, P.SOURCE, 2, 'p2', {}, data, 3.0)
    service0.execute(C.BindPort(1, 'p2', vnid=5001), 3.0)
    service0.packet_in(1, P.SOURCE, 2, 'p2', {}, data, 3.1)
    nves.drain(3.1)
    # Quiet for stamp_interval (1 s): NVEs 1 and 2 are stamped again.
    service0.tick(4.2)
    nves.drain(4.2)
    old = stamp_on(nves.switches[3])
    service, again = restart(nves, store)
    assert service.counters['stamp_matches'] == 2
    assert service.counters['stamp_mismatches'] == 1
    got = [type(m) for m in again.received[3]]
    assert got[:2] == [StampRequest, FlowStatsRequest], got
    assert service.counters['flow_mods'] > 0
    assert service.counters['sync_repairs'] == service.counters['flow_mods']
    assert_same_items(ours(again.switches[3]),
                      service.authority.planner.expected(3), 'NVE 3')
    assert service.unverified() == [1, 2]
    assert stamp_on(again.switches[3]) not in (None, old)
    assert stamp_on(again.switches[3]) == service.tables[3].digest()


def test_an_nve_without_a_stamp_is_dumped():
    store = MemoryStore()
    _, nves = fleet(store, stamp_interval=0)
    assert all(stamp_on(s) is None for s in nves.switches.values())
    service, again = restart(nves, store)
    assert service.counters['stamp_mismatches'] == 3
    assert service.counters['flow_mods'] == 0
    assert service.unverified() == []
    # Dumped and in sync, they are stamped now.
    for dpid, switch in again.switches.items():
        assert stamp_on(switch) == service.tables[dpid].digest()


def test_stamps_wait_for_the_barrier_and_for_a_quiet_nve():
    store = MemoryStore()
    service, nves = fleet(store, stamp_interval=5.0)
    writes = service.counters['stamp_writes']
    data = packets.build_arp_request(MAC3, '192.168.1.3', '192.168.1.254')
    service.packet_in(3, P.SOURCE, 1, 'p1', {}, data, 3.0)
    sends = service.flush(3.0)
    for msgs in sends.values():
        # The flows leave with their barrier; no stamp rides along.
        assert not any(isinstance(m, FlowChange) and m.item.table == P.STAMP
                       for m in msgs)
    for dpid, msgs in sends.items():
        nves.deliver(dpid, msgs, 3.0)
    nves.drain(3.0)
    # Stamped at 2.0, changed at 3.0: the next one waits until the NVEs
    # have been quiet for 5 s, 8.0 (stamps written under churn would not
    # match at a restart anyway).
    assert service.counters['stamp_writes'] == writes
    assert stamp_on(nves.switches[3]) != service.tables[3].digest()
    service.tick(7.9)
    assert service.flush(7.9) == {}
    service.tick(8.0)
    sends = service.flush(8.0)
    assert sorted(sends) == [1, 2, 3]
    for dpid, msgs in sends.items():
        assert [type(m) for m in msgs] == [FlowChange, Barrier]
        assert msgs[0].item == P.stamp_flow(service.tables[dpid].digest())
        assert service.sync_status(dpid)['in_sync']   # a stamp in flight
        nves.deliver(dpid, msgs, 8.0)
        assert stamp_on(nves.switches[dpid]) == \
            service.channels[dpid].stamped == service.tables[dpid].digest()
    assert service.counters['stamp_writes'] == writes + 3
    service.tick(20.0)
    assert service.flush(20.0) == {}      # nothing changed: no stamp


def test_a_switch_that_refuses_its_stamp_is_not_stamped_again():
    store = MemoryStore()
    service = service_on(store)
    service.execute(C.CreateVN(5001, 'blue'), 0.0)
    service.execute(C.RegisterNVE(1, '10.0.0.1'), 0.0)
    service.execute(C.BindPort(1, 'p1', vnid=5001), 0.0)
    nves = SimulatedNVEs(service)
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 1.0)
    nves.drain(1.0)
    channel = service.channels[1]
    # Undo the stamp as if it never came, and refuse the next one.
    channel.stamped = None
    msgs = service.flush(2.0).get(1) or []
    channel._stamp_at = None
    service.tick(3.0)
    msgs = service.flush(3.0)[1]
    assert [type(m) for m in msgs] == [FlowChange, Barrier]
    assert service.error(1, msgs[0].xid, 1, 1) == []
    service.barrier_reply(1, msgs[1].xid)
    assert service.counters['stamp_refused'] == 1
    assert service.counters['of_errors'] == 0
    assert service.sync_status(1)['in_sync'] is True
    service.tick(10.0)
    assert service.flush(10.0) == {}


def test_a_stamp_waits_for_the_nves_what_it_must_hold_depends_on():
    store = MemoryStore()
    _, nves = fleet(store)
    service = service_on(store, stamp_wait=5.0)
    again = SimulatedNVEs(service)
    again.switches = nves.switches
    # NVE 1 alone: its flood list lacks NVE 3 until NVE 3 is up again, so
    # its stamp does not match yet; it waits, neither synced nor dumped.
    again.connect(1, PORTS, '02:aa:00:00:00:01', 10.0)
    again.drain(10.0)
    status = service.sync_status(1)
    assert not status['synced'] and service.channels[1].awaiting
    assert [type(m) for m in again.received[1]] == [StampRequest]
    for dpid in (2, 3):
        again.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 11.0)
    again.drain(11.0)
    assert service.counters['stamp_matches'] == 3
    assert service.counters['flow_mods'] == 0


def test_a_stamp_that_waited_too_long_is_dumped():
    store = MemoryStore()
    _, nves = fleet(store)
    service = service_on(store, stamp_wait=5.0)
    again = SimulatedNVEs(service)
    again.switches = nves.switches
    for dpid in (1, 2):          # NVE 3 does not come back
        again.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 10.0)
    again.drain(10.0)
    service.tick(14.9)
    again.drain(14.9)
    assert service.counters['stamp_matches'] == 0
    service.tick(15.0)
    again.drain(15.0)
    assert service.counters['stamp_mismatches'] == 2
    for dpid in (1, 2):
        got = [type(m) for m in again.received[dpid]]
        assert got[:2] == [StampRequest, FlowStatsRequest], got
        assert_same_items(ours(again.switches[dpid]),
                          service.authority.planner.expected(dpid),
                          'NVE %d' % dpid)
        assert service.sync_status(dpid)['in_sync']


def _bigger_fleet(store):
    """Two VNs over five NVEs (NVE 3 in both), tenant systems on every
    NVE, all stamped."""
    service = service_on(store)
    service.execute(C.CreateVN(5001, 'blue'), 0.0)
    service.execute(C.CreateVN(5002, 'red'), 0.0)
    for dpid in (1, 2, 3, 4, 5):
        service.execute(C.RegisterNVE(dpid, '10.0.0.%d' % dpid), 0.0)
        service.execute(C.BindPort(dpid, 'p1', vnid=5001 if dpid <= 3
                                   else 5002), 0.0)
    service.execute(C.BindPort(3, 'p2', vnid=5002), 0.0)
    nves = SimulatedNVEs(service)
    for dpid in (1, 2, 3, 4, 5):
        nves.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 1.0)
    for i in range(12):
        dpid = 1 + i % 5
        port = 'p2' if dpid == 3 and i % 2 else 'p1'
        data = packets.build_arp_request(
            '02:00:00:00:01:%02x' % i, '192.168.%d.%d' % (
                1 if dpid <= 3 and port == 'p1' else 2, i + 1),
            '192.168.1.254')
        service.packet_in(dpid, P.SOURCE, PORTS[port], port, {}, data, 2.0)
    nves.drain(2.0)
    return service, nves


def test_nves_planned_as_they_connect_hold_what_eager_planning_gives():
    """After a restart an NVE's flows are planned when it connects, not
    all at the start: each NVE, as it connects and once all did, holds
    the same specs (and digest) as a service that planned every NVE at
    once first; its stamp matches; NVEs not connected have no table."""
    store = MemoryStore()
    _, nves = _bigger_fleet(store)
    lazy = service_on(store)
    eager = service_on(store)
    eager.authority.planner.plan_deferred()
    assert set(eager.tables) == {1, 2, 3, 4, 5} and not lazy.tables
    again = SimulatedNVEs(lazy)
    again.switches = nves.switches
    mirror = SimulatedNVEs(eager)
    mirror.switches = {d: s for d, s in nves.switches.items()}
    for n, dpid in enumerate((4, 1, 3, 5, 2)):
        again.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 10.0)
        mirror.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 10.0)
        for one in lazy.tables:
            assert lazy.tables[one].specs == eager.tables[one].specs, one
            assert lazy.tables[one].digest() == eager.tables[one].digest()
            assert lazy.tables[one].n_desired == eager.tables[one].n_desired
        assert len(lazy.authority.planner.deferred) == 4 - n
    again.drain(10.0)
    assert lazy.counters['stamp_matches'] == 5
    assert lazy.counters['flow_mods'] == 0
    for dpid in (1, 2, 3, 4, 5):
        assert lazy.tables[dpid].desired == \
            lazy.authority.expected_flows(dpid)


def test_nves_that_stay_away_are_planned_after_stamp_wait():
    store = MemoryStore()
    _, nves = _bigger_fleet(store)
    eager = service_on(store)
    eager.authority.planner.plan_deferred()
    lazy = service_on(store)
    again = SimulatedNVEs(lazy)
    again.switches = nves.switches
    again.connect(1, PORTS, '02:aa:00:00:00:01', 2.0)
    lazy.tick(5.0)
    assert lazy.authority.planner.deferred == {2, 3, 4, 5}
    lazy.tick(1.0 + lazy.settings.stamp_wait)
    assert not lazy.authority.planner.deferred
    for dpid in (2, 3, 4, 5):
        assert lazy.tables[dpid].specs == eager.tables[dpid].specs, dpid
    # A trace or a dry run needs every table: they plan what waits.
    other = service_on(store)
    other.trace(5001, '02:00:00:00:01:00', '02:00:00:00:01:01')
    assert not other.authority.planner.deferred
    other = service_on(store)
    other.execute(C.CreateVN(5003, 'green'), 3.0, dry_run=True)
    assert not other.authority.planner.deferred
