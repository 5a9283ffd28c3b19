"""A software OpenFlow 1.3 network for forwarding-behaviour unit tests.

In the spirit of Faucet's FakeOFTable: the flows the planner computes are
installed into :class:`FakeSwitch` objects exactly as the reconciler would
send them, and packets (dicts of os-ken OXM field names) are pushed through
the tables.  :class:`FakeNetwork` wires several NVEs together through an
NVO3 underlay (VXLAN/GRE tunnel ports, VTEP addresses) so that a test can
say "this frame from VM A reaches VM B only, through exactly one tunnel".

The switch is strict where a real switch would refuse a flow (unknown
field, missing match prerequisite, goto backwards, unknown meter, set-field
of an absent header) and where behaviour would be undefined (two flows of
the same priority matching one packet): both raise :class:`SwitchError`.

Typical use::

    lab = Lab(nves=(1, 2))
    lab.db.create_vn(5001, 'blue')
    ...
    lab.sync()                       # plan(), take_changes(), apply
    res = lab.net.send(1, 'p1', ipv4(MAC_A, MAC_B, IP_A, IP_B))
    assert res.points() == {(2, 'p1')}
"""

# The simulator itself is the product's (southbound/simulate.py): the trace
# runs frames through it too.  Names are re-exported for the tests.
from nvo3_ryu_app.authority import model as M
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority import planner as PL
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.channel import (Barrier, EchoRequest,
                                             FlowChange, FlowStatsRequest,
                                             MeterConfigRequest, SendPacket,
                                             StampRequest)
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.southbound import stamp
from nvo3_ryu_app.southbound.simulate import *  # noqa: F401,F403
from nvo3_ryu_app.southbound.simulate import (  # noqa: F401
    FakeNetwork, FakeSwitch, SwitchError, _as_int, _compile, _pkt_value)
from nvo3_ryu_app.southbound.simulate import (  # noqa: F401
    BROADCAST, ETH_ARP, ZERO_MAC)


def garp_bytes(src_mac, ip):
    """The bytes of an untagged gratuitous ARP request (what a packet-in
    carries), for tests that feed the authority raw frames."""
    from os_ken.lib.packet import arp, ethernet, packet
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(BROADCAST, src_mac, ETH_ARP))
    pkt.add_protocol(arp.arp(opcode=1, src_mac=src_mac, src_ip=ip,
                             dst_mac=ZERO_MAC, dst_ip=ip))
    pkt.serialize()
    return bytes(pkt.data)

# --- switches on a service's channels ----------------------------------------

class SimulatedNVEs:
    """FakeSwitches on the channels of a :class:`service.Service`, as
    OpenFlow switches behind os-ken: each gets the messages the service
    sends, applies flow and meter changes in order, answers dump requests
    with what it holds, barriers once it applied what came before and
    echoes (at ``now``, the liveness clock of the test), and keeps the
    frames it was asked to send (``packet_outs``)."""

    def __init__(self, service):
        self.service = service
        self.switches = {}
        self.packet_outs = []       # (dpid, PacketOut) in send order
        self.received = {}          # dpid -> every message, in order

    def connect(self, dpid, ports, nve_mac, now):
        """The switch connects; its (empty or leftover) tables are dumped."""
        self.switches.setdefault(dpid, FakeSwitch(dpid))
        self.deliver(dpid, self.service.switch_connected(
            dpid, ports, nve_mac, now), now)

    def deliver(self, dpid, msgs, now):
        """Switch ``dpid`` handles ``msgs`` (and answers the service)."""
        sw = self.switches[dpid]
        self.received.setdefault(dpid, []).extend(msgs or ())
        changes = []
        for msg in msgs or ():
            if isinstance(msg, FlowChange):
                changes.append((msg.op, msg.item))
                continue
            sw.apply(changes)
            changes = []
            if isinstance(msg, Barrier):
                self.service.barrier_reply(dpid, msg.xid)
            elif isinstance(msg, FlowStatsRequest):
                # As the request asks: the app's cookie only.
                self.service.flow_stats(
                    dpid, [(flow, 0) for flow in sw.flows()
                           if flow.cookie & P.COOKIE_APP_MASK == P.COOKIE_APP],
                    False, now)
            elif isinstance(msg, StampRequest):
                self.deliver(dpid, self.service.flow_stats(
                    dpid, [(flow, 0) for flow in sw.flows()
                           if flow.table == P.STAMP
                           and flow.cookie == P.COOKIE_STAMP], False, now),
                    now)
            elif isinstance(msg, MeterConfigRequest):
                self.service.meter_config(dpid, list(sw.meters.values()),
                                          False, now)
            elif isinstance(msg, SendPacket):
                self.packet_outs.append((dpid, msg.packet))
            elif isinstance(msg, EchoRequest):
                self.service.echo_reply(dpid, msg.xid, now)
            else:
                raise SwitchError('unexpected message %r' % (msg,))
        sw.apply(changes)

    def drain(self, now):
        """The app's drain, and the switches' answers, until nothing more
        is sent; returns how many drains sent something."""
        rounds = 0
        while True:
            self.service.sync()
            sends = self.service.flush(now)
            if not sends:
                return rounds
            rounds += 1
            for dpid, msgs in sends.items():
                self.deliver(dpid, msgs, now)


# --- a lab: database + planner + network -------------------------------------

class Lab:
    """A MappingDB, a Planner and a FakeNetwork that follow each other.

    NVE ``d`` gets VTEP 10.0.0.<d>, tunnel ports vxlan0=100, gre0=101 and
    geneve0=102 and access ports p1..pN numbered 1..N.
    """

    TUNNELS = {'vxlan0': 100, 'gre0': 101, 'geneve0': 102}

    def __init__(self, nves=(1, 2), access_ports=3, cfg=None,
                 flow_batch=None):
        self.flow_batch = flow_batch  # changes per batch, as the app's
        self.db = M.MappingDB()
        self.cfg = cfg or Settings()
        self.planner = PL.Planner(self.db, self.cfg, FlowTables())
        self.net = FakeNetwork(self.db, self.cfg)
        self.now = 0.0
        self.access_ports = access_ports
        for dpid in nves:
            self.add_nve(dpid)

    def ports(self, dpid):
        ports = dict(self.TUNNELS)
        ports.update({'p%d' % i: i for i in range(1, self.access_ports + 1)})
        return ports

    def add_nve(self, dpid, vtep_ip=None):
        self.db.register_nve(dpid, vtep_ip or '10.0.0.%d' % dpid)
        self.db.nve_connected(dpid, self.ports(dpid),
                              '02:aa:00:00:00:%02x' % dpid, self.tick())

    def tick(self):
        self.now += 1.0
        return self.now

    def learn(self, dpid, port, mac, ip=None, vlan=None):
        """Model the app learning a tenant system from its first frame."""
        return self.db.learn(dpid, port, vlan, mac, ip, self.tick())

    def sync(self):
        """plan() and push the changes into the fake switches; check them."""
        self.planner.plan()
        self.net.sync_from(self.planner, limit=self.flow_batch)
        self.check_consistent()

    def restart_switch(self, dpid, leftovers=()):
        """The switch lost its tables (plus ``leftovers``); reconnect it."""
        sw = self.net.switch(dpid)
        sw.clear()
        for item in leftovers:
            sw._apply_one('add', item)
        self.planner.plan()
        self.planner.table(dpid).load_installed(sw.items().values())
        self.net.sync_from(self.planner, limit=self.flow_batch)
        self.check_consistent()

    def send(self, dpid, port, pkt):
        return self.net.send(dpid, port, pkt)

    def check_consistent(self):
        """incremental == recompute, and every switch holds exactly that."""
        dpids = set(self.db.nves) | set(self.planner.tables)
        for dpid in sorted(dpids):
            expected = self.planner.expected(dpid)
            table = self.planner.tables.get(dpid)
            desired = table.desired if table is not None else {}
            assert_same_items(desired, expected,
                              'NVE %s: incremental desired != recompute'
                              % dpid)
            assert_same_items(self.net.switch(dpid).items(), expected,
                              'NVE %s: switch != recompute' % dpid)
            if table is not None:
                assert table.in_sync, 'NVE %s: changes left' % dpid
                assert table.n_desired == len(desired), dpid
                # The stamp's digest, kept as the specs (own or a layer's)
                # change, equals one made from scratch; asking for it here
                # has the next check test the increments since.
                assert table.digest() == stamp.digest_of(
                    table.specs.values()), 'NVE %s: digest' % dpid
        check_layers(self.planner)

    def holds_vn(self, dpid, vnid):
        """Flows of switch ``dpid`` that mention VN ``vnid`` anywhere."""
        return [f for f in self.net.switch(dpid).flows()
                if ('metadata', vnid) in f.match
                or ('tunnel_id', vnid) in f.match
                or ('metadata', vnid) in f.actions
                or ('set', 'tunnel_id', vnid) in f.actions]


def check_layers(planner):
    """The shared layers hold what a recompute gives each tenant system,
    every table reads the layer its NVE must read, and keeps nothing of
    its own that its layer already holds."""
    from nvo3_ryu_app.authority import flows as F
    from nvo3_ryu_app.authority.owners import TS
    db, cfg, tables = planner.db, planner.cfg, planner.tables
    for vnid, by_key in tables.layers.items():
        for key, layer in by_key.items():
            assert layer.tables, 'layer %r: read by no table' % (key,)
            want = {}
            for att in db.attachments_in(vnid):
                spec = F.shared_view(db, cfg, key, att.mac)
                if spec is not None:
                    want[(vnid, att.mac)] = spec
            assert {tuple(o): s for o, s in layer.specs.items()} == want, \
                'layer %r' % (key,)
            # Its count and digest, kept as its specs change.
            assert layer.count == sum(len(tables.build(spec))
                                      for spec in want.values()), key
            assert layer.digest == stamp.digest_of(want.values()), key
    for dpid, table in tables.items():
        for vnid, layer in table._layers.items():
            assert layer.key == F.layer_key(db, cfg, dpid, vnid), dpid
            assert table in layer.tables
        for owner, spec in table._own.items():
            if owner.kind == TS:
                shared = table.shared_spec(owner)
                assert not (type(spec) is type(shared) and spec == shared), \
                    'NVE %s keeps its own copy of %r' % (dpid, owner)


def assert_same_items(have, want, what):
    if have == want:
        return
    missing = sorted(repr(want[k]) for k in want.keys() - have.keys())
    extra = sorted(repr(have[k]) for k in have.keys() - want.keys())
    differ = sorted('%r\n    want %r' % (have[k], want[k])
                    for k in have.keys() & want.keys() if have[k] != want[k])
    raise AssertionError('%s\nmissing:\n  %s\nextra:\n  %s\ndifferent:\n  %s'
                         % (what, '\n  '.join(missing), '\n  '.join(extra),
                            '\n  '.join(differ)))
