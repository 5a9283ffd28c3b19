"""The pipeline declaration rejects wrong flows, and docs/pipeline.md
agrees."""

import os
import re

import pytest

from nvo3_ryu_app.authority import pipeline as P

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
COOKIE = P.COOKIE_APP | 1


def test_valid_flow_is_built_in_canonical_order():
    flow = P.flow(P.CLASSIFY, P.PRIO_ACCESS, {'in_port': 1, 'vlan_vid': 0},
                  [('goto', P.SOURCE), ('metadata', 7)], COOKIE)
    assert flow.actions == (('metadata', 7), ('goto', P.SOURCE))
    assert flow.key == (0, P.PRIO_ACCESS, (('in_port', 1), ('vlan_vid', 0)))


@pytest.mark.parametrize('table,prio,match,actions,why', [
    (99, 0, {}, [], 'unknown table'),
    (P.SOURCE, 123, {'in_port': 1}, [], 'not a tier'),
    (P.SOURCE, P.PRIO_MISS, {'in_port': 1}, [], 'must not match'),
    (P.SOURCE, P.PRIO_HOST, {'ipv4_dst': '1.2.3.4'}, [], 'does not match'),
    (P.CLASSIFY, P.PRIO_ACCESS, {'in_port': (1, 1)}, [], 'may not mask'),
    (P.SOURCE, P.PRIO_HOST, {'in_port': 1}, [('goto', P.L2_FORWARD)],
     'may not go to'),
    (P.L2_FORWARD, P.PRIO_HOST, {'metadata': 1},
     [('set', 'eth_src', '02:00:00:00:00:01')], 'may not set'),
    (P.L2_FORWARD, P.PRIO_HOST, {'metadata': 1}, [('frobnicate',)],
     'unknown action'),
])
def test_wrong_flows_fail_when_built(table, prio, match, actions, why):
    with pytest.raises(P.PipelineError, match=why):
        P.flow(table, prio, match, actions, COOKIE)


def test_foreign_cookie_is_refused():
    with pytest.raises(P.PipelineError, match='cookie'):
        P.flow(P.SOURCE, P.PRIO_MISS, {}, [], 1)


def _sections():
    with open(os.path.join(ROOT, 'docs', 'pipeline.md')) as handle:
        text = handle.read()
    parts = re.split(r'^## Table (\d+): (\w+)$', text, flags=re.M)
    return {int(parts[i]): (parts[i + 1], parts[i + 2])
            for i in range(1, len(parts), 3)}


def test_pipeline_doc_names_every_table_and_tier():
    sections = _sections()
    assert set(sections) == set(P.TABLES)
    for table_id, table in P.TABLES.items():
        name, body = sections[table_id]
        assert name == table.name
        for tier in table.tiers:
            prio = P.PRIORITY_NAMES['PRIO_' + tier]
            assert '`PRIO_%s` (%d)' % (tier, prio) in body, (
                'docs/pipeline.md table %d lacks tier %s' % (table_id,
                                                             tier))
