"""GET /v1/nves/{dpid}/audit: what an NVE holds against what it must hold."""

from rest_support import make


def _setup():
    ctl, _, client = make()
    client.ok('POST', '/v1/vns', {'vnid': 5001, 'name': 'blue'})
    client.ok('PUT', '/v1/nves/0000000000000001', {'vtep_ip': '10.0.0.1'})
    client.ok('PUT', '/v1/nves/0000000000000002', {'vtep_ip': '10.0.0.2'})
    client.ok('PUT', '/v1/nves/0000000000000001/ports/p1', {'vnid': 5001})
    ctl.connect(1)
    return ctl, client


def test_audit_of_an_nve_in_sync_finds_nothing():
    ctl, client = _setup()
    ctl.learn(1, 'p1', '02:00:00:00:00:01', '192.168.1.1')
    ctl.ack()
    audit = client.ok('GET', '/v1/nves/0000000000000001/audit')
    assert audit['desired_equals_recompute'] is True
    assert (audit['missing'], audit['stale'], audit['different']) == (
        [], [], [])
    assert audit['installed'] == audit['desired'] > 0


def test_audit_reports_what_is_missing():
    ctl, client = _setup()
    ctl.learn(1, 'p1', '02:00:00:00:00:01', '192.168.1.1')   # not acked
    audit = client.ok('GET', '/v1/nves/0000000000000001/audit')
    assert audit['missing'] and audit['installed'] == 0


def test_audit_errors():
    _, client = _setup()
    client.error('GET', '/v1/nves/0000000000000009/audit', status=404,
                 field='dpid')
    client.error('GET', '/v1/nves/0000000000000002/audit', status=409,
                 field='dpid')
    client.error('GET', '/v1/nves/xyz/audit', status=400, field='dpid')
