"""A cluster of authorities on etcd (docs/contracts.md, "Cluster"), for real.

One testbed for the whole module: a 3-member etcd on loopback, three app
instances (a, b, c: each reaches etcd through relays of its own, so that it
can be cut off), three namespaced OVS NVEs each pointed at every instance,
with OpenFlow message logging on the switches so that what each instance
sent is counted on the switches' side.  Each test leaves the cluster as it
found it: every instance up and every NVE mastered, one each.

* Every instance answers REST, the RPC and ``GET /v1/cluster`` alike
  (instances, leader, masters, etcd health), Prometheus says the same, and
  a write on any instance reaches every instance's view and every NVE.
* kill -9 the master of an NVE while one of its tenant systems pings
  another every 10 ms: no probe is lost, every NVE has a master again
  within seconds, a VM that attaches right after is learned and
  reachable; the instance restarted rejoins as a slave of what it does not
  own, and no switch receives a single flow change while it does.
* SIGSTOP a master: it loses its mastership; a change made meanwhile
  elsewhere reaches every NVE; after SIGCONT it has lost its lease, it
  sends nothing from its stale view (counted by the switches), and its
  view catches up.
* Cut a master off from etcd (its relays stop; OpenFlow stays up): it
  stops writing and refuses writes (503) before another instance takes
  over; after the heal it sends nothing, resyncs, and takes writes again.

Waits are on acknowledged state (confirmed masters, each NVE's master in
sync, the switches' own tables), never bare sleeps, except the fixed
windows in which the tests watch that nothing is sent.
"""

import os
import re
import time

import pytest

from nvo3_ryu_app.cli.register import RegistrationClient
from nvo3_ryu_app.testbed import prober as prober_mod
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.cluster import ClusterLab

from conftest import topology_path

pytestmark = pytest.mark.integration

TTL = 3
VNID = 5001
DP = {'nve1': '0000000000000001', 'nve2': '0000000000000002',
      'nve3': '0000000000000003'}
NVE_OF = {dpid: name for name, dpid in DP.items()}
DURATION_RE = re.compile(r'duration=([0-9.]+)s')


@pytest.fixture(scope='module')
def lab():
    _require_root_and_tools()
    lab = ClusterLab(topology_path('cluster.yaml'), instances=3,
                     lease_ttl=TTL, extra_ini='port_down_grace = 1.0')
    lab.start()
    try:
        lab.wait_balanced(timeout=60)
        lab.wait_sync()
        for src, dst in (('a1', '192.168.80.21'), ('b1', '192.168.80.31'),
                         ('c1', '192.168.80.12'), ('a2', '192.168.80.22'),
                         ('b2', '192.168.80.32'), ('c2', '192.168.80.11')):
            assert lab.tb.ping(src, dst, count=2), (src, dst)
        lab.wait_sync()
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


@pytest.fixture
def healthy(lab):
    """Every instance up and the NVEs shared out again after the test."""
    yield lab
    for name in list(lab.stopped):
        lab.cont(name)
    for name in lab.names:
        lab.cut_etcd(name, False)
        if not lab.ctls[name].running:
            lab.restart(name)
    lab.wait_balanced(timeout=60)
    lab.wait_sync()


def mappings(lab, name):
    return sorted((e['mac'], e['ip'] or '', e['nve'])
                  for e in lab.get(name, '/v1/vns/%d/mappings' % VNID))


def flow_table(lab, nve):
    """The app's flows on ``nve``: {(table, priority, match): (actions,
    duration)}."""
    out = {}
    for flow in lab.tb.nve(nve).dump_flows():
        if flow.cookie >> 48 == 0x4E56:
            key = (flow.table, flow.priority, tuple(sorted(flow.match.items())))
            out[key] = (flow.actions,
                        float(DURATION_RE.search(flow.raw).group(1)))
    return out


def port_of(lab, vm):
    """The access port of ``vm``'s first vNIC on its NVE's br-int."""
    return lab.tb.topo.vm(vm).vnics[0].port


def holds_mac(lab, nve, mac):
    return any(f.match.get('dl_dst') == mac
               for f in lab.tb.nve(nve).dump_flows(table=4))


def dissociate(lab, name, dpid, mac):
    """Unregister ``mac`` through instance ``name``'s RPC; until no NVE
    holds its flows."""
    with RegistrationClient('127.0.0.1', lab.ctls[name].rpc_port) as rpc:
        rpc.dissociate(nve=dpid, mac=mac)
    for nve in DP:
        lab.wait_for(lambda v=nve: not holds_mac(lab, v, mac),
                     what='flows for %s gone from %s' % (mac, nve))


def events(lab, name, kinds, since=0):
    return lab.get(name, '/v1/events?type=%s&since=%d' % (kinds, since))[
        'events']


def last_seq(lab, name):
    return lab.get(name, '/v1/events?limit=1')['seq']


def vm_link(lab, vm, up):
    vnic = lab.tb.topo.vm(vm).vnics[0]
    lab.tb.vm_run(vm, 'ip', 'link', 'set', vnic.vm_ifname,
                  'up' if up else 'down')


def test_every_instance_answers_and_says_the_same(lab):
    statuses = {n: lab.get(n, '/v1/cluster') for n in lab.names}
    leaders = {s['leader'] for s in statuses.values()}
    assert len(leaders) == 1 and leaders <= set(lab.names), statuses
    masters = lab.masters()
    for name, status in statuses.items():
        assert status['instance'] == name and status['backend'] == 'etcd'
        assert status['lease_ok'] is True
        assert {i['name']: i['alive'] for i in status['instances']} == {
            'a': True, 'b': True, 'c': True}
        # Every instance knows who masters what, and the masters are
        # shared out: one NVE each.
        held = {d: i['name'] for i in status['instances']
                for d in i['masters']}
        assert held == masters
        assert status['roles'] == {
            d: 'master' if masters[d] == name else 'slave' for d in DP.values()}
        assert [e['healthy'] for e in status['etcd']['endpoints']] == [True] * 3
        assert status['etcd']['reachable'] is True
        # Every instance holds the same mapping database (once what was
        # just learned, the guests' IPv6 link-local addresses among it,
        # has been replicated: compared when the copies agree).
        lab.wait_for(lambda n=name: mappings(lab, n) == mappings(lab, 'a'),
                     what='the mappings of %s to equal those of a' % name)
    assert sorted(masters.values()) == ['a', 'b', 'c']
    # The switches log what each instance sent them (what the no-flow-mod
    # checks below count): the flows of the set-up are there.
    writes = lab.writes_received()
    assert sum(writes.values()) > 0, writes
    for name in lab.names:
        metrics = lab.metrics(name)
        assert {k for k, v in metrics.items()
                if k.startswith('nvo3_cluster_instance_alive{') and v == 1} \
            == {'nvo3_cluster_instance_alive{instance=%s}' % n
                for n in lab.names}
        for dpid, master in masters.items():
            assert metrics['nvo3_nve_master{instance=%s,nve=%s}' % (
                master, dpid)] == 1
            role = 'master' if master == name else 'slave'
            assert metrics['nvo3_nve_role{nve=%s,role=%s}' % (dpid, role)] == 1
        assert metrics['nvo3_cluster_lease_ok{}'] == 1
        assert metrics['nvo3_etcd_reachable{}'] == 1
        assert metrics['nvo3_cluster_is_leader{}'] == (
            1 if name in leaders else 0)
        assert metrics['nvo3_etcd_txn_seconds_count{}'] >= 0
    # Role changes are events: each master recorded taking its NVE.
    for dpid, master in masters.items():
        assert any(e['nve'] == dpid and e['role'] == 'master'
                   for e in events(lab, master, 'nve-role'))


def test_a_write_on_any_instance_is_applied_cluster_wide(lab):
    masters = lab.masters()
    # REST on each instance: every instance sees every change at once.
    for i, name in enumerate(lab.names):
        status, body = lab.request(name, 'POST', '/v1/vns', {
            'vnid': 7100 + i, 'name': 'cw%s' % name})
        assert status == 201, body
    for name in lab.names:
        lab.wait_for(lambda n=name: {7100, 7101, 7102} <= {
            v['vnid'] for v in lab.get(n, '/v1/vns')}, what='the VNs on ' + name)
    for i, name in enumerate(lab.names):
        status, body = lab.request(name, 'DELETE', '/v1/vns/%d' % (7100 + i))
        assert status == 204, body
    # The registration RPC on an instance that does not master the NVE:
    # the NVE's master pushes the flows, every NVE of the VN learns them.
    dpid = DP['nve2']
    other = next(n for n in lab.names if n != masters[dpid])
    mac = '02:00:00:00:80:2e'
    with RegistrationClient('127.0.0.1', lab.ctls[other].rpc_port) as rpc:
        rpc.associate(nve=dpid, port=port_of(lab, 'b1'), mac=mac, vnid=VNID,
                      ip='192.168.80.46')
    try:
        for name in lab.names:
            lab.wait_for(lambda n=name: (mac, '192.168.80.46', dpid) in
                         mappings(lab, n), what='the registration on ' + name)
        for nve in DP:
            lab.wait_for(lambda v=nve: holds_mac(lab, v, mac),
                         what='flows for %s on %s' % (mac, nve))
        lab.wait_sync()
    finally:
        dissociate(lab, masters[dpid], dpid, mac)


def test_kill_9_of_a_master_loses_no_probe_and_a_restart_changes_no_flow(
        healthy):
    lab = healthy
    victim = lab.masters()[DP['nve1']]
    alive = set(lab.names) - {victim}
    # x1 (on nve1) leaves before the kill: its link goes down and nve1's
    # master withdraws it (port_down_grace), so it attaches afresh later.
    vm_link(lab, 'x1', False)
    lab.wait_for(lambda: not any(m == '02:00:00:00:80:19'
                                 for m, _, _ in mappings(lab, victim)),
                 timeout=15, what='x1 withdrawn')
    lab.wait_sync()
    out = os.path.join(lab.tb.rundir, 'probe-kill.json')
    prober = prober_mod.start(lab.tb.vm('a1').pid, '192.168.80.21', out,
                              interval=0.01, duration=40)
    try:
        time.sleep(1.0)                      # probes flow before the kill
        killed = time.monotonic()
        lab.kill(victim)
        took, masters = lab.wait_mastered(alive, timeout=30)
        failover = time.monotonic() - killed
        assert victim not in masters.values()
        # A VM attaching right after: learned by nve1's new master,
        # reachable, and known to every live instance.
        vm_link(lab, 'x1', True)
        assert lab.tb.ping('x1', '192.168.80.21', count=3, timeout=2)
        reachable = time.monotonic() - killed
        for name in alive:
            lab.wait_for(lambda n=name: ('02:00:00:00:80:19', '192.168.80.19',
                                         DP['nve1']) in mappings(lab, n),
                         what='x1 learned on ' + name)
        time.sleep(1.0)                      # and probes after it
        results = prober.stop()
    finally:
        prober.kill()
    summary = results['summary']
    print('kill -9 %s: every NVE mastered again after %.2f s, x1 reachable '
          '%.2f s after the kill; probes %s' % (victim, failover, reachable,
                                                 summary))
    assert summary['sent'] >= 200, summary
    assert summary['lost'] == 0, (summary, prober_mod.outages(results))
    assert failover < 2 * TTL + 3, failover

    # The restart: the instance rejoins as a slave of what it does not own,
    # takes its share back after the hold-down, and no switch receives a
    # single flow change meanwhile (views agree: nothing to send).
    lab.wait_sync()
    writes = lab.writes_received()
    before = {n: flow_table(lab, n) for n in DP}
    dumped = time.monotonic()
    lab.restart(victim)
    lab.wait_for(lambda: lab.get(victim, '/v1/cluster')['lease_ok'],
                 what='the restarted instance registered')
    lab.wait_for(lambda: len(lab.get(victim, '/v1/cluster')['roles']) == 3,
                 timeout=20, what='every NVE connected to ' + victim)
    status = lab.get(victim, '/v1/cluster')
    owned = {d for i in status['instances'] if i['name'] == victim
             for d in i['masters']}
    assert {d: r for d, r in status['roles'].items() if d not in owned} == {
        d: 'slave' for d in DP.values() if d not in owned}
    masters = lab.wait_balanced(timeout=30)
    assert victim in masters.values()
    lab.wait_sync()
    time.sleep(1.0)
    assert lab.writes_received() == writes
    assert lab.counter(victim, 'flow_mods_sent') == 0
    elapsed = time.monotonic() - dumped
    for nve, flows in before.items():
        after = flow_table(lab, nve)
        assert {k: v[0] for k, v in after.items()} == \
            {k: v[0] for k, v in flows.items()}, nve
        younger = [k for k, v in flows.items()
                   if after[k][1] < v[1] + elapsed - 1.0]
        assert younger == [], (nve, younger)
    assert mappings(lab, victim) == mappings(lab, sorted(alive)[0])


def test_a_frozen_master_loses_its_nves_and_sends_nothing_when_it_thaws(
        healthy):
    lab = healthy
    frozen = lab.masters()[DP['nve2']]
    alive = set(lab.names) - {frozen}
    other = sorted(alive)[0]
    seq = last_seq(lab, frozen)
    lab.wait_sync()
    stopped = time.monotonic()
    lab.freeze(frozen)
    took, masters = lab.wait_mastered(alive, timeout=30)
    assert frozen not in masters.values()
    assert took < 2 * TTL + 3, took
    # A change meanwhile, on an NVE the frozen one mastered: its flows
    # reach the NVE from the new master; the frozen one must send nothing
    # of it when it thaws.
    mac = '02:00:00:00:80:2f'
    with RegistrationClient('127.0.0.1', lab.ctls[other].rpc_port) as rpc:
        rpc.associate(nve=DP['nve2'], port=port_of(lab, 'b2'), mac=mac, vnid=VNID,
                      ip='192.168.80.47')
    for nve in DP:
        lab.wait_for(lambda v=nve: holds_mac(lab, v, mac),
                     what='flows for %s on %s' % (mac, nve))
    lab.wait_sync()
    writes = lab.writes_received()
    # Thaw before OVS's inactivity probe would drop its connections.
    time.sleep(max(0.0, 2 * TTL + 2 - (time.monotonic() - stopped)))
    lab.cont(frozen)
    lab.wait_for(lambda: events(lab, frozen, 'lease-lost', seq), timeout=15,
                 what='the thawed instance noticing its lease is gone')
    lab.wait_for(lambda: (mac, '192.168.80.47', DP['nve2']) in
                 mappings(lab, frozen), what='its view catching up')
    time.sleep(2.0)
    assert lab.writes_received()[frozen] == writes[frozen]
    assert lab.masters(alive) == masters
    roles = lab.get(frozen, '/v1/cluster')['roles']
    assert set(roles.values()) == {'slave'}, roles
    # It hands back nothing it does not own: its former NVE's flows are
    # the new master's (and the change's).
    dissociate(lab, other, DP['nve2'], mac)


def test_a_master_cut_off_from_etcd_stops_writing_before_another_takes_over(
        healthy):
    lab = healthy
    cut = lab.masters()[DP['nve3']]
    alive = set(lab.names) - {cut}
    seq = last_seq(lab, cut)
    lab.wait_sync()
    cut_at = time.monotonic()
    lab.cut_etcd(cut)
    # It stops by its own deadline: no lease, no writes (503) ...
    lab.wait_for(lambda: not lab.get(cut, '/v1/cluster')['lease_ok'],
                 timeout=2 * TTL, what='the cut-off instance fencing itself')
    fenced = time.monotonic() - cut_at
    status, body = lab.request(cut, 'POST', '/v1/vns', {'vnid': 7200,
                                                        'name': 'cut'})
    assert status == 503 and body['error']['code'] == 'unavailable', body
    assert lab.get(cut, '/v1/cluster')['roles'] == {
        d: 'slave' for d in DP.values()}
    # ... and only then does another instance take its NVE over.
    took, masters = lab.wait_mastered(alive, timeout=30)
    taken = time.monotonic() - cut_at
    print('cut off from etcd: fenced after %.2f s, NVE mastered elsewhere '
          'after %.2f s' % (fenced, taken))
    assert fenced < taken
    assert cut not in masters.values()
    writes = lab.writes_received()
    status, _ = lab.request(sorted(alive)[0], 'POST', '/v1/vns',
                            {'vnid': 7201, 'name': 'while-cut'})
    assert status == 201
    time.sleep(max(0.0, 3 * TTL - (time.monotonic() - cut_at)))
    lab.cut_etcd(cut, False)
    lab.wait_for(lambda: events(lab, cut, 'lease-lost', seq), timeout=20,
                 what='the healed instance noticing its lease is gone')
    lab.wait_for(lambda: 7201 in {v['vnid'] for v in lab.get(cut, '/v1/vns')},
                 timeout=10, what='its view catching up')
    lab.wait_for(lambda: lab.get(cut, '/v1/cluster')['lease_ok'], timeout=10,
                 what='a new lease')
    time.sleep(1.0)
    assert lab.writes_received()[cut] == writes[cut]
    # Writes on it are taken again, and applied cluster-wide.
    status, body = lab.request(cut, 'DELETE', '/v1/vns/7201')
    assert status == 204, body
    for name in lab.names:
        lab.wait_for(lambda n=name: 7201 not in {
            v['vnid'] for v in lab.get(n, '/v1/vns')}, what='the delete on ' + name)
