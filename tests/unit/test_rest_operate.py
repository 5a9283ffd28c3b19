"""REST for operators: dry runs of any write, the file's bindings as a base
layer, NVE names in paths, traces, cookies, an honest /v1/sync, audits in
ovs-ofctl syntax.  In-process against the service the app runs."""

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority.owners import TsOwner, VnOwner, cookie_for
from rest_support import DP1, DP2, MAC1, MAC2, make, populated

FILE = {'vns': [{'vnid': 5001, 'name': 'blue'}],
        'nves': [{'dpid': DP1, 'name': 'hv1', 'vtep_ip': '10.99.0.1',
                  'ports': {'tap1': {'vnid': 5001}}}]}


def test_any_write_can_be_tried_and_nothing_happens():
    ctl, _, client = populated()
    ctl.ack()
    before = client.state(ctl)
    for method, path, body in (
            ('POST', '/v1/vns', {'vnid': 9001, 'name': 'teal'}),
            ('PATCH', '/v1/vns/5001', {'encap': 'gre'}),
            ('DELETE', '/v1/vns/5001', None),
            ('PUT', '/v1/nves/%s' % DP2, {'vtep_ip': '10.99.0.22'}),
            ('PUT', '/v1/nves/hv1/ports/tap2', {'vnid': 5001}),
            ('DELETE', '/v1/nves/hv2/ports/tap1', None)):
        answer = client.ok(method, path + '?dry_run=true', body, status=200)
        assert answer['dry_run'] is True, (method, path)
        assert answer['events'], (method, path)
    assert client.state(ctl) == before
    answer = client.ok('PATCH', '/v1/vns/5001?dry_run=true', {'encap': 'gre'})
    flows = [line for nve in answer['nves'] for line in nve['flow_mods']]
    assert any('tun_id' in line and line.startswith('modify ')
               for line in flows)


def test_dry_run_is_for_writes_and_refusals_stay_refusals():
    ctl, _, client = populated()
    client.error('GET', '/v1/vns?dry_run=true', field='dry_run')
    client.error('POST', '/v1/vns?dry_run=maybe', {'vnid': 9, 'name': 'x'},
                 field='dry_run')
    client.error('POST', '/v1/vns?dry_run=true', {'vnid': 5001, 'name': 'x'},
                 status=409)


def test_a_rest_binding_over_the_files_needs_override_and_gives_way():
    ctl, _, client = make()
    ctl.execute(C.ApplyConfig(FILE))
    err = client.error('PUT', '/v1/nves/%s/ports/tap1' % DP1,
                       {'vnid': 5001}, status=409, field='port_name')
    assert 'configuration file' in err['message']
    client.ok('POST', '/v1/vns', {'vnid': 5002, 'name': 'green'})
    client.error('PUT', '/v1/nves/%s/ports/tap1' % DP1, {'vnid': 5002},
                 status=409)
    bound = client.ok('PUT', '/v1/nves/%s/ports/tap1?override=true' % DP1,
                      {'vnid': 5002})
    assert bound['overrides'] == {'vnid': 5001, 'origin': 'config'}
    assert client.ok('GET', '/v1/nves/hv1')['ports']['tap1']['vnid'] == 5002
    client.ok('DELETE', '/v1/nves/%s/ports/tap1' % DP1, status=204)
    port = client.ok('GET', '/v1/nves/hv1')['ports']['tap1']
    assert (port['vnid'], port['origin']) == (5001, 'config')
    client.error('DELETE', '/v1/nves/%s/ports/tap1' % DP1, status=409)
    types = [e['type'] for e in client.ok('GET', '/v1/events')['events']]
    assert types.count('bind') == 2 and types.count('unbind') == 1


def test_names_stand_for_dpids_in_every_path():
    ctl, _, client = populated()
    assert client.ok('GET', '/v1/nves/hv2')['dpid'] == DP2
    client.ok('PUT', '/v1/nves/hv2', {'vtep_ip': '10.99.0.42'})
    assert client.ok('GET', '/v1/nves/' + DP2)['vtep_ip'] == '10.99.0.42'
    client.ok('PUT', '/v1/nves/hv2/ports/tap2', {'vnid': 5001}, status=201)
    ctl.ack()
    assert client.ok('GET', '/v1/nves/hv2/audit')['nve'] == DP2
    client.error('GET', '/v1/nves/nobody', field='dpid')


def test_sync_with_no_nve_connected_is_not_in_sync():
    ctl, _, client = make()
    sync = client.ok('GET', '/v1/sync')
    assert (sync['in_sync'], sync['reason']) == (False, 'no NVE is known')
    ctl.execute(C.ApplyConfig(FILE))
    sync = client.ok('GET', '/v1/sync')
    assert (sync['in_sync'], sync['reason']) == (False,
                                                 'no NVE is connected')
    assert sync['states'] == {DP1: 'down'} and sync['down'] == [DP1]
    ctl.connect(1)
    assert client.ok('GET', '/v1/sync')['states'][DP1] == 'dumping' or \
        client.ok('GET', '/v1/sync')['states'][DP1] == 'syncing'
    ctl.ack()
    sync = client.ok('GET', '/v1/sync')
    assert (sync['in_sync'], sync['reason'], sync['states']) == (
        True, None, {DP1: 'in-sync'})


def test_trace_in_the_drafts_terms():
    ctl, _, client = populated()
    ctl.ack()
    trace = client.ok('GET', '/v1/trace?vn=blue&src=192.168.1.1'
                             '&dst=192.168.1.2')
    assert trace['verdicts'] == ['delivered on hv2 port tap1',
                                 'tunnelled from hv1 to hv2 (VNID 5001)']
    assert [h['name'] for h in trace['hops']] == ['hv1', 'hv2']
    owners = [t['owner'] for t in trace['hops'][0]['tables']]
    assert any(o.startswith('mapping entry of tenant system %s' % MAC2)
               for o in owners)
    assert trace['hops'][0]['ofproto_trace']['flow'].startswith('in_port=1,')
    arp = client.ok('GET', '/v1/trace?vn=5001&src=%s&dst=192.168.1.2'
                           '&kind=arp' % MAC1)
    assert arp['verdicts'][0].startswith('answered by the ingress NVE hv1')
    assert len(arp['hops']) == 1
    client.error('GET', '/v1/trace?vn=blue&src=192.168.1.99&dst=broadcast',
                 status=404, field='src')
    spoof = client.ok('GET', '/v1/trace?vn=blue&src=02:00:00:00:00:99'
                             '&dst=broadcast&at=hv1:tap1')
    assert any('unknown source' in v for v in spoof['verdicts']), spoof


def test_cookies_decode_to_their_owner_or_say_stale():
    ctl, _, client = populated()
    vn = client.ok('GET', '/v1/cookies/%x' % cookie_for(VnOwner(5001)))
    assert (vn['known'], vn['kind'], vn['owner']['vnid']) == (True, 'vn',
                                                              5001)
    ts = client.ok('GET', '/v1/cookies/0x%x' % cookie_for(
        TsOwner(5001, MAC1)))
    assert ts['owner']['mac'] == MAC1 and '192.168.1.1' in ts['text']
    stale = client.ok('GET', '/v1/cookies/0x%x' % cookie_for(
        TsOwner(5001, '02:00:00:00:00:77')))
    assert (stale['known'], stale['text'][:15]) == (False, 'unknown / stale')
    assert client.ok('GET', '/v1/cookies/0x1234')['ours'] is False
    client.error('GET', '/v1/cookies/xyz', field='cookie')


def test_an_audit_shows_differences_in_ovs_ofctl_syntax():
    ctl, _, client = populated()
    ctl.ack()
    switch = ctl.nves.switches[1]
    flow = next(f for f in switch.flows() if f.table == 4
                and f.priority == 200)
    switch.apply([('delete', flow)], verify_idempotent=False)
    audit = client.ok('GET', '/v1/nves/hv1/audit')
    missing, = audit['differences']
    assert missing['change'] == 'missing'
    assert missing['flow'].startswith('cookie=0x%x,table=4,priority=200,'
                                      % flow.cookie)
