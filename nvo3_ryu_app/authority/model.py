"""The mapping database of the Information Mapping Authority (draft section 4).

Plain Python, no os-ken: VNs, NVEs, access-port bindings and the attachments
of tenant-system vNICs, from which the draft's mapping table entries, the VN
membership (section 5.2) and the TESIDs are derived.  Every mutating method
validates completely before it changes anything (a failed call changes
nothing), takes the current time as an argument, records events, and notes
what it touched so that the flow planner recomputes only that.
"""

import collections.abc
import ipaddress
import itertools
import re
import sys
from dataclasses import InitVar, dataclass, field
from typing import NamedTuple

from . import events as ev
from .addresses import (dpid_str, norm_choice, norm_dpid, norm_gateway,
                        norm_ip, norm_mac, norm_name, norm_port_name,
                        norm_route_targets, norm_vlan, norm_vnid)
from .errors import BadRequest, Conflict, NotFound
from .owners import TsOwner

SERVICES = ('l2', 'l3')
ENCAPS = ('vxlan', 'gre', 'geneve')
ROLES = ('nve', 'gateway')
# The source of a mapping entry imported from a BGP EVPN peer (evpn.py).
EVPN = 'evpn'
LAST_SEEN_PERSIST = 60.0   # seconds between persisted last_seen refreshes
CONFIG = 'config'          # the origin of what the configuration file says
DPID_TEXT = re.compile(r'[0-9a-fA-F]{16}')


def _binding_fields(binding):
    """A binding's VN(s) as event fields."""
    if binding.vnid is not None:
        return {'vnid': binding.vnid}
    return {'vlans': {str(k): v for k, v in sorted(binding.vlans.items())}}


def _binding_text(binding):
    """``VN 5001`` or ``VLAN 10 -> VN 5001, ...`` (None for no binding)."""
    if binding is None:
        return None
    if binding.vnid is not None:
        return 'VN %d' % binding.vnid
    return ', '.join('VLAN %d -> VN %d' % item
                     for item in sorted(binding.vlans.items()))


def location_of(att):
    """Where an attachment is, as events name it: ``{'nve', 'port'}``, or
    ``{'nve': None, 'vtep'}`` for an entry behind an EVPN VTEP."""
    if att.nve is None:
        return {'nve': None, 'vtep': att.port}
    return {'nve': dpid_str(att.nve), 'port': att.port}


def _norm_flag(value, field_name):
    """A true/false option, or BadRequest."""
    if not isinstance(value, bool):
        raise BadRequest('%s must be true or false, not %r' % (
            field_name, value), field_name)
    return value


# --- the records -----------------------------------------------------------

class Migration(NamedTuple):
    """An announced migration of one attachment (authority/migrations.py):
    the vNIC is about to appear at (``nve``, ``port``, ``vlan``); until
    ``deadline`` its frames go to both places.  ``arrived`` is when its
    first frame was seen there (None while it is awaited; not persisted:
    after a restart the arrival is awaited again)."""

    nve: int
    port: str
    vlan: int
    started: float
    deadline: float
    arrived: float = None

    @property
    def place(self):
        """(dpid, port, vlan) it is about to appear at."""
        return self.nve, self.port, self.vlan


@dataclass(slots=True)
class VN:
    """A virtual network: its VNID (the VXLAN VNI or GRE key), service (l2, or
    l3 with a gateway) and encapsulation."""

    vnid: int
    name: str
    service: str = 'l2'
    encap: str = 'vxlan'
    gateway_mac: str = None
    gateway_ips: tuple = ()
    origin: str = 'rest'
    # BGP EVPN (evpn.py): whether the VN is shared with EVPN VTEPs, and its
    # route targets (empty: derived from the AS and the VNID).
    evpn: bool = False
    route_targets: tuple = ()

    def gateway_host_ips(self):
        """The gateway's own addresses (without their prefixes)."""
        return [str(ipaddress.ip_interface(i).ip) for i in self.gateway_ips]

    def to_dict(self):
        """The VN as REST shows it (``evpn`` and ``route_targets`` only for
        a VN that uses them: the view of others is as before)."""
        view = {'vnid': self.vnid, 'name': self.name,
                'service': self.service, 'encap': self.encap,
                'gateway': {'mac': self.gateway_mac,
                            'ips': list(self.gateway_ips)},
                'origin': self.origin}
        if self.evpn or self.route_targets:
            view['evpn'] = self.evpn
            view['route_targets'] = list(self.route_targets)
        return view


class _VlanMapped:
    """A port's frames to VNs: all of them to ``vnid`` (untagged), or each
    VLAN ID to its VN (``vlans``)."""

    __slots__ = ()

    def vn_for(self, vlan):
        """The VN a frame arriving with ``vlan`` (None: untagged) belongs to,
        or None."""
        if vlan is None:
            return self.vnid
        return self.vlans.get(vlan)

    def vnids(self):
        """Every VN the port carries."""
        return {self.vnid} if self.vnid is not None else set(
            self.vlans.values())


@dataclass(slots=True)
class PortBinding(_VlanMapped):
    """Logical interface: a whole port bound to one VN, or VLANs to VNs."""

    port: str
    vnid: int = None
    vlans: dict = field(default_factory=dict)  # vlan id -> vnid
    origin: str = 'rest'
    # The configuration file's binding under a REST override (the base
    # layer, back when the override is deleted); None when not overridden.
    base: object = None

    def to_dict(self):
        """The binding as REST shows it (with the file's binding it
        overrides, if any)."""
        if self.vnid is not None:
            out = {'vnid': self.vnid, 'origin': self.origin}
        else:
            out = {'vlans': {str(k): v for k, v in sorted(
                self.vlans.items())}, 'origin': self.origin}
        if self.base is not None:
            out['overrides'] = self.base.to_dict()
        return out

    def same(self, other):
        """Whether ``other`` binds the port the same way, from the same
        origin (a write that would change nothing)."""
        return other is not None and (self.vnid, self.vlans, self.origin) \
            == (other.vnid, other.vlans, other.origin)


@dataclass(slots=True)
class NVE:
    """A network virtualization edge (one OVS bridge): its VTEP, its
    access-port bindings and what its switch last said."""

    dpid: int
    name: str = None
    vtep_ip: str = None
    origin: str = 'rest'
    bindings: dict = field(default_factory=dict)  # port name -> PortBinding
    # 'gateway': it may carry interconnects and externals (draft 4.3).
    role: str = 'nve'
    # Dynamic state, learned from the switch (never persisted as intent).
    dyn_connected: bool = False
    dyn_ports: dict = field(default_factory=dict)  # port name -> ofport
    dyn_mac: str = None
    dyn_down_since: float = None
    dyn_unreachable: bool = False   # away past its grace: not tunnelled to

    def ofport(self, name):
        """The OpenFlow port number of port ``name`` while it is up, else
        None."""
        return self.dyn_ports.get(name)


@dataclass(slots=True)
class Interconnect:
    """Interconnection functionality (draft 4.3) between two VNs, carried
    by one gateway NVE: it routes between L3 VNs (and between an L2 VN,
    through ``router``, and an L3 VN), or bridges two L2 VNs for the MACs
    of its forwarding allowed list.  interconnect.py decides the rest."""

    name: str
    gateway: int
    vns: tuple                   # (vnid, vnid), as given
    allowed_macs: tuple = ()     # sorted; l2 + l2 only
    router: dict = field(default_factory=dict)  # l2 vnid -> (ip/len, mac)
    origin: str = 'rest'

    def other(self, vnid):
        """The VN across the interconnect from ``vnid``."""
        return self.vns[1] if vnid == self.vns[0] else self.vns[0]


@dataclass(slots=True)
class External(_VlanMapped):
    """A non-VN network on a port of a gateway NVE (draft 4.3): frames
    entering the port join the VN of their VLAN (or ``vnid`` untagged);
    unicast frames of the VN leave towards it only for ``allowed_macs``."""

    name: str
    gateway: int
    port: str
    vnid: int = None             # untagged, or
    vlans: dict = field(default_factory=dict)   # vlan id -> vnid
    allowed_macs: tuple = ()     # sorted
    origin: str = 'rest'


class _EmptyMap(dict):
    """An empty dict that refuses to be filled: the one shared default of
    the per-attachment maps (``Attachment.ip_bids`` and ``blocked``).

    Most attachments never get blocked, and many have no IP address yet;
    a fresh empty dict for each costs 64 B.  Code that fills such a map
    assigns a new dict instead (copy on write).  Reading, and ``pop`` with
    a default (which changes nothing in an empty dict), work as usual.
    """

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError('shared empty map: assign a new dict instead')

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = setdefault = clear = _refuse

    def __reduce__(self):
        return 'EMPTY_MAP'          # copies and pickles stay the shared one


EMPTY_MAP = _EmptyMap()


def _empty_map():
    return EMPTY_MAP


@dataclass(slots=True)
class Mobility:
    """An attachment's mobility state (draft 7.5), apart from the
    attachment: most never move, and six fields of their own cost every
    mapping entry 48 B.  Where it just left, whose traffic the old NVE
    still redirects for a moment; recent move times (flap detection);
    until when it is frozen; claimants blocked until a time; an announced
    migration under way (a Migration)."""

    redirect_from: int = None
    moved_at: float = 0.0
    move_times: list = ()       # () until it moves: a new list each move
    frozen_until: float = 0.0
    blocked: dict = field(default_factory=_empty_map)  # (dpid, port) -> until
    migration: object = None


_STILL = Mobility()     # what an attachment that never moved reads


def _field_in(part, default, name):
    """Attachment.<name>, kept in the attachment's ``part`` object (made on
    the first write of a value other than ``default``'s, which is what an
    attachment without one reads)."""

    def get(att):
        return getattr(getattr(att, part) or default, name)

    def put(att, value):
        held = getattr(att, part)
        if held is None:
            if value == getattr(default, name):
                return
            held = type(default)()
            setattr(att, part, held)
        setattr(held, name, value)

    return property(get, put, doc='%s.%s of the attachment' % (
        type(default).__name__, name))


def _mobility_field(name):
    return _field_in('mobility', _STILL, name)


@dataclass(slots=True)
class Registration:
    """The BIDs of an attachment's registered bindings (bids.py), apart
    from the attachment: most are learned, never registered, and two
    fields of their own cost every mapping entry 16 B.  ``bid``: of its
    L2 binding [MAC, VLAN ID, BID] (draft Figure 4); ``ip_bids``: ip ->
    BID of its L3 bindings [MAC, IP, BID] registered with one."""

    bid: int = None
    ip_bids: dict = field(default_factory=_empty_map)


_UNREGISTERED = Registration()  # what an attachment never registered reads


def _registration_field(name):
    return _field_in('registration', _UNREGISTERED, name)


# An attachment's usual values, (vlan, seq, source, reachable), as one
# tuple shared by every attachment that holds the same (see Attachment):
# a few per fleet.  Bounded: past _STATES_MAX different ones (locations
# moved many times, many VLANs), it starts again (the tuples held stay).
_STATES = {}
_STATES_MAX = 4096


def _state(vlan, seq, source, reachable):
    state = (vlan, seq, source, reachable)
    held = _STATES.get(state)
    if held is None:
        if len(_STATES) >= _STATES_MAX:
            _STATES.clear()
        held = _STATES[state] = state
    return held


def _state_part(index, name):
    """Attachment.<name>, item ``index`` of its shared ``state``."""

    def get(att):
        return att.state[index]

    def put(att, value):
        state = list(att.state)
        state[index] = value
        att.state = _state(*state)

    return property(get, put, doc='its %s (in its shared state)' % name)


def _extra_part(index, name):
    """Attachment.<name>: item ``index`` of its ``extra`` (None without)."""

    def get(att):
        extra = att.extra
        return None if extra is None else extra[index]

    def put(att, value):
        extra = list(att.extra or (None, None))
        extra[index] = value
        att.extra = None if extra == [None, None] else tuple(extra)

    return property(get, put, doc='its %s, or None' % name)


@dataclass(slots=True, repr=False)
class Attachment:
    """A tenant-system vNIC attached to a VN at one NVE access port.

    One attachment yields one mapping table entry per IP address (or one
    without IP while none is known).  ``seq`` is the location sequence
    number: it grows with every move so a late event cannot put an older
    location back (EVPN MAC mobility style).

    There is one of these per mapping entry, so it is kept small: eight
    slots (96 B; twelve were 128), shared empties for the containers most
    attachments never fill (see _EmptyMap; ``move_times`` is ``()`` until
    the first move), one ``key`` tuple that every index of the database
    reuses, and the addresses as one sorted tuple that the views of its
    flows share.  Its ``vnid`` and ``mac`` are read from that key; its
    ``vlan``, ``seq``, ``source`` and ``reachable`` from ``state``, one
    tuple shared by the attachments that hold the same values (most hold
    (None, 1, 'learned', True)); what few attachments have is in objects
    apart, made when needed (Mobility, Registration), both held by
    ``extra`` (None without either).  Every one of those reads and
    writes as a field of the attachment's own.
    """

    vnid: InitVar[int]
    mac: InitVar[str]
    nve: int
    port: str
    vlan: InitVar[int] = None
    # Its addresses (the IP of [MAC, IP, BID]), sorted: a tuple rather
    # than a map ip -> BID (184 B for one address), and the very tuple
    # its flows' views hold (flows.py).  See addresses().
    ips: tuple = ()
    seq: InitVar[int] = 1
    source: InitVar[str] = 'learned'
    reachable: InitVar[bool] = True
    first_seen: float = 0.0
    last_seen: float = 0.0
    # Its Mobility once it moved, was frozen, had a claimant blocked or
    # announced a migration (most never do): None until then.  Its fields
    # read and write as the attachment's own (redirect_from, moved_at, ...
    # migration below).
    mobility: InitVar[object] = None
    # Its Registration once a binding of it was registered with a BID
    # (bids.py): None until then.  Its fields, ``bid`` (of an L2 binding)
    # and ``ip_bids`` (of its L3 bindings: ip -> BID), read and write as
    # the attachment's own.
    registration: InitVar[object] = None
    # Given to the constructor, kept in the objects above.
    bid: InitVar[int] = None
    ip_bids: InitVar[dict] = None
    migration: InitVar[object] = None
    # (vnid, mac), made once: the same tuple object keys ``attachments``,
    # ``_by_nve``, the store's record and the flow tables (it is the owner
    # of its flows, owners.TsOwner), rather than a copy (56 B) each.
    # vnid and mac never change (a tenant system in another VN is another
    # attachment).
    key: tuple = field(init=False)
    # (vlan, seq, source, reachable), shared (_state).
    state: tuple = field(init=False)
    # (mobility, registration), or None when both are.
    extra: tuple = field(init=False)

    # The fields kept in the slots above (persist.py's test reads them).
    PARTS = {'state': ('vlan', 'seq', 'source', 'reachable'),
             'extra': ('mobility', 'registration')}

    def __post_init__(self, vnid, mac, vlan, seq, source, reachable,
                      mobility, registration, bid, ip_bids, migration):
        self.key = TsOwner(vnid, mac)
        self.state = _state(vlan, seq, source, reachable)
        self.extra = None if mobility is None and registration is None \
            else (mobility, registration)
        if bid is not None:
            self.bid = bid
        if ip_bids:
            self.ip_bids = ip_bids
        if migration is not None:
            self.migration = migration

    redirect_from = _mobility_field('redirect_from')
    moved_at = _mobility_field('moved_at')
    move_times = _mobility_field('move_times')
    frozen_until = _mobility_field('frozen_until')
    blocked = _mobility_field('blocked')

    def addresses(self):
        """ip -> BID (None: no BID) of each of its addresses."""
        bids = self.ip_bids
        return {ip: bids.get(ip) for ip in self.ips}

    @property
    def remote_vtep(self):
        """The EVPN VTEP an entry imported from BGP sits behind, else None.

        Such an entry is at no NVE of ours: ``nve`` is None and ``port``
        holds the remote VTEP's address (no field of its own: one more slot
        would cost every mapping entry 8 bytes)."""
        return self.port if self.nve is None else None

    def __repr__(self):
        return ('Attachment(nve=%r, port=%r, vlan=%r, ips=%r, seq=%r, '
                'source=%r, reachable=%r, first_seen=%r, last_seen=%r, '
                'mobility=%r, registration=%r, key=%r)' % (
                    self.nve, self.port, self.vlan, self.ips, self.seq,
                    self.source, self.reachable, self.first_seen,
                    self.last_seen, self.mobility, self.registration,
                    self.key))


# Set here, not in the class body: there a value would be the InitVar's
# default.
Attachment.vnid = property(lambda att: att.key[0],
                           doc='The VN it is attached in (its key\'s).')
Attachment.mac = property(lambda att: att.key[1],
                          doc='Its MAC address (its key\'s).')
Attachment.vlan = _state_part(0, 'VLAN ID (None: untagged)')
Attachment.seq = _state_part(1, 'location sequence number')
Attachment.source = _state_part(2, "source ('learned', 'registered', "
                                   "'evpn')")
Attachment.reachable = _state_part(3, 'reachability (its NVE not away '
                                      'past its grace)')
Attachment.mobility = _extra_part(0, 'Mobility')
Attachment.registration = _extra_part(1, 'Registration')
Attachment.bid = _registration_field('bid')
Attachment.ip_bids = _registration_field('ip_bids')
Attachment.migration = _mobility_field('migration')


class Attachments(collections.abc.MutableMapping):
    """``(vnid, mac) -> Attachment``, kept per VN: ``by_vn`` is ``vnid ->
    {mac: Attachment}`` (a VN's own map is there from its creation to its
    deletion).  The database needs both ways in, and one map each cost
    every mapping entry a slot (~30 B) in two maps, (vnid, mac) -> the
    attachment and the same per VN; this one reads the first from the
    second.  Iterating goes VN by VN."""

    __slots__ = ('by_vn',)

    def __init__(self):
        self.by_vn = {}

    def __getitem__(self, key):
        return self.by_vn[key[0]][key[1]]

    def get(self, key, default=None):
        """The attachment ``key`` names, else ``default``."""
        atts = self.by_vn.get(key[0])
        return default if atts is None else atts.get(key[1], default)

    def __contains__(self, key):
        atts = self.by_vn.get(key[0])
        return atts is not None and key[1] in atts

    def __setitem__(self, key, att):
        self.by_vn[key[0]][key[1]] = att

    def __delitem__(self, key):
        del self.by_vn[key[0]][key[1]]

    def values(self):
        """Every attachment, VN by VN (an iterator)."""
        return itertools.chain.from_iterable(
            atts.values() for atts in self.by_vn.values())

    def items(self):
        """``(key, attachment)`` of every attachment (an iterator)."""
        return ((att.key, att) for att in self.values())

    def __iter__(self):
        return (att.key for att in self.values())

    def __len__(self):
        return sum(map(len, self.by_vn.values()))

    def __bool__(self):
        return any(self.by_vn.values())

    def __repr__(self):
        return repr(dict(self.items()))


class MappingDB:
    """The authority's database, with derived membership and TESIDs."""

    def __init__(self, event_log=None):
        self.vns = {}
        self.nves = {}
        self.attachments = Attachments()    # (vnid, mac) -> Attachment
        # A list per NVE rather than a set: a key costs 8-9 B there, 27 to
        # 107 in a set (hash slots at most 3/5 full, grown fourfold), and
        # an NVE holds few enough that a removal may scan them.
        self._by_nve = {}           # dpid -> [(vnid, mac)]
        # Per VN rather than keyed by (vnid, ip): no tuple (56 B) per
        # address.  A VN without addresses has no entry.
        self._by_ip = {}            # vnid -> {ip: mac}
        self._members = {}          # vnid -> {dpid: attachment count}
        # The VN a MAC has a registered attachment in (bids.py), or a tuple
        # of them when several (the exception): a frame adds no binding
        # of a registered vNIC in another VN (learn).  Registered ones
        # only: for every MAC, a slot cost every mapping entry ~25 B, to
        # find the few registered ones.  See _registered_vns_of().
        self._registered_vns = {}   # mac -> vnid | (vnid, ...)
        # NVEs with a present access port bound to the VN are in its context
        # too: the tenant system is attached there even before it speaks.
        self._port_members = {}     # vnid -> {dpid}
        self._port_vns = {}         # dpid -> {vnid}
        self._redirects = {}        # vnid -> {dpid: count} (old NVEs)
        # Interconnection functionality (draft 4.3, interconnect.py): a
        # gateway is in the context of every VN it interconnects, and of
        # the VNs of its externals' present ports (as for bound ports).
        self.interconnects = {}     # name -> Interconnect
        self.externals = {}         # name -> External
        self._ic_members = {}       # vnid -> {gateway dpid: count}
        self._ext_ports = {}        # (dpid, port) -> External
        # Announced migrations: the NVEs they go to hold the VN's flows
        # (flow_members), and the attachments under way.
        self._migration_targets = {}    # vnid -> {dpid: count}
        self.migrating = set()          # (vnid, mac) with a migration
        # BGP EVPN (evpn.py): entries imported from peers, per VN and remote
        # VTEP; and the EVPN VTEPs in each VN's context (their IMET routes),
        # to which BUM traffic is replicated as to member NVEs.
        self._remote = {}           # vnid -> {vtep: imported entry count}
        self._evpn_vteps = {}       # vnid -> frozenset of VTEP addresses
        # Called (vnid, route targets) before a VN takes part in EVPN:
        # raises BadRequest when it cannot be advertised (set by the
        # authority when BGP is on).
        self.evpn_check = None
        self.event_log = event_log if event_log is not None else ev.EventLog()
        self.touched_vns = set()
        self.touched_nves = set()
        self.touched_entries = set()
        self.touched_members = set()  # (vnid, dpid): joined or left
        # Interconnects and externals put, changed or removed, with what
        # they were before (the planner withdraws what the old one held).
        self.touched_ics = {}       # name -> Interconnect before, or None
        self.touched_exts = {}      # name -> External before, or None
        # Records to persist: ('vn', vnid), ('nve', dpid), ('att', key),
        # ('ic', name), ('ext', name).
        self.changed_records = set()
        # The event sequence number last persisted (persist.save_changes).
        self.saved_event_seq = self.event_log.seq

    # -- touch tracking (consumed by the flow planner) --

    def take_touched(self):
        """The VNs, NVEs, attachments and memberships touched since the last
        call (what the planner recomputes), and forget them."""
        touched = (self.touched_vns, self.touched_nves, self.touched_entries,
                   self.touched_members)
        self.touched_vns, self.touched_nves = set(), set()
        self.touched_entries, self.touched_members = set(), set()
        return touched

    def take_touched_gateways(self):
        """The interconnects and externals touched since the last call
        (name -> the record as it was before, or None), and forget them."""
        touched = self.touched_ics, self.touched_exts
        self.touched_ics, self.touched_exts = {}, {}
        return touched

    def _touch_entry(self, key):
        self.touched_entries.add(key)
        att = self.attachments.get(key)
        if att is None or att.nve is not None:
            # Imported entries are not kept: the peers tell them again.
            self.changed_records.add(('att', key))

    def take_changed_records(self):
        """Records changed since the last call (to persist), and forget
        them."""
        changed, self.changed_records = self.changed_records, set()
        return changed

    def note_unsaved(self, records):
        """``records`` (from :meth:`take_changed_records`) were not saved:
        they count as changed again, so the next save retries them."""
        self.changed_records |= records

    # -- loading (persist.restore) --

    def restore(self, vns, nves, attachments, interconnects=None,
                externals=None):
        """Fill an empty database with stored records: ``vns``, ``nves``,
        ``interconnects`` and ``externals`` by key, ``attachments`` by
        ``(vnid, mac)`` key (each is put under its own ``key``, its flows'
        owner: a key read back from a store is a plain tuple).  No events;
        afterwards every record counts as touched (the planner computes
        every flow) and none as changed."""
        if self.vns or self.nves or self.attachments:
            raise ValueError('restore needs an empty MappingDB')
        self.vns.update(vns)
        self.nves.update(nves)
        self.interconnects.update(interconnects or {})
        self.externals.update(externals or {})
        self.touched_ics.update(dict.fromkeys(self.interconnects))
        self.touched_exts.update(dict.fromkeys(self.externals))
        by_vn = self._by_vn
        for vnid in self.vns:
            by_vn[vnid] = {}
        for att in attachments.values():
            by_vn[att.vnid][att.mac] = att
        self.rebuild_indexes()
        self.touched_vns.update(self.vns)
        self.touched_nves.update(self.nves)
        self.touched_entries.update(self.attachments)
        self.touched_members.update((att.vnid, att.nve)
                                    for att in self.attachments.values())
        self.changed_records = set()

    def assume_away(self, since):
        """Every NVE counts as away since ``since`` until it connects (after
        a restart: one that never comes back is not tunnelled to for ever)."""
        for nve in self.nves.values():
            nve.dyn_down_since = since

    # -- VNs (draft 7.1) --

    def create_vn(self, vnid, name, service='l2', encap='vxlan',
                  gateway_mac=None, gateway_ips=(), origin='rest', now=0.0,
                  evpn=False, route_targets=()):
        """Create a VN (draft 7.1); returns it.  Refuses a taken VNID or name,
        and an l3 VN without a gateway."""
        vnid = norm_vnid(vnid)
        name = norm_name(name)
        norm_choice(service, SERVICES, 'service')
        norm_choice(encap, ENCAPS, 'encap')
        gateway_mac, gateway_ips = norm_gateway(gateway_mac, gateway_ips)
        evpn = _norm_flag(evpn, 'evpn')
        route_targets = norm_route_targets(route_targets)
        if evpn and self.evpn_check is not None:
            self.evpn_check(vnid, route_targets)
        if vnid in self.vns:
            raise Conflict('VN %d already exists' % vnid, 'vnid')
        if any(vn.name == name for vn in self.vns.values()):
            raise Conflict('a VN named %r already exists' % name, 'name')
        if service == 'l3' and (not gateway_mac or not gateway_ips):
            raise BadRequest('an l3 VN needs gateway.mac and gateway.ips',
                             'gateway')
        vn = VN(vnid, name, service, encap, gateway_mac, gateway_ips, origin,
                evpn, route_targets)
        self.vns[vnid] = vn
        self._by_vn[vnid] = {}
        self.touched_vns.add(vnid)
        self.changed_records.add(('vn', vnid))
        self.event_log.record(now, ev.VN_CREATED, vnid=vnid, name=name)
        return vn

    def update_vn(self, vnid, now=0.0, origin=None, **changes):
        """Change a VN's name, service, encapsulation or gateway (and, with
        ``origin``, where it is now defined); returns the VN."""
        vn = self.get_vn(vnid)
        allowed = {'name', 'service', 'encap', 'gateway_mac', 'gateway_ips',
                   'evpn', 'route_targets'}
        unknown = set(changes) - allowed
        if unknown:
            raise BadRequest('unknown field(s): %s' % ', '.join(sorted(
                unknown)), sorted(unknown)[0])
        new = dict(name=vn.name, service=vn.service, encap=vn.encap,
                   gateway_mac=vn.gateway_mac, gateway_ips=vn.gateway_ips,
                   evpn=vn.evpn, route_targets=vn.route_targets)
        new.update(changes)
        new['evpn'] = _norm_flag(new['evpn'], 'evpn')
        new['route_targets'] = norm_route_targets(new['route_targets'])
        if new['evpn'] and self.evpn_check is not None:
            self.evpn_check(vn.vnid, new['route_targets'])
        new['name'] = norm_name(new['name'])
        norm_choice(new['service'], SERVICES, 'service')
        norm_choice(new['encap'], ENCAPS, 'encap')
        new['gateway_mac'], new['gateway_ips'] = norm_gateway(
            new['gateway_mac'], new['gateway_ips'])
        if any(o.name == new['name'] and o.vnid != vn.vnid
               for o in self.vns.values()):
            raise Conflict('a VN named %r already exists' % new['name'],
                           'name')
        if new['service'] == 'l3' and (not new['gateway_mac']
                                       or not new['gateway_ips']):
            raise BadRequest('an l3 VN needs gateway.mac and gateway.ips',
                             'gateway')
        for text in new['gateway_ips']:
            ip = str(ipaddress.ip_interface(text).ip)
            owner = self._ip_owner(vn.vnid, ip)
            if owner is not None:
                raise Conflict('gateway address %s is used by tenant system '
                               '%s in VN %d' % (ip, owner, vn.vnid),
                               'gateway.ips')
        if self.interconnects_of(vn.vnid):
            # The interconnect's kind and routes follow from the VN's
            # service and subnets: they must stay valid (interconnect.py;
            # imported here, it builds on this module's records).
            from .interconnect import check_vn_update
            check_vn_update(self, vn, new)
        changed = sorted(key for key, value in new.items()
                         if getattr(vn, key) != value)
        if origin is not None and origin != vn.origin:
            changed.append('origin')
        if not changed:
            return vn       # nothing to write, nothing happened
        for key, value in new.items():
            setattr(vn, key, value)
        if origin is not None:
            vn.origin = origin
        self.touched_vns.add(vn.vnid)
        self.changed_records.add(('vn', vn.vnid))
        self.event_log.record(now, ev.VN_UPDATED, vnid=vn.vnid,
                              changes=changed)
        return vn

    def delete_vn(self, vnid, now=0.0):
        """Delete a VN: its tenant systems detach, its port bindings go.
        Refused while an interconnect or an external network uses it."""
        vn = self.get_vn(vnid)
        users = sorted(ic.name for ic in self.interconnects_of(vn.vnid)) + \
            sorted(ext.name for ext in self.externals.values()
                   if vn.vnid in ext.vnids())
        if users:
            raise Conflict('VN %d is used by %s; delete that first' % (
                vn.vnid, ', '.join(users)), 'vnid')
        for mac in list(self._by_vn[vn.vnid]):
            self.remove_attachment(self.attachments[(vn.vnid, mac)], now,
                                    reason='vn-deleted')
        for nve in self.nves.values():
            for port, binding in list(nve.bindings.items()):
                base = binding.base
                if base is not None and vn.vnid in base.vnids():
                    binding.base = base = self._without_vn(base, vn.vnid)
                    self.changed_records.add(('nve', nve.dpid))
                if vn.vnid not in binding.vnids():
                    continue
                rest = self._without_vn(binding, vn.vnid)
                if rest is None and base is not None:
                    rest = base         # the file's binding is back
                if rest is None:
                    del nve.bindings[port]
                else:
                    nve.bindings[port] = rest
                self._refresh_ports(nve, now)
                self.touched_nves.add(nve.dpid)
                self.changed_records.add(('nve', nve.dpid))
        del self.vns[vn.vnid]
        del self._by_vn[vn.vnid]
        self.set_evpn_vteps(vn.vnid, (), now)
        self.touched_vns.add(vn.vnid)
        self.changed_records.add(('vn', vn.vnid))
        self.event_log.record(now, ev.VN_DELETED, vnid=vn.vnid)

    @staticmethod
    def _without_vn(binding, vnid):
        """``binding`` without VN ``vnid`` (None when nothing is left)."""
        if binding.vnid is not None:
            return None if binding.vnid == vnid else binding
        vlans = {v: n for v, n in binding.vlans.items() if n != vnid}
        if not vlans:
            return None
        return PortBinding(binding.port, vlans=vlans, origin=binding.origin,
                           base=binding.base)

    def get_vn(self, vnid):
        """The VN ``vnid`` (NotFound if none)."""
        vnid = norm_vnid(vnid)
        vn = self.vns.get(vnid)
        if vn is None:
            raise NotFound('no VN %d' % vnid, 'vnid')
        return vn

    # -- NVEs (draft 5.1) --

    def register_nve(self, dpid, vtep_ip=None, name=None, origin='rest',
                     now=0.0, role=None):
        """Register NVE ``dpid`` or change its VTEP address, name or role
        (``nve`` or ``gateway``; a VTEP belongs to one NVE); returns it.  A
        gateway stays one while an interconnect or external uses it."""
        dpid = norm_dpid(dpid)
        if role is not None:
            norm_choice(role, ROLES, 'role')
            users = [x.name for x in list(self.interconnects.values())
                     + list(self.externals.values()) if x.gateway == dpid]
            if role != 'gateway' and users:
                raise Conflict('NVE %s is the gateway of %s; it stays a '
                               'gateway while they exist' % (
                                   dpid_str(dpid), ', '.join(sorted(users))),
                               'role')
        if vtep_ip is not None:
            vtep_ip = norm_ip(vtep_ip, 'vtep_ip')
            for other in self.nves.values():
                if other.dpid != dpid and other.vtep_ip == vtep_ip:
                    raise Conflict('VTEP %s already belongs to NVE %s' % (
                        vtep_ip, dpid_str(other.dpid)), 'vtep_ip')
        if name is not None:
            name = norm_name(name)
        if name is not None and DPID_TEXT.fullmatch(name):
            raise BadRequest('an NVE name of 16 hex digits would read as a '
                             'datapath id', 'name')
        if name is not None:
            for other in self.nves.values():
                if other.dpid != dpid and other.name == name:
                    # A name stands for its NVE wherever a dpid does.
                    raise Conflict('NVE name %r already belongs to NVE %s'
                                   % (name, dpid_str(other.dpid)), 'name')
        nve = self.nves.get(dpid)
        if nve is None:
            nve = self.nves[dpid] = NVE(dpid, name, vtep_ip, origin,
                                        role=role or 'nve')
            self._by_nve[dpid] = []
            changes = ['new']
        else:
            changes = [key for key, value in (
                ('vtep_ip', vtep_ip), ('name', name), ('origin', origin),
                ('role', role))
                if value is not None and getattr(nve, key) != value]
            if not changes:
                return nve
            if vtep_ip is not None:
                nve.vtep_ip = vtep_ip
            if name is not None:
                nve.name = name
            if role is not None:
                nve.role = role
            nve.origin = origin
        self.touched_nves.add(dpid)
        self.changed_records.add(('nve', dpid))
        if origin != 'switch':
            self.event_log.record(now, ev.NVE_REGISTERED, nve=dpid_str(dpid),
                                  name=nve.name, vtep_ip=nve.vtep_ip,
                                  origin=origin, changes=changes)
        return nve

    def delete_nve(self, dpid, now=0.0):
        """Forget NVE ``dpid``: its tenant systems detach, its bindings go
        (it leaves every VN), nobody redirects to it or tunnels to it any
        more.  Refused while it is the gateway of an interconnect or an
        external network.  Returns the record as it was."""
        nve = self.get_nve(dpid)
        dpid = nve.dpid
        users = sorted(x.name for x in list(self.interconnects.values())
                       + list(self.externals.values()) if x.gateway == dpid)
        if users:
            raise Conflict('NVE %s is the gateway of %s; delete that first'
                           % (dpid_str(dpid), ', '.join(users)), 'dpid')
        for att in sorted(self.attachments_at(dpid), key=lambda a: a.key):
            self.remove_attachment(att, now, reason='nve-deleted')
        for att in list(self.attachments.values()):
            if att.redirect_from == dpid:
                self.end_redirect(att)
        nve.bindings = {}
        nve.dyn_ports = {}
        self._refresh_ports(nve, now)
        del self.nves[dpid]
        del self._by_nve[dpid]
        self._port_vns.pop(dpid, None)
        self.touched_nves.add(dpid)
        self.changed_records.add(('nve', dpid))
        self.event_log.record(now, ev.NVE_DELETED, nve=dpid_str(dpid),
                              connected=nve.dyn_connected)
        return nve

    def get_nve(self, dpid):
        """The NVE ``dpid`` (NotFound if none)."""
        dpid = norm_dpid(dpid)
        nve = self.nves.get(dpid)
        if nve is None:
            raise NotFound('no NVE %s' % dpid_str(dpid), 'dpid')
        return nve

    def nve_connected(self, dpid, ports, nve_mac, now, decides=True):
        """The switch said hello: ``ports`` maps port names to numbers.
        ``decides``: this authority decides for the NVE (alone, always; in
        a cluster, its master): only then does an unknown NVE become a
        record and do its tenant systems count as reachable again in the
        records (another instance's decision arrives as records)."""
        nve = self.nves.get(dpid)
        if nve is None:
            if decides:
                nve = self.register_nve(dpid, origin='switch')
            else:
                nve = self.nves[dpid] = NVE(dpid, origin='switch')
                self._by_nve[dpid] = []
        nve.dyn_connected = True
        nve.dyn_ports = dict(ports)
        nve.dyn_mac = nve_mac
        nve.dyn_down_since = None
        nve.dyn_unreachable = False
        self._refresh_ports(nve, now)
        for key in list(self._by_nve[dpid]) if decides else ():
            att = self.attachments[key]
            if not att.reachable:
                att.reachable = True
                self._touch_entry(key)
        self.touched_nves.add(dpid)
        self.event_log.record(now, ev.NVE_UP, nve=dpid_str(dpid))
        return nve

    def nve_disconnected(self, dpid, now):
        """NVE ``dpid``'s channel went down at ``now``."""
        nve = self.nves.get(dpid)
        if nve is None or not nve.dyn_connected:
            return
        nve.dyn_connected = False
        nve.dyn_down_since = now
        self.touched_nves.add(dpid)
        self.event_log.record(now, ev.NVE_DOWN, nve=dpid_str(dpid))

    def mark_unreachable(self, dpid, now):
        """An NVE stayed away past its grace period: stop tunnelling to it."""
        self.nves[dpid].dyn_unreachable = True
        for key in self._by_nve.get(dpid, ()):
            att = self.attachments[key]
            if att.reachable:
                att.reachable = False
                self._touch_entry(key)
        self.touched_nves.add(dpid)
        self.event_log.record(now, ev.NVE_UNREACHABLE, nve=dpid_str(dpid))

    def port_status(self, dpid, port_name, ofport, now):
        """A port appeared (ofport) or disappeared (None) on a connected NVE."""
        nve = self.nves.get(dpid)
        if nve is None or nve.dyn_ports.get(port_name) == ofport:
            # OVS reports a port again when anything of it changes (its
            # speed, say, as a tap loses its carrier, just before the
            # link-down report that matters): replanning the NVE for it
            # delayed the move a migration's old tap going down decides.
            return
        if ofport is None:
            nve.dyn_ports.pop(port_name, None)
        else:
            nve.dyn_ports[port_name] = ofport
        self._refresh_ports(nve, now)
        self.touched_nves.add(dpid)

    def _refresh_ports(self, nve, now):
        """Port-level VN membership follows bindings of present ports."""
        present = set()
        for name, binding in nve.bindings.items():
            if name in nve.dyn_ports:
                present |= binding.vnids()
        for ext in self.externals.values():
            if ext.gateway == nve.dpid and ext.port in nve.dyn_ports:
                present |= ext.vnids()
        old = self._port_vns.get(nve.dpid, set())
        changed = present ^ old
        was = {v: self.is_member(v, nve.dpid) for v in changed}
        self._port_vns[nve.dpid] = present
        for vnid in present - old:
            self._port_members.setdefault(vnid, set()).add(nve.dpid)
        for vnid in old - present:
            members = self._port_members.get(vnid, set())
            members.discard(nve.dpid)
            if not members:
                self._port_members.pop(vnid, None)
        for vnid in changed:
            self._note_membership(vnid, nve.dpid, was[vnid], now)

    def is_member(self, vnid, dpid):
        """Whether NVE ``dpid`` is in VN ``vnid``'s context."""
        return dpid in self._members.get(vnid, ()) or dpid in \
            self._port_members.get(vnid, ()) or dpid in \
            self._ic_members.get(vnid, ())

    def _note_membership(self, vnid, dpid, was, now):
        """Draft 5.1: an NVE joins a VN's context with its first tenant
        system (or bound port) of it and leaves with its last."""
        if was == self.is_member(vnid, dpid):
            return
        self.touched_members.add((vnid, dpid))
        self.event_log.record(now, ev.VN_LEAVE if was else ev.VN_JOIN,
                           vnid=vnid, nve=dpid_str(dpid))

    # -- access-port bindings (logical interface identifiers) --

    def bind_port(self, dpid, port, vnid=None, vlans=None, origin='rest',
                  now=0.0, override=False):
        """Bind access port ``port`` of NVE ``dpid`` to a VN as a whole
        (``vnid``) or by VLAN (``vlans``); tenant systems the new binding no
        longer carries detach.  Returns the binding.

        The configuration file's bindings are a base layer: another origin
        binding a port the file binds is refused (Conflict) unless
        ``override``; then it is an override, the file's binding kept under
        it (``base``) and back when the override is unbound.  The file
        applied again (a restart) updates that base and leaves the override
        in force.  Binding a port as it is bound already changes nothing."""
        nve = self.get_nve(dpid)
        port = norm_port_name(port)
        if (vnid is None) == (vlans is None):
            raise BadRequest('give either "vnid" (whole port) or "vlans" '
                             '(VLAN ID -> VNID)', 'vnid')
        ext = self._ext_ports.get((nve.dpid, port))
        if ext is not None:
            raise BadRequest('port %s of NVE %s carries external network %s;'
                             ' it is not an access port' % (
                                 port, dpid_str(nve.dpid), ext.name),
                             'port_name')
        if vnid is not None:
            binding = PortBinding(port, vnid=self.get_vn(vnid).vnid,
                                  origin=origin)
        else:
            if not isinstance(vlans, dict) or not vlans:
                raise BadRequest('vlans must be a non-empty object of VLAN ID'
                                 ' -> VNID', 'vlans')
            mapped = {}
            for vlan, vn_id in vlans.items():
                mapped[norm_vlan(vlan, 'vlans')] = self.get_vn(vn_id).vnid
            if len(set(mapped.values())) != len(mapped):
                # Frames between two VLANs of one port would have to leave
                # by their own ingress port: a port carries a VN once.
                raise BadRequest('a port carries each VN on one VLAN only',
                                 'vlans')
            binding = PortBinding(port, vlans=mapped, origin=origin)
        old = nve.bindings.get(port)
        if old is not None and origin == CONFIG and old.origin != CONFIG:
            # The file under a binding made elsewhere: it becomes (or
            # updates) the base layer; what is in force stays.
            if binding.same(old.base):
                return old
            old.base = binding
            self.changed_records.add(('nve', nve.dpid))
            self.event_log.record(now, ev.BIND, nve=dpid_str(nve.dpid),
                                  port=port, origin=origin, overridden=True,
                                  **_binding_fields(binding))
            return old
        if binding.same(old):
            return old
        if old is not None and origin != CONFIG:
            base = old.base if old.base is not None else (
                old if old.origin == CONFIG else None)
            if base is not None and not override:
                raise Conflict(
                    'port %s of NVE %s is bound by the configuration file '
                    '(%s): change the file, or override the binding '
                    '(REST ?override=true, nvo3ctl bind --override)' % (
                        port, self._label(nve), _binding_text(base)),
                    'port_name')
            binding.base = base
        self._rebind(nve, port, old, binding, now)
        self.event_log.record(now, ev.BIND, nve=dpid_str(nve.dpid),
                              port=port, origin=origin,
                              overrides=_binding_text(binding.base),
                              **_binding_fields(binding))
        return binding

    def _rebind(self, nve, port, old, binding, now):
        """Put ``binding`` (None: none) in force on ``port``."""
        if old is not None:
            self._drop_attachments_off_binding(nve, old, binding, now)
        if binding is None:
            del nve.bindings[port]
        else:
            nve.bindings[port] = binding
        self._refresh_ports(nve, now)
        self.touched_nves.add(nve.dpid)
        self.changed_records.add(('nve', nve.dpid))
        old_vnids = old.vnids() if old is not None else set()
        new_vnids = binding.vnids() if binding is not None else set()
        self.touched_members.update(
            (v, nve.dpid) for v in new_vnids | old_vnids)

    @staticmethod
    def _label(nve):
        return '%s (%s)' % (nve.name, dpid_str(nve.dpid)) if nve.name \
            else dpid_str(nve.dpid)

    def unbind_port(self, dpid, port, now=0.0, origin='rest'):
        """Remove an access port's binding; its tenant systems detach.  An
        override gives way to the configuration file's binding under it;
        a binding of the file itself is the file's to remove (Conflict
        for any other origin)."""
        nve = self.get_nve(dpid)
        binding = nve.bindings.get(port)
        if binding is None:
            raise NotFound('port %s of NVE %s is not bound' % (
                port, dpid_str(nve.dpid)), 'port_name')
        if binding.origin == CONFIG and origin != CONFIG:
            raise Conflict('port %s of NVE %s is bound by the configuration '
                           'file (%s): remove it there' % (
                               port, self._label(nve),
                               _binding_text(binding)), 'port_name')
        restored = binding.base
        self._rebind(nve, port, binding, restored, now)
        self.event_log.record(now, ev.UNBIND, nve=dpid_str(nve.dpid),
                              port=port, origin=origin,
                              restored=_binding_text(restored))

    def _drop_attachments_off_binding(self, nve, old, new, now):
        for key in list(self._by_nve[nve.dpid]):
            att = self.attachments[key]
            if att.port != old.port:
                continue
            if new is None or (new.vn_for(att.vlan) != att.vnid
                               and not self.by_source_ip(att)):
                self.remove_attachment(att, now, reason='unbound')

    def by_source_ip(self, att):
        """A registered L3 binding reached untagged: table 0 picks its VN
        by source IP (BIDs, bids.py), whatever the port's binding says."""
        return (att.source == 'registered' and att.vlan is None
                and self.vns[att.vnid].service == 'l3')

    def binding_vn(self, dpid, port, vlan):
        """The VN a frame on ``port`` of NVE ``dpid`` with ``vlan`` belongs to,
        or None."""
        nve = self.nves.get(dpid)
        binding = nve and nve.bindings.get(port)
        if binding:
            return binding.vn_for(vlan)
        ext = self._ext_ports.get((dpid, port))
        return ext.vn_for(vlan) if ext is not None else None

    def external_at(self, dpid, port):
        """The external network on port ``port`` of NVE ``dpid``, or
        None."""
        return self._ext_ports.get((dpid, port))

    def deliverable(self, att):
        """Whether unicast frames of its VN may be sent to ``att``: every
        tenant system, and hosts of an external network only when they
        are on its allowed list (draft 4.3)."""
        ext = self._ext_ports.get((att.nve, att.port))
        return ext is None or att.mac in ext.allowed_macs

    # -- attachments (draft 7.2, 7.3) --

    def learn(self, dpid, port, vlan, mac, ip, now, how='packet-in'):
        """A frame from ``mac`` (and ``ip``) arrived on an access port.

        Returns the attachment, or None when the port/VLAN is not bound.
        Moves, conflicts and BID rules are handled by mobility and
        registration code through the same primitives.
        """
        vnid = self.binding_vn(dpid, port, vlan)
        if vnid is None:
            return None
        mac = norm_mac(mac)
        ip = norm_ip(ip) if ip is not None else None
        att = self.attachments.get((vnid, mac))
        if att is None and self._registered_vns_of(mac):
            # Its bindings are what its agent registered (bids.py).
            raise Conflict('%s is a registered vNIC without a binding in VN '
                           '%d; frames do not add one' % (mac, vnid), 'mac')
        learns = att is None or self.learns_addresses(att)
        if ip is not None and learns:
            self.check_ip_free(vnid, mac, ip, now)   # before any change
        if att is None:
            att = self.attach(vnid, mac, dpid, port, vlan, now, how)
        elif (att.nve, att.port, att.vlan) != (dpid, port, vlan):
            att = self.move(att, dpid, port, vlan, now, how)
        self.refresh_seen(att, now)
        if ip is not None and ip not in att.ips and learns:
            self.add_ip(att, ip, None, now)
        return att

    def learns_addresses(self, att):
        """Do the frames of ``att`` teach its addresses?  A learned entry's
        do, and so do those of a registered L2 binding ([MAC, VLAN, BID],
        draft Figure 4: it names no address).  A registered L3 binding's
        address is the binding ([MAC, IP, BID]): packets add none
        (bids.py)."""
        return att.source != 'registered' or \
            self.vns[att.vnid].service == 'l2'

    def refresh_seen(self, att, now):
        """The tenant system was heard from at ``now``."""
        # Written now and then, not per frame (each write is an fsync): the
        # first time it is heard in each LAST_SEEN_PERSIST-long period since
        # first_seen, so what is stored is never that much behind, without
        # keeping a "last written" time per attachment.  Periods count from
        # first_seen so that the writes of many attachments spread out.
        period = LAST_SEEN_PERSIST
        if (now - att.first_seen) // period != \
                (att.last_seen - att.first_seen) // period:
            self.changed_records.add(('att', att.key))
        att.last_seen = now

    def check_ip_free(self, vnid, mac, ip, now):
        """Refuse an address another vNIC of the VN (or its gateway) has."""
        owner = self._ip_owner(vnid, ip)
        vn = self.vns.get(vnid)
        if owner is None and vn is not None and ip in vn.gateway_host_ips():
            owner = 'the VN gateway'
        if owner is None:
            for ic in self.interconnects_of(vnid):
                router = ic.router.get(vnid)
                if router and str(ipaddress.ip_interface(
                        router[0]).ip) == ip:
                    owner = 'the router of interconnect %s' % ic.name
        if owner is not None and owner != mac:
            self.event_log.record(now, ev.CONFLICT, vnid=vnid, ip=ip, mac=mac,
                               owner=owner, reason='ip-in-use')
            raise Conflict('IP %s is already used by %s in VN %d' % (
                ip, owner, vnid), 'ip')

    def attach(self, vnid, mac, dpid, port, vlan, now, how, source='learned'):
        """A new attachment of ``mac`` in VN ``vnid`` at an access port of a
        known NVE (the caller checked it is new); returns it."""
        nve = self.nves[dpid]
        dpid, port = self.location(nve, port)
        att = Attachment(vnid, mac, dpid, port, vlan, source=source,
                         first_seen=now, last_seen=now,
                         reachable=not nve.dyn_unreachable)
        was = self.is_member(vnid, dpid)
        self.attachments[att.key] = att
        self._place(att, 1)
        self._touch_entry(att.key)
        self.event_log.record(now, ev.ATTACH, vnid=vnid, mac=mac,
                           nve=dpid_str(dpid), port=port, vlan=vlan, how=how)
        self._note_membership(vnid, dpid, was, now)
        return att

    @staticmethod
    def location(nve, port):
        """``(dpid, port)`` as an attachment keeps them: the NVE's own dpid
        object and an interned port name, shared by all its attachments.
        The caller's come fresh from each packet-in or stored record (a
        dpid above 256 is an int object of its own, a port name is decoded
        from bytes)."""
        return nve.dpid, sys.intern(port)

    def add_ip(self, att, ip, bid, now):
        """Add address ``ip`` (with its BID, or None) to an attachment; refuses
        an address another tenant system of the VN has."""
        ip = norm_ip(ip)
        self.check_ip_free(att.vnid, att.mac, ip, now)
        if ip not in att.ips:
            att.ips = tuple(sorted(att.ips + (ip,)))
        if bid is not None or ip in att.ip_bids:
            bids = dict(att.ip_bids)    # not the shared EMPTY_MAP
            bids[ip] = bid
            att.ip_bids = {i: b for i, b in bids.items() if b is not None} \
                or EMPTY_MAP
        self._by_ip.setdefault(att.vnid, {})[ip] = att.mac
        self._touch_entry(att.key)

    def set_source(self, att, source):
        """Where the attachment comes from now ('learned', 'registered')."""
        self._set_source(att, source)
        self._touch_entry(att.key)

    def _set_source(self, att, source):
        """Every change of a held attachment's source comes here: the
        index of registered ones follows (see _place)."""
        registered = att.source == 'registered'
        if registered != (source == 'registered'):
            self._note_registered(att, -1 if registered else 1)
        att.source = source

    def set_bid(self, att, bid):
        """The BID of an attachment's L2 binding (bids.py)."""
        att.bid = bid
        self._touch_entry(att.key)

    def set_seen(self, att, now):
        """Its agent says the tenant system is there at ``now``: its record
        (with ``last_seen``) and its flows are written again."""
        att.last_seen = now
        self._touch_entry(att.key)

    def freeze(self, att, until):
        """A flapping address stays where it is until ``until``."""
        att.frozen_until = until
        self._touch_entry(att.key)

    def block(self, att, where, until, now):
        """Claims of the attachment's MAC from ``where`` (dpid, port) are
        refused until ``until``; blocks that ended by ``now`` are dropped."""
        blocked = {w: t for w, t in att.blocked.items() if t > now}
        blocked[where] = until
        att.blocked = blocked
        self._touch_entry(att.key)

    @staticmethod
    def unblock(att, where):
        """Claims from ``where`` are no longer refused (it moved there).
        The move that follows writes the record."""
        if where in att.blocked:
            del att.blocked[where]

    def remove_ip(self, att, ip):
        """Remove address ``ip`` from an attachment."""
        att.ips = tuple(i for i in att.ips if i != ip)
        if ip in att.ip_bids:
            att.ip_bids = {i: b for i, b in att.ip_bids.items() if i != ip} \
                or EMPTY_MAP
        owners = self._by_ip.get(att.vnid)
        if owners is not None and owners.get(ip) == att.mac:
            del owners[ip]
            if not owners:
                del self._by_ip[att.vnid]
        self._touch_entry(att.key)

    def _ip_owner(self, vnid, ip):
        """The MAC of the VN's tenant system with address ``ip``, or None."""
        return self._by_ip.get(vnid, EMPTY_MAP).get(ip)

    def move(self, att, dpid, port, vlan, now, how, seq=None):
        """Relocate an attachment; ``seq`` (if given) must be newer."""
        if seq is not None and seq <= att.seq:
            raise Conflict('stale location for %s: sequence %d is not newer '
                           'than %d' % (att.mac, seq, att.seq), 'seq')
        old = (att.nve, att.port, att.vlan)
        mig = att.migration
        if mig is not None:
            self._drop_migration(att)
        was_old = self.is_member(att.vnid, att.nve)
        was_new = self.is_member(att.vnid, dpid)
        self._place(att, -1)
        nve = self.nves[dpid]
        if att.nve is None:
            # It came here from behind an EVPN VTEP: learned here now, and
            # advertised with the next sequence number (RFC 7432 15).
            att.source = 'learned'
            att.frozen_until = 0.0
        att.nve, att.port = self.location(nve, port)
        att.vlan = vlan
        att.seq = seq if seq is not None else att.seq + 1
        att.reachable = not nve.dyn_unreachable
        self._place(att, 1)
        att.move_times = [t for t in att.move_times if now - t < 3600]
        att.move_times.append(now)      # a new list: () is shared
        self.set_redirect(att, old[0], now)
        where = {'old_nve': dpid_str(old[0]), 'old_port': old[1]} \
            if old[0] is not None else {'old_nve': None, 'old_vtep': old[1]}
        self.event_log.record(now, ev.MOVE, vnid=att.vnid, mac=att.mac,
                           nve=dpid_str(dpid), port=port,
                           location_seq=att.seq, how=how, **where)
        if mig is not None:
            # It appeared where it was announced (the migration completes),
            # or somewhere else (it is over all the same).
            if mig.place == (att.nve, att.port, att.vlan):
                self.migration_event(
                    att, mig, now, ev.MIGRATION_COMPLETED,
                    location_seq=att.seq,
                    arrived=now if mig.arrived is None else mig.arrived,
                    **where)
            else:
                self.migration_event(att, mig, now, ev.MIGRATION_CANCELLED,
                                      reason='moved', to_nve=dpid_str(dpid),
                                      to_port=port)
        self._note_membership(att.vnid, old[0], was_old, now)
        self._note_membership(att.vnid, dpid, was_new, now)
        return att

    def detach(self, vnid, mac, now, reason='detached'):
        """Remove tenant system ``mac`` from VN ``vnid`` (NotFound if it is not
        there)."""
        att = self.attachments.get((norm_vnid(vnid), norm_mac(mac)))
        if att is None:
            raise NotFound('no tenant system %s in VN %s' % (mac, vnid), 'mac')
        self.remove_attachment(att, now, reason)

    def remove_attachment(self, att, now, reason):
        """Remove an attachment (``reason`` goes in its detach event); its NVE
        may leave the VN."""
        was = self.is_member(att.vnid, att.nve)
        if att.migration is not None:
            self.end_migration(att, now, ev.MIGRATION_CANCELLED,
                               reason='detached')
        for ip in list(att.ips):
            self.remove_ip(att, ip)
        self.end_redirect(att)
        del self.attachments[att.key]
        self._place(att, -1)
        if att.nve is None:
            self.touched_entries.add(att.key)     # never kept: see import
        else:
            self._touch_entry(att.key)
        self.event_log.record(now, ev.DETACH, vnid=att.vnid, mac=att.mac,
                              reason=reason, **location_of(att))
        self._note_membership(att.vnid, att.nve, was, now)

    def _count_at(self, vnid, dpid):
        return self._members.get(vnid, {}).get(dpid, 0)

    @staticmethod
    def _inc(index, vnid, dpid, delta):
        counts = index.setdefault(vnid, {})
        counts[dpid] = counts.get(dpid, 0) + delta
        if counts[dpid] <= 0:
            del counts[dpid]
            if not counts:
                del index[vnid]

    def _place(self, att, delta):
        if att.nve is None:
            # Behind an EVPN VTEP: counted per VTEP, no NVE of ours.
            self._inc(self._remote, att.vnid, att.port, delta)
        else:
            self._inc(self._members, att.vnid, att.nve, delta)
        if att.nve is not None:
            if delta > 0:
                self._by_nve[att.nve].append(att.key)
            else:
                self._by_nve[att.nve].remove(att.key)
        if att.source == 'registered':
            self._note_registered(att, delta)

    def _note_registered(self, att, delta):
        """A registered attachment was placed (``delta`` 1) or taken away
        (-1), or an attachment held became (1) or stopped being (-1)
        registered: _registered_vns follows."""
        mac = att.mac
        vnids = self._registered_vns_of(mac)
        if delta > 0:
            if att.vnid not in vnids:
                self._registered_vns[mac] = vnids + (att.vnid,) if vnids \
                    else att.vnid
            return
        vnids = tuple(v for v in vnids if v != att.vnid)
        if len(vnids) > 1:
            self._registered_vns[mac] = vnids
        elif vnids:
            self._registered_vns[mac] = vnids[0]
        else:
            self._registered_vns.pop(mac, None)

    def _registered_vns_of(self, mac):
        """The VNs ``mac`` has a registered attachment in, as a tuple."""
        vnids = self._registered_vns.get(mac, ())
        return vnids if isinstance(vnids, tuple) else (vnids,)

    @property
    def _by_vn(self):
        """vnid -> {mac: Attachment} (see Attachments)."""
        return self.attachments.by_vn

    def rebuild_indexes(self):
        """Recompute every derived index from the records (after a load)."""
        for vnid in self.vns:
            self._by_vn.setdefault(vnid, {})
        self._by_nve = {dpid: [] for dpid in self.nves}
        self._by_ip, self._members, self._redirects = {}, {}, {}
        self._remote = {}
        self._port_members, self._port_vns = {}, {}
        self._registered_vns = {}
        self._ic_members, self._ext_ports = {}, {}
        for ic in self.interconnects.values():
            for vnid in ic.vns:
                self._inc(self._ic_members, vnid, ic.gateway, 1)
        for ext in self.externals.values():
            self._ext_ports[(ext.gateway, ext.port)] = ext
        self._migration_targets, self.migrating = {}, set()
        for att in self.attachments.values():
            self._place(att, 1)
            for ip in att.ips:
                self._by_ip.setdefault(att.vnid, {})[ip] = att.mac
            if att.redirect_from is not None:
                self._inc(self._redirects, att.vnid, att.redirect_from, 1)
            if att.migration is not None:
                self._inc(self._migration_targets, att.vnid,
                          att.migration.nve, 1)
                self.migrating.add(att.key)

    def set_redirect(self, att, old_dpid, now):
        """A moved attachment's old NVE ``old_dpid`` redirects its frames for a
        while (draft 7.5)."""
        self.end_redirect(att)
        if old_dpid is not None and old_dpid != att.nve:
            att.redirect_from = old_dpid
            self._count_redirect(att.vnid, old_dpid, 1)
        att.moved_at = now
        self._touch_entry(att.key)

    def _count_redirect(self, vnid, dpid, delta):
        """One redirect more or less on NVE ``dpid``: touched as a member
        only if that makes it one, or no more, of the VN's flow members
        (an NVE left by a move mostly holds the VN still: replanning the
        whole VN there put tenfold the work between a move and its
        flows)."""
        was = dpid in self.flow_members(vnid)
        self._inc(self._redirects, vnid, dpid, delta)
        if was != (dpid in self.flow_members(vnid)):
            self.touched_members.add((vnid, dpid))

    def end_redirect(self, att, write=True):
        """The old NVE stops redirecting (hold time over, or it left).
        ``write``: the attachment's record is written again (not when a
        replicated record ends it: the redirect is not part of it)."""
        if att.redirect_from is None:
            return
        old, att.redirect_from = att.redirect_from, None
        self._count_redirect(att.vnid, old, -1)
        if write:
            self._touch_entry(att.key)
        else:
            self.touched_entries.add(att.key)

    # -- replication: records another instance of a cluster wrote --
    #
    # persist.apply puts records in place through these, as restore() does
    # for a whole database: no events of their own (the instance that made
    # the change recorded them), nothing marked to be written again, and
    # everything they change marked touched, so the planner recomputes
    # exactly that.  The NVEs' dynamic state (dyn_*) is this instance's
    # own view of its switches and is kept.

    def put_vn_record(self, vn):
        """VN ``vn`` (a new object) as stored elsewhere: created or
        replaced."""
        old = self.vns.get(vn.vnid)
        if old is None:
            self.vns[vn.vnid] = vn
            self._by_vn.setdefault(vn.vnid, {})
        else:
            for name in ('name', 'service', 'encap', 'gateway_mac',
                         'gateway_ips', 'origin'):
                setattr(old, name, getattr(vn, name))
        self.touched_vns.add(vn.vnid)

    def drop_vn_record(self, vnid, now):
        """VN ``vnid`` was deleted elsewhere.  Its tenant systems and
        bindings went in the same change; any left here go with it."""
        if vnid not in self.vns:
            return
        for mac in list(self._by_vn.get(vnid, ())):
            self.drop_attachment_record((vnid, mac), now)
        for nve in self.nves.values():
            for port, binding in list(nve.bindings.items()):
                if vnid in binding.vnids():
                    del nve.bindings[port]
                    self._refresh_ports(nve, now)
                    self.touched_nves.add(nve.dpid)
        del self.vns[vnid]
        self._by_vn.pop(vnid, None)
        self.touched_vns.add(vnid)

    def put_nve_record(self, nve, now):
        """NVE ``nve`` (a new object, without dynamic state) as stored
        elsewhere: its name, VTEP and port bindings replace ours."""
        old = self.nves.get(nve.dpid)
        if old is None:
            self.nves[nve.dpid] = nve
            self._by_nve.setdefault(nve.dpid, [])
            old = nve
        else:
            vnids = set()
            for binding in list(old.bindings.values()) + list(
                    nve.bindings.values()):
                vnids |= binding.vnids()
            old.name, old.vtep_ip, old.origin, old.role = nve.name, \
                nve.vtep_ip, nve.origin, nve.role
            old.bindings = nve.bindings
            self.touched_members.update((v, old.dpid) for v in vnids)
        self._refresh_ports(old, now)
        self.touched_nves.add(old.dpid)

    def drop_nve_record(self, dpid, now):
        """NVE ``dpid`` was deleted elsewhere (its tenant systems went in
        the same change).  A connected one stays known here, unbound: its
        channel is still up."""
        nve = self.nves.get(dpid)
        if nve is None:
            return
        for key in list(self._by_nve.get(dpid, ())):
            self.drop_attachment_record(key, now)
        if nve.bindings:
            nve.bindings = {}
            self._refresh_ports(nve, now)
        if not nve.dyn_connected:
            del self.nves[dpid]
            self._by_nve.pop(dpid, None)
            self._port_vns.pop(dpid, None)
        self.touched_nves.add(dpid)

    def put_attachment_record(self, att, now):
        """Attachment ``att`` (a new object) as stored elsewhere: added, or
        its stored fields copied onto ours (moved, addresses changed,
        ...).  Returns False, changing nothing, when its VN or NVE is not
        here (yet)."""
        if att.vnid not in self.vns or att.nve not in self.nves:
            return False
        att.nve, att.port = self.location(self.nves[att.nve], att.port)
        cur = self.attachments.get(att.key)
        if cur is None:
            was = self.is_member(att.vnid, att.nve)
            self.attachments[att.key] = att
            self._place(att, 1)
            for ip in att.ips:
                self._by_ip.setdefault(att.vnid, {})[ip] = att.mac
            self.touched_entries.add(att.key)
            self._note_membership(att.vnid, att.nve, was, now)
            return True
        for ip in set(cur.ips) - set(att.ips):
            owners = self._by_ip.get(cur.vnid)
            if owners is not None and owners.get(ip) == cur.mac:
                del owners[ip]
                if not owners:
                    del self._by_ip[cur.vnid]
        for ip in att.ips:
            self._by_ip.setdefault(cur.vnid, {})[ip] = cur.mac
        moved = (cur.nve, cur.port, cur.vlan) != (att.nve, att.port,
                                                   att.vlan)
        if moved:
            old = cur.nve
            was_old = self.is_member(cur.vnid, old)
            was_new = self.is_member(cur.vnid, att.nve)
            self.end_redirect(cur, write=False)
            self._place(cur, -1)
            cur.nve, cur.port, cur.vlan = att.nve, att.port, att.vlan
            self._place(cur, 1)
        self._set_source(cur, att.source)
        for name in ('ips', 'ip_bids', 'seq', 'reachable',
                     'first_seen', 'last_seen', 'moved_at', 'move_times',
                     'frozen_until', 'blocked', 'bid'):
            setattr(cur, name, getattr(att, name))
        self.touched_entries.add(cur.key)
        if moved:
            self._note_membership(cur.vnid, old, was_old, now)
            self._note_membership(cur.vnid, cur.nve, was_new, now)
        return True

    def drop_attachment_record(self, key, now):
        """Attachment ``key`` was removed elsewhere."""
        att = self.attachments.get(key)
        if att is None:
            return
        was = self.is_member(att.vnid, att.nve)
        owners = self._by_ip.get(att.vnid)
        for ip in att.ips:
            if owners is not None and owners.get(ip) == att.mac:
                del owners[ip]
        if owners is not None and not owners:
            del self._by_ip[att.vnid]
        self.end_redirect(att, write=False)
        del self.attachments[key]
        self._place(att, -1)
        self.touched_entries.add(key)
        self._note_membership(att.vnid, att.nve, was, now)

    def adopt(self, other, now):
        """Take every record of ``other`` (a database persist.restore just
        built) in place of ours: the way any kind of record without a
        primitive above is applied.  Our NVEs' dynamic state stays (an NVE
        only we know of, connected, stays too); everything counts as
        touched, as after a restore."""
        before = (set(self.vns), set(self.nves), set(self.attachments),
                  {(a.vnid, a.nve) for a in self.attachments.values()})
        # What was here before, for the planner to withdraw or redo.
        old_ics, old_exts = dict(self.interconnects), dict(self.externals)
        touched_ics, touched_exts = self.touched_ics, self.touched_exts
        dynamic = {dpid: nve for dpid, nve in self.nves.items()
                   if nve.dyn_connected or nve.dyn_down_since is not None}
        keep = ('event_log', 'touched_vns', 'touched_nves',
                'touched_entries', 'touched_members', 'changed_records')
        for name, value in vars(other).items():
            if name not in keep:
                setattr(self, name, value)
        for dpid, old in dynamic.items():
            nve = self.nves.get(dpid)
            if nve is None:
                if not old.dyn_connected:
                    continue
                nve = self.nves[dpid] = NVE(dpid, old.name, old.vtep_ip,
                                            old.origin)
                self._by_nve[dpid] = []
            for name in ('dyn_connected', 'dyn_ports', 'dyn_mac',
                         'dyn_down_since', 'dyn_unreachable'):
                setattr(nve, name, getattr(old, name))
        for nve in self.nves.values():
            self._refresh_ports(nve, now)
        self.touched_ics, self.touched_exts = touched_ics, touched_exts
        for name in set(old_ics) | set(self.interconnects):
            touched_ics.setdefault(name, old_ics.get(name))
        for name in set(old_exts) | set(self.externals):
            touched_exts.setdefault(name, old_exts.get(name))
        self.touched_vns |= before[0] | set(self.vns)
        self.touched_nves |= before[1] | set(self.nves)
        self.touched_entries |= before[2] | set(self.attachments)
        self.touched_members |= before[3] | {
            (a.vnid, a.nve) for a in self.attachments.values()}

    # -- interconnection functionality (draft 4.3; rules in interconnect.py)

    def interconnects_of(self, vnid):
        """The interconnects VN ``vnid`` takes part in, by name."""
        return [ic for _, ic in sorted(self.interconnects.items())
                if vnid in ic.vns]

    def set_interconnect(self, ic, now):
        """Put a validated interconnect in place (new, or replacing the one
        of that name): the gateway joins both VNs' context."""
        old = self.interconnects.get(ic.name)
        affected = set(ic.vns) | (set(old.vns) if old else set())
        gateways = {ic.gateway} | ({old.gateway} if old else set())
        was = {(v, g): self.is_member(v, g) for v in affected
               for g in gateways}
        if old is not None:
            for vnid in old.vns:
                self._inc(self._ic_members, vnid, old.gateway, -1)
        for vnid in ic.vns:
            self._inc(self._ic_members, vnid, ic.gateway, 1)
        self.interconnects[ic.name] = ic
        self.touched_ics.setdefault(ic.name, old)
        self.changed_records.add(('ic', ic.name))
        for (vnid, dpid), member in was.items():
            self._note_membership(vnid, dpid, member, now)
        self.event_log.record(
            now, ev.INTERCONNECT_UPDATED if old else ev.INTERCONNECT_CREATED,
            name=ic.name, gateway=dpid_str(ic.gateway), vns=list(ic.vns))

    def remove_interconnect(self, name, now):
        """Remove interconnect ``name`` (NotFound if none)."""
        ic = self.interconnects.get(name)
        if ic is None:
            raise NotFound('no interconnect %r' % (name,), 'name')
        was = {vnid: self.is_member(vnid, ic.gateway) for vnid in ic.vns}
        for vnid in ic.vns:
            self._inc(self._ic_members, vnid, ic.gateway, -1)
        del self.interconnects[name]
        self.touched_ics.setdefault(name, ic)
        self.changed_records.add(('ic', name))
        for vnid, member in was.items():
            self._note_membership(vnid, ic.gateway, member, now)
        self.event_log.record(now, ev.INTERCONNECT_DELETED, name=name,
                              gateway=dpid_str(ic.gateway))

    def set_external(self, ext, now):
        """Put a validated external network in place (new, or replacing the
        one of that name); hosts learned on it that it no longer carries
        (another port, VLAN or VN) detach."""
        old = self.externals.get(ext.name)
        if old is not None:
            self._drop_external_hosts(old, ext, now)
            del self._ext_ports[(old.gateway, old.port)]
        self.externals[ext.name] = ext
        self._ext_ports[(ext.gateway, ext.port)] = ext
        self.touched_exts.setdefault(ext.name, old)
        self.changed_records.add(('ext', ext.name))
        for dpid in {ext.gateway} | ({old.gateway} if old else set()):
            self._refresh_ports(self.nves[dpid], now)
            self.touched_nves.add(dpid)
        self.event_log.record(
            now, ev.EXTERNAL_UPDATED if old else ev.EXTERNAL_CREATED,
            name=ext.name, gateway=dpid_str(ext.gateway), port=ext.port)

    def remove_external(self, name, now):
        """Remove external network ``name`` (NotFound if none); its hosts
        detach."""
        ext = self.externals.get(name)
        if ext is None:
            raise NotFound('no external network %r' % (name,), 'name')
        self._drop_external_hosts(ext, None, now)
        del self.externals[name]
        del self._ext_ports[(ext.gateway, ext.port)]
        self.touched_exts.setdefault(name, ext)
        self.changed_records.add(('ext', name))
        self._refresh_ports(self.nves[ext.gateway], now)
        self.touched_nves.add(ext.gateway)
        self.event_log.record(now, ev.EXTERNAL_DELETED, name=name,
                              gateway=dpid_str(ext.gateway))

    def _drop_external_hosts(self, old, new, now):
        for key in list(self._by_nve.get(old.gateway, ())):
            att = self.attachments[key]
            if att.port != old.port:
                continue
            if new is None or (new.gateway, new.port) != (
                    old.gateway, old.port) or \
                    new.vn_for(att.vlan) != att.vnid:
                self.remove_attachment(att, now, reason='unbound')
            elif (att.mac in old.allowed_macs) != (
                    att.mac in new.allowed_macs):
                self._touch_entry(key)      # its delivery changes

    # -- announced migrations (authority/migrations.py decides) --

    def set_migration(self, att, migration):
        """Start, or change the state of, the migration of ``att`` (a
        Migration): the NVE it goes to holds the VN's flows meanwhile."""
        old = att.migration
        if old is not None and old.nve != migration.nve:
            self._inc(self._migration_targets, att.vnid, old.nve, -1)
            self.touched_members.add((att.vnid, old.nve))
        if old is None or old.nve != migration.nve:
            self._inc(self._migration_targets, att.vnid, migration.nve, 1)
            self.touched_members.add((att.vnid, migration.nve))
        att.migration = migration
        self.migrating.add(att.key)
        self._touch_entry(att.key)

    def end_migration(self, att, now, kind, **fields):
        """The migration of ``att`` is over (``kind``: the event type that
        says how; ``fields`` go in the event).  Returns the event."""
        mig = att.migration
        if mig is None:
            return None
        self._drop_migration(att)
        return self.migration_event(att, mig, now, kind, **fields)

    def _drop_migration(self, att):
        mig, att.migration = att.migration, None
        self.migrating.discard(att.key)
        self._inc(self._migration_targets, att.vnid, mig.nve, -1)
        self.touched_members.add((att.vnid, mig.nve))
        self._touch_entry(att.key)

    def migration_event(self, att, mig, now, kind, **fields):
        """Record a ``kind`` event of migration ``mig`` of ``att``."""
        return self.event_log.record(
            now, kind, vnid=att.vnid, mac=att.mac, nve=dpid_str(mig.nve),
            port=mig.port, vlan=mig.vlan, started=mig.started, **fields)

    # -- BGP EVPN: imported entries and remote VTEPs (evpn.py decides) --
    #
    # An entry imported from a peer's MAC/IP route is an attachment at no
    # NVE of ours (``nve`` None, ``port`` the remote VTEP: see
    # Attachment.remote_vtep), so every member NVE tunnels to it and
    # answers ARP for its addresses with the tenant-system flows of any
    # remote entry.  Imported entries are never written to the store: the
    # peers tell them again when the session comes back (evpn.py).

    def import_entry(self, vnid, mac, vtep, seq, now):
        """Tenant system ``mac`` of VN ``vnid`` is behind EVPN VTEP ``vtep``
        (a peer's route, location sequence ``seq``); returns the new
        attachment.  The caller checked there is none yet."""
        att = Attachment(vnid, mac, None, vtep, source=EVPN, seq=seq,
                         first_seen=now, last_seen=now)
        self.attachments[att.key] = att
        self._place(att, 1)
        self.touched_entries.add(att.key)
        self.event_log.record(now, ev.ATTACH, vnid=vnid, mac=mac, nve=None,
                              vtep=vtep, origin=EVPN, how=EVPN)
        return att

    def relocate_to_evpn(self, att, vtep, seq, now):
        """A peer's route for ``att`` wins (RFC 7432 15): the tenant system
        is behind EVPN VTEP ``vtep`` now, with sequence ``seq``.  From an
        NVE of ours this is a move (its record leaves the store); between
        remote VTEPs too."""
        old = (att.nve, att.port)
        was = self.is_member(att.vnid, att.nve)
        self._place(att, -1)
        self.end_redirect(att)
        att.nve, att.port, att.vlan = None, vtep, None
        att.seq, att.source, att.reachable = seq, EVPN, True
        att.blocked, att.bid = EMPTY_MAP, None
        att.ip_bids = EMPTY_MAP                  # BIDs are ours to give
        self._place(att, 1)
        self.touched_entries.add(att.key)
        if old[0] is not None:
            self.changed_records.add(('att', att.key))  # deleted there
            where = {'old_nve': dpid_str(old[0]), 'old_port': old[1]}
        else:
            where = {'old_nve': None, 'old_vtep': old[1]}
        self.event_log.record(now, ev.MOVE, vnid=att.vnid, mac=att.mac,
                              nve=None, vtep=vtep, location_seq=seq,
                              how=EVPN, origin=EVPN, **where)
        self._note_membership(att.vnid, old[0], was, now)
        return att

    def set_remote_seq(self, att, seq):
        """An imported entry's sequence number changed where it is."""
        att.seq = seq
        self.touched_entries.add(att.key)

    def set_evpn_vteps(self, vnid, vteps, now):
        """The EVPN VTEPs in VN ``vnid``'s context (those whose inclusive
        multicast routes the VN imports) are ``vteps`` now: member NVEs
        replicate the VN's broadcasts to them."""
        vteps = frozenset(vteps)
        old = self._evpn_vteps.get(vnid, frozenset())
        if vteps == old:
            return
        if vteps:
            self._evpn_vteps[vnid] = vteps
        else:
            del self._evpn_vteps[vnid]
        # (vnid, None): the VN's flood lists change, no NVE joined.
        self.touched_members.add((vnid, None))
        for vtep in sorted(vteps - old):
            self.event_log.record(now, ev.VN_JOIN, vnid=vnid, nve=None,
                                  vtep=vtep, origin=EVPN)
        for vtep in sorted(old - vteps):
            self.event_log.record(now, ev.VN_LEAVE, vnid=vnid, nve=None,
                                  vtep=vtep, origin=EVPN)

    def evpn_vteps(self, vnid):
        """The EVPN VTEPs in VN ``vnid``'s context (a frozenset)."""
        return self._evpn_vteps.get(vnid, frozenset())

    def vtep_of(self, att):
        """The VTEP address tunnels to ``att`` go to: its NVE's, or the
        EVPN VTEP an imported entry sits behind (None: not known yet)."""
        if att.nve is None:
            return att.port
        return self.nves[att.nve].vtep_ip

    def remote_vteps(self, vnid):
        """``{vtep: entries}``: the remote VTEPs VN ``vnid`` has imported
        entries behind."""
        return dict(self._remote.get(vnid, EMPTY_MAP))

    def imported_count(self):
        """How many entries (attachments) are imported from EVPN."""
        return sum(sum(counts.values()) for counts in self._remote.values())

    # -- derived views (draft 5.2) --

    def members(self, vnid):
        """NVEs in the VN's context: those with a tenant system of it (or
        a present port bound to it), and the gateways that interconnect
        it."""
        out = set(self._members.get(vnid, ())) | self._port_members.get(
            vnid, set())
        gateways = self._ic_members.get(vnid)
        if gateways:
            out.update(gateways)
        return out

    def flow_members(self, vnid):
        """Members, plus old NVEs still redirecting a moved tenant system
        and NVEs a tenant system of the VN is migrating to."""
        return self.members(vnid) | set(self._redirects.get(vnid, ())) | \
            set(self._migration_targets.get(vnid, ()))

    def vns_of(self, dpid):
        """The VNs in whose context NVE ``dpid`` is."""
        out = {key[0] for key in self._by_nve.get(dpid, ())} | \
            self._port_vns.get(dpid, set())
        if self._ic_members:
            out.update(vnid for vnid, gateways in self._ic_members.items()
                       if dpid in gateways)
        return out

    def local_member(self, vnid, dpid):
        """Whether NVE ``dpid`` has a tenant system or a present port of
        VN ``vnid`` (or still redirects for it): not only a gateway of its
        interconnects."""
        return dpid in self._members.get(vnid, ()) or dpid in \
            self._port_members.get(vnid, ()) or dpid in \
            self._redirects.get(vnid, ())

    def flow_vns_of(self, dpid):
        """The VNs whose flows NVE ``dpid`` holds: its VNs and those it still
        redirects for."""
        return self.vns_of(dpid) | {
            vnid for vnid, olds in self._redirects.items() if dpid in olds} | {
            vnid for vnid, targets in self._migration_targets.items()
            if dpid in targets}

    def attachments_in(self, vnid):
        """The attachments of VN ``vnid``."""
        return self._by_vn.get(vnid, {}).values()

    def attachments_at(self, dpid):
        """The attachments at NVE ``dpid``."""
        return [self.attachments[k] for k in self._by_nve.get(dpid, ())]

    def migrating_to(self, dpid):
        """The attachments with a migration to NVE ``dpid`` (few: the
        migrations under way)."""
        return [self.attachments[k] for k in self.migrating
                if self.attachments[k].migration.nve == dpid]

    def count_at(self, vnid, dpid):
        """How many tenant systems of VN ``vnid`` are at NVE ``dpid``."""
        return self._count_at(vnid, dpid)

    def lookup_ip(self, vnid, ip):
        """The attachment of VN ``vnid`` with address ``ip``, or None."""
        mac = self._ip_owner(vnid, ip)
        return self.attachments.get((vnid, mac)) if mac else None

    def tesid(self, vnid, mac):
        """The TESID <VN, NVE, tenant system> of ``mac`` in VN ``vnid`` (draft
        5.2)."""
        att = self.attachments.get((norm_vnid(vnid), norm_mac(mac)))
        if att is None:
            raise NotFound('no tenant system %s in VN %s' % (mac, vnid), 'mac')
        if att.nve is None:
            return {'vnid': att.vnid, 'nve': None, 'vtep': att.port,
                    'ts': att.mac}
        return {'vnid': att.vnid, 'nve': dpid_str(att.nve), 'ts': att.mac}

    def mapping_entries(self, att, tunnel_ports):
        """The draft's mapping table entries (section 4) of one attachment.
        An entry imported from EVPN names no NVE of ours: its ``nve_ip`` is
        the remote VTEP."""
        vn = self.vns[att.vnid]
        if att.nve is None:
            vtep, nve_mac, nve_name, port = att.port, None, None, None
        else:
            nve = self.nves[att.nve]
            vtep, nve_mac, nve_name = nve.vtep_ip, nve.dyn_mac, dpid_str(
                att.nve)
            port = att.port
        tunnel_if = None
        if vtep:
            tunnel_if = '%s@%s' % (tunnel_ports[vn.encap], vtep)
        ext = self._ext_ports.get((att.nve, att.port)) \
            if att.nve is not None else None
        base = {'vnid': att.vnid, 'mac': att.mac, 'vlan': att.vlan,
                'nve': nve_name, 'nve_ip': vtep,
                'nve_mac': nve_mac, 'port': port,
                'tunnel_if_id': tunnel_if, 'seq': att.seq,
                'source': att.source, 'reachable': att.reachable,
                'external': ext.name if ext is not None else None}
        if not att.ips:
            return [dict(base, ip=None, bid=att.bid)]
        bids = att.ip_bids
        return [dict(base, ip=ip, bid=bids.get(ip, att.bid))
                for ip in att.ips]
