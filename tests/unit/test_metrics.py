"""GET /metrics: Prometheus text that the client library's own parser reads,
with the families operators rely on, and values that follow the system."""

import prometheus_client
from os_ken.lib.packet import arp, ethernet, packet
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from nvo3_ryu_app.northbound import metrics
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.errors import Conflict
from rest_support import DP1, MAC1, MAC2, make, populated

EXPECTED = {
    # name: type
    'nvo3_packet_ins_received': 'counter',
    'nvo3_packet_ins': 'counter',
    'nvo3_packet_ins_learned': 'counter',
    'nvo3_packet_ins_dropped': 'counter',
    'nvo3_flow_mods_sent': 'counter',
    'nvo3_of_errors': 'counter',
    'nvo3_audits': 'counter',
    'nvo3_audit_repairs': 'counter',
    'nvo3_sync_repairs': 'counter',
    'nvo3_store_records_written': 'counter',
    'nvo3_nd_answered': 'counter',
    'nvo3_events': 'counter',
    'nvo3_moves': 'counter',
    'nvo3_conflicts': 'counter',
    'nvo3_rest_requests': 'counter',
    'nvo3_rest_request_seconds': 'histogram',
    'nvo3_packet_in_seconds': 'histogram',
    'nvo3_move_convergence_seconds': 'histogram',
    'nvo3_event_loop_lag_seconds': 'histogram',
    'nvo3_gc_pause_seconds': 'histogram',
    'nvo3_gc_frozen_objects': 'gauge',
    'nvo3_mapping_entries': 'gauge',
    'nvo3_tenant_systems': 'gauge',
    'nvo3_vn_members': 'gauge',
    'nvo3_vns': 'gauge',
    'nvo3_nves_registered': 'gauge',
    'nvo3_nves_connected': 'gauge',
    'nvo3_flows_desired': 'gauge',
    'nvo3_flows_pending': 'gauge',
    'nvo3_nve_in_sync': 'gauge',
    'nvo3_event_seq': 'gauge',
    'nvo3_store_records': 'gauge',
}


def scrape(client):
    code, body, resp = client.call('GET', '/metrics')
    assert code == 200
    assert resp.headers['Content-Type'] == CONTENT_TYPE_LATEST
    families = {f.name: f for f in
                text_string_to_metric_families(body.decode())}
    return families


def value(families, name, sample=None, **labels):
    family = families[name]
    for s in family.samples:
        if (sample is None or s.name == sample) and all(
                s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def arp_frame(mac, ip):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('ff:ff:ff:ff:ff:ff', mac, 0x0806))
    pkt.add_protocol(arp.arp_ip(arp.ARP_REQUEST, mac, ip,
                                '00:00:00:00:00:00', '192.168.1.254'))
    pkt.serialize()
    return bytes(pkt.data)


def test_scrape_parses_and_has_every_family():
    _, _, client = populated()
    families = scrape(client)
    for name, kind in EXPECTED.items():
        assert name in families, name
        assert families[name].type == kind, name


def test_gauges_follow_the_database():
    ctl, _, client = populated()
    families = scrape(client)
    assert value(families, 'nvo3_mapping_entries', vnid='5001',
                 vn='blue') == 2
    assert value(families, 'nvo3_mapping_entries', vnid='7001') == 0
    assert value(families, 'nvo3_vn_members', vnid='5001') == 2
    assert value(families, 'nvo3_vns') == 3
    assert value(families, 'nvo3_nves_registered') == 3
    assert value(families, 'nvo3_nves_connected') == 2
    assert value(families, 'nvo3_flows_pending', nve=DP1) > 0
    assert value(families, 'nvo3_nve_in_sync', nve=DP1) == 0
    ctl.ack()
    client.ok('POST', '/v1/vns', {'vnid': 8001, 'name': 'green'})
    families = scrape(client)
    assert value(families, 'nvo3_mapping_entries', vnid='8001',
                 vn='green') == 0
    assert value(families, 'nvo3_vns') == 4
    assert value(families, 'nvo3_flows_pending', nve=DP1) == 0
    assert value(families, 'nvo3_nve_in_sync', nve=DP1) == 1
    assert value(families, 'nvo3_event_seq') == ctl.authority.event_log.seq
    assert value(families, 'nvo3_store_records') > 0


def test_rest_requests_counted_by_route_and_status():
    _, _, client = populated()
    route = '/v1/vns/{vnid}'
    before = value(scrape(client), 'nvo3_rest_requests',
                   'nvo3_rest_requests_total', method='GET', route=route,
                   status='404') or 0
    client.call('GET', '/v1/vns/4242')
    client.call('GET', '/v1/vns/4243')
    client.call('GET', '/v1/vns/5001')
    client.call('GET', '/v1/nowhere')
    families = scrape(client)
    assert value(families, 'nvo3_rest_requests', 'nvo3_rest_requests_total',
                 method='GET', route=route, status='404') == before + 2
    assert value(families, 'nvo3_rest_requests', 'nvo3_rest_requests_total',
                 method='GET', route=route, status='200') == 1
    assert value(families, 'nvo3_rest_requests', 'nvo3_rest_requests_total',
                 method='GET', route='unmatched', status='404') == 1
    assert value(families, 'nvo3_rest_request_seconds',
                 'nvo3_rest_request_seconds_count', method='GET',
                 route=route) == 3


def test_packet_ins_by_kind_and_dropped_malformed():
    ctl, _, client = populated()
    auth = ctl.authority
    auth.packet_in(1, P.CLASSIFY, 1, 'tap1', {}, b'\x00' * 5, ctl.now())
    auth.packet_in(1, P.CLASSIFY, 1, 'tap1', {},
                   arp_frame('02:00:00:00:00:77', '192.168.1.77'),
                   ctl.now())
    auth.packet_in(2, P.CLASSIFY, 2, 'tap2', {},
                   arp_frame('02:00:00:00:00:78', '192.168.1.78'),
                   ctl.now())
    families = scrape(client)
    assert value(families, 'nvo3_packet_ins_dropped', reason='malformed') \
        == 1
    assert value(families, 'nvo3_packet_ins_dropped',
                 reason='unbound-port') == 1
    assert value(families, 'nvo3_packet_ins_received') == 3
    assert value(families, 'nvo3_packet_ins', kind='learn') == 1
    assert value(families, 'nvo3_packet_ins', kind='dropped') == 2
    kinds = [s.value for s in families['nvo3_packet_ins'].samples
             if s.name == 'nvo3_packet_ins_total']
    assert sum(kinds) == 3, 'kinds partition the packet-ins'
    assert value(families, 'nvo3_mapping_entries', vnid='5001') == 3


def test_moves_and_conflicts_are_counted():
    ctl, _, client = populated()
    db = ctl.authority.db
    db.learn(2, 'tap1', None, MAC1, None, ctl.now())     # MAC1 moves
    ctl.authority.commit(ctl.now())
    try:
        db.learn(2, 'tap1', None, MAC2, '192.168.1.1', ctl.now())
    except Conflict:
        pass
    families = scrape(client)
    assert value(families, 'nvo3_moves') == 1
    assert value(families, 'nvo3_conflicts') == 1
    assert value(families, 'nvo3_events', type='move') == 1
    assert value(families, 'nvo3_events', type='vn-created') == 3


def test_latency_histograms_can_be_observed_by_other_modules():
    _, _, client = make()
    before = value(scrape(client), 'nvo3_packet_in_seconds',
                   'nvo3_packet_in_seconds_count')
    metrics.handling_latency.observe(0.002)
    metrics.convergence.observe(0.3)
    families = scrape(client)
    assert value(families, 'nvo3_packet_in_seconds',
                 'nvo3_packet_in_seconds_count') == before + 1
    assert value(families, 'nvo3_move_convergence_seconds',
                 'nvo3_move_convergence_seconds_bucket', le='0.5') >= 1


def test_registries_are_private():
    """Two apps in one process scrape independently; the global registry
    stays untouched."""
    _, _, one = make()
    _, _, two = make()
    one.call('GET', '/v1/vns/4242')
    assert value(scrape(one), 'nvo3_rest_requests',
                 'nvo3_rest_requests_total', status='404') == 1
    assert value(scrape(two), 'nvo3_rest_requests',
                 'nvo3_rest_requests_total', status='404') is None
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(n.startswith('nvo3_') for n in names)


def test_scrape_survives_a_failing_store():
    ctl, _, client = make()

    def broken():
        raise RuntimeError('closed')

    ctl.authority.store.stats = broken
    assert 'nvo3_vns' in scrape(client)
