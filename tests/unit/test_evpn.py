"""BGP EVPN decisions without a speaker (authority/evpn.py): the routes the
authority advertises, what peers' routes make of the mapping database and
of the flows of OVS NVEs (on the simulated network of fakeof.py), and who
wins a MAC known on both sides (RFC 7432 section 15)."""

import pytest

from fakeof import FakeNetwork, arp_request, assert_same_items, broadcast, \
    ipv4
from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import evpn, packets, persist
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.authority import Authority
from nvo3_ryu_app.authority.errors import BadRequest
from nvo3_ryu_app.authority.evpn import IMET, MAC_IP, Route
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import MemoryStore

BGP = Settings(bgp_as=65001, bgp_router_id='10.0.0.254',
               move_probe_timeout=0.05)
VNID = 5001
FRR, FRR2 = '10.0.0.100', '10.0.0.101'
PEER = '127.0.0.2'
A, B, H = '02:00:00:00:00:0a', '02:00:00:00:00:0b', '02:00:00:00:02:02'
IP_A, IP_B, IP_H = '192.168.1.10', '192.168.1.11', '192.168.1.2'
PORTS = {'vxlan0': 100, 'gre0': 101, 'p1': 1, 'p2': 2}
NETS = {}


def make(settings=BGP, store=None, evpn_on=True):
    NETS.clear()
    auth = Authority(FlowTables(), settings, store=store or MemoryStore())
    if VNID not in auth.db.vns:
        auth.execute(C.CreateVN(VNID, 'blue', evpn=evpn_on), 0.0)
    for dpid in (1, 2):
        auth.execute(C.RegisterNVE(dpid, '10.0.0.%d' % dpid), 0.0)
        auth.switch_connected(dpid, PORTS, '02:aa:00:00:00:0%d' % dpid, 0.0)
        auth.execute(C.BindPort(dpid, 'p1', vnid=VNID), 0.0)
        auth.execute(C.BindPort(dpid, 'p2', vnid=VNID), 0.0)
    return auth


def sync(auth):
    """The simulated NVEs (one network per authority) take their
    changes; incremental == recompute."""
    net = NETS.setdefault(id(auth), FakeNetwork(auth.db, auth.settings))
    net.sync_from(auth.planner)
    for dpid in auth.db.nves:
        assert_same_items(net.switch(dpid).items(),
                          auth.planner.expected(dpid), 'NVE %s' % dpid)
    return net


def garp(auth, dpid, port, mac, ip, now):
    data = packets.build_arp_request(mac, ip, ip)
    return auth.packet_in(dpid, P.SOURCE, PORTS[port], port, {'reg6': 0},
                          data, now)


def mac_ip(mac, ip=None, vtep=FRR, seq=0, sticky=False, rts=('65002:5001',),
           rd='10.0.0.100:2', peer=PEER):
    return Route(MAC_IP, rd, VNID, vtep, mac, ip, seq, sticky, rts,
                 peer=peer)


def imet(vtep=FRR, rts=('65002:5001',), rd='10.0.0.100:2', peer=PEER):
    return Route(IMET, rd, VNID, vtep, rts=rts, peer=peer)


def exported(auth):
    return {(r.kind, r.vtep, r.mac, r.ip, r.seq)
            for r in auth.evpn.desired.values()}


def entry(auth, mac):
    entries = auth.views.find_mappings(mac=mac)
    assert len({(e['nve'], e['nve_ip'], e['seq']) for e in entries}) <= 1
    return entries[0] if entries else None


# -- export ------------------------------------------------------------------

def test_an_evpn_vn_exports_imet_per_member_and_mac_ip_per_entry():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    auth.db.learn(2, 'p1', None, B, None, 2.0)
    auth.commit(2.0)
    assert exported(auth) == {
        (IMET, '10.0.0.1', None, None, 0), (IMET, '10.0.0.2', None, None, 0),
        (MAC_IP, '10.0.0.1', A, IP_A, 1), (MAC_IP, '10.0.0.2', B, None, 1)}
    route = auth.evpn.desired[(MAC_IP, VNID, A, IP_A)]
    # Route distinguisher <router id>:<VNID>, route target <AS>:<VNID>,
    # next hop the NVE's VTEP, VNI = VNID.
    assert (route.rd, route.rts, route.vni, route.encap) == (
        '10.0.0.254:5001', ('65001:5001',), VNID, 'vxlan')


def test_only_what_changed_is_handed_to_the_speaker():
    auth = make()
    first = auth.evpn.take_changes()
    assert set(first) == {(IMET, VNID, '10.0.0.1'), (IMET, VNID, '10.0.0.2')}
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    assert set(auth.evpn.take_changes()) == {(MAC_IP, VNID, A, IP_A)}
    garp(auth, 1, 'p1', A, IP_A, 1.5)           # nothing new
    assert auth.evpn.take_changes() == {}
    auth.db.learn(1, 'p1', None, A, '192.168.1.99', 2.0)
    auth.commit(2.0)
    changes = auth.evpn.take_changes()
    assert changes[(MAC_IP, VNID, A, '192.168.1.99')].seq == 1


def test_detach_unreachable_nve_and_evpn_off_withdraw():
    auth = make(BGP.replace(nve_down_grace=1.0))
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    garp(auth, 2, 'p1', B, IP_B, 1.0)
    auth.evpn.take_changes()
    auth.db.detach(VNID, B, 2.0)
    auth.commit(2.0)
    assert auth.evpn.take_changes() == {(MAC_IP, VNID, B, IP_B): None}
    # NVE 1 away past its grace: nobody can reach it through us.
    auth.switch_disconnected(1, 3.0)
    auth.tick(5.0)
    assert (MAC_IP, '10.0.0.1', A, IP_A, 1) not in exported(auth)
    assert (IMET, '10.0.0.1', None, None, 0) not in exported(auth)
    auth.execute(C.UpdateVN(VNID, {'evpn': False}), 6.0)
    assert exported(auth) == set()


def test_configured_route_targets_and_derived_distinguishers():
    auth = make()
    auth.execute(C.UpdateVN(VNID, {'route_targets': ['65001:77',
                                                     '10.9.9.9:5']}), 1.0)
    assert {r.rts for r in auth.evpn.desired.values()} == {
        ('65001:77', '10.9.9.9:5')}
    big = Settings(bgp_as=65001, bgp_router_id='10.0.0.254')
    assert evpn.route_config(big, 70000) == ('65001:70000',
                                             ('65001:70000',))
    four = Settings(bgp_as=4200000001, bgp_router_id='10.0.0.254')
    assert evpn.route_config(four, 100) == ('10.0.0.254:100',
                                            ('4200000001:100',))
    with pytest.raises(BadRequest):
        evpn.route_config(four, 70000)
    # Refused before anything changes.
    auth4 = Authority(FlowTables(), four, store=MemoryStore())
    with pytest.raises(BadRequest) as exc:
        auth4.execute(C.CreateVN(70000, 'wide', evpn=True), 0.0)
    assert exc.value.field == 'vnid' and not auth4.db.vns
    auth4.execute(C.CreateVN(70000, 'wide'), 0.0)       # without EVPN


def test_route_targets_are_checked():
    auth = make()
    for bad in (['65001'], ['x:1'], ['70000:70000'], ['10.0.0.1:70000'],
                '65001:1', [5]):
        with pytest.raises(BadRequest):
            auth.execute(C.UpdateVN(VNID, {'route_targets': bad}), 1.0)
    auth.execute(C.UpdateVN(VNID, {'route_targets': ['065001:01']}), 1.0)
    assert auth.db.vns[VNID].route_targets == ('65001:1',)


# -- import --------------------------------------------------------------

def test_imet_makes_the_vtep_a_member_and_broadcasts_reach_it():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    sync(auth)                          # then incrementally, from here
    auth.bgp_routes([(imet(), False)], 2.0)
    assert auth.db.evpn_vteps(VNID) == {FRR}
    members = auth.views.vn_members(VNID)
    assert members[-1] == {'nve': None, 'vtep_ip': FRR, 'tenant_systems': 0,
                           'origin': 'evpn', 'bum': True}
    net = sync(auth)
    res = net.send(1, 'p1', broadcast(A))
    assert res.vteps_reached() == {FRR}
    assert res.points() == {(1, 'p2'), (2, 'p1'), (2, 'p2')}
    joins = auth.event_log.since(0, kinds={'vn-join'})
    assert joins[-1]['vtep'] == FRR and joins[-1]['origin'] == 'evpn'


def test_mac_ip_route_is_an_evpn_entry_answered_and_tunnelled_to():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    sync(auth)
    auth.bgp_routes([(mac_ip(H), False), (mac_ip(H, IP_H), False),
                     (imet(), False)], 2.0)
    got = entry(auth, H)
    assert (got['source'], got['nve'], got['nve_ip'], got['ip'],
            got['tunnel_if_id']) == ('evpn', None, FRR, IP_H,
                                     'vxlan0@' + FRR)
    net = sync(auth)
    # Law 2: the ARP request for the EVPN host is answered at the ingress.
    res = net.send(1, 'p1', arp_request(A, IP_A, IP_H))
    assert res.underlay == [] and res.points() == {(1, 'p1')}
    reply = res.only_delivery()[2]
    assert (reply['arp_op'], reply['arp_sha']) == (2, H)
    # Unicast crosses exactly one tunnel, to the EVPN VTEP.
    res = net.send(1, 'p1', ipv4(A, H, IP_A, IP_H))
    assert res.vteps_reached() == {FRR} and res.points() == set()
    assert [u[2] for u in res.underlay] == [VNID]
    # Nothing of ours is advertised for it.
    assert not [k for k in auth.evpn.desired if H in k]
    attach = auth.event_log.since(0, kinds={'attach'})[-1]
    assert (attach['mac'], attach['vtep'], attach['origin']) == (
        H, FRR, 'evpn')


def test_a_route_without_our_route_target_or_vn_is_not_imported():
    auth = make()
    auth.bgp_routes([(mac_ip(H, IP_H, rts=('65002:9999',)), False),
                     (imet(rts=('65002:77',)), False)], 1.0)
    assert entry(auth, H) is None and not auth.db.evpn_vteps(VNID)
    # With configured route targets only they count.
    auth.execute(C.UpdateVN(VNID, {'route_targets': ['65002:9999']}), 2.0)
    assert entry(auth, H)['nve_ip'] == FRR
    # Turned off, the VN forgets what it imported; on again, it is back.
    auth.execute(C.UpdateVN(VNID, {'evpn': False}), 3.0)
    assert entry(auth, H) is None
    auth.execute(C.UpdateVN(VNID, {'evpn': True}), 4.0)
    assert entry(auth, H)['nve_ip'] == FRR


def test_routes_for_a_vn_made_later_are_applied_then():
    auth = make()
    route = mac_ip(H, IP_H)._replace(vni=6001, rts=('65002:6001',))
    auth.bgp_routes([(route, False)], 1.0)
    auth.execute(C.CreateVN(6001, 'later', evpn=True), 2.0)
    assert auth.db.attachments[(6001, H)].remote_vtep == FRR


def test_withdraw_and_session_down_remove_what_the_peer_said():
    auth = make()
    auth.bgp_routes([(mac_ip(H), False), (mac_ip(H, IP_H), False),
                     (imet(), False),
                     (mac_ip(B, vtep=FRR2, rd='10.0.0.101:2'), False)], 1.0)
    auth.bgp_routes([(mac_ip(H, IP_H), True)], 2.0)
    assert entry(auth, H)['ip'] == IP_H      # a MAC-only route says nothing
    auth.bgp_routes([(mac_ip(H), True)], 3.0)
    assert entry(auth, H) is None
    detach = auth.event_log.since(0, kinds={'detach'})[-1]
    assert (detach['mac'], detach['reason']) == (H, 'evpn-withdrawn')
    auth.bgp_session(PEER, False, 4.0)
    assert entry(auth, B) is None and not auth.db.evpn_vteps(VNID)
    assert auth.event_log.since(0, kinds={'bgp-down'})[-1]['neighbor'] == \
        PEER
    assert not auth.evpn.received


def test_repeated_and_malformed_routes():
    auth = make()
    auth.bgp_routes([(mac_ip(H, IP_H), False)], 1.0)
    seq = auth.event_log.seq
    auth.bgp_routes([(mac_ip(H, IP_H), False)], 2.0)
    assert auth.event_log.seq == seq
    auth.bgp_routes([(mac_ip('01:00:5e:00:00:01'), False),
                     (mac_ip(H, 'not-an-ip'), False),
                     (mac_ip(H, vtep='0.0.0.0'), False),
                     (mac_ip(H)._replace(vni=0), False),
                     (mac_ip(H)._replace(kind='eth_ad'), False)], 3.0)
    assert auth.counters['evpn_routes_dropped_malformed'] == 5
    assert entry(auth, H)['ip'] == IP_H


def test_an_imported_address_taken_here_is_not_imported():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    auth.bgp_routes([(mac_ip(H, IP_A), False)], 2.0)
    assert entry(auth, H)['ip'] is None
    assert entry(auth, A)['ip'] == IP_A
    assert auth.counters['evpn_ip_conflicts'] == 1


def test_our_own_routes_reflected_back_are_not_locations():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    auth.bgp_routes([(mac_ip(A, IP_A, vtep='10.0.0.1', seq=1), False),
                     (imet(vtep='10.0.0.2'), False)], 2.0)
    assert entry(auth, A)['nve'] == '0000000000000001'
    assert not auth.db.evpn_vteps(VNID)


# -- mobility across the boundary (RFC 7432 section 15) -------------------

def test_sequence_numbers_decide():
    assert evpn.remote_wins(1, '10.0.0.1', 2, FRR)
    assert not evpn.remote_wins(2, '10.0.0.1', 1, FRR)
    # Equal: the lower VTEP address (15.1).
    assert not evpn.remote_wins(3, '10.0.0.1', 3, FRR)
    assert evpn.remote_wins(3, '10.0.0.200', 3, FRR)
    assert evpn.remote_wins(9, '10.0.0.1', 0, FRR, remote_sticky=True)
    assert evpn.best_remote([mac_ip(H, seq=2, vtep=FRR2),
                             mac_ip(H, seq=2, vtep=FRR),
                             mac_ip(H, seq=1, vtep='10.0.0.3')]) == (
        FRR, 2, False)
    assert evpn.best_remote([mac_ip(H, seq=0), mac_ip(H, IP_H, seq=4)]) == (
        FRR, 4, False)


def test_a_mac_moves_from_ovs_to_evpn_and_back():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    garp(auth, 2, 'p1', B, IP_B, 1.0)
    auth.evpn.take_changes()
    # The VM shows up behind the FRR VTEP: its PE saw our sequence 1 and
    # advertises 2; ours is withdrawn, the entry is behind the VTEP.
    auth.port_changed(1, 'p1', None, 1.5)
    auth.bgp_routes([(mac_ip(A, seq=2), False),
                     (mac_ip(A, IP_A, seq=2), False)], 2.0)
    got = entry(auth, A)
    assert (got['source'], got['nve_ip'], got['seq'], got['ip']) == (
        'evpn', FRR, 2, IP_A)
    assert auth.evpn.take_changes() == {(MAC_IP, VNID, A, IP_A): None}
    move = auth.event_log.since(0, kinds={'move'})[-1]
    assert (move['old_nve'], move['vtep'], move['location_seq']) == (
        '0000000000000001', FRR, 2)
    net = sync(auth)
    assert net.send(2, 'p1', ipv4(B, A, IP_B, IP_A)).vteps_reached() == {FRR}
    # Its record left the store with it (imported entries are not kept).
    assert persist.record_of(auth.db, 'att', (VNID, A)) is None
    # Back on an OVS NVE: a move like any other, with the next sequence
    # number, which the peer's PE sees as newer.
    outs = garp(auth, 2, 'p2', A, IP_A, 3.0)
    assert outs and outs[0].dpid == 2
    got = entry(auth, A)
    assert (got['source'], got['nve'], got['seq']) == (
        'learned', '0000000000000002', 3)
    assert auth.evpn.take_changes()[(MAC_IP, VNID, A, IP_A)].seq == 3
    # The peer withdraws its older route: nothing changes.
    auth.bgp_routes([(mac_ip(A, seq=2), True),
                     (mac_ip(A, IP_A, seq=2), True)], 4.0)
    assert entry(auth, A)['nve'] == '0000000000000002'
    sync(auth)


def test_a_lower_or_equal_remote_sequence_leaves_our_entry():
    auth = make()
    garp(auth, 2, 'p1', A, IP_A, 1.0)
    garp(auth, 1, 'p1', A, IP_A, 1.1)        # moved: sequence 2 at NVE 1
    auth.tick(1.2)
    assert entry(auth, A)['seq'] == 2
    auth.bgp_routes([(mac_ip(A, seq=1), False)], 2.0)
    assert entry(auth, A)['nve'] == '0000000000000001'
    # Equal numbers: the lower VTEP address wins, 10.0.0.1 < 10.0.0.100.
    auth.bgp_routes([(mac_ip(A, seq=2), False)], 3.0)
    assert entry(auth, A)['nve'] == '0000000000000001'
    auth.bgp_routes([(mac_ip(A, seq=2, vtep='10.0.0.0',
                             rd='10.0.0.0:2'), False)], 4.0)
    assert entry(auth, A)['nve_ip'] == '10.0.0.0'


def test_a_local_entry_that_goes_away_lets_a_remote_one_in():
    auth = make()
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    auth.bgp_routes([(mac_ip(A, seq=1, vtep='10.0.0.200',
                             rd='10.0.0.200:2'), False)], 2.0)
    assert entry(auth, A)['nve'] == '0000000000000001'
    auth.db.detach(VNID, A, 3.0)
    auth.commit(3.0)
    assert entry(auth, A)['nve_ip'] == '10.0.0.200'


def test_between_two_remote_vteps_the_newer_route_wins():
    auth = make()
    auth.bgp_routes([(mac_ip(H, IP_H, seq=0), False)], 1.0)
    auth.bgp_routes([(mac_ip(H, IP_H, seq=1, vtep=FRR2,
                             rd='10.0.0.101:2'), False)], 2.0)
    assert (entry(auth, H)['nve_ip'], entry(auth, H)['seq']) == (FRR2, 1)
    move = auth.event_log.since(0, kinds={'move'})[-1]
    assert (move['old_vtep'], move['vtep']) == (FRR, FRR2)


def test_a_sticky_mac_never_moves_to_us():
    auth = make()
    auth.bgp_routes([(mac_ip(H, IP_H, sticky=True), False)], 1.0)
    assert garp(auth, 1, 'p1', H, IP_H, 2.0) == []
    assert entry(auth, H)['nve_ip'] == FRR
    conflict = auth.event_log.since(0, kinds={'conflict'})[-1]
    assert (conflict['mac'], conflict['vtep'], conflict['reason']) == (
        H, FRR, 'frozen')
    # And a sticky route takes a learned entry away.
    garp(auth, 1, 'p1', A, IP_A, 3.0)
    auth.bgp_routes([(mac_ip(A, sticky=True, seq=0), False)], 4.0)
    assert entry(auth, A)['nve_ip'] == FRR


def test_a_registered_entry_stays_and_says_so():
    auth = make()
    auth.execute(C.Associate(1, 'p1', A, VNID, ip=IP_A), 1.0)
    auth.bgp_routes([(mac_ip(A, IP_A, seq=5), False)], 2.0)
    assert entry(auth, A)['nve'] == '0000000000000001'
    conflict = auth.event_log.since(0, kinds={'conflict'})[-1]
    assert (conflict['reason'], conflict['claimant_vtep']) == (
        'evpn-registered', FRR)


# -- persistence ---------------------------------------------------------

def test_restart_keeps_the_vn_and_local_entries_not_imported_ones():
    store = MemoryStore()
    auth = make(store=store)
    auth.execute(C.UpdateVN(VNID, {'route_targets': ['65001:77']}), 0.5)
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    auth.bgp_routes([(mac_ip(H, IP_H, rts=('65001:77',)), False),
                     (imet(rts=('65001:77',)), False)], 2.0)
    assert ('att', (VNID, H)) not in store.load()
    again = make(store=store)
    vn = again.db.vns[VNID]
    assert (vn.evpn, vn.route_targets) == (True, ('65001:77',))
    assert entry(again, H) is None and entry(again, A)['nve'] == \
        '0000000000000001'
    assert (MAC_IP, '10.0.0.1', A, IP_A, 1) in exported(again)


def test_nothing_runs_without_bgp_as():
    auth = make(Settings())
    garp(auth, 1, 'p1', A, IP_A, 1.0)
    auth.bgp_routes([(mac_ip(H, IP_H), False)], 2.0)
    assert auth.evpn.desired == {} and entry(auth, H) is None


def test_neighbor_settings():
    assert evpn.neighbors(Settings()) == []
    good = BGP.replace(bgp_neighbors=('127.0.0.2:65002', '::1:65003'))
    assert evpn.neighbors(good) == [('127.0.0.2', 65002), ('::1', 65003)]
    for bad in (dict(bgp_router_id=''), dict(bgp_router_id='1.2.3'),
                dict(bgp_neighbors=('127.0.0.2',)),
                dict(bgp_neighbors=('127.0.0.2:0',)),
                dict(bgp_neighbors=('127.0.0.2:1', '127.0.0.2:2'))):
        with pytest.raises(evpn.SettingsError):
            evpn.neighbors(BGP.replace(**bad))
