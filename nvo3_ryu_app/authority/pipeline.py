"""The one declared OpenFlow 1.3 pipeline of an NVE's integration bridge.

Every flow the authority installs is built with :func:`flow`, which checks it
against the declaration below: the table exists, every match field is declared
for it (and masked only where a mask is allowed), the priority is one of the
table's named tiers, goto targets are declared next tables, and set-fields are
declared.  A wrong flow therefore fails in a unit test, not on a switch.

docs/pipeline.md documents the same tables in prose; tests/unit/test_pipeline.py
checks that the document and this declaration agree.

Pipeline fields (the register plan, kept in one place):

* ``metadata`` carries the VNID of the frame from table CLASSIFY onwards.
* ``reg6`` carries the VLAN ID the frame arrived with on a tagged access
  binding (0 = untagged); table TO_INGRESS uses it to re-tag replies that the
  NVE itself generates (ARP answers).
* On a gateway NVE, a frame that crosses an interconnect is sent on from
  LOCAL_DELIVERY (tunnel frames) or L3_ROUTE / L2_FORWARD (its own external
  hosts' frames) to INTERCONNECT, which only gateways hold; ``tunnel_id``
  then names the destination VN of a bridged (l2 + l2) frame, and a
  tunnel frame's ``in_port`` is cleared so that it may leave by the tunnel
  port it came in by.
"""

import functools
from dataclasses import dataclass
from typing import NamedTuple

# Table ids.
CLASSIFY = 0
SOURCE = 1
ARP_ND_RESPONDER = 2
L3_ROUTE = 3
L2_FORWARD = 4
LOCAL_DELIVERY = 5
TO_INGRESS = 6
INTERCONNECT = 7
STAMP = 8          # no frame ever reaches it: see stamp_flow

# Priority tiers (bare numbers never appear outside this module).
PRIO_MISS = 0
PRIO_PORT_PUNT = 10
PRIO_PORT_PUNT_ARP = 11  # the same punt, for ARP: see port_punt_flows
PRIO_UNKNOWN_UCAST = 50
PRIO_FLOOD = 100
PRIO_REDIRECT = 150
PRIO_ACCESS = 100
PRIO_ACCESS_VLAN = 200
PRIO_ACCESS_BID = 250   # a registered vNIC's source IP picks the VN
PRIO_TUNNEL = 300
PRIO_HOST = 200
PRIO_ANNOUNCE = 250      # an owner's own announcements and address probes
PRIO_ADDR_PUNT = 150     # known MAC, address not yet known: learn it
PRIO_HOST_ANY = 100      # known MAC, frames without an L3 source address
PRIO_GLEAN = 100
PRIO_ND_PUNT = 150
PRIO_GATEWAY = 300       # the L3 VN gateway's own addresses (the NVE's)
PRIO_UNICAST = 250       # unicast ARP requests and NS: to their target
PRIO_BLOCKED = 400
PRIO_PROBE = 300
PRIO_CROSS = 180         # towards (or, at the gateway, into) an interconnect
PRIO_ROUTE = 200         # interconnect: routed to a host of the other VN
PRIO_ADMIT = 190         # interconnect: bridged from an allowed source
PRIO_BROADCAST = 160     # interconnect: an allowed source's broadcast
PRIO_LOCAL = 60          # interconnect: other broadcasts, local ports only
PRIO_ND_CROSS = 140      # NS for an address across an interconnect
# A migrating vNIC at its announced new port (dualflows.py): admitted, and
# its own announcements past the responder, before it is at home there.
PRIO_ARRIVAL = 300
PRIO_ARRIVAL_ANNOUNCE = 350
PRIO_STAMP = 1           # the one flow of table STAMP

# Source MAC of the authority's ARP probes of a claimed move's old location
# (mobility.py); table L2_FORWARD punts frames sent to it.
PROBE_MAC = '02:4e:56:00:00:01'

MISS_METER_ID = 0xFF00  # punts of unbound ports; access ports use their ofport

VLAN_PRESENT = 0x1000
OFPVID_NONE = 0x0000
MCAST_BIT = ('01:00:00:00:00:00', '01:00:00:00:00:00')
UCAST = ('00:00:00:00:00:00', '01:00:00:00:00:00')
FULL_METADATA = 0xFFFFFFFFFFFFFFFF
VLAN_REG = 'reg6'

# Cookies: the high 16 bits say "this flow is ours" (foreign flows are never
# touched), the low 32 bits name the owner (VN, tenant system, NVE) so that a
# dump or trace can be read back to the mapping database.
COOKIE_APP = 0x4E56 << 48
COOKIE_APP_MASK = 0xFFFF << 48
# Bit 32, set on a flow that sends a frame to the controller *and* on
# through the pipeline: a packet-in carrying it reports a frame the switch
# forwarded itself, which must not be re-injected (dualflows.py).
COOKIE_FORWARDED = 1 << 32
# The stamp's cookie (see stamp_flow) lies outside the app id on purpose:
# the dumps it vouches for never include it, and nothing that counts or
# compares the app's flows counts it.
COOKIE_STAMP = 0x4E53 << 48


@dataclass(frozen=True)
class Table:
    """One table: what it may match, where it may go, what it may set."""

    table_id: int
    name: str
    purpose: str
    match_fields: dict  # field -> maskable?
    tiers: tuple        # names of its priority tiers (PRIO_<name>)
    next_tables: tuple = ()
    set_fields: tuple = ()
    miss: str = 'drop'


_L2 = {'metadata': False, 'eth_dst': True, 'eth_type': False}
_TUNNEL_SET = ('tunnel_id', 'tun_ipv4_dst', 'tun_ipv6_dst', 'vlan_vid')
BROADCAST = 'ff:ff:ff:ff:ff:ff'

TABLES = {
    t.table_id: t for t in (
        Table(CLASSIFY, 'classify',
              'Maps an access port (and VLAN), the source IP of a '
              'registered vNIC (BIDs) or a tunnel key to a VN; punts '
              'frames of ports whose VN has no tenant system here yet.',
              {'in_port': False, 'vlan_vid': False, 'tunnel_id': False,
               'eth_src': False, 'eth_type': False, 'ipv4_src': False,
               'arp_spa': False, 'arp_tpa': False, 'ipv6_src': False},
              ('MISS', 'PORT_PUNT', 'PORT_PUNT_ARP', 'ACCESS', 'ACCESS_VLAN',
               'ACCESS_BID', 'TUNNEL'),
              next_tables=(SOURCE, LOCAL_DELIVERY),
              set_fields=(VLAN_REG,), miss='controller'),
        Table(SOURCE, 'source',
              'Admits known tenant systems by (port, MAC) and the addresses '
              'they own; unknown sources and new addresses are punted for '
              'attachment discovery; blocked claimants dropped.  An '
              'owner\'s announcements and probes of its own addresses skip '
              'the responder (only the VN can hear them).  A vNIC announced '
              'to migrate here is admitted on its new port and reported.',
              {'metadata': False, 'in_port': False, 'eth_src': False,
               'eth_type': False, 'arp_spa': False, 'arp_tpa': False,
               'ipv4_src': False, 'ipv6_src': False, 'ip_proto': False,
               'icmpv6_type': False, 'ipv6_nd_target': False},
              ('MISS', 'PORT_PUNT', 'PORT_PUNT_ARP', 'HOST_ANY', 'ADDR_PUNT',
               'HOST', 'ANNOUNCE', 'ARRIVAL', 'ARRIVAL_ANNOUNCE', 'BLOCKED'),
              next_tables=(ARP_ND_RESPONDER, L3_ROUTE), miss='drop'),
        Table(ARP_ND_RESPONDER, 'arp_nd_responder',
              'Answers broadcast ARP requests for known addresses and any '
              'for the VN gateway in the NVE itself; punts multicast IPv6 '
              'NS for known targets; unicast requests go to their target.',
              {'metadata': False, 'eth_dst': True, 'eth_type': False,
               'arp_op': False, 'arp_tpa': False, 'ip_proto': False,
               'icmpv6_type': False, 'ipv6_nd_target': False},
              ('MISS', 'ND_CROSS', 'ND_PUNT', 'CROSS', 'HOST', 'UNICAST',
               'GATEWAY'),
              next_tables=(L3_ROUTE, TO_INGRESS),
              set_fields=('eth_src', 'eth_dst', 'arp_op', 'arp_sha',
                          'arp_spa', 'arp_tha', 'arp_tpa'),
              miss='goto'),
        Table(L3_ROUTE, 'l3_route',
              'L3 VN service: routes frames sent to the gateway MAC by '
              'destination IP, rewriting MACs and decrementing the TTL; '
              'sends those for a subnet across an interconnect to its '
              'gateway NVE.',
              {'metadata': False, 'eth_dst': False, 'eth_type': False,
               'ipv4_dst': True, 'ipv6_dst': True},
              ('MISS', 'GLEAN', 'CROSS', 'HOST'),
              next_tables=(L2_FORWARD, INTERCONNECT),
              set_fields=('eth_src', 'eth_dst') + _TUNNEL_SET, miss='goto'),
        Table(L2_FORWARD, 'l2_forward',
              'Frames from access ports: known destination MACs go to a '
              'local port or through the tunnel to the NVE holding them; '
              'BUM and unknown unicast are replicated to member NVEs only.',
              dict(_L2), ('MISS', 'UNKNOWN_UCAST', 'FLOOD', 'HOST', 'PROBE'),
              next_tables=(INTERCONNECT,), set_fields=_TUNNEL_SET,
              miss='drop'),
        Table(LOCAL_DELIVERY, 'local_delivery',
              'Frames from the tunnel: delivered to local tenant systems '
              'only (split horizon), or redirected once to the new location '
              'of a tenant system that just moved away; on a gateway, those '
              'that cross an interconnect go on to its table.',
              dict(_L2),
              ('MISS', 'UNKNOWN_UCAST', 'FLOOD', 'REDIRECT', 'CROSS',
               'HOST'),
              next_tables=(INTERCONNECT,),
              set_fields=_TUNNEL_SET + ('in_port',), miss='drop'),
        Table(TO_INGRESS, 'to_ingress',
              'Sends frames the NVE generated back out of their ingress '
              'port, re-tagged with the VLAN they arrived on.',
              {'in_port': False, VLAN_REG: False},
              ('MISS', 'HOST'),
              set_fields=('vlan_vid',), miss='in_port'),
        Table(INTERCONNECT, 'interconnect',
              'Gateway NVEs only: routes or bridges a frame into the other '
              'VN of an interconnect, in that VN\'s encapsulation and VNID, '
              'when the interconnect allows it; everything else is dropped '
              'here (isolation).',
              {'metadata': False, 'eth_dst': False, 'eth_src': False,
               'eth_type': False, 'tunnel_id': False, 'ipv4_dst': True,
               'ipv6_dst': True},
              ('MISS', 'LOCAL', 'GLEAN', 'BROADCAST', 'ADMIT', 'ROUTE'),
              set_fields=('eth_src', 'eth_dst') + _TUNNEL_SET,
              miss='drop'),
        Table(STAMP, 'stamp',
              'Holds the stamp: the digest of the flow set the NVE last '
              'acknowledged, written in its one flow\'s metadata '
              'instruction (southbound/stamp.py).  No table goes here: no '
              'frame ever meets it.',
              {}, ('STAMP',), miss='drop'),
    )
}

PRIORITY_NAMES = {
    name: value for name, value in globals().items()
    if name.startswith('PRIO_')}


@functools.lru_cache(maxsize=None)   # every computed flow asks
def tier_name(table_id, priority):
    """The name of ``priority`` among the tiers of ``table_id``."""
    for name in TABLES[table_id].tiers:
        if PRIORITY_NAMES['PRIO_' + name] == priority:
            return name
    return None


class PipelineError(AssertionError):
    """A flow that does not fit the declared pipeline (a programming error)."""


class Flow(NamedTuple):
    """A flow entry, independent of os-ken: plain data, hashable.

    ``match`` is a sorted tuple of (field, value) where value may be a
    (value, mask) tuple.  ``actions`` is a tuple of abstract actions:

    ('output', port | 'IN_PORT' | 'CONTROLLER'), ('set', field, value),
    ('push_vlan',), ('pop_vlan',), ('dec_ttl',), ('move', src, dst, n_bits),
    ('meter', meter_id), ('metadata', value), ('goto', table_id).
    An empty tuple drops.

    A named tuple, not a dataclass: a frozen dataclass's __init__ was the
    largest single cost of computing a tenant system's flows.
    """

    table: int
    priority: int
    match: tuple
    actions: tuple
    cookie: int

    @property
    def key(self):
        """What identifies a flow in a switch: table, priority, match."""
        return (self.table, self.priority, self.match)

    @property
    def match_dict(self):
        """The match as a dict."""
        return dict(self.match)


# An ARP target no frame names (RFC 5227 probes name theirs; 0.0.0.0 is
# only ever a sender's address).
NO_ARP_TARGET = '0.0.0.0'


def port_punt_flows(ofport, cookie):
    """The punts of access port ``ofport`` in tables CLASSIFY and SOURCE:
    what no flow of a known tenant system takes goes to the controller
    through the port's meter.

    Each table holds the punt twice: ``in_port=P`` (PRIO_PORT_PUNT), and
    the same punt for ARP with target NO_ARP_TARGET just above it
    (PRIO_PORT_PUNT_ARP).  The second never changes what a frame meets.
    It changes what Open vSwitch caches: the datapath flow of a punted
    frame matches what the classifier had to look at, which was only
    ``in_port`` (other ports' flows are ruled out by it), so it sent every
    later frame of the port to the controller too, until OVS's
    revalidators caught up with the flows learned from the first one
    (after the barrier, in threads of their own: a few milliseconds on a
    busy host).  A new guest's ARP requests for its peers, sent just
    after its announcement, were punted and re-injected one by one, about
    1.5 ms each.  Looking at this flow, the classifier must read the ARP
    target, so the cached punt matches one target: the guest's next ARP
    asks OVS again and meets the flows just learned."""
    punt = [('meter', ofport), ('output', 'CONTROLLER')]
    arp = {'in_port': ofport, 'eth_type': 0x0806, 'arp_tpa': NO_ARP_TARGET}
    return [flow(table, priority, match, punt, cookie)
            for table in (CLASSIFY, SOURCE)
            for priority, match in ((PRIO_PORT_PUNT, {'in_port': ofport}),
                                    (PRIO_PORT_PUNT_ARP, arp))]


def stamp_flow(digest):
    """The stamp of an NVE: one flow of table STAMP carrying ``digest``
    (64 bits) as its write-metadata value.  Built here, not with
    :func:`flow`: its cookie is not the app's (COOKIE_STAMP)."""
    return Flow(STAMP, PRIO_STAMP, (), (('metadata', digest),), COOKIE_STAMP)


_APPLY_KINDS = frozenset(('output', 'push_vlan', 'pop_vlan', 'dec_ttl',
                          'meter', 'metadata'))


def flow(table, priority, match, actions, cookie):
    """Build a :class:`Flow`, verified against the declared pipeline.

    Every flow the authority computes passes here, so the checks are
    written to cost nothing when they pass (no message is formatted
    unless one fails)."""
    tdef = TABLES.get(table)
    if tdef is None:
        raise PipelineError('unknown table %r' % (table,))
    if tier_name(table, priority) is None:
        raise PipelineError('priority %d is not a tier of table %s'
                            % (priority, tdef.name))
    if priority == PRIO_MISS and match:
        raise PipelineError('table-miss flow of %s must not match anything'
                            % tdef.name)
    fields = tdef.match_fields
    for field, value in match.items():
        maskable = fields.get(field)
        if maskable is None:
            raise PipelineError('table %s does not match on %s'
                                % (tdef.name, field))
        if not maskable and type(value) is tuple:
            raise PipelineError('table %s may not mask %s'
                                % (tdef.name, field))
    gotos, rank, ordered = 0, 0, True
    for act in actions:
        kind = act[0]
        if kind == 'goto':
            gotos += 1
            if act[1] not in tdef.next_tables:
                raise PipelineError('table %s may not go to table %r'
                                    % (tdef.name, act[1]))
        elif kind == 'set':
            if act[1] not in tdef.set_fields:
                raise PipelineError('table %s may not set %s'
                                    % (tdef.name, act[1]))
        elif kind == 'move':
            if act[2] not in tdef.set_fields:
                raise PipelineError('table %s may not write %s'
                                    % (tdef.name, act[2]))
        elif kind not in _APPLY_KINDS:
            raise PipelineError('unknown action %r' % (kind,))
        this = _INSTRUCTION_RANK.get(kind, 1)
        ordered = ordered and this >= rank
        rank = this
    if gotos > 1:
        raise PipelineError('one goto at most')
    if cookie & COOKIE_APP_MASK != COOKIE_APP:
        raise PipelineError('cookie is not ours')
    return Flow(table, priority, tuple(sorted(match.items())),
                tuple(actions) if ordered else canonical_order(actions),
                cookie)


_INSTRUCTION_RANK = {'meter': 0, 'metadata': 2, 'goto': 3}


def canonical_order(actions):
    """Order actions as OpenFlow 1.3 instructions come back in a dump:
    meter, apply-actions (in their own order), write-metadata, goto."""
    return tuple(sorted(actions, key=lambda a: _INSTRUCTION_RANK.get(a[0], 1)))


@dataclass(frozen=True)
class Meter:
    """A packet-in rate limit (OpenFlow meter, packets per second)."""

    meter_id: int
    rate_pps: int
    burst: int

    @property
    def key(self):
        """What identifies a meter in a switch: its id."""
        return ('meter', self.meter_id)
