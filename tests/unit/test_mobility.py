"""Moves, conflicts and freezing (draft 7.5, law 4), without a switch."""

from nvo3_ryu_app.authority import authority
from nvo3_ryu_app.authority import packets
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.storage.store import MemoryStore
from nvo3_ryu_app.southbound.flowtable import FlowTables

M1 = '02:00:00:00:00:01'
IP1 = '192.168.1.1'


def make(probe_timeout=0.05, max_moves=10):
    auth = authority.Authority(
        FlowTables(), Settings(move_probe_timeout=probe_timeout,
                               max_moves=max_moves, move_window=60.0,
                               redirect_hold=3.0), store=MemoryStore())
    db = auth.db
    db.create_vn(5001, 'blue')
    for dpid in (1, 2, 3):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        auth.switch_connected(dpid, {'vxlan0': 10, 'p1': 1, 'p2': 2},
                              '02:aa:00:00:00:0%d' % dpid, 0.0)
        db.bind_port(dpid, 'p1', vnid=5001)
        db.bind_port(dpid, 'p2', vnid=5001)
    auth.commit(0.0)
    return auth


def garp(mac=M1, ip=IP1):
    from os_ken.lib.packet import arp, ethernet, packet
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('ff:ff:ff:ff:ff:ff', mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=1, src_mac=mac, src_ip=ip,
                             dst_mac='00:00:00:00:00:00', dst_ip=ip))
    pkt.serialize()
    return bytes(pkt.data)


def frame_in(auth, dpid, port, now, data=None, table=P.SOURCE):
    ofport = {'p1': 1, 'p2': 2}[port]
    return auth.packet_in(dpid, table, ofport, port, {'reg6': 0},
                          data or garp(), now)


def location(auth):
    att = auth.db.attachments[(5001, M1)]
    return att.nve, att.port


def test_first_frame_attaches_and_is_reinjected():
    auth = make()
    outs = frame_in(auth, 1, 'p1', 1.0)
    assert location(auth) == (1, 'p1')
    assert auth.db.attachments[(5001, M1)].addresses() == {IP1: None}
    assert [(o.dpid, o.actions) for o in outs] == [(1, [('output', 'TABLE')])]


def test_move_from_a_port_that_went_down_is_immediate():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    auth.port_changed(1, 'p1', None, 2.0)        # the VM left hypervisor 1
    outs = frame_in(auth, 2, 'p1', 2.01)
    assert location(auth) == (2, 'p1')
    assert [o.dpid for o in outs] == [2]
    move = auth.event_log.since(0, kinds={'move'})[-1]
    assert (move['old_nve'], move['nve'], move['location_seq']) == (
        '0000000000000001', '0000000000000002', 2)


def test_claim_against_a_live_location_is_probed_then_moved_if_silent():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    outs = frame_in(auth, 2, 'p1', 2.0)
    # The old location is up: an ARP probe goes out of it, nothing moves.
    assert location(auth) == (1, 'p1')
    assert len(outs) == 1 and outs[0].dpid == 1
    assert outs[0].actions == [('output', 1)]
    probe = packets.parse_frame(outs[0].data)
    assert probe.src_mac == P.PROBE_MAC and probe.dst_mac == M1
    assert auth.next_wakeup() == 2.05
    assert auth.tick(2.02) == []                  # not yet due
    outs = auth.tick(2.06)                        # nobody answered
    assert location(auth) == (2, 'p1')
    assert [o.dpid for o in outs] == [2]


def test_claim_answered_at_the_old_location_is_a_conflict():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    frame_in(auth, 3, 'p2', 2.0)                  # the spoofer
    answer = _arp_reply(M1, IP1, P.PROBE_MAC)
    auth.packet_in(1, P.L2_FORWARD, 1, 'p1', {'metadata': 5001}, answer,
                   2.001)
    auth.tick(2.1)
    assert location(auth) == (1, 'p1')            # the original stays
    conflict = auth.event_log.since(0, kinds={'conflict'})[-1]
    assert conflict['claimant_nve'] == '0000000000000003'
    # The claimant is blocked: its frames drop, no further probe.
    assert frame_in(auth, 3, 'p2', 2.2) == []
    assert location(auth) == (1, 'p1')


def test_legitimate_migrations_are_followed_and_not_frozen():
    auth = make()
    frame_in(auth, 1, 'p1', 0.5)
    places = [(2, 'p1'), (3, 'p1'), (1, 'p2'), (2, 'p2'), (3, 'p2'),
              (1, 'p1')]
    now = 1.0
    for dpid, port in places:                     # six moves in a minute
        old = location(auth)
        auth.port_changed(old[0], old[1], None, now)
        frame_in(auth, dpid, port, now + 0.01)
        assert location(auth) == (dpid, port)
        auth.port_changed(old[0], old[1], {'p1': 1, 'p2': 2}[old[1]],
                          now + 1)
        now += 10
    assert not auth.event_log.since(0, kinds={'frozen'})


def test_flapping_address_is_frozen_at_its_last_location():
    auth = make(max_moves=3)
    frame_in(auth, 1, 'p1', 0.5)
    now = 1.0
    for dpid in (2, 1, 2, 1):
        old = location(auth)
        auth.port_changed(old[0], old[1], None, now)
        frame_in(auth, dpid, 'p1', now + 0.01)
        auth.port_changed(old[0], old[1], 1, now + 0.02)
        now += 1
    assert location(auth) == (2, 'p1')            # the fourth was refused
    assert len(auth.event_log.since(0, kinds={'frozen'})) == 1


def test_old_nve_redirects_until_the_hold_time_ends():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    auth.port_changed(1, 'p1', None, 2.0)
    frame_in(auth, 2, 'p1', 2.01)
    table1 = auth.planner.tables[1]
    redirect = [f for f in table1.desired.values()
                if isinstance(f, P.Flow) and f.priority == P.PRIO_REDIRECT]
    assert len(redirect) == 1
    auth.tick(5.5)
    assert not [f for f in table1.desired.values()
                if isinstance(f, P.Flow) and f.priority == P.PRIO_REDIRECT]
    for dpid in (1, 2, 3):
        assert auth.planner.tables[dpid].desired == \
            auth.planner.expected(dpid)


def test_port_down_withdraws_after_grace_and_flap_rides_through():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    auth.port_changed(1, 'p1', None, 2.0)
    auth.port_changed(1, 'p1', 1, 2.5)            # a flap: back in time
    auth.tick(10.0)
    assert location(auth) == (1, 'p1')
    auth.port_changed(1, 'p1', None, 11.0)
    auth.tick(12.0)
    assert (5001, M1) in auth.db.attachments      # still in grace
    auth.tick(13.1)
    assert (5001, M1) not in auth.db.attachments


def test_disconnected_nve_becomes_unreachable_after_grace():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    auth.switch_disconnected(1, 2.0)
    auth.tick(5.0)
    assert auth.db.attachments[(5001, M1)].reachable
    auth.tick(32.5)
    assert not auth.db.attachments[(5001, M1)].reachable
    for dpid in (2, 3):
        assert not [f for f in auth.planner.tables[dpid].desired.values()
                    if isinstance(f, P.Flow) and ('eth_dst', M1) in f.match]
    auth.switch_connected(1, {'vxlan0': 10, 'p1': 1, 'p2': 2},
                          "02:aa:00:00:00:01", 40.0)
    assert auth.db.attachments[(5001, M1)].reachable


def _arp_reply(src_mac, src_ip, dst_mac):
    from os_ken.lib.packet import arp, ethernet, packet
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst_mac, src_mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=2, src_mac=src_mac, src_ip=src_ip,
                             dst_mac=dst_mac, dst_ip='0.0.0.0'))
    pkt.serialize()
    return bytes(pkt.data)


def test_idle_learned_tenant_systems_age_out_by_their_flow_counters():
    auth = make()
    auth.settings = auth.settings.replace(idle_timeout=60.0)
    frame_in(auth, 1, 'p1', 1.0)
    att = auth.db.attachments[(5001, M1)]
    source = [f for f in auth.planner.tables[1].desired.values()
              if isinstance(f, P.Flow) and f.table == P.SOURCE
              and f.priority == P.PRIO_HOST_ANY]
    assert len(source) == 1
    # Audits at 30 s and 50 s see its source flow count packets: still here.
    auth.observe_sources(1, [(source[0], 5)], 30.0)
    auth.observe_sources(1, [(source[0], 9)], 50.0)
    auth.tick(100.0)
    assert (5001, M1) in auth.db.attachments and att.last_seen == 50.0
    # Then the counters stop moving: 60 s after the last change it goes.
    auth.observe_sources(1, [(source[0], 9)], 80.0)
    auth.tick(109.0)
    assert (5001, M1) in auth.db.attachments
    auth.tick(110.5)
    assert (5001, M1) not in auth.db.attachments
    detach = auth.event_log.since(0, kinds={'detach'})[-1]
    assert detach['reason'] == 'idle'


def test_ageing_is_off_by_default_and_spares_disconnected_nves():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    auth.tick(10000.0)
    assert (5001, M1) in auth.db.attachments
    auth.settings = auth.settings.replace(idle_timeout=60.0)
    auth.switch_disconnected(1, 10001.0)
    auth.tick(10002.0)          # away: no counters, so no verdict
    assert (5001, M1) in auth.db.attachments
