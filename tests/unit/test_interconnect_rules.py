"""The rules of the interconnection functionality around the flows: what
a gateway and its interconnects and external networks keep across a
restart, the declarative file, the traffic counters read from the
gateway's flows, and the authority's answers for addresses across an
interconnect (glean, neighbour solicitations)."""

import pytest
from os_ken.lib.packet import arp, ethernet, icmpv6, ipv6, packet

from nvo3_ryu_app.authority import authority, declared, persist
from nvo3_ryu_app.authority import interconnect as I
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.errors import Conflict
from nvo3_ryu_app.authority.model import MappingDB
from nvo3_ryu_app.authority.owners import IcOwner, cookie_for
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import JournalStore, MemoryStore

from test_authority_packet_in import ip_frame

GW = 9
GA, GB = '02:4e:56:00:01:01', '02:4e:56:00:01:02'
PORTS = {'vxlan0': 10, 'gre0': 11, 'geneve0': 12, 'p1': 1, 'p2': 2,
         'ext0': 5}


def world(db):
    db.create_vn(101, 'a', 'l3', 'vxlan', gateway_mac=GA,
                 gateway_ips=['10.1.0.254/24'])
    db.create_vn(102, 'b', 'l3', 'gre', gateway_mac=GB,
                 gateway_ips=['10.2.0.254/24', 'fd00:2::fe/64'])
    db.create_vn(201, 'e', 'l2', 'geneve')
    db.create_vn(202, 'r', 'l2', 'vxlan')
    for dpid in (1, 2):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
    db.register_nve(GW, '10.0.0.9', role='gateway')
    db.bind_port(1, 'p1', vnid=101)
    db.bind_port(2, 'p1', vnid=102)
    db.bind_port(2, 'p2', vnid=202)
    db.bind_port(1, 'p2', vnid=201)
    I.put_interconnect(db, 'ab', GW, [101, 102])
    I.put_interconnect(db, 'ra', GW, [202, 101], router={
        202: {'ip': '10.20.0.254/24', 'mac': '02:4e:56:00:02:02'}})
    I.put_interconnect(db, 'er', GW, [201, 202],
                       allowed_macs=['02:00:00:00:20:01'])
    I.put_external(db, 'lab', GW, 'ext0', vlans={100: 201, 200: 202},
                   allowed_macs=['02:00:00:00:e1:01'])


def test_interconnects_externals_and_roles_survive_a_restart(tmp_path):
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    db = MappingDB()
    world(db)
    persist.save_changes(db, store)
    store.close()
    again = JournalStore(str(tmp_path), fsync=False)
    records = again.load(check=persist.check_record)
    again.close()
    db2 = MappingDB()
    persist.restore(db2, records)
    assert db2.interconnects == db.interconnects
    assert db2.externals == db.externals
    assert db2.nves[GW].role == 'gateway'
    assert db2.members(101) == db.members(101) == {GW}
    assert db2.external_at(GW, 'ext0').name == 'lab'
    assert persist.all_records(db2) == persist.all_records(db)
    # Deleted ones are gone after a restart too.
    store = JournalStore(str(tmp_path), fsync=False)
    store.load()
    I.delete_interconnect(db2, 'er')
    I.delete_external(db2, 'lab')
    db2.take_changed_records()
    I.delete_interconnect(db, 'er')
    I.delete_external(db, 'lab')
    persist.save_changes(db, store)
    store.close()
    again = JournalStore(str(tmp_path), fsync=False)
    db3 = MappingDB()
    persist.restore(db3, again.load(check=persist.check_record))
    again.close()
    assert set(db3.interconnects) == {'ab', 'ra'} and db3.externals == {}


@pytest.mark.parametrize('kind,key,value', [
    ('ic', 'x', {'gateway': 9, 'vns': [1, 1], 'allowed_macs': [],
                 'router': {}, 'origin': 'rest'}),
    ('ic', 'x', {'gateway': 9, 'vns': [1, 2], 'allowed_macs': ['zz'],
                 'router': {}, 'origin': 'rest'}),
    ('ic', 'x', {'gateway': 9, 'vns': [1, 2], 'allowed_macs': [],
                 'router': {'1': ['10.0.0.1', '02:00:00:00:00:01']},
                 'origin': 'rest'}),
    ('ext', 'x', {'gateway': 9, 'port': 'e0', 'vnid': None, 'vlans': {},
                  'allowed_macs': [], 'origin': 'rest'}),
    ('ext', 'x', {'gateway': 9, 'port': 'e0', 'vnid': 1,
                  'vlans': {'5000': 1}, 'allowed_macs': [],
                  'origin': 'rest'}),
    ('nve', 9, {'name': None, 'vtep_ip': None, 'origin': 'rest',
                'bindings': {}, 'role': 'router'}),
])
def test_a_damaged_record_is_damage(kind, key, value):
    with pytest.raises(ValueError):
        persist.check_record(kind, key, value)


def test_an_nve_record_from_before_gateways_loads_as_an_nve():
    persist.check_record('nve', 3, {'name': None, 'vtep_ip': None,
                                    'origin': 'rest', 'bindings': {}})
    db = MappingDB()
    persist.restore(db, {('nve', 3): {'name': None, 'vtep_ip': None,
                                      'origin': 'rest', 'bindings': {}}})
    assert db.nves[3].role == 'nve'


def test_declarative_file_with_gateways_by_name(tmp_path):
    path = tmp_path / 'gw.yaml'
    path.write_text('''
vns:
  - {vnid: 101, name: a, service: l3, encap: vxlan,
     gateway: {mac: "02:4e:56:00:01:01", ips: ["10.1.0.254/24"]}}
  - {vnid: 201, name: e, service: l2, encap: geneve}
nves:
  - {name: gw, dpid: "0000000000000009", vtep_ip: 10.0.0.9, role: gateway}
interconnects:
  - {name: ea, gateway: gw, vns: [e, a],
     router: {e: {ip: 10.20.0.254/24, mac: "02:4e:56:00:02:02"}}}
externals:
  - {name: lab, gateway: gw, port: ext0, vlans: {100: e},
     allowed_macs: ["02:00:00:00:e1:01"],
     hosts: [{name: x1, mac: "02:00:00:00:e1:01", ip: 10.20.0.9/24,
              vlan: 100}]}
''')
    db = MappingDB()
    declared.apply(db, declared.load(str(path)).document, 1.0)
    ic = db.interconnects['ea']
    assert (ic.gateway, ic.vns, ic.origin) == (9, (201, 101), 'config')
    assert ic.router == {201: ('10.20.0.254/24', '02:4e:56:00:02:02')}
    assert db.externals['lab'].vlans == {100: 201}
    path.write_text(path.read_text().replace('role: gateway', 'role: nve'))
    with pytest.raises(declared.ConfigError, match=r'^interconnects\[0\]: '
                       'NVE 0000000000000009 is not a gateway'):
        declared.apply(MappingDB(), declared.load(str(path)).document, 1.0)


def test_vn_changes_that_would_break_an_interconnect_are_refused():
    db = MappingDB()
    world(db)
    with pytest.raises(Conflict, match='service'):
        db.update_vn(101, service='l2', now=2.0)
    # b's new subnet would overlap the router's subnet on r, which a
    # routes to the gateway too.
    with pytest.raises(Conflict):
        db.update_vn(102, gateway_mac=GB, gateway_ips=['10.20.0.1/16'],
                     now=2.0)
    with pytest.raises(Conflict, match='used by'):
        db.delete_vn(202)
    with pytest.raises(Conflict, match='gateway of'):
        db.register_nve(GW, role='nve')
    with pytest.raises(Conflict, match='gateway of'):
        db.delete_nve(GW)
    assert GW in db.nves and db.nves[GW].role == 'gateway'
    assert db.vns[102].gateway_ips == ('10.2.0.254/24', 'fd00:2::fe/64')
    # A router's address is the router's: no tenant system may take it.
    db.learn(2, 'p2', None, '02:00:00:00:20:09', None, 2.0)
    with pytest.raises(Conflict, match='router'):
        db.learn(2, 'p2', None, '02:00:00:00:20:09', '10.20.0.254', 3.0)


# --- the authority: glean and answers across --------------------------------

def make_authority():
    auth = authority.Authority(FlowTables(), store=MemoryStore())
    world(auth.db)
    for dpid in (1, 2, GW):
        auth.switch_connected(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 0.0)
    return auth


def test_unknown_host_across_is_asked_for_in_the_other_vn():
    auth = make_authority()
    data = ip_frame('02:00:00:00:01:01', GA, '10.1.0.1', '10.2.0.77')
    outs = auth.packet_in(GW, P.INTERCONNECT, 0, None, {'metadata': 101},
                          data, 1.0)
    assert [(o.dpid, o.actions) for o in outs] == [(2, [('output', 1)])]
    req = packet.Packet(outs[0].data).get_protocol(arp.arp)
    eth = packet.Packet(outs[0].data).get_protocol(ethernet.ethernet)
    assert (eth.src, req.src_ip, req.dst_ip) == (GB, '10.2.0.254',
                                                 '10.2.0.77')
    # At most once a second per address; nothing for a subnet nobody
    # routes.
    assert auth.packet_in(GW, P.INTERCONNECT, 0, None, {'metadata': 101},
                          data, 1.5) == []
    assert auth.packet_in(GW, P.INTERCONNECT, 0, None, {'metadata': 101},
                          ip_frame('02:00:00:00:01:01', GA, '10.1.0.1',
                                   '10.9.0.1'), 3.0) == []
    assert auth.counters['dropped_no_route'] == 1
    # From the L2 VN's router into the L3 VN, and the other way, from the
    # router's address on the L2 VN (and out of the external network's
    # VLAN there too).
    outs = auth.packet_in(GW, P.INTERCONNECT, 0, None, {'metadata': 101},
                          ip_frame('02:00:00:00:01:01', GA, '10.1.0.1',
                                   '10.20.0.5'), 4.0)
    assert sorted((o.dpid, o.actions[0][1]) for o in outs) == [
        (2, 2), (GW, 5)]
    req = packet.Packet(outs[0].data).get_protocol(arp.arp)
    assert (req.src_mac, req.src_ip) == ('02:4e:56:00:02:02', '10.20.0.254')


def test_neighbour_solicitation_for_the_router_is_answered():
    auth = make_authority()
    I.put_interconnect(auth.db, 'ra', GW, [202, 101], router={
        202: {'ip': 'fd00:20::fe/64', 'mac': '02:4e:56:00:02:02'}})
    auth.commit(1.0)
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('33:33:ff:00:00:fe',
                                       '02:00:00:00:20:01', 0x86DD))
    pkt.add_protocol(ipv6.ipv6(src='fd00:20::1', dst='ff02::1:ff00:fe',
                               nxt=58, hop_limit=255))
    pkt.add_protocol(icmpv6.icmpv6(
        type_=135, data=icmpv6.nd_neighbor(dst='fd00:20::fe')))
    pkt.serialize()
    auth.db.learn(2, 'p2', None, '02:00:00:00:20:01', 'fd00:20::1', 1.0)
    outs = auth.packet_in(2, P.ARP_ND_RESPONDER, 2, 'p2', {}, bytes(
        pkt.data), 2.0)
    eth = packet.Packet(outs[0].data).get_protocol(ethernet.ethernet)
    assert eth.src == '02:4e:56:00:02:02'


# --- traffic through the gateway --------------------------------------------

def test_traffic_counts_only_grow_across_replaced_flows():
    db = MappingDB()
    world(db)
    traffic = I.Traffic()
    cookie = cookie_for(IcOwner('ab'))
    route = P.flow(P.INTERCONNECT, P.PRIO_ROUTE,
                   {'metadata': 101, 'eth_dst': GA, 'eth_type': 0x0800,
                    'ipv4_dst': '10.2.0.2'},
                   [('output', 11)], cookie)
    glean = P.flow(P.INTERCONNECT, P.PRIO_GLEAN,
                   {'metadata': 101, 'eth_dst': GA}, [], cookie)
    other = P.flow(P.INTERCONNECT, P.PRIO_ROUTE,
                   {'metadata': 101, 'eth_dst': GA, 'eth_type': 0x0800,
                    'ipv4_dst': '10.2.0.3'},
                   [('output', 11)], cookie_for(IcOwner('ra')))
    traffic.observe(db, GW, [(route, 10, 1000), (glean, 5, 500),
                             (other, 2, 200)], 1.0)
    assert traffic.of('ab') == {'frames': 10, 'bytes': 1000, 'as_of': 1.0}
    traffic.observe(db, GW, [(route, 15, 1500)], 2.0)
    assert traffic.of('ab')['frames'] == 15
    traffic.observe(db, GW, [(route, 3, 300)], 3.0)     # replaced: from 0
    assert traffic.of('ab') == {'frames': 18, 'bytes': 1800, 'as_of': 3.0}
    assert traffic.of('ra')['frames'] == 2
    # Another NVE's dump says nothing of the gateway's flows.
    traffic.observe(db, 1, [(route, 99, 9900)], 4.0)
    assert traffic.of('ab')['frames'] == 18
    I.delete_interconnect(db, 'ab')
    traffic.observe(db, GW, [], 5.0)
    assert traffic.of('ab') == {'frames': 0, 'bytes': 0, 'as_of': None}


def test_traffic_of_a_dump_in_several_parts_is_counted_once():
    db = MappingDB()
    world(db)
    traffic = I.Traffic()
    cookie = cookie_for(IcOwner('ab'))
    routes = [P.flow(P.INTERCONNECT, P.PRIO_ROUTE,
                     {'metadata': 101, 'eth_dst': GA, 'eth_type': 0x0800,
                      'ipv4_dst': '10.2.0.%d' % i}, [('output', 11)], cookie)
              for i in (2, 3)]
    # One dump, two multipart replies; then the next dump, the same way.
    traffic.observe(db, GW, [(routes[0], 10, 1000)], 1.0)
    traffic.observe(db, GW, [(routes[1], 4, 400)], 1.0)
    assert traffic.of('ab')['frames'] == 14
    traffic.observe(db, GW, [(routes[0], 10, 1000)], 2.0)
    traffic.observe(db, GW, [(routes[1], 5, 500)], 2.0)
    assert traffic.of('ab') == {'frames': 15, 'bytes': 1500, 'as_of': 2.0}


def test_settings_name_the_geneve_port():
    assert Settings().tunnel_ports == {'vxlan': 'vxlan0', 'gre': 'gre0',
                                       'geneve': 'geneve0'}
    assert Settings(geneve_port='gnv').tunnel_ports['geneve'] == 'gnv'


def test_an_interconnects_cookie_names_it():
    """nvo3ctl cookie / GET /v1/cookies: an interconnect's and an external
    network's flows are decoded to their owner, not called stale."""
    from nvo3_ryu_app.authority.owners import ExtOwner, IcOwner, cookie_for
    from nvo3_ryu_app.authority.views import Views
    import types
    db = types.SimpleNamespace(interconnects={'ab': object()},
                               externals={'lab': object()}, vns={},
                               attachments={}, nves={})
    views = Views.__new__(Views)
    views.db = db
    ic = views.cookie(cookie_for(IcOwner('ab')))
    assert (ic['known'], ic['kind'], ic['owner']['name']) == (True, 'ic', 'ab')
    ext = views.cookie(cookie_for(ExtOwner('lab')))
    assert (ext['known'], ext['kind'], ext['owner']['name']) == (
        True, 'ext', 'lab')
    gone = views.cookie(cookie_for(IcOwner('zz')))
    assert gone['known'] is False
