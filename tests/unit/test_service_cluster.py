"""The service as one instance of a cluster, on simulated switches that keep
OpenFlow roles as OVS does (one master, generation ids, slaves refused):
a role request first on every connection, writes only from the confirmed
master under a valid lease, a takeover that sends nothing when the views
agree, replicated records planned and sent by the master, and a sync etcd
refused put back."""

import json

import pytest

from fakeof import FakeSwitch
from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority.errors import Conflict, Unavailable
from nvo3_ryu_app.authority.messages import PacketOut
from nvo3_ryu_app.service import Service
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.channel import (Barrier, EchoRequest,
                                             FlowChange, FlowStatsRequest,
                                             MeterConfigRequest, RoleRequest,
                                             SendPacket)
from nvo3_ryu_app.southbound.cluster import Mastership
from nvo3_ryu_app.storage.etcd import StoreRefused
from nvo3_ryu_app.storage.store import MemoryStore

D1, D2 = 1, 2
PORTS = {'vxlan0': 10, 'p1': 1, 'p2': 2}
MAC1, MAC2 = '02:00:00:00:00:01', '02:00:00:00:00:02'


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class ReplicatedStore(MemoryStore):
    """A store whose commits reach the other instances (as etcd's watch
    would), and that can be told to refuse the next sync."""

    group_commit = True

    def __init__(self, bus):
        super().__init__()
        self.bus = bus
        self.pending = []
        self.refuse = None

    def commit(self, changes):
        self.pending.append(list(changes))

    def sync(self, offload=True):
        pending, self.pending = self.pending, []
        if self.refuse is not None:
            records, self.refuse = self.refuse, None
            raise StoreRefused('refused', records, conflict=True)
        for changes in pending:
            super().commit(changes)
            self.bus.append({(k, key): v for k, key, v in changes})


class RoleSwitch:
    """One NVE's switch as OVS keeps roles: the largest generation seen,
    one master, writes from anyone else refused (OFPBRC_IS_SLAVE)."""

    def __init__(self, dpid):
        self.sw = FakeSwitch(dpid)
        self.master = None
        self.max_gen = None
        self.writes = {}           # instance -> flow changes applied
        self.refused = {}          # instance -> writes refused

    def handle(self, name, service, msgs, now):
        dpid = self.sw.dpid
        for msg in msgs:
            if isinstance(msg, RoleRequest):
                if self.max_gen is not None and msg.generation < self.max_gen:
                    service.error(dpid, msg.xid, 11, 0)
                    continue
                self.max_gen = msg.generation
                if msg.role == 'master':
                    self.master = name
                elif self.master == name:
                    self.master = None
                service.role_reply(dpid, msg.role, msg.generation, now)
            elif isinstance(msg, (FlowChange, SendPacket)):
                if self.master not in (None, name):
                    self.refused[name] = self.refused.get(name, 0) + 1
                    service.error(dpid, msg.xid, 1, 10)
                    continue
                if isinstance(msg, FlowChange):
                    self.sw.apply([(msg.op, msg.item)])
                    self.writes[name] = self.writes.get(name, 0) + 1
            elif isinstance(msg, Barrier):
                service.barrier_reply(dpid, msg.xid)
            elif isinstance(msg, FlowStatsRequest):
                service.flow_stats(dpid, [(f, 0) for f in self.sw.flows()],
                                   False, now)
            elif isinstance(msg, MeterConfigRequest):
                service.meter_config(dpid, list(self.sw.meters.values()),
                                     False, now)
            elif isinstance(msg, EchoRequest):
                service.echo_reply(dpid, msg.xid, now)


class Cluster:
    """Instances ``names`` over shared switches and a shared record bus."""

    def __init__(self, names=('a', 'b'), dpids=(D1, D2)):
        self.clock = Clock()
        self.bus = []
        self.revision = 0
        self.switches = {d: RoleSwitch(d) for d in dpids}
        self.inst = {}
        for name in names:
            m = Mastership(name, ttl=3)
            m.registered(lease=ord(name), ttl=3, asked=self.clock())
            store = ReplicatedStore(self.bus)
            svc = Service(Settings(), store, start_time=0.0, cluster=m,
                          mono=self.clock)
            self.inst[name] = (svc, m, store)
        for name in names:
            for other in names:
                self.inst[name][1].observe('inst/' + other, b'{}',
                                           ord(other), 1, False, 0.0)
            self.inst[name][1].loaded()

    def svc(self, name):
        return self.inst[name][0]

    def own(self, dpid, name):
        """``name`` claims ``dpid``: every view sees the owner key."""
        self.revision += 100
        for _, m, _ in self.inst.values():
            m.observe('owner/%016x' % dpid, name.encode(), ord(name),
                      self.revision, False, 0.0)
        self.roles()

    def connect(self, dpid):
        for name, (svc, _, _) in self.inst.items():
            self.switches[dpid].handle(name, svc, svc.switch_connected(
                dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 0.0), 0.0)

    def roles(self):
        for name, (svc, _, _) in self.inst.items():
            for dpid, msgs in svc.cluster_changed(0.0).items():
                self.switches[dpid].handle(name, svc, msgs, 0.0)

    def drain(self):
        """Every instance syncs (replicating) and flushes until quiet."""
        for _ in range(20):
            sent = False
            for name, (svc, _, _) in self.inst.items():
                svc.sync()
                for dpid, msgs in svc.flush(0.0).items():
                    sent = True
                    self.switches[dpid].handle(name, svc, msgs, 0.0)
            while self.bus:
                changes = self.bus.pop(0)
                for svc, _, store in self.inst.values():
                    if changes and store.bus is self.bus and \
                            not _mine(store, changes):
                        svc.apply_replicated(changes, 0.0)
                sent = True
            if not sent:
                return
        raise AssertionError('the cluster does not settle')


def _mine(store, changes):
    state = store.load()
    return all(state.get(sk) == v for sk, v in changes.items())


@pytest.fixture
def cluster():
    c = Cluster()
    for dpid in (D1, D2):
        c.connect(dpid)
    c.own(D1, 'a')
    c.own(D2, 'b')
    c.drain()
    return c


def test_a_role_request_goes_first_on_every_connection():
    c = Cluster()
    c.own(D1, 'a')
    msgs = c.svc('a').switch_connected(D1, PORTS, '02:aa:00:00:00:01', 0.0)
    assert isinstance(msgs[0], RoleRequest)
    assert (msgs[0].role, msgs[0].generation) == ('master', 100)
    msgs = c.svc('b').switch_connected(D1, PORTS, '02:aa:00:00:00:01', 0.0)
    assert (msgs[0].role, msgs[0].generation) == ('slave', 100)


def test_only_the_master_writes_and_a_write_anywhere_reaches_every_nve(
        cluster):
    c = cluster
    c.svc('b').execute(C.CreateVN(5001, 'blue'), 0.0)
    c.svc('b').execute(C.BindPort(D1, 'p1', vnid=5001), 0.0)
    c.drain()
    c.svc('a').execute(C.BindPort(D2, 'p1', vnid=5001), 0.0)
    c.drain()
    for dpid, owner in ((D1, 'a'), (D2, 'b')):
        sw = c.switches[dpid]
        assert set(sw.writes) == {owner}, sw.writes
        assert sw.refused == {}
        # Each NVE holds what either instance computes for it.
        for name in ('a', 'b'):
            assert sw.sw.items() == c.svc(name).tables[dpid].desired
        status = c.svc(owner).sync_status(dpid)
        assert status['role'] == 'master' and status['in_sync']
    assert c.svc('a').sync_status(D2)['role'] == 'slave'


def test_a_packet_in_at_an_nve_we_do_not_master_is_dropped(cluster):
    c = cluster
    c.svc('b').packet_in(D1, 0, 1, 'p1', {}, b'\x00' * 60, 0.0)
    assert c.svc('b').counters['dropped_not_master'] == 1
    assert c.svc('b').counters['packet_in_learn'] == 0


def test_past_the_fence_nothing_leaves_and_writes_are_refused(cluster):
    c = cluster
    c.svc('a').execute(C.CreateVN(5001, 'blue'), 0.0)
    c.svc('a').sync()
    c.clock.t += 2.6                     # a's lease: within 0.5 s of its end
    with pytest.raises(Unavailable):
        c.svc('a').execute(C.CreateVN(5002, 'red'), 0.0)
    c.svc('a').authority.db.bind_port(D1, 'p1', vnid=5001)
    c.svc('a').authority.commit(0.0)
    assert c.svc('a').flush(0.0) == {}   # D1's change waits, unsent
    assert c.svc('a').cluster_changed(0.0)[D1][0].role == 'slave'


def test_a_takeover_with_identical_views_sends_nothing(cluster):
    c = cluster
    c.svc('a').execute(C.CreateVN(5001, 'blue'), 0.0)
    c.svc('a').execute(C.BindPort(D1, 'p1', vnid=5001), 0.0)
    c.drain()
    before = dict(c.switches[D1].writes)
    # a dies: its owner key goes with its lease; b claims D1.
    for _, m, _ in c.inst.values():
        m.observe('owner/%016x' % D1, b'', 0, 0, True, 0.0)
    del c.inst['a']
    c.own(D1, 'b')
    c.drain()
    sw = c.switches[D1]
    assert sw.master == 'b'
    assert sw.writes == before           # b dumped, compared: nothing to send
    events = c.svc('b').event_log.since(0, kinds={'nve-role'})
    assert [(e['nve'], e['role']) for e in events][-1] == (
        '0000000000000001', 'master')
    # And b now writes to D1.
    c.svc('b').execute(C.BindPort(D1, 'p2', vnid=5001), 0.0)
    c.drain()
    assert sw.writes.get('b', 0) > 0 and sw.refused == {}


def test_a_stale_generation_is_not_asked_again(cluster):
    c = cluster
    sw = c.switches[D1]
    svc = c.svc('b')
    channel = svc.channels[D1]
    sw.max_gen = 10 ** 6                 # someone we have not heard of yet
    for _, m, _ in c.inst.values():
        m.observe('owner/%016x' % D1, b'', 0, 0, True, 0.0)
    c.own(D1, 'b')                       # our claim: an older generation
    assert svc.counters['role_requests_stale'] == 1
    assert not svc.may_write(D1)
    assert channel.ask_role('master', 200) == []


def test_a_refused_sync_puts_the_database_back_and_says_conflict(cluster):
    c = cluster
    svc, _, store = c.inst['a']
    svc.execute(C.CreateVN(5001, 'blue'), 0.0)
    svc.sync()
    svc.authority.db.update_vn(5001, name='navy')
    svc.authority.commit(0.0)
    svc.channels[D1].queue_packet_out(PacketOut(D1, 1, b'x', []))
    theirs = dict(store.load()[('vn', 5001)], name='teal')
    store.refuse = {('vn', 5001): theirs}
    with pytest.raises(Conflict):
        svc.sync()
    assert svc.authority.db.vns[5001].name == 'teal'
    assert svc.channels[D1].outs == []
    assert svc.counters['packet_outs_dropped'] == 1


def test_cluster_status_names_the_masters(cluster):
    status = cluster.svc('a').cluster_status()
    assert status['instance'] == 'a'
    assert {i['name']: i['masters'] for i in status['instances']} == {
        'a': ['0000000000000001'], 'b': ['0000000000000002']}
    assert status['roles'] == {'0000000000000001': 'master',
                               '0000000000000002': 'slave'}
    json.dumps(status)


def test_alone_the_cluster_status_is_one_instance():
    svc = Service(Settings(), MemoryStore(), start_time=0.0)
    status = svc.cluster_status('solo')
    assert status == {'instance': 'solo', 'leader': 'solo',
                      'backend': 'memory', 'etcd': None,
                      'instances': [{'name': 'solo', 'alive': True,
                                     'masters': []}]}
