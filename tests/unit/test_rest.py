"""REST API v1: every route's success path against a real Authority.

Error paths are in test_rest_errors.py, long-poll and server-sent events in
test_rest_events.py, the document and fuzzing in test_openapi.py.
"""

import json

import networkx as nx
import pytest

from nvo3_ryu_app.authority.commands import ApplyConfig
from rest_support import DP1, DP2, DP3, MAC1, MAC2, MAC3, make, populated


@pytest.fixture
def world():
    return populated()


def test_create_vn_returns_201_with_location_and_view():
    ctl, _, client = make()
    code, body, resp = client.call('POST', '/v1/vns', {
        'vnid': 5001, 'name': 'blue', 'service': 'l2', 'encap': 'vxlan'})
    assert code == 201
    assert resp.headers['Location'].endswith('/v1/vns/5001')
    assert body == {'vnid': 5001, 'name': 'blue', 'service': 'l2',
                    'encap': 'vxlan', 'gateway': {'mac': None, 'ips': []},
                    'origin': 'rest', 'nves': [], 'tenant_systems': 0}
    assert 5001 in ctl.authority.db.vns
    # Committed: the store has the record and the event carries the time.
    assert ('vn', 5001) in ctl.authority.store.load()
    assert ctl.authority.event_log.since()[-1]['time'] == ctl.now()


def test_create_vn_defaults_and_largest_vnid():
    _, _, client = make()
    body = client.ok('POST', '/v1/vns', {'vnid': 2 ** 24 - 1, 'name': 'top'},
                     status=201)
    assert (body['service'], body['encap']) == ('l2', 'vxlan')


def test_list_vns_sorted_with_members(world):
    _, _, client = world
    vns = client.ok('GET', '/v1/vns')
    assert [v['vnid'] for v in vns] == [5001, 6001, 7001]
    assert vns[0]['nves'] == [DP1, DP2]
    assert vns[0]['tenant_systems'] == 2
    assert vns[1]['gateway'] == {'mac': '02:00:00:00:fe:01',
                                 'ips': ['192.168.10.1/24']}
    assert {v['origin'] for v in vns} == {'rest'}


def test_get_vn(world):
    _, _, client = world
    vn = client.ok('GET', '/v1/vns/6001')
    assert (vn['name'], vn['service'], vn['encap']) == ('red', 'l3', 'gre')
    assert vn['nves'] == [DP1]


def test_patch_vn_changes_only_given_fields(world):
    ctl, _, client = world
    vn = client.ok('PATCH', '/v1/vns/5001', {'name': 'azure',
                                             'encap': 'gre'})
    assert (vn['name'], vn['encap'], vn['service']) == ('azure', 'gre', 'l2')
    assert ctl.authority.db.vns[5001].name == 'azure'
    assert ctl.authority.event_log.since()[-1]['type'] == 'vn-updated'
    # Mappings now name the GRE tunnel port.
    entries = client.ok('GET', '/v1/vns/5001/mappings')
    assert {e['tunnel_if_id'].split('@')[0] for e in entries} == {'gre0'}


def test_patch_vn_gateway_replace_and_remove(world):
    _, _, client = world
    vn = client.ok('PATCH', '/v1/vns/5001', {'gateway': {
        'mac': '02:00:00:00:fe:09', 'ips': ['10.1.0.1/16']}})
    assert vn['gateway'] == {'mac': '02:00:00:00:fe:09',
                             'ips': ['10.1.0.1/16']}
    vn = client.ok('PATCH', '/v1/vns/5001', {'gateway': None})
    assert vn['gateway'] == {'mac': None, 'ips': []}


def test_patch_vn_to_l3_with_gateway(world):
    _, _, client = world
    vn = client.ok('PATCH', '/v1/vns/7001', {
        'service': 'l3', 'gateway': {'mac': '02:00:00:00:fe:07',
                                     'ips': ['172.16.0.1/24']}})
    assert vn['service'] == 'l3'


def test_patch_vn_empty_body_is_a_no_op(world):
    _, _, client = world
    before = client.ok('GET', '/v1/vns/5001')
    assert client.ok('PATCH', '/v1/vns/5001', {}) == before


def test_delete_vn_removes_it_and_its_tenant_systems(world):
    ctl, _, client = world
    client.ok('DELETE', '/v1/nves/%s/ports/tap1' % DP1)
    client.ok('DELETE', '/v1/nves/%s/ports/tap1' % DP2)
    client.ok('DELETE', '/v1/nves/%s/ports/tap1' % DP3)
    client.ok('PUT', '/v1/nves/%s/ports/trunk0' % DP1,
              {'vlans': {'20': 6001}})
    code, body, resp = client.call('DELETE', '/v1/vns/5001')
    assert (code, resp.body) == (204, b'')
    assert 5001 not in ctl.authority.db.vns
    assert [v['vnid'] for v in client.ok('GET', '/v1/vns')] == [6001, 7001]
    assert client.ok('GET', '/v1/mappings', None) and all(
        e['vnid'] != 5001 for e in client.ok('GET', '/v1/mappings'))


def test_delete_bound_vn_unbinds_its_ports(world):
    """The model's rule: deleting a VN detaches its tenant systems and
    removes its port bindings (VLANs of other VNs on a trunk stay)."""
    ctl, _, client = world
    client.ok('DELETE', '/v1/vns/5001', status=204)
    one = client.ok('GET', '/v1/nves/' + DP1)
    assert 'tap1' not in one['ports']
    assert one['ports']['trunk0']['vlans'] == {'20': 6001}
    assert client.ok('GET', '/v1/mappings?mac=' + MAC1) == []
    assert client.call('GET', '/v1/vns/5001/mappings')[0] == 404


def test_delete_unbound_vn_with_learned_tenant_systems():
    ctl, _, client = make()
    client.ok('POST', '/v1/vns', {'vnid': 10, 'name': 'x'})
    client.ok('DELETE', '/v1/vns/10', status=204)
    assert client.ok('GET', '/v1/vns') == []


def test_members(world):
    _, _, client = world
    assert client.ok('GET', '/v1/vns/5001/members') == [
        {'nve': DP1, 'vtep_ip': '10.99.0.1', 'tenant_systems': 1},
        {'nve': DP2, 'vtep_ip': '10.99.0.2', 'tenant_systems': 1}]
    assert client.ok('GET', '/v1/vns/7001/members') == []


def test_mappings_carry_the_drafts_fields(world):
    _, _, client = world
    entries = client.ok('GET', '/v1/vns/5001/mappings')
    assert [e['mac'] for e in entries] == [MAC1, MAC2]
    first = entries[0]
    for key in ('mac', 'ip', 'bid', 'vlan', 'nve', 'nve_ip', 'nve_mac',
                'port', 'tunnel_if_id', 'vnid', 'origin'):
        assert key in first
    assert first['ip'] == '192.168.1.1'
    assert first['nve'] == DP1
    assert first['nve_ip'] == '10.99.0.1'
    assert first['nve_mac'] == '02:aa:00:00:00:01'
    assert first['tunnel_if_id'] == 'vxlan0@10.99.0.1'
    assert first['origin'] == 'learned'
    vlan_entry = client.ok('GET', '/v1/vns/6001/mappings')[0]
    assert (vlan_entry['vlan'], vlan_entry['port']) == (20, 'trunk0')


def test_find_mappings_by_mac_ip_and_all(world):
    _, _, client = world
    assert [e['mac'] for e in client.ok(
        'GET', '/v1/mappings?mac=' + MAC2)] == [MAC2]
    assert [e['mac'] for e in client.ok(
        'GET', '/v1/mappings?ip=192.168.10.5')] == [MAC3]
    assert client.ok('GET', '/v1/mappings?mac=%s&ip=192.168.1.2'
                     % MAC1) == []
    everything = client.ok('GET', '/v1/mappings')
    assert [(e['vnid'], e['mac']) for e in everything] == [
        (5001, MAC1), (5001, MAC2), (6001, MAC3)]
    # Upper-case MACs are the same address.
    assert len(client.ok('GET', '/v1/mappings?mac=' + MAC1.upper())) == 1


def test_tesid(world):
    _, _, client = world
    assert client.ok('GET', '/v1/tesid?vnid=5001&mac=' + MAC2) == {
        'vnid': 5001, 'nve': DP2, 'ts': MAC2}


def test_list_nves_with_sync_fields(world):
    ctl, _, client = world
    nves = client.ok('GET', '/v1/nves')
    assert [n['dpid'] for n in nves] == [DP1, DP2, DP3]
    one, _, three = nves
    assert one['connected'] and not three['connected']
    assert one['vns'] == [5001, 6001]
    assert one['ports']['trunk0'] == {'vlans': {'10': 5001, '20': 6001},
                                      'origin': 'rest', 'ofport': 3}
    assert one['pending'] > 0 and not one['in_sync']
    ctl.ack()
    one = client.ok('GET', '/v1/nves/' + DP1)
    assert one['in_sync'] and one['pending'] == 0
    assert one['applied_seq'] == one['requested_seq']


def test_dpid_hex_digits_in_either_case():
    _, _, client = make()
    client.ok('PUT', '/v1/nves/00000000000000AB', {}, status=201)
    assert client.ok('GET', '/v1/nves/00000000000000ab')['dpid'] == \
        '00000000000000ab'
    assert client.ok('GET', '/v1/nves/00000000000000AB')['dpid'] == \
        '00000000000000ab'


def test_put_nve_registers_then_updates():
    ctl, _, client = make()
    code, body, _ = client.call('PUT', '/v1/nves/00000000000000aa',
                                {'vtep_ip': '10.0.0.9', 'name': 'hv9'})
    assert code == 201
    assert (body['dpid'], body['vtep_ip'], body['name']) == (
        '00000000000000aa', '10.0.0.9', 'hv9')
    assert body['connected'] is False and body['can_tunnel'] is True
    code, body, _ = client.call('PUT', '/v1/nves/00000000000000aa',
                                {'vtep_ip': '10.0.0.10'})
    assert code == 200
    assert (body['vtep_ip'], body['name']) == ('10.0.0.10', 'hv9')
    # Registering without a VTEP is allowed: it just cannot tunnel yet.
    body = client.ok('PUT', '/v1/nves/00000000000000bb', {}, status=201)
    assert body['can_tunnel'] is False


def test_bind_whole_port_and_vlans_then_rebind(world):
    ctl, _, client = world
    code, body, _ = client.call('PUT', '/v1/nves/%s/ports/tap2' % DP2,
                                {'vnid': 7001})
    assert code == 201
    assert body == {'nve': DP2, 'port': 'tap2', 'vnid': 7001,
                    'origin': 'rest'}
    code, body, _ = client.call('PUT', '/v1/nves/%s/ports/tap2' % DP2,
                                {'vlans': {'100': 7001, '200': 5001}})
    assert code == 200
    assert body['vlans'] == {'100': 7001, '200': 5001}
    assert ctl.authority.db.nves[2].bindings['tap2'].vlans == {
        100: 7001, 200: 5001}


def test_rebind_moves_tenant_systems_off_the_old_vn(world):
    ctl, _, client = world
    client.ok('PUT', '/v1/nves/%s/ports/tap1' % DP2, {'vnid': 7001})
    assert [e['mac'] for e in client.ok('GET', '/v1/vns/5001/mappings')] \
        == [MAC1]


def test_unbind_port(world):
    ctl, _, client = world
    code, _, resp = client.call('DELETE', '/v1/nves/%s/ports/tap1' % DP2)
    assert (code, resp.body) == (204, b'')
    assert 'tap1' not in client.ok('GET', '/v1/nves/' + DP2)['ports']
    assert [e['mac'] for e in client.ok('GET', '/v1/vns/5001/mappings')] \
        == [MAC1]


def test_sync_waits_on_connected_nves_only(world):
    ctl, _, client = world
    sync = client.ok('GET', '/v1/sync')
    assert sync['in_sync'] is False
    assert set(sync['nves']) == {DP1, DP2, DP3}
    assert sync['nves'][DP3]['connected'] is False
    ctl.ack()
    sync = client.ok('GET', '/v1/sync')
    assert sync['in_sync'] is True
    assert sync['nves'][DP1] == {'connected': True, 'synced': True,
                                 'in_sync': True, 'requested_seq': 1,
                                 'applied_seq': 1, 'pending': 0,
                                 'failed': 0, 'verified': True,
                                 'stamped': True}
    # A new write makes an NVE pending again.
    client.ok('PATCH', '/v1/vns/5001', {'encap': 'gre'})
    assert client.ok('GET', '/v1/sync')['in_sync'] is False


def test_topology_is_node_link_data_of_the_graph(world):
    _, _, client = world
    data = client.ok('GET', '/v1/topology')
    graph = nx.node_link_graph(data, edges='edges')
    kinds = {n: d['kind'] for n, d in graph.nodes(data=True)}
    assert sorted(k for k in kinds.values()) == sorted(
        ['vn'] * 3 + ['nve'] * 3 + ['ts'] * 3)
    edge = graph.edges['nve:' + DP1, 'nve:' + DP2]
    assert edge == {'kind': 'tunnel', 'vnids': [5001]}
    assert graph.edges['vn:5001', 'nve:' + DP1]['kind'] == 'member'
    att = graph.edges['ts:6001:' + MAC3, 'nve:' + DP1]
    assert (att['kind'], att['port'], att['vlan']) == ('attachment',
                                                       'trunk0', 20)
    assert graph.nodes['nve:' + DP3]['connected'] is False
    assert graph.nodes['ts:5001:' + MAC1]['ips'] == ['192.168.1.1']
    # VN 7001 has no members: a lone node.
    assert graph.degree['vn:7001'] == 0


def test_events_recent_newest_last_with_seq_and_time(world):
    ctl, _, client = world
    page = client.ok('GET', '/v1/events')
    seqs = [e['seq'] for e in page['events']]
    assert seqs == sorted(seqs) and seqs[-1] == page['seq']
    assert page['next_since'] == page['seq'] and page['more'] is False
    assert all(isinstance(e['time'], float) for e in page['events'])
    types = [e['type'] for e in page['events']]
    assert 'vn-created' in types and 'attach' in types


def test_events_limit_type_and_paging(world):
    ctl, _, client = world
    everything = client.ok('GET', '/v1/events')['events']
    last2 = client.ok('GET', '/v1/events?limit=2')['events']
    assert last2 == everything[-2:]
    attaches = client.ok('GET', '/v1/events?type=attach')['events']
    assert [e['mac'] for e in attaches] == [MAC1, MAC2, MAC3]
    both = client.ok('GET', '/v1/events?type=attach,nve-up')['events']
    assert {e['type'] for e in both} == {'attach', 'nve-up'}
    repeated = client.ok('GET', '/v1/events?type=attach&type=nve-up')
    assert repeated['events'] == both
    # Paging forward from since: oldest first, ``more`` until the end.
    seen, since = [], 0
    while True:
        page = client.ok('GET', '/v1/events?since=%d&limit=3' % since)
        seen.extend(page['events'])
        since = page['next_since']
        if not page['more']:
            break
    assert seen == everything


def test_events_since_in_the_future_returns_at_once(world):
    _, _, client = world
    page = client.ok('GET', '/v1/events?since=999999&wait=30')
    assert page['events'] == [] and page['next_since'] == page['seq']


def test_openapi_document_is_served():
    _, _, client = make()
    code, doc, resp = client.call('GET', '/v1/openapi.json')
    assert code == 200 and resp.content_type == 'application/json'
    assert doc['openapi'].startswith('3.0')
    assert '/v1/vns' in doc['paths']


def test_metrics_served_as_prometheus_text():
    _, _, client = make()
    code, body, resp = client.call('GET', '/metrics')
    assert code == 200
    assert resp.headers['Content-Type'].startswith('text/plain')
    assert b'nvo3_flow_mods_sent_total' in body


def test_web_page_and_its_script_are_served():
    _, _, client = make()
    code, body, resp = client.call('GET', '/')
    assert code == 200 and resp.content_type == 'text/html'
    assert b'/ui/app.js' in body and b'<svg' in body
    code, body, resp = client.call('GET', '/ui/app.js')
    assert code == 200 and resp.content_type == 'application/javascript'
    assert b'/v1/topology' in body and b'/v1/events' in body
    assert client.call('GET', '/ui/index.html')[0] == 200


def test_responses_are_json_with_content_type(world):
    _, app, client = world
    for path in ('/v1/vns', '/v1/nves', '/v1/topology', '/v1/events',
                 '/v1/sync', '/v1/mappings'):
        code, _, resp = client.call('GET', path)
        assert code == 200 and resp.content_type == 'application/json'
        json.loads(resp.body)


def test_writes_are_committed_through_ctl_execute(world):
    """Every write reaches the authority as one command (one commit)."""
    ctl, _, client = world
    calls = []
    real = ctl.execute

    def spy(command):
        calls.append(type(command).__name__)
        return real(command)

    ctl.execute = spy
    client.ok('POST', '/v1/vns', {'vnid': 8001, 'name': 'green'})
    client.ok('PATCH', '/v1/vns/8001', {'name': 'lime'})
    client.ok('PUT', '/v1/nves/' + DP3, {'name': 'hv3b'})
    client.ok('PUT', '/v1/nves/%s/ports/tap2' % DP3, {'vnid': 8001})
    client.ok('DELETE', '/v1/nves/%s/ports/tap2' % DP3)
    client.ok('DELETE', '/v1/vns/8001')
    assert calls == ['CreateVN', 'UpdateVN', 'RegisterNVE', 'BindPort',
                     'UnbindPort', 'DeleteVN']


def test_items_record_their_origin():
    ctl, _, client = make()
    ctl.execute(ApplyConfig({
        'vns': [{'vnid': 9, 'name': 'cfg'}],
        'nves': [{'dpid': '0000000000000009', 'vtep_ip': '10.0.0.99',
                  'ports': {'tap1': {'vnid': 9}}}]}))
    ctl.connect(0x10)
    assert client.ok('GET', '/v1/vns/9')['origin'] == 'config'
    nve = client.ok('GET', '/v1/nves/0000000000000009')
    assert nve['origin'] == 'config'
    assert nve['ports']['tap1']['origin'] == 'config'
    assert client.ok('GET', '/v1/nves/0000000000000010')['origin'] == \
        'switch'
