"""A software OpenFlow 1.3 network: the flows the authority computes, run.

In the spirit of Faucet's FakeOFTable: flows are installed into
:class:`FakeSwitch` objects exactly as the reconciler sends them, and
packets (dicts of os-ken OXM field names) are pushed through the tables.
:class:`FakeNetwork` wires several NVEs together through an NVO3 underlay
(VXLAN/GRE tunnel ports, VTEP addresses), so one can say "this frame from
tenant system A reaches B only, through exactly one tunnel".

The product uses it to explain a packet's fate (southbound/trace.py runs a
frame through the flows the authority holds for each NVE); the unit tests
use it to check forwarding behaviour without a switch (tests/fakeof.py).

The switch is strict where a real switch would refuse a flow (unknown
field, missing match prerequisite, goto backwards, unknown meter, set-field
of an absent header) and where behaviour would be undefined (two flows of
the same priority matching one packet): both raise :class:`SwitchError`.
"""

import ipaddress

from ..authority import pipeline as P
from ..settings import Settings

BROADCAST = 'ff:ff:ff:ff:ff:ff'
ZERO_MAC = '00:00:00:00:00:00'
ETH_ARP, ETH_IPV4, ETH_IPV6 = 0x0806, 0x0800, 0x86DD
VLAN_PRESENT = 0x1000
REGS = tuple('reg%d' % i for i in range(8))

MAC_FIELDS = {'eth_src', 'eth_dst', 'arp_sha', 'arp_tha', 'ipv6_nd_sll',
              'ipv6_nd_tll'}
IP_FIELDS = {'arp_spa', 'arp_tpa', 'ipv4_src', 'ipv4_dst', 'ipv6_src',
             'ipv6_dst', 'ipv6_nd_target', 'tun_ipv4_src', 'tun_ipv4_dst',
             'tun_ipv6_src', 'tun_ipv6_dst'}
FIELD_BITS = {
    'in_port': 32, 'metadata': 64, 'tunnel_id': 64, 'eth_type': 16,
    'vlan_vid': 13, 'vlan_pcp': 3, 'arp_op': 16, 'ip_proto': 8,
    'ip_ttl': 8, 'nw_ttl': 8, 'icmpv6_type': 8, 'icmpv6_code': 8,
    'arp_spa': 32, 'arp_tpa': 32, 'ipv4_src': 32, 'ipv4_dst': 32,
    'tun_ipv4_src': 32, 'tun_ipv4_dst': 32, 'ipv6_src': 128,
    'ipv6_dst': 128, 'ipv6_nd_target': 128, 'tun_ipv6_src': 128,
    'tun_ipv6_dst': 128,
}
FIELD_BITS.update({f: 48 for f in MAC_FIELDS})
FIELD_BITS.update({r: 32 for r in REGS})

# Fields every packet has in a switch (absent means zero / untagged).
ALWAYS_PRESENT = {'in_port', 'metadata', 'tunnel_id', 'vlan_vid'} | set(REGS)

# Match prerequisites (OpenFlow 1.3 section 7.2.3.8), as (field, values).
_ARP = (('eth_type', {ETH_ARP}),)
_IP = (('eth_type', {ETH_IPV4, ETH_IPV6}),)
_V4 = (('eth_type', {ETH_IPV4}),)
_V6 = (('eth_type', {ETH_IPV6}),)
_ICMP6 = _V6 + (('ip_proto', {58}),)
PREREQS = {
    'arp_op': _ARP, 'arp_spa': _ARP, 'arp_tpa': _ARP, 'arp_sha': _ARP,
    'arp_tha': _ARP, 'ipv4_src': _V4, 'ipv4_dst': _V4, 'ipv6_src': _V6,
    'ipv6_dst': _V6, 'ip_proto': _IP, 'ip_ttl': _IP, 'nw_ttl': _IP,
    'icmpv6_type': _ICMP6, 'icmpv6_code': _ICMP6,
    'ipv6_nd_target': _ICMP6 + (('icmpv6_type', {135, 136}),),
    'ipv6_nd_sll': _ICMP6 + (('icmpv6_type', {135}),),
    'ipv6_nd_tll': _ICMP6 + (('icmpv6_type', {136}),),
}
KNOWN_FIELDS = set(FIELD_BITS) | {'metadata'}
# Fields that live only inside a switch (pipeline state, tunnel metadata):
# stripped from a frame when it leaves through a port.
PIPELINE_ONLY = {'metadata', 'in_port', 'tunnel_id', 'tun_ipv4_src',
                 'tun_ipv4_dst', 'tun_ipv6_src', 'tun_ipv6_dst'} | set(REGS)


class SwitchError(AssertionError):
    """What a real switch would refuse, or behaviour it would not define."""


class Loop(AssertionError):
    """A frame kept bouncing through the underlay."""


# --- values -----------------------------------------------------------------

def _as_int(field, value):
    """Field value -> int, for masked comparison."""
    if isinstance(value, int):
        return value
    if field in MAC_FIELDS:
        return int(value.replace(':', ''), 16)
    if field in IP_FIELDS:
        return int(ipaddress.ip_address(value))
    raise SwitchError('cannot interpret %r as a value of %s' % (value, field))


def _mask_int(field, mask):
    if isinstance(mask, int):
        return mask
    return _as_int(field, mask)


def _pkt_value(pkt, field):
    if field in pkt:
        return pkt[field]
    if field in ('ip_ttl', 'nw_ttl'):
        for alias in ('ip_ttl', 'nw_ttl'):
            if alias in pkt:
                return pkt[alias]
    if field in ALWAYS_PRESENT:
        return 0
    return None


def field_matches(pkt, field, want):
    """Whether ``pkt`` matches ``want`` (a value, or (value, mask)) in
    ``field``; an absent header never matches."""
    have = _pkt_value(pkt, field)
    if have is None:
        return False  # prerequisite semantics: an absent header never matches
    if isinstance(want, tuple):
        value, mask = want
        mask = _mask_int(field, mask)
        return _as_int(field, have) & mask == _as_int(field, value) & mask
    return _as_int(field, have) == _as_int(field, want)


def flow_matches(flow, pkt):
    """Whether ``pkt`` matches every field of ``flow``'s match."""
    return all(field_matches(pkt, f, v) for f, v in flow.match)


def _compile(flow):
    """The match as ((field, mask | None, value & mask), ...) of ints."""
    out = []
    for field, want in flow.match:
        if isinstance(want, tuple):
            mask = _mask_int(field, want[1])
            out.append((field, mask, _as_int(field, want[0]) & mask))
        else:
            out.append((field, None, _as_int(field, want)))
    return tuple(out)


def _compiled_matches(compiled, pkt, cache):
    for field, mask, value in compiled:
        have = cache.get(field, cache)
        if have is cache:
            raw = _pkt_value(pkt, field)
            have = cache[field] = None if raw is None else _as_int(field, raw)
        if have is None:
            return False
        if (have if mask is None else have & mask) != value:
            return False
    return True


# --- static flow checks (what ovs-vswitchd would refuse) ---------------------

def _exact(match, field):
    value = match.get(field)
    return None if isinstance(value, tuple) else value


def _prereq_ok(match, field):
    for pre, values in PREREQS.get(field, ()):
        if _exact(match, pre) not in values:
            return False
    return True


def check_flow(flow, meters):
    """Raise :class:`SwitchError` if a switch would reject ``flow``."""
    match = flow.match_dict
    where = 'flow %r' % (flow,)
    if len(match) != len(flow.match):
        raise SwitchError('%s: a field is matched twice' % where)
    for field, value in flow.match:
        if field not in KNOWN_FIELDS:
            raise SwitchError('%s: unknown match field %s' % (where, field))
        if not _prereq_ok(match, field):
            raise SwitchError('%s: match on %s lacks its prerequisite %s'
                              % (where, field, PREREQS[field]))
        if isinstance(value, tuple) and len(value) != 2:
            raise SwitchError('%s: bad masked value for %s' % (where, field))
    vlan = _exact(match, 'vlan_vid')
    tagged = bool(vlan is not None and vlan & VLAN_PRESENT)
    seen_goto = False
    for act in flow.actions:
        kind = act[0]
        if seen_goto:
            raise SwitchError('%s: goto must be the last instruction' % where)
        if kind == 'goto':
            seen_goto = True
            if act[1] <= flow.table:
                raise SwitchError('%s: goto table %d from table %d'
                                  % (where, act[1], flow.table))
        elif kind == 'meter':
            if act[1] not in meters:
                raise SwitchError('%s: meter %r is not installed'
                                  % (where, act[1]))
        elif kind == 'push_vlan':
            tagged = True
        elif kind == 'pop_vlan':
            if not tagged:
                raise SwitchError('%s: pop_vlan of an untagged frame' % where)
            tagged = False
        elif kind == 'set':
            field, value = act[1], act[2]
            if field not in KNOWN_FIELDS:
                raise SwitchError('%s: cannot set %s' % (where, field))
            if field == 'in_port' and value != 0:
                # OVS takes set_field in_port; only clearing it is ours.
                raise SwitchError('%s: in_port is only ever cleared' % where)
            if field == 'vlan_vid':
                if not tagged:
                    raise SwitchError('%s: set vlan_vid without a tag' % where)
                if not value & VLAN_PRESENT:
                    raise SwitchError('%s: set vlan_vid needs OFPVID_PRESENT'
                                      % where)
            elif not _prereq_ok(match, field):
                raise SwitchError('%s: set %s lacks its prerequisite'
                                  % (where, field))
            if _as_int(field, value) >> FIELD_BITS.get(field, 64):
                raise SwitchError('%s: %r does not fit %s'
                                  % (where, value, field))
        elif kind == 'move':
            src, dst, n_bits = act[1:]
            for field in (src, dst):
                if field not in KNOWN_FIELDS or not _prereq_ok(match, field):
                    raise SwitchError('%s: move with %s lacks its '
                                      'prerequisite' % (where, field))
                if n_bits > FIELD_BITS.get(field, 64):
                    raise SwitchError('%s: %d bits do not fit %s'
                                      % (where, n_bits, field))
        elif kind == 'dec_ttl':
            if _exact(match, 'eth_type') not in (ETH_IPV4, ETH_IPV6):
                raise SwitchError('%s: dec_ttl needs an IP match' % where)
        elif kind == 'metadata':
            pass
        elif kind == 'output':
            port = act[1]
            if port not in ('IN_PORT', 'CONTROLLER') and not (
                    isinstance(port, int) and 0 < port < 0xFFFFFF00):
                raise SwitchError('%s: bad output port %r' % (where, port))
        else:
            raise SwitchError('%s: unknown action %r' % (where, act))


# --- one switch --------------------------------------------------------------

class Output(tuple):
    """(port, packet) of one output action, plus the table it came from."""

    def __new__(cls, port, pkt, table):
        self = tuple.__new__(cls, (port, pkt))
        self.table = table
        return self

    @property
    def port(self):
        """The output port."""
        return self[0]

    @property
    def pkt(self):
        """The packet as it left."""
        return self[1]


class FakeSwitch:
    """The flow tables and meters of one NVE."""

    def __init__(self, dpid=None):
        self.dpid = dpid
        self.tables = {}   # table id -> {(priority, match): Flow}
        self.meters = {}   # meter id -> Meter
        self.trace = []    # (table, Flow | 'no-match' | note) of last process
        self.applied = []  # every change applied, in order (for debugging)
        self._sorted_cache = {}

    # -- state --

    def flows(self):
        """The set of installed Flow objects."""
        return {f for table in self.tables.values() for f in table.values()}

    def items(self):
        """key -> Flow/Meter, comparable with NveFlowTable.desired."""
        out = {f.key: f for f in self.flows()}
        out.update({m.key: m for m in self.meters.values()})
        return out

    def snapshot(self):
        """A copy of the tables and meters (to compare before and after)."""
        return ({t: dict(fl) for t, fl in self.tables.items() if fl},
                dict(self.meters))

    def clear(self):
        """A switch restart (or ovs-ofctl del-flows + del-meters)."""
        self.tables, self.meters = {}, {}
        self._sorted_cache = {}

    def dump(self):
        """Text of the tables, for assertion messages."""
        lines = ['meters: %s' % sorted(self.meters)]
        for table in sorted(self.tables):
            for flow in sorted(self.tables[table].values(),
                               key=lambda f: (-f.priority, repr(f.match))):
                lines.append('table=%d prio=%d %s -> %s' % (
                    table, flow.priority, dict(flow.match), flow.actions))
        return '\n'.join(lines)

    # -- flow mods --

    def apply(self, changes, verify_idempotent=True):
        """Apply the reconciler's [(op, Flow|Meter)] with OpenFlow semantics.

        With ``verify_idempotent`` the same batch is applied a second time
        and must leave the tables unchanged (Faucet's offset replay), and no
        key may appear twice in one batch.
        """
        changes = list(changes)
        if verify_idempotent:
            keys = [item.key for _, item in changes]
            dup = {k for k in keys if keys.count(k) > 1}
            if dup:
                raise SwitchError('keys changed twice in one batch: %r' % dup)
        for op, item in changes:
            self._apply_one(op, item)
        if verify_idempotent:
            before = self.snapshot()
            for op, item in changes:
                self._apply_one(op, item, replay=True)
            if self.snapshot() != before:
                raise SwitchError('re-applying the batch changed switch %r:'
                                  ' %r' % (self.dpid, changes))

    def _apply_one(self, op, item, replay=False):
        """One flow-mod or meter-mod.  Flows: add and modify both replace
        (the app sends OFPFC_ADD for both), delete is strict.  Meters: add
        of an existing meter and modify of a missing one are refused, as
        OpenFlow does (not during the idempotence replay)."""
        if not replay:
            self.applied.append((op, item))
        self._sorted_cache = {}
        if op not in ('add', 'modify', 'delete'):
            raise SwitchError('unknown change %r' % (op,))
        if isinstance(item, P.Meter):
            exists = item.meter_id in self.meters
            if not replay and op == 'add' and exists:
                raise SwitchError('switch %r: meter %d exists (ADD refused)'
                                  % (self.dpid, item.meter_id))
            if not replay and op == 'modify' and not exists:
                raise SwitchError('switch %r: meter %d unknown (MODIFY '
                                  'refused)' % (self.dpid, item.meter_id))
            if op == 'delete':
                if self.meters.pop(item.meter_id, None) is not None:
                    # OF 1.3: deleting a meter removes the flows using it.
                    for table in self.tables.values():
                        for key, flow in list(table.items()):
                            if ('meter', item.meter_id) in flow.actions:
                                del table[key]
            else:
                self.meters[item.meter_id] = item
            return
        if not isinstance(item, P.Flow):
            raise SwitchError('not a Flow or Meter: %r' % (item,))
        table = self.tables.setdefault(item.table, {})
        key = (item.priority, item.match)
        if op == 'delete':
            # Strict delete: exactly this priority and match.
            table.pop(key, None)
            return
        check_flow(item, self.meters)
        table[key] = item  # add and modify both replace in place

    # -- packets --

    def _sorted(self, table_id):
        """Flows of a table, highest priority first, with compiled matches
        (cached until the next flow-mod)."""
        cache = self._sorted_cache
        if table_id not in cache:
            cache[table_id] = sorted(
                ((f.priority, _compile(f), f)
                 for f in self.tables.get(table_id, {}).values()),
                key=lambda e: -e[0])
        return cache[table_id]

    def lookup(self, table_id, pkt):
        """The flow of ``table_id`` that ``pkt`` hits, or None."""
        best, best_prio, ints = [], None, {}
        for prio, compiled, flow in self._sorted(table_id):
            if best_prio is not None and prio < best_prio:
                break
            if _compiled_matches(compiled, pkt, ints):
                best.append(flow)
                best_prio = prio
        if len(best) > 1:
            raise SwitchError('switch %r table %d: %d flows of priority %d '
                              'match %r (undefined in OpenFlow): %r' % (
                                  self.dpid, table_id, len(best), best_prio,
                                  pkt, best))
        return best[0] if best else None

    def process(self, pkt, in_port):
        """Run one packet through the pipeline; returns [Output]."""
        work = dict(pkt)
        work['in_port'] = in_port
        work['metadata'] = 0
        for reg in REGS:
            work[reg] = 0
        outputs = []
        self.trace = []
        table_id = 0
        while table_id is not None:
            flow = self.lookup(table_id, work)
            if flow is None:
                self.trace.append((table_id, 'no-match'))
                break
            self.trace.append((table_id, flow))
            table_id = self._execute(flow, work, outputs)
        return outputs

    def _execute(self, flow, work, outputs):
        next_table = None
        for act in flow.actions:
            kind = act[0]
            if kind == 'output':
                port = act[1]
                if port == 'IN_PORT':
                    port = work['in_port']
                elif port == work['in_port']:
                    self.trace.append((flow.table, 'output to in_port %d '
                                       'dropped' % port))
                    continue
                outputs.append(Output(port, dict(work), flow.table))
            elif kind == 'set':
                field, value = act[1], act[2]
                if field == 'vlan_vid' and 'vlan_vid' not in work:
                    raise SwitchError('set vlan_vid on an untagged frame: %r'
                                      % (flow,))
                if field not in PIPELINE_ONLY | {'vlan_vid'} \
                        and field not in work:
                    raise SwitchError('set %s on a frame without that header'
                                      ' (%r): %r' % (field, work, flow))
                work[field] = value
            elif kind == 'push_vlan':
                if 'vlan_vid' in work:
                    work.setdefault('inner_vlan_vid', work['vlan_vid'])
                work['vlan_vid'] = VLAN_PRESENT  # vid 0 until set
            elif kind == 'pop_vlan':
                if 'vlan_vid' not in work:
                    raise SwitchError('pop_vlan on an untagged frame: %r'
                                      % (flow,))
                del work['vlan_vid']
                if 'inner_vlan_vid' in work:
                    work['vlan_vid'] = work.pop('inner_vlan_vid')
            elif kind == 'dec_ttl':
                field = next((f for f in ('ip_ttl', 'nw_ttl') if f in work),
                             None)
                if field is None:
                    raise SwitchError('dec_ttl on a frame without TTL: %r'
                                      % (flow,))
                work[field] -= 1
                if work[field] <= 0:
                    self.trace.append((flow.table, 'ttl expired: dropped'))
                    return None
            elif kind == 'move':
                src, dst, _n_bits = act[1:]
                if src not in work and src not in ALWAYS_PRESENT:
                    raise SwitchError('move from absent %s: %r' % (src, flow))
                work[dst] = _pkt_value(work, src)
            elif kind == 'metadata':
                work['metadata'] = act[1]
            elif kind == 'meter':
                if act[1] not in self.meters:
                    raise SwitchError('flow uses meter %r that is not '
                                      'installed: %r' % (act[1], flow))
            elif kind == 'goto':
                next_table = act[1]
            else:
                raise SwitchError('unknown action %r' % (act,))
        return next_table

    def format_trace(self):
        """The last packet's path through the tables, as text."""
        return '\n'.join(
            '  table %d: %s' % (t, f if isinstance(f, str) else
                                'prio=%d %s -> %s' % (f.priority,
                                                      dict(f.match),
                                                      f.actions))
            for t, f in self.trace)


# --- the network -------------------------------------------------------------

def frame(pkt):
    """The frame as it leaves a port: no pipeline fields."""
    return {k: v for k, v in pkt.items() if k not in PIPELINE_ONLY}


class Result:
    """Everything one sent frame caused, anywhere in the network."""

    def __init__(self):
        self.deliveries = []   # (dpid, port, pkt)
        self.packet_ins = []   # (dpid, table, pkt)
        self.underlay = []     # (src dpid, dst dpid | None, vni, pkt)
        self.encaps = []       # (src dpid, dst dpid | None, vni, tunnel port)
        self.tunnelled = []    # (src dpid, dst VTEP address, vni, pkt)
        self.hops = []         # (dpid, in_port, trace text)
        self.names = {}        # (dpid, port) -> port name
        # (dpid, in_port, packet as it arrived, [(table, Flow | note)],
        # [Output]) of each hop, for tracing.
        self.steps = []

    def points(self):
        """{(dpid, port name or number)} the frame was delivered to."""
        return {(d, self.names.get((d, p), p)) for d, p, _ in self.deliveries}

    def vteps_reached(self):
        """{VTEP address} of underlay frames to no NVE of the network
        (an EVPN VTEP, say)."""
        return {ip for (_, ip, _, _), (_, dst, _, _) in zip(
            self.tunnelled, self.underlay) if dst is None}

    def only_delivery(self):
        """The one delivery (asserts there is exactly one)."""
        assert len(self.deliveries) == 1, self.describe()
        return self.deliveries[0]

    def describe(self):
        """Deliveries, packet-ins, underlay frames and each hop, as text."""
        lines = ['deliveries: %r' % (self.deliveries,),
                 'packet-ins: %r' % (self.packet_ins,),
                 'underlay: %r' % (self.underlay,)]
        for dpid, in_port, text in self.hops:
            lines.append('hop nve %s in_port %s:\n%s' % (dpid, in_port, text))
        return '\n'.join(lines)

    __repr__ = describe


class FakeNetwork:
    """FakeSwitches joined by an NVO3 underlay, wired from the MappingDB."""

    def __init__(self, db=None, cfg=None, max_hops=32):
        self.db = db
        self.cfg = cfg or Settings()
        self.switches = {}
        self.max_hops = max_hops
        self.underlay_frames = []  # every underlay frame ever sent

    def switch(self, dpid):
        """NVE ``dpid``'s switch (made empty on first use)."""
        sw = self.switches.get(dpid)
        if sw is None:
            sw = self.switches[dpid] = FakeSwitch(dpid)
        return sw

    def sync_from(self, planner, verify_idempotent=True, only=None,
                  limit=None):
        """Send every NVE's pending changes to its FakeSwitch.

        ``only`` (a set of dpids) leaves the other NVEs un-programmed for
        now, as when their flow-mods are still in flight.  ``limit`` sends
        batches of at most that many changes, as the app does
        (``flow_batch``), until the NVE is in sync.
        """
        self.db, self.cfg = planner.db, planner.cfg
        for dpid in sorted(planner.tables):
            if only is not None and dpid not in only:
                continue
            table = planner.tables[dpid]
            while True:
                changes = table.take_changes(limit)
                self.switch(dpid).apply(changes, verify_idempotent)
                if limit is None or table.in_sync:
                    break

    # Frame builders, also reachable from a network object.
    arp_request = staticmethod(lambda *a, **k: arp_request(*a, **k))
    ipv4 = staticmethod(lambda *a, **k: ipv4(*a, **k))
    broadcast = staticmethod(lambda *a, **k: broadcast(*a, **k))

    # -- wiring --

    def _nve(self, dpid):
        return self.db.nves.get(dpid) if self.db is not None else None

    def port_number(self, dpid, port):
        """The OpenFlow number of ``port`` (a name or a number) on ``dpid``."""
        if isinstance(port, int):
            return port
        nve = self._nve(dpid)
        number = nve.ofport(port) if nve is not None else None
        assert number is not None, 'NVE %s has no port %r' % (dpid, port)
        return number

    def port_name(self, dpid, number):
        """The name of port ``number`` of ``dpid`` (the number if unknown)."""
        nve = self._nve(dpid)
        for name, num in (nve.dyn_ports.items() if nve else ()):
            if num == number:
                return name
        return number

    def _tunnel_name(self, dpid, number):
        nve = self._nve(dpid)
        if nve is None:
            return None
        for name in self.cfg.tunnel_ports.values():
            if nve.ofport(name) == number:
                return name
        return None

    def _vtep_owner(self, ip):
        for nve in self.db.nves.values():
            if nve.vtep_ip and ipaddress.ip_address(nve.vtep_ip) == \
                    ipaddress.ip_address(ip):
                return nve
        return None

    # -- sending --

    def send(self, dpid, in_port, pkt):
        """A tenant system behind (dpid, in_port) sends ``pkt``."""
        result = Result()
        queue = [(dpid, self.port_number(dpid, in_port), dict(pkt))]
        hops = 0
        while queue:
            cur, port, cur_pkt = queue.pop(0)
            hops += 1
            if hops > self.max_hops:
                raise Loop('more than %d hops:\n%s' % (self.max_hops,
                                                       result.describe()))
            sw = self.switch(cur)
            outputs = sw.process(cur_pkt, port)
            result.hops.append((cur, port, sw.format_trace()))
            result.steps.append((cur, port, cur_pkt, list(sw.trace),
                                 outputs))
            for out in outputs:
                self._emit(cur, out, result, queue)
        return result

    def _emit(self, dpid, out, result, queue):
        port, pkt = out
        if port == 'CONTROLLER':
            result.packet_ins.append((dpid, out.table, frame(pkt)))
            return
        tunnel = self._tunnel_name(dpid, port)
        if tunnel is None:
            result.deliveries.append((dpid, port, frame(pkt)))
            result.names[(dpid, port)] = self.port_name(dpid, port)
            return
        vni = pkt.get('tunnel_id')
        dst_ip = pkt.get('tun_ipv4_dst') or pkt.get('tun_ipv6_dst')
        if vni is None or dst_ip is None:
            raise SwitchError('NVE %s: output to tunnel port %s without '
                              'tunnel_id/tun_ipv4_dst: %r'
                              % (dpid, tunnel, pkt))
        if tunnel.startswith('vxlan') and vni >> 24:
            raise SwitchError('VNI %r does not fit VXLAN' % vni)
        peer = self._vtep_owner(dst_ip)
        inner = frame(pkt)
        record = (dpid, peer.dpid if peer else None, vni, inner)
        result.underlay.append(record)
        result.encaps.append(record[:3] + (tunnel,))
        result.tunnelled.append((dpid, dst_ip, vni, inner))
        self.underlay_frames.append(record)
        if peer is None or peer.ofport(tunnel) is None:
            return  # no such VTEP, or it has no tunnel port of that type
        src = self._nve(dpid)
        arriving = dict(inner, tunnel_id=vni)
        if ':' in dst_ip:
            arriving.update(tun_ipv6_dst=dst_ip, tun_ipv6_src=src.vtep_ip)
        else:
            arriving.update(tun_ipv4_dst=dst_ip, tun_ipv4_src=src.vtep_ip)
        queue.append((peer.dpid, peer.ofport(tunnel), arriving))


# --- frames ------------------------------------------------------------------

def _tag(pkt, vlan):
    if vlan is not None:
        pkt['vlan_vid'] = VLAN_PRESENT | vlan
    return pkt


def arp_request(src_mac, src_ip, dst_ip, vlan=None, eth_dst=BROADCAST):
    """An ARP request; ``eth_dst`` a MAC makes it a unicast one (a liveness
    check: ``arping -t <mac>``, the kernel's NUD probe)."""
    return _tag({'eth_src': src_mac, 'eth_dst': eth_dst,
                 'eth_type': ETH_ARP, 'arp_op': 1, 'arp_sha': src_mac,
                 'arp_spa': src_ip, 'arp_tha': ZERO_MAC, 'arp_tpa': dst_ip},
                vlan)


def garp(src_mac, ip, op=1, vlan=None):
    """A gratuitous ARP (sender = target address): request (RFC 5227
    announcement, ``arping -U``) or reply (``arping -U -P``)."""
    return _tag({'eth_src': src_mac, 'eth_dst': BROADCAST,
                 'eth_type': ETH_ARP, 'arp_op': op, 'arp_sha': src_mac,
                 'arp_spa': ip, 'arp_tha': ZERO_MAC if op == 1 else src_mac,
                 'arp_tpa': ip}, vlan)


def arp_probe(src_mac, ip, vlan=None):
    """An RFC 5227 address probe (sender 0.0.0.0; ``arping -0``)."""
    return arp_request(src_mac, '0.0.0.0', ip, vlan)


def rarp(src_mac, vlan=None):
    """QEMU's announcement of a migrated VM: a broadcast RARP request."""
    return _tag({'eth_src': src_mac, 'eth_dst': BROADCAST,
                 'eth_type': 0x8035}, vlan)


def arp_reply(src_mac, src_ip, dst_mac, dst_ip, vlan=None):
    """An ARP reply."""
    return _tag({'eth_src': src_mac, 'eth_dst': dst_mac,
                 'eth_type': ETH_ARP, 'arp_op': 2, 'arp_sha': src_mac,
                 'arp_spa': src_ip, 'arp_tha': dst_mac, 'arp_tpa': dst_ip},
                vlan)


def ipv4(src_mac, dst_mac, src_ip, dst_ip, ttl=64, vlan=None):
    """An ICMP echo over IPv4."""
    return _tag({'eth_src': src_mac, 'eth_dst': dst_mac,
                 'eth_type': ETH_IPV4, 'ipv4_src': src_ip, 'ipv4_dst': dst_ip,
                 'ip_proto': 1, 'ip_ttl': ttl}, vlan)


def ipv6(src_mac, dst_mac, src_ip, dst_ip, hop_limit=64, vlan=None):
    """An ICMPv6 echo; the hop limit is the ``ip_ttl`` field."""
    return _tag({'eth_src': src_mac, 'eth_dst': dst_mac,
                 'eth_type': ETH_IPV6, 'ipv6_src': src_ip, 'ipv6_dst': dst_ip,
                 'ip_proto': 58, 'icmpv6_type': 128, 'ip_ttl': hop_limit},
                vlan)


def ipv6_ns(src_mac, src_ip, target, vlan=None, eth_dst=None):
    """An IPv6 neighbour solicitation: to the solicited-node group (address
    resolution; DAD with ``src_ip`` ``::``), or with ``eth_dst`` unicast to
    the target itself (the kernel's NUD probe)."""
    last = int(ipaddress.ip_address(target)) & 0xFFFFFF
    group = ipaddress.ip_address(
        int(ipaddress.ip_address('ff02::1:ff00:0')) | last)
    if eth_dst is None:
        eth_dst = '33:33:ff:%02x:%02x:%02x' % (
            last >> 16, (last >> 8) & 0xFF, last & 0xFF)
        ipv6_dst = str(group)
    else:
        ipv6_dst = target
    return _tag({'eth_src': src_mac, 'eth_dst': eth_dst,
                 'eth_type': ETH_IPV6, 'ipv6_src': src_ip,
                 'ipv6_dst': ipv6_dst, 'ip_proto': 58, 'ip_ttl': 255,
                 'icmpv6_type': 135, 'ipv6_nd_target': target}, vlan)


def ipv6_unsolicited_na(src_mac, ip, vlan=None):
    """An unsolicited neighbour advertisement to all nodes (what a guest
    sends when an address comes up with ``ndisc_notify``)."""
    return _tag({'eth_src': src_mac, 'eth_dst': '33:33:00:00:00:01',
                 'eth_type': ETH_IPV6, 'ipv6_src': ip, 'ipv6_dst': 'ff02::1',
                 'ip_proto': 58, 'ip_ttl': 255, 'icmpv6_type': 136,
                 'ipv6_nd_target': ip}, vlan)


def broadcast(src_mac, vlan=None):
    """A broadcast frame of a local experimental ethertype."""
    return _tag({'eth_src': src_mac, 'eth_dst': BROADCAST,
                 'eth_type': 0x88B5}, vlan)


def ethernet(src_mac, dst_mac, vlan=None):
    """A unicast frame of a local experimental ethertype."""
    return _tag({'eth_src': src_mac, 'eth_dst': dst_mac,
                 'eth_type': 0x88B5}, vlan)


def vid(pkt):
    """The VLAN ID a frame carries, or None when untagged."""
    value = pkt.get('vlan_vid')
    return None if value is None else value & 0xFFF
