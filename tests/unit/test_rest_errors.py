"""REST API v1: bad input gets 400/404/405/409/413 naming the field, and a
request that fails changes nothing.

Every case runs against the same populated world, and the whole state a
client (or the store) can see is compared before and after the request:
VNs, NVEs, members and mappings of every VN, the topology, the sync status,
the event sequence number and the store's records.
"""

import logging

import pytest

from rest_support import DP1, DP2, DP3, MAC1, populated

NEW = '00000000000000ff'
B = {'vnid': 8001, 'name': 'green'}


def vn(**kw):
    return dict(B, **kw)


BAD_REQUEST = [
    # -- JSON itself --
    ('POST', '/v1/vns', b'{', None),
    ('POST', '/v1/vns', b'', None),
    ('POST', '/v1/vns', b'   ', None),
    ('POST', '/v1/vns', b'[1, 2]', None),
    ('POST', '/v1/vns', b'"blue"', None),
    ('POST', '/v1/vns', b'null', None),
    ('POST', '/v1/vns', b'\xff\xfe{}', None),
    ('POST', '/v1/vns', b'{"vnid": NaN, "name": "x"}', None),
    ('POST', '/v1/vns', b'{"vnid": Infinity, "name": "x"}', None),
    ('POST', '/v1/vns', b'[' * 100000 + b']' * 100000, None),
    ('POST', '/v1/vns', b'{"vnid": 8001, "name": "x"} trailing', None),
    # -- fields: missing, unknown, wrong types --
    ('POST', '/v1/vns', {'name': 'x'}, 'vnid'),
    ('POST', '/v1/vns', {'vnid': 8001}, 'name'),
    ('POST', '/v1/vns', vn(colour='green'), 'colour'),
    ('POST', '/v1/vns', vn(origin='config'), 'origin'),
    ('POST', '/v1/vns', vn(nves=[]), 'nves'),
    ('POST', '/v1/vns', vn(vnid='8001'), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=8001.0), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=True), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=None), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=[8001]), 'vnid'),
    ('POST', '/v1/vns', vn(name=5), 'name'),
    ('POST', '/v1/vns', vn(name=None), 'name'),
    ('POST', '/v1/vns', vn(service=None), 'service'),
    ('POST', '/v1/vns', vn(service=2), 'service'),
    ('POST', '/v1/vns', vn(gateway='02:00:00:00:fe:01'), 'gateway'),
    ('POST', '/v1/vns', vn(gateway={'bogus': 1}), 'gateway.bogus'),
    ('POST', '/v1/vns', vn(gateway={'ips': '10.0.0.1/24'}), 'gateway.ips'),
    ('POST', '/v1/vns', vn(gateway={'mac': 7}), 'gateway.mac'),
    # -- values --
    ('POST', '/v1/vns', vn(vnid=0), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=2 ** 24), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=-1), 'vnid'),
    ('POST', '/v1/vns', vn(vnid=10 ** 40), 'vnid'),
    ('POST', '/v1/vns', vn(name=''), 'name'),
    ('POST', '/v1/vns', vn(name='has space'), 'name'),
    ('POST', '/v1/vns', vn(name='x' * 65), 'name'),
    ('POST', '/v1/vns', vn(name='green\n'), 'name'),
    ('POST', '/v1/vns', vn(gateway={'mac': '02:00:00:00:fe:01\n',
                                    'ips': ['10.0.0.1/24']}), 'gateway.mac'),
    ('POST', '/v1/vns', vn(gateway={'ips': ['10.0.0.1/24', 'x\ty']}),
     'gateway.ips'),
    ('POST', '/v1/vns', vn(service='l4'), 'service'),
    ('POST', '/v1/vns', vn(encap='geneve'), 'encap'),
    ('POST', '/v1/vns', vn(service='l3'), 'gateway'),
    ('POST', '/v1/vns', vn(gateway={'mac': 'zz'}), 'gateway.mac'),
    ('POST', '/v1/vns', vn(gateway={'mac': '01:00:5e:00:00:01'}),
     'gateway.mac'),
    ('POST', '/v1/vns', vn(gateway={'ips': ['10.0.0.1']}), 'gateway.ips'),
    ('POST', '/v1/vns', vn(gateway={'ips': ['nope/24']}), 'gateway.ips'),
    # -- PATCH --
    ('PATCH', '/v1/vns/5001', {'vnid': 5002}, 'vnid'),
    ('PATCH', '/v1/vns/5001', {'vnid': 5001}, 'vnid'),
    ('PATCH', '/v1/vns/5001', {'name': 7}, 'name'),
    ('PATCH', '/v1/vns/5001', {'name': 'bad name'}, 'name'),
    ('PATCH', '/v1/vns/5001', {'colour': 'x'}, 'colour'),
    ('PATCH', '/v1/vns/5001', {'service': 'l3'}, 'gateway'),
    ('PATCH', '/v1/vns/6001', {'gateway': None}, 'gateway'),
    ('PATCH', '/v1/vns/5001', {'encap': 'stt'}, 'encap'),
    ('PATCH', '/v1/vns/5001', b'nope', None),
    ('PATCH', '/v1/vns/5001', b'[]', None),
    ('PATCH', '/v1/vns/0', {'name': 'x'}, 'vnid'),
    # -- VNIDs in paths --
    ('GET', '/v1/vns/0', None, 'vnid'),
    ('GET', '/v1/vns/16777216', None, 'vnid'),
    ('GET', '/v1/vns/abc', None, 'vnid'),
    ('GET', '/v1/vns/-5', None, 'vnid'),
    ('GET', '/v1/vns/1e3', None, 'vnid'),
    ('GET', '/v1/vns/5001.0', None, 'vnid'),
    ('GET', '/v1/vns/%D9%A3', None, 'vnid'),    # ARABIC-INDIC DIGIT THREE
    ('GET', '/v1/vns/' + '9' * 5000, None, 'vnid'),
    ('GET', '/v1/vns/5001%0A', None, 'vnid'),
    ('GET', '/v1/vns/0/members', None, 'vnid'),
    ('GET', '/v1/vns/16777216/mappings', None, 'vnid'),
    ('DELETE', '/v1/vns/0', None, 'vnid'),
    # -- DPIDs and ports --
    ('GET', '/v1/nves/xyz', None, 'dpid'),
    ('GET', '/v1/nves/1', None, 'dpid'),
    ('GET', '/v1/nves/0000000000000000', None, 'dpid'),
    ('GET', '/v1/nves/00000000000000001', None, 'dpid'),
    ('GET', '/v1/nves/00:00:00:00:00:00:00:01', None, 'dpid'),
    ('PUT', '/v1/nves/zz', {}, 'dpid'),
    ('PUT', '/v1/nves/' + NEW, {'vtep_ip': 'nope'}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + NEW, {'vtep_ip': 5}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + NEW, {'vtep_ip': None}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + NEW, {'vtep_ip': '224.0.0.1'}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + NEW, {'vtep_ip': '127.0.0.1'}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + NEW, {'name': 'a b'}, 'name'),
    ('PUT', '/v1/nves/' + NEW, {'name': ['hv']}, 'name'),
    ('PUT', '/v1/nves/' + NEW, {'dpid': NEW}, 'dpid'),
    ('PUT', '/v1/nves/' + NEW, {'connected': True}, 'connected'),
    ('PUT', '/v1/nves/' + NEW, b'[]', None),
    ('PUT', '/v1/nves/' + DP1, {'vtep_ip': '10.99.0.300'}, 'vtep_ip'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1,
     {'vnid': 5001, 'vlans': {'10': 5001}}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vnid': '5001'}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vnid': 0}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vnid': 2 ** 24}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': []}, 'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {}}, 'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'0': 5001}}, 'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'4095': 5001}},
     'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'x': 5001}},
     'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'9' * 5000: 5001}},
     'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'10': '5001'}},
     'vlans'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'10': 0}}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'port': 'tap2'}, 'port'),
    ('PUT', '/v1/nves/%s/ports/has%%20space' % DP1, {'vnid': 5001},
     'port_name'),
    ('PUT', '/v1/nves/%s/ports/%s' % (DP1, 'p' * 16), {'vnid': 5001},
     'port_name'),
    ('DELETE', '/v1/nves/%s/ports/bad%%21' % DP1, None, 'port_name'),
    ('PUT', '/v1/nves/%s/ports/tap2%%0A' % DP1, {'vnid': 5001}, 'port_name'),
    ('PUT', '/v1/nves/' + NEW, {'name': 'hv\n'}, 'name'),
    ('PATCH', '/v1/vns/5001', {'name': 'blue\n'}, 'name'),
    ('DELETE', '/v1/nves/1/ports/tap1', None, 'dpid'),
    # -- query parameters --
    ('GET', '/v1/vns?x=1', None, 'x'),
    ('GET', '/v1/mappings?mac=zz', None, 'mac'),
    ('GET', '/v1/mappings?mac=01:00:00:00:00:01', None, 'mac'),
    ('GET', '/v1/mappings?ip=nope', None, 'ip'),
    ('GET', '/v1/mappings?vnid=5001', None, 'vnid'),
    ('GET', '/v1/mappings?mac=%s&mac=%s' % (MAC1, MAC1), None, 'mac'),
    ('GET', '/v1/tesid?vnid=5001', None, 'mac'),
    ('GET', '/v1/tesid?mac=' + MAC1, None, 'vnid'),
    ('GET', '/v1/tesid?vnid=0&mac=' + MAC1, None, 'vnid'),
    ('GET', '/v1/tesid?vnid=5001&mac=nope', None, 'mac'),
    ('GET', '/v1/events?since=-1', None, 'since'),
    ('GET', '/v1/events?since=x', None, 'since'),
    ('GET', '/v1/events?since=1&since=2', None, 'since'),
    ('GET', '/v1/events?wait=31', None, 'wait'),
    ('GET', '/v1/events?wait=abc', None, 'wait'),
    ('GET', '/v1/events?wait=-1', None, 'wait'),
    ('GET', '/v1/events?limit=0', None, 'limit'),
    ('GET', '/v1/events?limit=1001', None, 'limit'),
    ('GET', '/v1/events?type=bogus', None, 'type'),
    ('GET', '/v1/events?type=attach,bogus', None, 'type'),
    ('GET', '/v1/events?bogus=1', None, 'bogus'),
    ('GET', '/v1/events/stream?timeout=4000', None, 'timeout'),
    ('GET', '/v1/events/stream?type=zzz', None, 'type'),
    ('GET', '/v1/events/stream?since=-3', None, 'since'),
    # -- encodings --
    ('GET', '/v1/nves/%ff', None, None),
    ('GET', '/v1/events?type=%ff', None, None),
]

NOT_FOUND = [
    ('GET', '/v1/vns/4242', None, 'vnid'),
    ('PATCH', '/v1/vns/4242', {'name': 'x'}, 'vnid'),
    ('DELETE', '/v1/vns/4242', None, 'vnid'),
    ('GET', '/v1/vns/4242/members', None, 'vnid'),
    ('GET', '/v1/vns/4242/mappings', None, 'vnid'),
    ('GET', '/v1/nves/' + NEW, None, 'dpid'),
    ('PUT', '/v1/nves/%s/ports/tap1' % NEW, {'vnid': 5001}, 'dpid'),
    ('DELETE', '/v1/nves/%s/ports/tap1' % NEW, None, 'dpid'),
    ('DELETE', '/v1/nves/%s/ports/tap9' % DP1, None, 'port_name'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vnid': 4242}, 'vnid'),
    ('PUT', '/v1/nves/%s/ports/tap2' % DP1, {'vlans': {'10': 4242}},
     'vnid'),
    ('GET', '/v1/tesid?vnid=5001&mac=02:00:00:00:00:99', None, 'mac'),
    ('GET', '/v1/tesid?vnid=4242&mac=' + MAC1, None, 'mac'),
    ('GET', '/v1/nope', None, None),
    ('GET', '/v1/vns/', None, None),
    ('GET', '/v1/vns/5001/nope', None, None),
    ('GET', '/v2/vns', None, None),
    ('GET', '/v1/vns%0A', None, None),
    ('GET', '/ui/nope.js', None, 'path'),
    ('GET', '/ui/.hidden', None, 'path'),
    ('GET', '/ui/../metrics.py', None, None),
    ('GET', '/ui/%2e%2e%2fmetrics.py', None, None),
]

CONFLICT = [
    ('POST', '/v1/vns', {'vnid': 5001, 'name': 'other'}, 'vnid'),
    ('POST', '/v1/vns', {'vnid': 8001, 'name': 'blue'}, 'name'),
    ('PATCH', '/v1/vns/7001', {'name': 'blue'}, 'name'),
    ('PUT', '/v1/nves/' + DP3, {'vtep_ip': '10.99.0.1'}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + NEW, {'vtep_ip': '10.99.0.2'}, 'vtep_ip'),
    ('PUT', '/v1/nves/' + DP2, {'vtep_ip': '10.99.0.3', 'name': 'x'},
     'vtep_ip'),
]

METHOD_NOT_ALLOWED = [
    ('POST', '/v1/vns/5001', 'DELETE, GET, PATCH'),
    ('PUT', '/v1/vns', 'GET, POST'),
    ('POST', '/v1/nves/' + DP1, 'DELETE, GET, PUT'),
    ('GET', '/v1/nves/%s/ports/tap1' % DP1, 'DELETE, PUT'),
    ('POST', '/v1/events', 'GET'),
    ('HEAD', '/v1/vns', 'GET, POST'),
    ('OPTIONS', '/metrics', 'GET'),
]


@pytest.fixture(scope='module')
def world():
    return populated()


def _id(case):
    method, path, body = case[:3]
    text = body if isinstance(body, (bytes, type(None))) else repr(body)
    return ('%s %s %s' % (method, path, text))[:90]


def check_refused(world, caplog, case, status):
    method, path, body, field = case
    ctl, _, client = world
    before = client.state(ctl)
    raw = body if isinstance(body, bytes) else None
    with caplog.at_level(logging.ERROR,
                         logger='nvo3_ryu_app.northbound.rest.server'):
        err = client.error(method, path, None if raw else body, raw,
                           status=status, field=field)
    assert not caplog.records, 'a bad request reached the 500 handler'
    assert client.state(ctl) == before, 'a failed request changed state'
    return err


@pytest.mark.parametrize('case', BAD_REQUEST, ids=_id)
def test_bad_request(world, caplog, case):
    assert check_refused(world, caplog, case, 400)['code'] == 'bad-request'


@pytest.mark.parametrize('case', NOT_FOUND, ids=_id)
def test_not_found(world, caplog, case):
    assert check_refused(world, caplog, case, 404)['code'] == 'not-found'


@pytest.mark.parametrize('case', CONFLICT, ids=_id)
def test_conflict(world, caplog, case):
    assert check_refused(world, caplog, case, 409)['code'] == 'conflict'


@pytest.mark.parametrize('method, path, allow', METHOD_NOT_ALLOWED)
def test_method_not_allowed(world, method, path, allow):
    ctl, _, client = world
    before = client.state(ctl)
    code, body, resp = client.call(method, path)
    assert code == 405
    if method != 'HEAD':      # a HEAD answer has no body
        assert body['error']['code'] == 'method-not-allowed'
    assert resp.headers['Allow'] == allow
    assert client.state(ctl) == before


def test_body_too_large(world):
    ctl, _, client = world
    before = client.state(ctl)
    big = b'{"vnid": 8001, "name": "x", "pad": "' + b'x' * (1 << 20) + b'"}'
    err = client.error('POST', '/v1/vns', raw=big, status=413)
    assert err['code'] == 'too-large'
    assert client.state(ctl) == before


def test_error_messages_say_what_was_wrong(world):
    _, _, client = world
    err = client.error('POST', '/v1/vns', vn(vnid=2 ** 24), field='vnid')
    assert '24 bits' in err['message']
    err = client.error('POST', '/v1/vns', vn(colour='x'), field='colour')
    assert 'unknown field' in err['message'] and 'colour' in err['message']
    err = client.error('POST', '/v1/vns', {'vnid': 5001, 'name': 'o'},
                       status=409, field='vnid')
    assert 'already exists' in err['message']
    err = client.error('PUT', '/v1/nves/' + DP3, {'vtep_ip': '10.99.0.1'},
                       status=409, field='vtep_ip')
    assert '10.99.0.1' in err['message'] and DP1 in err['message']


def test_last_event_id_must_be_a_number(world):
    _, _, client = world
    code, body, _ = client.call('GET', '/v1/events/stream',
                                headers={'Last-Event-ID': 'abc'})
    assert code == 400 and body['error']['field'] == 'Last-Event-ID'


def test_unexpected_errors_are_logged_and_answered_500(world, caplog,
                                                       monkeypatch):
    ctl, _, client = world

    def broken(vnid):
        raise RuntimeError('boom')

    monkeypatch.setattr(ctl.views, 'vn_members', broken)
    with caplog.at_level(logging.ERROR,
                         logger='nvo3_ryu_app.northbound.rest.server'):
        code, body, _ = client.call('GET', '/v1/vns/5001/members')
    assert code == 500
    assert body == {'error': {'code': 'internal-error',
                              'message': 'internal error; see the app log',
                              'field': None}}
    assert 'boom' in caplog.text and 'Traceback' in caplog.text


def test_failed_write_does_not_commit(world):
    """The store sees no commit for a refused write."""
    ctl, _, client = world
    written = ctl.authority.counters['store_records_written']
    client.error('POST', '/v1/vns', {'vnid': 5001, 'name': 'x'}, status=409)
    client.error('PUT', '/v1/nves/%s/ports/tap2' % DP2, {'vnid': 4242},
                 status=404)
    assert ctl.authority.counters['store_records_written'] == written
