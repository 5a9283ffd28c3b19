"""Metrics for dashboards: per-NVE series named by NVE (connected, packet-
ins, audit repairs), RPC outcomes as labels, durations in seconds, frozen
addresses, a build-info series; counters typed as counters with help text
of their own."""

from nvo3_ryu_app import __version__
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.northbound import metrics
from rest_support import DP1, DP2, DP3, MAC1, populated
from test_metrics import arp_frame, scrape


def value(families, family, **labels):
    """The first sample of ``family`` with ``labels`` (None if none)."""
    for sample in families[family].samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_per_nve_series_carry_the_nves_name():
    ctl, _, client = populated()
    ctl.ack()
    auth = ctl.authority
    for _ in range(3):
        auth.packet_in(1, P.CLASSIFY, 1, 'tap1', {},
                       arp_frame('02:00:00:00:00:77', '192.168.1.77'),
                       ctl.now())
    switch = ctl.nves.switches[1]
    flow = next(f for f in switch.flows() if f.table == 4)
    switch.apply([('delete', flow)], verify_idempotent=False)
    client.ok('GET', '/v1/nves/hv1/audit')
    families = scrape(client)
    assert value(families, 'nvo3_nve_connected', nve=DP1, name='hv1') == 1
    assert value(families, 'nvo3_nve_connected', nve=DP3, name='hv3') == 0
    assert value(families, 'nvo3_nve_info', nve=DP2, name='hv2') == 1
    assert value(families, 'nvo3_nve_packet_ins', nve=DP1, name='hv1') == 3
    assert value(families, 'nvo3_nve_packet_ins', nve=DP2) == 0
    assert value(families, 'nvo3_nve_audit_repairs', nve=DP1) >= 1
    assert value(families, 'nvo3_nve_audit_repairs', nve=DP2) == 0
    assert families['nvo3_nve_packet_ins'].type == 'counter'


def test_rpc_outcomes_are_labels_and_durations_are_seconds():
    ctl, _, client = populated()
    ctl.counters['rpc_requests_associate_ok'] += 2
    ctl.counters['rpc_requests_query_not_found'] += 1
    families = scrape(client)
    assert value(families, 'nvo3_rpc_requests', method='associate',
                 outcome='ok') == 2
    assert value(families, 'nvo3_rpc_requests', method='query',
                 outcome='not-found') == 1
    assert value(families, 'nvo3_rpc_requests', method='dissociate',
                 outcome='ok') == 0
    assert not any(n.startswith('nvo3_rpc_requests_') for n in families)
    assert not any(n.endswith('_ms') for n in families), sorted(families)
    info = families['nvo3_build_info'].samples[0]
    assert (info.value, info.labels['version']) == (1, __version__)


def test_frozen_addresses_per_vn():
    ctl, _, client = populated()
    assert value(scrape(client), 'nvo3_frozen_addresses', vnid='5001') == 0
    db = ctl.authority.db
    att = next(a for a in db.attachments_in(5001) if a.mac == MAC1)
    db.freeze(att, ctl.now() + 60)
    assert value(scrape(client), 'nvo3_frozen_addresses', vnid='5001',
                 vn='blue') == 1
    ctl.clock += 61
    assert value(scrape(client), 'nvo3_frozen_addresses', vnid='5001') == 0


def test_every_counter_the_app_keeps_has_help_of_its_own():
    ctl, _, client = populated()
    for key in metrics.NAMED_COUNTERS:
        ctl.counters[key] += 0
    text = client.call('GET', '/metrics')[2].body.decode()
    assert 'Authority counter' not in text
    assert 'Mapping store figure' not in text
