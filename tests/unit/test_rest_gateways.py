"""REST for the interconnection functionality (draft 4.3; contract 4):
``/v1/interconnects`` and ``/v1/externals``, gateways (``"role":
"gateway"``), their errors -- 404 unknown VN or gateway, 409 not a
gateway, 400 malformed -- and that a refused request changes nothing
(the whole state a client or the store can see is compared)."""

import pytest

from rest_support import (DP1, DPGW, GW_PORTS, MAC1, MAC2, make, populated)
from test_rest_errors import _id, check_refused

IC = '/v1/interconnects/'
EXT = '/v1/externals/'
ROUTER = {'5001': {'ip': '192.168.1.254/24', 'mac': '02:00:00:00:fe:51'}}


def ic(**kw):
    return dict({'gateway': DPGW, 'vns': [5001, 7001]}, **kw)


def ext(**kw):
    return dict({'gateway': DPGW, 'port': 'ext1', 'vnid': 5001}, **kw)


BAD_REQUEST = [
    ('PUT', IC + 'x', ic(vns=[5001]), 'vns'),
    ('PUT', IC + 'x', ic(vns=[5001, 7001, 6001]), 'vns'),
    ('PUT', IC + 'x', ic(vns=[5001, 5001]), 'vns'),
    ('PUT', IC + 'x', ic(vns=5001), 'vns'),
    ('PUT', IC + 'x', ic(vns=['5001', '7001']), 'vns'),
    ('PUT', IC + 'x', ic(vns=[0, 7001]), 'vns'),
    ('PUT', IC + 'x', ic(allowed_macs=['zz']), 'allowed_macs'),
    ('PUT', IC + 'x', ic(allowed_macs=['01:00:5e:00:00:01']),
     'allowed_macs'),
    ('PUT', IC + 'x', ic(allowed_macs=MAC1), 'allowed_macs'),
    ('PUT', IC + 'x', ic(colour='red'), 'colour'),
    ('PUT', IC + 'x', {'vns': [5001, 7001]}, 'gateway'),
    ('PUT', IC + 'x', ic(gateway='xyz'), 'gateway'),
    ('PUT', IC + 'has space', ic(), 'name'),
    ('PUT', IC + 'x', ic(router=ROUTER), 'router'),      # l2 + l2
    # l2 + l3: blue (l2) and red (l3)
    ('PUT', IC + 'x', ic(vns=[5001, 6001]), 'router'),
    ('PUT', IC + 'x', ic(vns=[5001, 6001], allowed_macs=[MAC1]),
     'allowed_macs'),
    ('PUT', IC + 'x', ic(vns=[5001, 6001], router={
        '6001': ROUTER['5001']}), 'router'),
    ('PUT', IC + 'x', ic(vns=[5001, 6001], router={
        '5001': {'ip': '192.168.1.254', 'mac': '02:00:00:00:fe:51'}}),
     'router'),
    ('PUT', IC + 'x', ic(vns=[5001, 6001], router={
        '5001': {'ip': '192.168.1.254/24'}}), 'router.5001.mac'),
    ('PUT', IC + 'x', ic(vns=[5001, 6001], router={'blue': {}}), 'router'),
    ('PUT', EXT + 'x', ext(vlans={'100': 5001}), 'vnid'),
    ('PUT', EXT + 'x', {'gateway': DPGW, 'port': 'ext1'}, 'vnid'),
    ('PUT', EXT + 'x', ext(vnid=None, vlans={'5000': 5001}), 'vnid'),
    ('PUT', EXT + 'x', {'gateway': DPGW, 'port': 'ext1',
                        'vlans': {'5000': 5001}}, 'vlans'),
    ('PUT', EXT + 'x', {'gateway': DPGW, 'port': 'ext1',
                        'vlans': {'0': 5001}}, 'vlans'),
    ('PUT', EXT + 'x', {'gateway': DPGW, 'port': 'ext1',
                        'vlans': {'ten': 5001}}, 'vlans'),
    ('PUT', EXT + 'x', {'gateway': DPGW, 'port': 'ext1',
                        'vlans': {'10': 5001, '20': 5001}}, 'vlans'),
    ('PUT', EXT + 'x', ext(allowed_macs=['02:00:00:00:00']), 'allowed_macs'),
    ('PUT', EXT + 'x', ext(port='tap1'), 'port'),          # an access port
    ('PUT', EXT + 'x', ext(port='x' * 16), 'port'),
    ('PUT', '/v1/nves/' + DP1, {'role': 'router'}, 'role'),
    ('PUT', '/v1/nves/%s/ports/ext0' % DPGW, {'vnid': 5001}, 'port_name'),
]

NOT_FOUND = [
    ('PUT', IC + 'x', ic(vns=[5001, 4242]), 'vns'),
    ('PUT', IC + 'x', ic(gateway='00000000000000ee'), 'gateway'),
    ('PUT', EXT + 'x', ext(vnid=4242), 'vnid'),
    ('PUT', EXT + 'x', ext(gateway='00000000000000ee'), 'gateway'),
    ('GET', IC + 'nope', None, 'name'),
    ('DELETE', IC + 'nope', None, 'name'),
    ('GET', EXT + 'nope', None, 'name'),
    ('DELETE', EXT + 'nope', None, 'name'),
]

CONFLICT = [
    ('PUT', IC + 'x', ic(gateway=DP1), 'gateway'),        # not a gateway
    ('PUT', EXT + 'x', ext(gateway=DP1), 'gateway'),
    ('PUT', IC + 'again', ic(), 'vns'),        # blue-spare joins them
    ('PUT', EXT + 'x', ext(port='ext0'), 'port'),          # lab uses it
    ('PUT', '/v1/nves/' + DPGW, {'role': 'nve'}, 'role'),
    ('DELETE', '/v1/vns/7001', None, 'vnid'),
    ('DELETE', '/v1/vns/5001', None, 'vnid'),
    ('PATCH', '/v1/vns/7001', {'service': 'l3', 'gateway': {
        'mac': '02:00:00:00:fe:07', 'ips': ['10.7.0.1/24']}}, 'service'),
    # the router's address is a tenant system's
    ('PUT', IC + 'x', ic(vns=[5001, 6001], router={
        '5001': {'ip': '192.168.1.1/24', 'mac': '02:00:00:00:fe:51'}}),
     'router'),
]


@pytest.fixture(scope='module')
def world():
    return populated(gateway=True)


@pytest.mark.parametrize('case', BAD_REQUEST, ids=_id)
def test_bad_request(world, caplog, case):
    assert check_refused(world, caplog, case, 400)['code'] == 'bad-request'


@pytest.mark.parametrize('case', NOT_FOUND, ids=_id)
def test_not_found(world, caplog, case):
    assert check_refused(world, caplog, case, 404)['code'] == 'not-found'


@pytest.mark.parametrize('case', CONFLICT, ids=_id)
def test_conflict(world, caplog, case):
    assert check_refused(world, caplog, case, 409)['code'] == 'conflict'


def test_overlapping_routes_are_refused_and_change_nothing(caplog):
    world = make()
    ctl, _, client = world
    client.ok('PUT', '/v1/nves/' + DPGW, {'vtep_ip': '10.99.0.255',
                                          'role': 'gateway'})
    for vnid, net in ((6001, 10), (6002, 20), (6003, 20)):
        client.ok('POST', '/v1/vns', {
            'vnid': vnid, 'name': 'l3-%d' % vnid, 'service': 'l3',
            'gateway': {'mac': '02:00:00:00:fe:%02x' % (vnid % 256),
                        'ips': ['192.168.%d.1/24' % net]}})
    client.ok('PUT', IC + 'a', {'gateway': DPGW, 'vns': [6001, 6002]})
    # 6003's subnet is 6002's: 6001 could not tell where to route it.
    check_refused(world, caplog, ('PUT', IC + 'b', {
        'gateway': DPGW, 'vns': [6001, 6003]}, 'vns'), 409)
    # Nor may 6002 take a subnet 6001 routes to itself.
    check_refused(world, caplog, ('PATCH', '/v1/vns/6002', {'gateway': {
        'mac': '02:00:00:00:fe:72', 'ips': ['192.168.10.2/24']}},
        'gateway.ips'), 409)
    assert ctl.views.interconnects()[0]['name'] == 'a'


def test_put_get_list_delete_and_what_each_shows():
    ctl, _, client = populated(gateway=True)
    ctl.ack()
    got = client.ok('GET', IC + 'blue-spare')
    assert got == {'name': 'blue-spare', 'gateway': DPGW,
                   'vns': [5001, 7001], 'kind': 'l2+l2',
                   'allowed_macs': [MAC1], 'router': {}, 'origin': 'rest',
                   'traffic': {'frames': 0, 'bytes': 0, 'as_of': None}}
    assert client.ok('GET', '/v1/interconnects') == [got]
    gw = client.ok('GET', '/v1/nves/' + DPGW)
    assert (gw['role'], sorted(gw['vns'])) == ('gateway', [5001, 7001])
    # The gateway is in both VNs' context.
    assert DPGW in client.ok('GET', '/v1/vns/7001')['nves']
    # A host of the external network, and what the REST shows of it.
    ctl.learn(0xff, 'ext0', MAC2.replace('02', '0a', 1), '192.168.1.50',
              vlan=100)
    lab = client.ok('GET', EXT + 'lab')
    assert lab['vlans'] == {'100': 5001} and lab['ofport'] == 4
    assert [(h['vlan'], h['allowed']) for h in lab['hosts']] == [
        (100, False)]
    entry = [e for e in client.ok('GET', '/v1/vns/5001/mappings')
             if e['ip'] == '192.168.1.50']
    assert [(e['origin'], e['external'], e['nve']) for e in entry] == [
        ('external', 'lab', DPGW)]
    # Updating returns 200; deleting 204, then 404.
    client.ok('PUT', IC + 'blue-spare', ic(allowed_macs=[MAC1, MAC2]),
              status=200)
    client.ok('DELETE', IC + 'blue-spare', status=204)
    client.error('GET', IC + 'blue-spare', status=404)
    client.ok('DELETE', EXT + 'lab', status=204)
    assert client.ok('GET', '/v1/externals') == []
    # The external's host left with it; the gateway left the VN the
    # interconnect had it in (its own access port keeps it in blue).
    assert not [e for e in client.ok('GET', '/v1/mappings')
                if e['ip'] == '192.168.1.50']
    ctl.ack()
    assert client.ok('GET', '/v1/nves/' + DPGW)['vns'] == [5001]
    assert DPGW not in client.ok('GET', '/v1/vns/7001')['nves']
    events = [e['type'] for e in ctl.event_log.since(0)]
    for kind in ('interconnect-created', 'interconnect-updated',
                 'interconnect-deleted', 'external-created',
                 'external-deleted'):
        assert kind in events, kind
    assert client.ok('GET', '/v1/events?type=interconnect-deleted')[
        'events'][0]['name'] == 'blue-spare'


def test_allowed_mac_of_the_other_vn_is_an_entry_at_the_gateway():
    ctl, _, client = populated(gateway=True)
    ctl.connect(3, dict(GW_PORTS, tap1=1))
    client.ok('PUT', '/v1/nves/0000000000000003/ports/tap2', {'vnid': 7001})
    spare = '02:00:00:00:07:01'
    ctl.learn(3, 'tap2', spare, '10.7.0.1')
    client.ok('PUT', IC + 'blue-spare', ic(allowed_macs=[MAC1, spare]))
    imported = [e for e in client.ok('GET', '/v1/vns/5001/mappings')
                if e['mac'] == spare]
    assert [(e['origin'], e['interconnect'], e['nve'], e['ip'], e['port'])
            for e in imported] == [('interconnect', 'blue-spare', DPGW,
                                    '10.7.0.1', None)]
    mine = [e for e in client.ok('GET', '/v1/vns/7001/mappings')
            if e['mac'] == MAC1]
    assert [e['nve'] for e in mine] == [DPGW]


def test_metrics_and_rest_count_what_crossed_from_the_gateways_flows():
    from prometheus_client.parser import text_string_to_metric_families
    from nvo3_ryu_app.authority import pipeline as P
    ctl, _, client = populated(gateway=True)
    ctl.ack()
    admit, = [f for f in ctl.service.tables[0xff].desired.values()
              if isinstance(f, P.Flow) and f.table == P.INTERCONNECT and
              f.priority == P.PRIO_ADMIT]
    assert admit.match_dict['eth_src'] == MAC1
    ctl.service.flow_stats(0xff, [(admit, 7, 700)], False, ctl.now())
    body = client.call('GET', '/metrics')[1].decode()
    samples = {(s.name, s.labels.get('interconnect')): s.value
               for f in text_string_to_metric_families(body)
               for s in f.samples}
    assert samples[('nvo3_interconnect_frames_total', 'blue-spare')] == 7
    assert samples[('nvo3_interconnect_bytes_total', 'blue-spare')] == 700
    assert samples[('nvo3_interconnects', None)] == 1
    assert client.ok('GET', IC + 'blue-spare')['traffic'] == {
        'frames': 7, 'bytes': 700, 'as_of': ctl.now()}
