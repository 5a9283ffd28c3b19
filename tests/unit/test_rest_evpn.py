"""REST for BGP EVPN: a VN's ``evpn`` and ``route_targets`` (create, PATCH,
refusals) and ``GET /v1/bgp`` (contract 7), against the service the app
runs (rest_support.FakeCtl), with BGP configured and without."""

from nvo3_ryu_app import service
from nvo3_ryu_app.northbound import rest
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.storage import store
from rest_support import Client, FakeCtl, make

BGP = Settings(bgp_as=65001, bgp_router_id='10.0.0.254')


def bgp_client(settings=BGP):
    ctl = FakeCtl()
    ctl.service = service.Service(settings, store.MemoryStore(),
                                  start_time=ctl.clock)
    ctl.authority = ctl.service.authority
    ctl.views = ctl.service.views
    ctl.event_log = ctl.service.event_log
    ctl.counters = ctl.service.counters
    status = {'as': 65001, 'router_id': '10.0.0.254',
              'neighbors': [{'address': '127.0.0.2', 'remote_as': 65002,
                             'state': 'Established', 'router_id': None}],
              'routes': {'exported': 0, 'imported': 0}}
    ctl.bgp_status = lambda: status
    return ctl, Client(rest.make_app(ctl))


def test_a_vn_created_with_evpn_shows_it_and_derives_nothing_it_was_told():
    ctl, client = bgp_client()
    vn = client.ok('POST', '/v1/vns', {'vnid': 5001, 'name': 'blue',
                                       'evpn': True,
                                       'route_targets': ['65001:77']},
                   status=201)
    assert (vn['evpn'], vn['route_targets']) == (True, ['65001:77'])
    assert ctl.authority.evpn.vrf(5001) == ('10.0.0.254:5001', ('65001:77',))
    plain = client.ok('POST', '/v1/vns', {'vnid': 5002, 'name': 'red'},
                      status=201)
    assert 'evpn' not in plain            # the view of others is as before


def test_patch_turns_evpn_on_and_off_and_bad_input_is_refused():
    ctl, client = bgp_client()
    client.ok('POST', '/v1/vns', {'vnid': 5001, 'name': 'blue'}, status=201)
    assert client.ok('PATCH', '/v1/vns/5001', {'evpn': True})['evpn'] is True
    off = client.ok('PATCH', '/v1/vns/5001', {'evpn': False,
                                              'route_targets': []})
    assert off.get('evpn', False) is False
    for body, field in (({'evpn': 'yes'}, 'evpn'),
                        ({'route_targets': '65001:1'}, 'route_targets'),
                        ({'route_targets': ['65001']}, 'route_targets'),
                        ({'route_targets': ['70000:70000']}, 'route_targets')):
        err = client.error('PATCH', '/v1/vns/5001', body)
        assert err['field'] == field, (body, err)
    # A VNID over 16 bits beside a 4-byte AS fits no route distinguisher
    # (RFC 4364): refused before the VN exists.
    _, wide = bgp_client(BGP.replace(bgp_as=4200000000))
    wide.error('POST', '/v1/vns', {'vnid': 70000, 'name': 'big',
                                   'evpn': True}, field='vnid')
    assert wide.error('GET', '/v1/vns/70000', status=404)
    assert wide.ok('POST', '/v1/vns', {'vnid': 7000, 'name': 'small',
                                       'evpn': True}, status=201)['evpn']


def test_get_bgp_is_the_speaker_status_or_404_without_bgp():
    _, client = bgp_client()
    got = client.ok('GET', '/v1/bgp')
    assert got['as'] == 65001 and got['neighbors'][0]['state'] == \
        'Established'
    _, _, plain = make()
    err = plain.error('GET', '/v1/bgp', status=404)
    assert err['field'] == 'bgp_as'
