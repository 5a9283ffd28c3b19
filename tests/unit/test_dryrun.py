"""A dry run says what a command would do and does none of it.

For each kind of write, on a running service with simulated switches: the
dry run leaves everything an operator or a switch could see as it was (the
REST state, the store, the event log, nothing sent), and what it
predicted is what the real command then does: its flow-mods, applied to a
copy of each switch, give exactly the tables the real command leaves, and
its events and mapping entries are the real ones.
"""

import copy

import pytest

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority.errors import Conflict, NotFound
from rest_support import DP1, MAC1, MAC3, populated

COMMANDS = [
    C.BindPort(1, 'tap2', vnid=5001),
    C.BindPort(1, 'trunk0', vlans={10: 6001}),
    C.UnbindPort(2, 'tap1'),
    C.UpdateVN(5001, {'encap': 'gre'}),
    C.UpdateVN(6001, {'gateway_ips': ('192.168.10.1/24',
                                      '192.168.30.1/24')}),
    C.DeleteVN(5001),
    C.CreateVN(9001, 'teal'),
    C.RegisterNVE(2, vtep_ip='10.99.0.22'),
    C.Associate(1, 'tap1', '02:00:00:00:00:09', 5001, ip='192.168.1.9'),
    C.Associate(2, 'tap1', MAC1, 5001),               # a registered move
    C.Dissociate(1, MAC3),
]


def settled():
    ctl, _, client = populated()
    ctl.ack()
    return ctl, client


@pytest.mark.parametrize('command', COMMANDS, ids=lambda c: repr(c)[:60])
def test_a_dry_run_changes_nothing_and_predicts_the_command(command):
    ctl, client = settled()
    before = client.state(ctl)
    sent = {d: len(m) for d, m in ctl.nves.received.items()}
    switches = {d: copy.deepcopy(sw) for d, sw in ctl.nves.switches.items()}
    desired = {d: (t.desired, t.pending)
               for d, t in ctl.service.tables.items()}

    answer = ctl.service.execute(command, ctl.now(), dry_run=True)
    # Not even the shared layers the real tables read changed.
    assert {d: (t.desired, t.pending)
            for d, t in ctl.service.tables.items()} == desired
    ctl.ack()
    assert client.state(ctl) == before
    assert {d: len(m) for d, m in ctl.nves.received.items()} == sent

    seq = ctl.authority.event_log.seq
    ctl.execute(command)
    ctl.ack()
    for dpid, sw in switches.items():
        sw.apply(answer.flow_mods.get(dpid, []), verify_idempotent=False)
        assert sw.items() == ctl.nves.switches[dpid].items(), dpid
    def plain(events):      # the time, and what convergence adds later
        return [{k: v for k, v in e.items()
                 if k not in ('time', 'convergence_ms')} for e in events]
    assert plain(answer.events) == plain(ctl.authority.event_log.since(seq))
    report = answer.to_dict()
    assert report['dry_run'] is True
    assert report['command'] == type(command).__name__


def test_the_report_names_nves_and_writes_flow_mods_as_ovs_ofctl_does():
    ctl, _ = settled()
    answer = ctl.service.execute(C.BindPort(1, 'tap2', vnid=5001),
                                 ctl.now(), dry_run=True).to_dict()
    nve, = answer['nves']
    assert (nve['nve'], nve['name']) == (DP1, 'hv1')
    assert 'add cookie=0x4e5601' in '\n'.join(nve['flow_mods'])
    assert any(line.startswith('add ') and 'table=0,priority=100,in_port=2,'
               'vlan_tci=0x0000/0x1fff actions=write_metadata:0x1389,'
               'goto_table:1' in line for line in nve['flow_mods'])
    assert answer['records'][0]['after']['bindings']['tap2'] == {
        'vnid': 5001, 'origin': 'rest'}
    assert answer['events'][0]['type'] == 'bind'


def test_mapping_entries_that_would_go_are_listed():
    ctl, _ = settled()
    answer = ctl.service.execute(C.DeleteVN(5001), ctl.now(),
                                 dry_run=True).to_dict()
    gone = {(e['mac'], e['ip']) for e in answer['mappings']['removed']}
    assert gone == {(MAC1, '192.168.1.1'), ('02:00:00:00:00:02',
                                             '192.168.1.2')}


def test_a_refused_command_is_refused_in_a_dry_run_too():
    ctl, client = settled()
    before = client.state(ctl)
    with pytest.raises(NotFound):
        ctl.service.execute(C.DeleteVN(4242), ctl.now(), dry_run=True)
    with pytest.raises(Conflict):
        ctl.service.execute(C.CreateVN(5001, 'again'), ctl.now(),
                            dry_run=True)
    assert client.state(ctl) == before


def test_a_dry_run_of_a_migration_changes_nothing():
    """Announcing (and calling off) a migration as a dry run leaves the
    real database, its migrations and the switches as they were."""
    ctl, client = settled()
    before = client.state(ctl)
    sent = {d: len(m) for d, m in ctl.nves.received.items()}
    answer = ctl.service.execute(C.Migrate(2, 'tap1', MAC1, 5001),
                                 ctl.now(), dry_run=True)
    ctl.ack()
    assert answer.to_dict()['events'][0]['type'] == 'migration-started'
    assert ctl.authority.db.migrating == set()
    assert client.state(ctl) == before
    assert {d: len(m) for d, m in ctl.nves.received.items()} == sent
    ctl.execute(C.Migrate(2, 'tap1', MAC1, 5001))
    assert ctl.authority.db.migrating
    claims = dict(ctl.authority.arbiter.claims)
    ctl.service.execute(C.CancelMigration(5001, MAC1), ctl.now(),
                        dry_run=True)
    assert ctl.authority.db.migrating
    assert ctl.authority.arbiter.claims == claims
