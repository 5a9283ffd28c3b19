"""REST: /v1/vns/{vnid}/migrations (announce, see, cancel), the events and
metrics of a migration, and its switch-over timed by the service."""

from prometheus_client.parser import text_string_to_metric_families

from nvo3_ryu_app.authority import pipeline as P
from fakeof import garp_bytes
from nvo3_ryu_app.northbound import metrics
from rest_support import DP1, DP2, DP3, MAC1, MAC2, populated

BASE = '/v1/vns/5001/migrations'


def announce(client, mac=MAC1, nve=DP2, port='tap1', status=201, **extra):
    return client.ok('POST', BASE, dict(mac=mac, nve=nve, port=port,
                                        **extra), status=status)


def samples(client):
    code, body, _ = client.call('GET', '/metrics')
    assert code == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_announce_list_get_renew_and_cancel():
    ctl, _, client = populated()
    ctl.ack()
    assert client.ok('GET', BASE) == []
    code, body, resp = client.call('POST', BASE, {
        'mac': MAC1.upper(), 'nve': DP2, 'port': 'tap1'})
    assert code == 201, body
    assert resp.headers['Location'].endswith('%s/%s' % (BASE, MAC1))
    assert body['from'] == {'nve': DP1, 'port': 'tap1', 'vlan': None}
    assert body['to'] == {'nve': DP2, 'port': 'tap1', 'vlan': None}
    assert body['state'] == 'awaited' and body['arrived'] is None
    assert body['deadline'] == body['started'] + 300.0
    assert client.ok('GET', BASE) == [body]
    assert client.ok('GET', '%s/%s' % (BASE, MAC1)) == body
    # Its dual delivery is planned: the write's flows are on their way.
    assert not ctl.service.sync_status(1)['in_sync']
    ctl.ack()
    assert client.ok('GET', '/v1/sync')['in_sync']
    ctl.clock += 10
    again = announce(client, status=200)
    assert again['deadline'] == ctl.clock + 300.0
    assert again['started'] == body['started']
    code, _, _ = client.call('DELETE', '%s/%s' % (BASE, MAC1))
    assert code == 204
    assert client.ok('GET', BASE) == []
    client.error('GET', '%s/%s' % (BASE, MAC1), status=404, field='mac')
    client.error('DELETE', '%s/%s' % (BASE, MAC1), status=404, field='mac')
    kinds = [e['type'] for e in client.ok('GET', '/v1/events')['events']
             if e['type'].startswith('migration')]
    assert kinds == ['migration-started', 'migration-cancelled']


def test_bad_announcements_are_refused_and_change_nothing():
    ctl, _, client = populated()
    stored = ctl.authority.store.load()
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP2}, field='port')
    client.error('POST', BASE, {'mac': MAC1, 'nve': '2', 'port': 'tap1'},
                 field='nve')
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP2, 'port': 'tap1',
                                'vlan': 5000}, field='vlan')
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP2, 'port': 'tap1',
                                'when': 1}, field='when')
    client.error('POST', BASE, {'mac': '01:00:5e:00:00:01', 'nve': DP2,
                                'port': 'tap1'}, field='mac')
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP2, 'port': 'a/b'},
                 field='port')
    client.error('POST', '/v1/vns/4242/migrations', {
        'mac': MAC1, 'nve': DP2, 'port': 'tap1'}, status=404, field='vnid')
    client.error('POST', BASE, {'mac': '02:00:00:00:00:99', 'nve': DP2,
                                'port': 'tap1'}, status=404, field='mac')
    client.error('POST', BASE, {'mac': MAC1, 'nve': '00000000000000ee',
                                'port': 'tap1'}, status=404, field='nve')
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP2, 'port': 'tap9'},
                 status=409, field='port')
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP1, 'port': 'tap1'},
                 status=409, field='port')
    client.error('GET', '/v1/vns/5001/migrations/nope', field='mac')
    client.error('GET', '/v1/vns/4242/migrations', status=404)
    assert ctl.authority.store.load() == stored
    announce(client)
    client.error('POST', BASE, {'mac': MAC1, 'nve': DP3, 'port': 'tap1'},
                 status=409, field='mac')


def test_a_completed_migration_is_timed_and_counted():
    ctl, _, client = populated()
    # As app.py wires the service: switch-overs go to the histogram.
    ctl.service.convergence.observe_migration = metrics.switch_over.observe
    ctl.ack()
    before = samples(client)
    assert before[('nvo3_migrations_pending', ())] == 0
    announce(client)
    ctl.ack()
    assert samples(client)[('nvo3_migrations_pending', ())] == 1
    # The old place went; the vNIC's first frame at the new place (copied
    # to the authority by the arrival flow, forwarded by the switch).
    service = ctl.service
    service.port_changed(1, 'tap1', None, ctl.clock + 1)
    ctl.clock += 2
    service.packet_in(2, P.SOURCE, 1, 'tap1', {
        'reg6': 0, 'metadata': 5001, 'cookie': P.COOKIE_FORWARDED},
        garp_bytes(MAC1, '192.168.1.1'), ctl.clock)
    arrived = ctl.clock
    ctl.clock += 0.004               # the NVEs answer 4 ms later
    ctl.ack()
    done, = [e for e in client.ok('GET', '/v1/events')['events']
             if e['type'] == 'migration-completed']
    assert done['arrived'] == arrived
    assert done['switch_over_ms'] == round(ctl.clock - arrived, 6) * 1000
    assert done['mac'] == MAC1 and done['nve'] == DP2
    after = samples(client)
    assert after[('nvo3_migrations_pending', ())] == 0
    for outcome, grew in (('started', 1), ('completed', 1),
                          ('cancelled', 0), ('timed-out', 0)):
        key = ('nvo3_migrations_total', (('outcome', outcome),))
        assert after[key] - before.get(key, 0) == grew, outcome
    key = ('nvo3_migration_switchover_seconds_count', ())
    assert after[key] - before.get(key, 0) == 1
    entry, = client.ok('GET', '/v1/mappings?mac=%s' % MAC1)
    assert (entry['nve'], entry['port'], entry['seq']) == (DP2, 'tap1', 2)
    # MAC2 is untouched.
    assert client.ok('GET', '/v1/mappings?mac=%s' % MAC2)[0]['nve'] == DP2


def test_responses_match_the_document():
    from test_openapi import CHECKS, _case, _schema_for
    ctl, app, _ = populated()
    ctl.ack()
    schema = _schema_for(app)
    walk = [
        ('POST', BASE, ({'vnid': 5001}, {'mac': MAC1, 'nve': DP2,
                                         'port': 'tap1'}), 201),
        ('POST', BASE, ({'vnid': 5001}, {'mac': MAC1, 'nve': DP2,
                                         'port': 'tap1'}), 200),
        ('GET', BASE, {'vnid': 5001}, 200),
        ('GET', BASE + '/{mac}', {'vnid': 5001, 'mac': MAC1}, 200),
        ('POST', BASE, ({'vnid': 5001}, {'mac': MAC1, 'nve': DP2,
                                         'port': 'tap9'}), 409),
        ('DELETE', BASE + '/{mac}', {'vnid': 5001, 'mac': MAC1}, 204),
        ('GET', BASE + '/{mac}', {'vnid': 5001, 'mac': MAC1}, 404),
    ]
    for method, path, args, status in walk:
        path = path.replace('5001', '{vnid}')
        case = _case(schema, method, path, args)
        response = case.call()
        assert response.status_code == status, (method, path,
                                                response.text)
        case.validate_response(response, checks=CHECKS)
