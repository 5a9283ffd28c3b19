"""Announced live migrations (authority/migrations.py, dualflows.py), on the
simulated flow table.

The authority runs as in the app (commands through ``execute``, packet-ins,
ticks); its planned flows are pushed into fake switches (tests/fakeof.py)
and frames are sent through them.  After every step, every NVE's
incrementally planned flows must equal a full recompute, and every switch
must hold exactly that.

Topology: VN blue (5001) on nve1..nve3 (VTEP 10.0.0.<n>), ports p1 and p2
of every NVE bound to it, p3 of nve2 carrying it on VLAN 30; A on nve1/p1
is the vNIC that migrates, B on nve2/p1, C on nve3/p1.
"""

import pytest
from os_ken.lib.packet import arp, ethernet, icmp, ipv4 as os_ipv4, packet

import fakeof
from fakeof import FakeNetwork, arp_request, assert_same_items, garp, ipv4
from nvo3_ryu_app.authority import authority
from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.errors import Conflict, NotFound
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import MemoryStore

BLUE = 5001
A, B, C_, D = ('02:00:00:00:00:0a', '02:00:00:00:00:0b',
               '02:00:00:00:00:0c', '02:00:00:00:00:0d')
IP_A, IP_B, IP_C, IP_D = ('192.168.1.1', '192.168.1.2', '192.168.1.3',
                          '192.168.1.4')
PORTS = {'vxlan0': 10, 'p1': 1, 'p2': 2, 'p3': 3}
NVE = {n: '%016x' % n for n in (1, 2, 3)}
TIMEOUT = 30.0


class World:
    """An authority, its fake switches, and a clock."""

    def __init__(self, store=None, **options):
        opts = dict(migration_timeout=TIMEOUT, move_probe_timeout=0.05,
                    port_down_grace=2.0)
        opts.update(options)
        self.store = store if store is not None else MemoryStore()
        self.auth = authority.Authority(FlowTables(), Settings(**opts),
                                        store=self.store)
        self.db = self.auth.db
        self.net = FakeNetwork()
        self.now = 1.0

    def at(self, now):
        self.now = now
        return now

    def run(self, command):
        return self.auth.execute(command, self.now)

    def connect(self, dpid):
        self.auth.switch_connected(dpid, dict(PORTS), '02:aa:00:00:00:%02x'
                                   % dpid, self.now)

    def sync(self):
        """Push the planned changes, then check incremental == recompute ==
        switches."""
        self.net.sync_from(self.auth.planner)
        for dpid in sorted(self.db.nves):
            want = self.auth.planner.expected(dpid)
            assert_same_items(self.auth.planner.tables[dpid].desired, want,
                              'NVE %d: incremental != recompute' % dpid)
            assert_same_items(self.net.switch(dpid).items(), want,
                              'NVE %d: switch != recompute' % dpid)

    def send(self, dpid, port, pkt):
        return self.net.send(dpid, port, pkt)

    def frame_in(self, dpid, port, data, cookie=0, table=P.SOURCE,
                 reg6=0):
        outs = self.auth.packet_in(dpid, table, PORTS[port], port,
                                   {'reg6': reg6, 'cookie': cookie,
                                    'metadata': BLUE}, data,
                                   self.now)
        self.sync()
        return outs

    def migrate(self, mac=A, nve=2, port='p2', vlan=None):
        done = self.run(C.Migrate(NVE[nve], port, mac, BLUE, vlan=vlan))
        self.sync()
        return done

    def where(self, mac=A):
        att = self.db.attachments.get((BLUE, mac))
        return None if att is None else (att.nve, att.port, att.seq)

    def events(self, *kinds):
        return self.auth.event_log.since(0, kinds=set(kinds))

    def switches(self):
        return {d: self.net.switch(d).items() for d in sorted(self.db.nves)}


def make(**options):
    world = World(**options)
    world.run(C.CreateVN(BLUE, 'blue'))
    for dpid in (1, 2, 3):
        world.run(C.RegisterNVE(dpid, '10.0.0.%d' % dpid))
        world.connect(dpid)
        world.run(C.BindPort(dpid, 'p1', vnid=BLUE))
        world.run(C.BindPort(dpid, 'p2', vnid=BLUE))
    world.run(C.BindPort(2, 'p3', vlans={30: BLUE}))
    for dpid, mac, ip in ((1, A, IP_A), (2, B, IP_B), (3, C_, IP_C)):
        world.db.learn(dpid, 'p1', None, mac, ip, world.now)
    world.auth.commit(world.now)
    world.sync()
    return world


@pytest.fixture
def world():
    return make()


def garp_bytes(mac=A, ip=IP_A):
    return fakeof.garp_bytes(mac, ip)


def echo_reply_bytes(src=A, dst=C_, src_ip=IP_A, dst_ip=IP_C):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst, src, 0x0800))
    pkt.add_protocol(os_ipv4.ipv4(src=src_ip, dst=dst_ip, proto=1))
    pkt.add_protocol(icmp.icmp(type_=0, data=icmp.echo(id_=1, seq=1)))
    pkt.serialize()
    return bytes(pkt.data)


def probe_answer(mac=A, ip=IP_A):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(P.PROBE_MAC, mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=2, src_mac=mac, src_ip=ip,
                             dst_mac=P.PROBE_MAC, dst_ip='0.0.0.0'))
    pkt.serialize()
    return bytes(pkt.data)


def to_a(world, dpid=3, src=C_, src_ip=IP_C):
    return world.send(dpid, 'p1', ipv4(src, A, src_ip, IP_A))


# --- dual delivery --------------------------------------------------------

def test_every_nve_delivers_to_both_places_once_announced(world):
    before = to_a(world)
    assert before.points() == {(1, 'p1')}
    done = world.migrate()
    assert done['action'] == 'started' and done['state'] == 'awaited'
    assert done['from'] == {'nve': NVE[1], 'port': 'p1', 'vlan': None}
    assert done['to'] == {'nve': NVE[2], 'port': 'p2', 'vlan': None}
    assert done['deadline'] == world.now + TIMEOUT
    # A third NVE: one tunnel copy to each place, each delivered there only.
    res = to_a(world)
    assert res.points() == {(1, 'p1'), (2, 'p2')}, res
    assert sorted(dst for _, dst, _, _ in res.underlay) == [1, 2]
    assert not res.packet_ins
    # The new NVE's own tenant system: the local port and a copy to nve1.
    res = to_a(world, dpid=2, src=B, src_ip=IP_B)
    assert res.points() == {(1, 'p1'), (2, 'p2')}, res
    assert [dst for _, dst, _, _ in res.underlay] == [1]
    # The old NVE's: its local port and a copy to nve2.
    world.db.learn(1, 'p2', None, D, IP_D, world.now)
    world.auth.commit(world.now)
    world.sync()
    res = world.send(1, 'p2', ipv4(D, A, IP_D, IP_A))
    assert res.points() == {(1, 'p1'), (2, 'p2')}, res
    assert [dst for _, dst, _, _ in res.underlay] == [2]
    # Nothing else changed: B is still reached at its one place.
    assert world.send(3, 'p1', ipv4(C_, B, IP_C, IP_B)).points() == {
        (2, 'p1')}


def test_the_new_nve_answers_arp_and_admits_the_vnic_reporting_it(world):
    world.migrate()
    # B, on the new NVE, resolves A: answered there, nothing leaves it.
    res = world.send(2, 'p1', arp_request(B, IP_B, IP_A))
    assert res.points() == {(2, 'p1')} and not res.underlay, res
    _, _, reply = res.only_delivery()
    assert (reply['arp_op'], reply['arp_sha']) == (2, A)
    # A's first frame at its new port is forwarded at once *and* copied to
    # the authority, by a flow whose cookie says it was forwarded.
    res = world.send(2, 'p2', ipv4(A, C_, IP_A, IP_C))
    assert res.points() == {(3, 'p1')}, res
    assert [(d, t) for d, t, _ in res.packet_ins] == [(2, P.SOURCE)]
    arrival = [f for t, f in world.net.switch(2).trace if t == P.SOURCE][0]
    assert arrival.priority == P.PRIO_ARRIVAL
    assert arrival.cookie & P.COOKIE_FORWARDED
    assert ('meter', 2) not in arrival.actions     # a meter would drop it
    # Its announcement is heard by the VN, never answered in its name.
    res = world.send(2, 'p2', garp(A, IP_A))
    assert {(1, 'p1'), (2, 'p1'), (3, 'p1')} <= res.points(), res
    assert (2, 'p2') not in res.points()
    assert len(res.packet_ins) == 1


def test_the_first_frame_completes_the_migration_as_one_move(world):
    world.migrate()
    seq = world.where()[2]
    world.at(5.0)
    outs = world.frame_in(2, 'p2', echo_reply_bytes(),
                          cookie=P.COOKIE_FORWARDED)
    # The old place is up: it is probed (law 4); nothing is re-injected.
    assert [(o.dpid, o.actions) for o in outs] == [(1, [('output', 1)])]
    assert world.where() == (1, 'p1', seq)
    mig = world.db.attachments[(BLUE, A)].migration
    assert mig.arrived == 5.0
    # Meanwhile the frames still go to both places, and the new NVE stops
    # copying them to the authority.
    assert to_a(world).points() == {(1, 'p1'), (2, 'p2')}
    assert not world.send(2, 'p2', ipv4(A, C_, IP_A, IP_C)).packet_ins
    assert world.auth.next_wakeup() == pytest.approx(5.05)
    # The frame that was forwarded is not held: a second one is dropped
    # as news (no second probe).
    assert world.frame_in(2, 'p2', echo_reply_bytes(),
                          cookie=P.COOKIE_FORWARDED) == []
    # Silence at the old place: a move, the sequence number advanced once.
    assert world.auth.tick(world.at(5.06)) == []
    world.sync()
    assert world.where() == (2, 'p2', seq + 1)
    move, = world.events('move')
    assert (move['how'], move['old_nve'], move['nve']) == (
        'migration', NVE[1], NVE[2])
    done, = world.events('migration-completed')
    assert (done['nve'], done['port'], done['location_seq']) == (
        NVE[2], 'p2', seq + 1)
    assert (done['started'], done['arrived'], done['old_port']) == (
        1.0, 5.0, 'p1')
    assert world.auth.take_moves()[-1] is done       # timed to switch-over
    assert world.db.migrating == set()
    # Every member NVE delivers to the new place only; the source flows at
    # the new port are the plain ones (anti-spoofing back).
    assert to_a(world).points() == {(2, 'p2')}
    res = world.send(2, 'p2', ipv4(A, C_, '192.168.1.99', IP_C))
    assert res.points() == set() and len(res.packet_ins) == 1


def test_an_old_place_already_gone_completes_at_once(world):
    world.migrate()
    world.auth.port_changed(1, 'p1', None, world.at(4.0))
    world.sync()
    # Break before make: the old port went first; the frames still reach
    # the new place.
    assert to_a(world).points() == {(2, 'p2')}
    world.at(4.5)
    assert world.frame_in(2, 'p2', garp_bytes(),
                          cookie=P.COOKIE_FORWARDED) == []
    assert world.where()[:2] == (2, 'p2')
    assert [e['type'] for e in world.events(
        'move', 'migration-completed')] == ['move', 'migration-completed']


def test_a_frame_punted_before_the_arrival_flows_is_reinjected(world):
    world.migrate()
    world.auth.port_changed(1, 'p1', None, world.at(4.0))
    # Punted by the port's catch-all (no forwarded bit): held, and put back
    # into the pipeline once the flows of the move precede it.
    outs = world.frame_in(2, 'p2', garp_bytes())
    assert [(o.dpid, o.actions) for o in outs] == [
        (2, [('output', 'TABLE')])]
    assert world.where()[:2] == (2, 'p2')


def test_a_cancelled_migration_leaves_every_nve_as_it_was(world):
    before = world.switches()
    seq = world.where()
    world.migrate()
    assert world.switches() != before
    world.at(3.0)
    cancelled = world.run(C.CancelMigration(BLUE, A))
    assert cancelled['to']['port'] == 'p2'
    world.sync()
    assert world.switches() == before
    assert world.where() == seq
    event, = world.events('migration-cancelled')
    assert event['reason'] == 'requested'
    assert to_a(world).points() == {(1, 'p1')}
    with pytest.raises(NotFound):
        world.run(C.CancelMigration(BLUE, A))


def test_a_cancel_during_the_arrival_check_keeps_the_old_place(world):
    world.migrate()
    world.at(5.0)
    world.frame_in(2, 'p2', garp_bytes(), cookie=P.COOKIE_FORWARDED)
    world.run(C.CancelMigration(BLUE, A))
    world.auth.tick(world.at(6.0))        # the probe's deadline passes
    world.sync()
    assert world.where()[:2] == (1, 'p1')
    assert world.events('move') == []


def test_a_migration_not_seen_in_time_ends_and_changes_nothing(world):
    before = world.switches()
    world.migrate()
    world.auth.tick(world.at(1.0 + TIMEOUT - 0.1))
    world.sync()
    assert world.db.migrating
    assert world.auth.next_wakeup() == pytest.approx(1.0 + TIMEOUT)
    world.auth.tick(world.at(1.0 + TIMEOUT))
    world.sync()
    assert world.switches() == before
    event, = world.events('migration-timed-out')
    assert (event['mac'], event['waited']) == (A, TIMEOUT)
    assert world.auth.next_wakeup() is None


def test_announcing_again_renews_the_deadline(world):
    world.migrate()
    world.at(11.0)
    again = world.migrate()
    assert again['action'] == 'renewed' and again['started'] == 1.0
    assert again['deadline'] == 11.0 + TIMEOUT
    assert len(world.events('migration-started')) == 1


# --- law 4: alive at both places is a conflict ------------------------------

def test_an_old_place_that_still_answers_is_a_conflict(world):
    world.migrate()
    seq = world.where()
    world.at(5.0)
    world.frame_in(2, 'p2', echo_reply_bytes(), cookie=P.COOKIE_FORWARDED)
    outs = world.frame_in(1, 'p1', probe_answer(), table=P.L2_FORWARD)
    assert outs == []
    world.auth.tick(world.at(5.2))
    world.sync()
    # The original stays, the new place is blocked, the migration is over.
    assert world.where() == seq
    conflict, = world.events('conflict')
    assert (conflict['claimant_nve'], conflict['claimant_port'],
            conflict['reason']) == (NVE[2], 'p2', 'old-location-live')
    ended, = world.events('migration-cancelled')
    assert ended['reason'] == 'old-location-live'
    assert world.events('move', 'migration-completed') == []
    assert to_a(world).points() == {(1, 'p1')}
    res = world.send(2, 'p2', ipv4(A, C_, IP_A, IP_C))
    assert res.points() == set() and not res.packet_ins
    blocked = [f for f in world.net.switch(2).flows()
               if f.priority == P.PRIO_BLOCKED]
    assert len(blocked) == 1


def test_alive_at_the_old_place_after_completing_is_a_conflict(world):
    world.migrate()
    world.auth.port_changed(1, 'p1', None, world.at(4.0))
    world.frame_in(2, 'p2', garp_bytes(), cookie=P.COOKIE_FORWARDED)
    world.auth.port_changed(1, 'p1', 1, world.at(4.5))
    world.sync()
    seq = world.where()
    assert seq[:2] == (2, 'p2')
    # It speaks at its old place: a claim, probed where it is now, which
    # answers: a conflict, not two locations.
    world.at(5.0)
    outs = world.frame_in(1, 'p1', garp_bytes())
    assert [(o.dpid, o.actions) for o in outs] == [(2, [('output', 2)])]
    world.frame_in(2, 'p2', probe_answer(), table=P.L2_FORWARD)
    world.sync()
    assert world.where() == seq
    conflict, = world.events('conflict')
    assert (conflict['claimant_nve'], conflict['claimant_port']) == (
        NVE[1], 'p1')
    assert to_a(world).points() == {(2, 'p2')}


# --- refusals ---------------------------------------------------------------

@pytest.mark.parametrize('kwargs,error,field', [
    (dict(mac=D), NotFound, 'mac'),                       # unknown vNIC
    (dict(nve='00000000000000ff'), NotFound, 'nve'),
    (dict(port='p9'), Conflict, 'port'),                 # not bound
    (dict(nve=NVE[1], port='p1'), Conflict, 'port'),     # already there
    (dict(port='p3', vlan=31), Conflict, 'port'),        # other VLAN
])
def test_refused_migrations_change_nothing(world, kwargs, error, field):
    args = dict(nve=NVE[2], port='p2', mac=A)
    args.update(kwargs)
    stored = world.store.load()
    with pytest.raises(error) as info:
        world.run(C.Migrate(args['nve'], args['port'], args['mac'], BLUE,
                            vlan=args.get('vlan')))
    assert info.value.field == field
    assert world.store.load() == stored
    assert world.db.migrating == set()


def test_one_migration_at_a_time_and_none_for_a_frozen_vnic(world):
    world.migrate()
    with pytest.raises(Conflict, match='already migrating'):
        world.migrate(nve=3)
    world.run(C.CancelMigration(BLUE, A))
    world.db.freeze(world.db.attachments[(BLUE, A)], world.now + 60)
    with pytest.raises(Conflict, match='frozen'):
        world.migrate()


# --- other places -----------------------------------------------------------

def test_a_tagged_new_port_gets_the_vlan_of_its_binding(world):
    done = world.migrate(port='p3')
    assert done['to']['vlan'] == 30
    res = to_a(world)
    assert res.points() == {(1, 'p1'), (2, 'p3')}
    delivered = [pkt for d, _, pkt in res.deliveries if d == 2]
    assert fakeof.vid(delivered[0]) == 30
    # Its frames there come in tagged, and are admitted as its arrival.
    res = world.send(2, 'p3', ipv4(A, C_, IP_A, IP_C, vlan=30))
    assert res.points() == {(3, 'p1')} and len(res.packet_ins) == 1
    world.at(5.0)
    world.auth.port_changed(1, 'p1', None, world.now)
    world.frame_in(2, 'p3', garp_bytes(), cookie=P.COOKIE_FORWARDED,
                   reg6=30)
    att = world.db.attachments[(BLUE, A)]
    assert (att.nve, att.port, att.vlan) == (2, 'p3', 30)


def test_a_migration_to_another_port_of_the_same_nve(world):
    world.migrate(nve=1, port='p2')
    res = to_a(world)
    assert res.points() == {(1, 'p1'), (1, 'p2')}
    assert [dst for _, dst, _, _ in res.underlay] == [1]   # one copy
    world.db.learn(1, 'p3', None, D, IP_D, world.now)
    world.run(C.BindPort(1, 'p3', vnid=BLUE))
    world.sync()


def test_a_new_port_that_leaves_the_vn_gets_nothing_of_it(world):
    world.migrate()
    world.run(C.UnbindPort(2, 'p2'))
    world.sync()
    assert to_a(world).points() == {(1, 'p1')}           # law 1


def test_a_vnic_that_goes_ends_its_migration(world):
    world.migrate()
    world.run(C.UnbindPort(1, 'p1'))
    world.sync()
    ended, = world.events('migration-cancelled')
    assert ended['reason'] == 'detached'
    assert world.db.migrating == set()


def test_a_move_elsewhere_ends_the_migration(world):
    world.migrate()
    world.auth.port_changed(1, 'p1', None, world.at(4.0))
    world.frame_in(3, 'p2', garp_bytes())                # not announced
    assert world.where()[:2] == (3, 'p2')
    ended, = world.events('migration-cancelled')
    assert (ended['reason'], ended['to_nve']) == ('moved', NVE[3])
    assert world.events('migration-completed') == []


def test_the_old_port_going_down_waits_for_the_migration(world):
    world.migrate()
    world.auth.port_changed(1, 'p1', None, world.at(4.0))
    world.auth.tick(world.at(10.0))                      # past the grace
    world.sync()
    assert world.where()[:2] == (1, 'p1')
    assert to_a(world).points() == {(2, 'p2')}
    world.run(C.CancelMigration(BLUE, A))
    world.auth.tick(world.at(10.5))
    world.sync()
    assert world.where() is None                         # port-down now
    assert world.events('detach')[-1]['reason'] == 'port-down'


def test_a_restart_keeps_the_migration_and_its_deadline(world):
    world.migrate()
    want = world.db.attachments[(BLUE, A)].migration
    again = World(store=world.store)
    again.at(2.0)
    for dpid in (1, 2, 3):
        again.connect(dpid)
    again.sync()
    assert again.db.attachments[(BLUE, A)].migration == want
    assert again.db.migrating == {(BLUE, A)}
    assert again.auth.next_wakeup() == want.deadline
    assert to_a(again).points() == {(1, 'p1'), (2, 'p2')}
    # An arrival being checked at the restart is awaited again.
    again.at(3.0)
    again.frame_in(2, 'p2', garp_bytes(), cookie=P.COOKIE_FORWARDED)
    third = World(store=again.store)
    assert third.db.attachments[(BLUE, A)].migration.arrived is None


def test_a_stored_migration_is_checked_like_every_record(world):
    from nvo3_ryu_app.authority import persist
    world.migrate()
    key = ('att', (BLUE, A))
    record = world.store.load()[key]
    persist.check_record('att', key[1], record)
    for bad in ({'nve': 'x'}, {'port': 'a b'}, {'vlan': 0},
                {'deadline': 'soon'}):
        broken = dict(record, migration=dict(record['migration'], **bad))
        with pytest.raises(ValueError):
            persist.check_record('att', key[1], broken)
