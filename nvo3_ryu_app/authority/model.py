"""The mapping database of the Information Mapping Authority (draft section 4).

Plain Python, no os-ken: VNs, NVEs, access-port bindings and the attachments
of tenant-system vNICs, from which the draft's mapping table entries, the VN
membership (section 5.2) and the TESIDs are derived.  Every mutating method
validates completely before it changes anything (a failed call changes
nothing), takes the current time as an argument, records events, and notes
what it touched so that the flow planner recomputes only that.
"""

import ipaddress
import sys
from dataclasses import dataclass, field

from . import events as ev
from .addresses import (dpid_str, norm_choice, norm_dpid, norm_gateway,
                        norm_ip, norm_mac, norm_name, norm_port_name,
                        norm_route_targets, norm_vlan, norm_vnid)
from .errors import BadRequest, Conflict, NotFound

SERVICES = ('l2', 'l3')
ENCAPS = ('vxlan', 'gre')
# The source of a mapping entry imported from a BGP EVPN peer (evpn.py).
EVPN = 'evpn'
LAST_SEEN_PERSIST = 60.0   # seconds between persisted last_seen refreshes


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


@dataclass(slots=True)
class PortBinding:
    """Logical interface: a whole port bound to one VN, or VLANs to VNs."""

    port: str
    vnid: int = None
    vlans: dict = field(default_factory=dict)  # vlan id -> vnid
    origin: str = 'rest'

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

    def to_dict(self):
        """The binding as REST shows it."""
        if self.vnid is not None:
            return {'vnid': self.vnid, 'origin': self.origin}
        return {'vlans': {str(k): v for k, v in sorted(self.vlans.items())},
                'origin': self.origin}


@dataclass(slots=True)
class NVE:
    """A network virtualization edge (one OVS bridge): its VTEP, its
    access-port bindings and what its switch last said."""

    dpid: int
    name: str = None
    vtep_ip: str = None
    origin: str = 'rest'
    bindings: dict = field(default_factory=dict)  # port name -> PortBinding
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


class _EmptyMap(dict):
    """An empty dict that refuses to be filled: the one shared default of
    the per-attachment maps (``Attachment.ips`` and ``blocked``).

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
class Attachment:
    """A tenant-system vNIC attached to a VN at one NVE access port.

    One attachment yields one mapping table entry per IP address (or one
    without IP while none is known).  ``seq`` is the location sequence
    number: it grows with every move so a late event cannot put an older
    location back (EVPN MAC mobility style).

    There is one of these per mapping entry, so it is kept small: slots,
    shared empties for the containers most attachments never fill (see
    _EmptyMap; ``move_times`` is ``()`` until the first move), and one
    ``key`` tuple that every index of the database reuses.
    """

    vnid: int
    mac: str
    nve: int
    port: str
    vlan: int = None
    ips: dict = field(default_factory=_empty_map)  # ip -> bid (or None)
    seq: int = 1
    source: str = 'learned'
    reachable: bool = True
    first_seen: float = 0.0
    last_seen: float = 0.0
    # Mobility (draft 7.5): where it just left, whose traffic the old NVE
    # still redirects for a moment; recent move times (flap detection);
    # until when it is frozen; claimants blocked until a time.
    redirect_from: int = None
    moved_at: float = 0.0
    move_times: list = ()       # () until it moves: a new list each move
    frozen_until: float = 0.0
    blocked: dict = field(default_factory=_empty_map)  # (dpid, port) -> until
    # BID of an L2 binding [MAC, VLAN ID, BID] (draft Figure 4; L3 BIDs
    # are in ``ips``); set by registration (bids.py).
    bid: int = None
    # (vnid, mac), made once: the same tuple object keys ``attachments``,
    # ``_by_nve`` and the store's record, rather than a copy (56 B) each.
    # vnid and mac never change (a tenant system in another VN is another
    # attachment).
    key: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.key = (self.vnid, self.mac)

    @property
    def remote_vtep(self):
        """The EVPN VTEP an entry imported from BGP sits behind, else None.

        Such an entry is at no NVE of ours: ``nve`` is None and ``port``
        holds the remote VTEP's address (no field of its own: one more slot
        would cost every mapping entry 8 bytes)."""
        return self.port if self.nve is None else None


class MappingDB:
    """The authority's database, with derived membership and TESIDs."""

    def __init__(self, event_log=None):
        self.vns = {}
        self.nves = {}
        self.attachments = {}       # (vnid, mac) -> Attachment
        self._by_vn = {}            # vnid -> {mac: Attachment}
        self._by_nve = {}           # dpid -> set((vnid, mac))
        # Per VN rather than keyed by (vnid, ip): no tuple (56 B) per
        # address.  A VN without addresses has no entry.
        self._by_ip = {}            # vnid -> {ip: mac}
        self._members = {}          # vnid -> {dpid: attachment count}
        # The VN a MAC is attached in, or a tuple of them when several (the
        # exception): a set per MAC would cost 216 B.  See _vnids_of().
        self._vns_of_mac = {}       # mac -> vnid | (vnid, ...)
        # NVEs with a present access port bound to the VN are in its context
        # too: the tenant system is attached there even before it speaks.
        self._port_members = {}     # vnid -> {dpid}
        self._port_vns = {}         # dpid -> {vnid}
        self._redirects = {}        # vnid -> {dpid: count} (old NVEs)
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
        # Records to persist: ('vn', vnid), ('nve', dpid), ('att', key).
        self.changed_records = set()

    # -- touch tracking (consumed by the flow planner) --

    def take_touched(self):
        """The VNs, NVEs, attachments and memberships touched since the last
        call (what the planner recomputes), and forget them."""
        touched = (self.touched_vns, self.touched_nves, self.touched_entries,
                   self.touched_members)
        self.touched_vns, self.touched_nves = set(), set()
        self.touched_entries, self.touched_members = set(), set()
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

    def restore(self, vns, nves, attachments):
        """Fill an empty database with stored records: ``vns`` and ``nves``
        by key, ``attachments`` by ``(vnid, mac)`` key (each attachment keeps
        the key tuple given, shared with its stored record).  No events;
        afterwards every record counts as touched (the planner computes
        every flow) and none as changed."""
        if self.vns or self.nves or self.attachments:
            raise ValueError('restore needs an empty MappingDB')
        self.vns.update(vns)
        self.nves.update(nves)
        for key, att in attachments.items():
            att.key = key
            self.attachments[key] = att
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
        for key, value in new.items():
            setattr(vn, key, value)
        if origin is not None:
            vn.origin = origin
        self.touched_vns.add(vn.vnid)
        self.changed_records.add(('vn', vn.vnid))
        self.event_log.record(now, ev.VN_UPDATED, vnid=vn.vnid,
                           changes=sorted(changes))
        return vn

    def delete_vn(self, vnid, now=0.0):
        """Delete a VN: its tenant systems detach, its port bindings go."""
        vn = self.get_vn(vnid)
        for mac in list(self._by_vn[vn.vnid]):
            self.remove_attachment(self.attachments[(vn.vnid, mac)], now,
                                    reason='vn-deleted')
        for nve in self.nves.values():
            for port, binding in list(nve.bindings.items()):
                if vn.vnid not in binding.vnids():
                    continue
                if binding.vnid == vn.vnid:
                    del nve.bindings[port]
                else:
                    binding.vlans = {v: n for v, n in binding.vlans.items()
                                     if n != vn.vnid}
                    if not binding.vlans:
                        del nve.bindings[port]
                self._refresh_ports(nve, now)
                self.touched_nves.add(nve.dpid)
                self.changed_records.add(('nve', nve.dpid))
        del self.vns[vn.vnid]
        del self._by_vn[vn.vnid]
        self.set_evpn_vteps(vn.vnid, (), now)
        self.touched_vns.add(vn.vnid)
        self.changed_records.add(('vn', vn.vnid))
        self.event_log.record(now, ev.VN_DELETED, vnid=vn.vnid)

    def get_vn(self, vnid):
        """The VN ``vnid`` (NotFound if none)."""
        vnid = norm_vnid(vnid)
        vn = self.vns.get(vnid)
        if vn is None:
            raise NotFound('no VN %d' % vnid, 'vnid')
        return vn

    # -- NVEs (draft 5.1) --

    def register_nve(self, dpid, vtep_ip=None, name=None, origin='rest',
                     now=0.0):
        """Register NVE ``dpid`` or change its VTEP address or name (a VTEP
        belongs to one NVE); returns it."""
        dpid = norm_dpid(dpid)
        if vtep_ip is not None:
            vtep_ip = norm_ip(vtep_ip, 'vtep_ip')
            for other in self.nves.values():
                if other.dpid != dpid and other.vtep_ip == vtep_ip:
                    raise Conflict('VTEP %s already belongs to NVE %s' % (
                        vtep_ip, dpid_str(other.dpid)), 'vtep_ip')
        if name is not None:
            name = norm_name(name)
        nve = self.nves.get(dpid)
        if nve is None:
            nve = self.nves[dpid] = NVE(dpid, name, vtep_ip, origin)
            self._by_nve[dpid] = set()
        else:
            if vtep_ip is not None:
                nve.vtep_ip = vtep_ip
            if name is not None:
                nve.name = name
            nve.origin = origin
        self.touched_nves.add(dpid)
        self.changed_records.add(('nve', dpid))
        return nve

    def delete_nve(self, dpid, now=0.0):
        """Forget NVE ``dpid``: its tenant systems detach, its bindings go
        (it leaves every VN), nobody redirects to it or tunnels to it any
        more.  Returns the record as it was."""
        nve = self.get_nve(dpid)
        dpid = nve.dpid
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

    def nve_connected(self, dpid, ports, nve_mac, now):
        """The switch said hello: ``ports`` maps port names to numbers."""
        nve = self.nves.get(dpid) or self.register_nve(dpid, origin='switch')
        nve.dyn_connected = True
        nve.dyn_ports = dict(ports)
        nve.dyn_mac = nve_mac
        nve.dyn_down_since = None
        nve.dyn_unreachable = False
        self._refresh_ports(nve, now)
        for key in list(self._by_nve[dpid]):
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
        if nve is None:
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
            self._port_members.get(vnid, ())

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
                  now=0.0):
        """Bind access port ``port`` of NVE ``dpid`` to a VN as a whole
        (``vnid``) or by VLAN (``vlans``); tenant systems the new binding no
        longer carries detach.  Returns the binding."""
        nve = self.get_nve(dpid)
        port = norm_port_name(port)
        if (vnid is None) == (vlans is None):
            raise BadRequest('give either "vnid" (whole port) or "vlans" '
                             '(VLAN ID -> VNID)', 'vnid')
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
        if old is not None:
            self._drop_attachments_off_binding(nve, old, binding, now)
        nve.bindings[port] = binding
        self._refresh_ports(nve, now)
        self.touched_nves.add(nve.dpid)
        self.changed_records.add(('nve', nve.dpid))
        old_vnids = old.vnids() if old is not None else set()
        self.touched_members.update(
            (v, nve.dpid) for v in binding.vnids() | old_vnids)
        return binding

    def unbind_port(self, dpid, port, now=0.0):
        """Remove an access port's binding; its tenant systems detach."""
        nve = self.get_nve(dpid)
        binding = nve.bindings.get(port)
        if binding is None:
            raise NotFound('port %s of NVE %s is not bound' % (
                port, dpid_str(nve.dpid)), 'port_name')
        self._drop_attachments_off_binding(nve, binding, None, now)
        del nve.bindings[port]
        self._refresh_ports(nve, now)
        self.touched_nves.add(nve.dpid)
        self.changed_records.add(('nve', nve.dpid))
        self.touched_members.update((v, nve.dpid) for v in binding.vnids())

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
        return binding.vn_for(vlan) if binding else None

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
        if att is None and any(
                self.attachments[(v, mac)].source == 'registered'
                for v in self._vnids_of(mac)):
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
        self._by_vn[vnid][mac] = att
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
        if not att.ips:
            att.ips = {}                # not the shared EMPTY_MAP
        att.ips[ip] = bid
        self._by_ip.setdefault(att.vnid, {})[ip] = att.mac
        self._touch_entry(att.key)

    def set_source(self, att, source):
        """Where the attachment comes from now ('learned', 'registered')."""
        att.source = source
        self._touch_entry(att.key)

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
        att.ips.pop(ip, None)
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
        for ip in list(att.ips):
            self.remove_ip(att, ip)
        self.end_redirect(att)
        del self.attachments[att.key]
        del self._by_vn[att.vnid][att.mac]
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
        if delta > 0:
            if att.nve is not None:
                self._by_nve[att.nve].add(att.key)
            vnids = self._vnids_of(att.mac)
            if att.vnid not in vnids:
                self._vns_of_mac[att.mac] = vnids + (att.vnid,) if vnids \
                    else att.vnid
        else:
            if att.nve is not None:
                self._by_nve[att.nve].discard(att.key)
            vnids = tuple(v for v in self._vnids_of(att.mac)
                          if v != att.vnid)
            if len(vnids) > 1:
                self._vns_of_mac[att.mac] = vnids
            elif vnids:
                self._vns_of_mac[att.mac] = vnids[0]
            else:
                self._vns_of_mac.pop(att.mac, None)

    def _vnids_of(self, mac):
        """The VNs ``mac`` is attached in, as a tuple."""
        vnids = self._vns_of_mac.get(mac, ())
        return vnids if isinstance(vnids, tuple) else (vnids,)

    def rebuild_indexes(self):
        """Recompute every derived index from the records (after a load)."""
        self._by_vn = {vnid: {} for vnid in self.vns}
        self._by_nve = {dpid: set() for dpid in self.nves}
        self._by_ip, self._members, self._redirects = {}, {}, {}
        self._remote = {}
        self._port_members, self._port_vns = {}, {}
        self._vns_of_mac = {}
        for att in self.attachments.values():
            self._by_vn[att.vnid][att.mac] = att
            self._place(att, 1)
            for ip in att.ips:
                self._by_ip.setdefault(att.vnid, {})[ip] = att.mac
            if att.redirect_from is not None:
                self._inc(self._redirects, att.vnid, att.redirect_from, 1)

    def set_redirect(self, att, old_dpid, now):
        """A moved attachment's old NVE ``old_dpid`` redirects its frames for a
        while (draft 7.5)."""
        self.end_redirect(att)
        if old_dpid is not None and old_dpid != att.nve:
            att.redirect_from = old_dpid
            self._inc(self._redirects, att.vnid, old_dpid, 1)
            self.touched_members.add((att.vnid, old_dpid))
        att.moved_at = now
        self._touch_entry(att.key)

    def end_redirect(self, att):
        """The old NVE stops redirecting (hold time over, or it left)."""
        if att.redirect_from is None:
            return
        old, att.redirect_from = att.redirect_from, None
        self._inc(self._redirects, att.vnid, old, -1)
        self.touched_members.add((att.vnid, old))
        self._touch_entry(att.key)

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
        self._by_vn[vnid][mac] = att
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
        if att.ips and any(bid is not None for bid in att.ips.values()):
            att.ips = dict.fromkeys(att.ips)     # BIDs are ours to give
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

    def remote_vteps(self, vnid):
        """``{vtep: entries}``: the remote VTEPs VN ``vnid`` has imported
        entries behind."""
        return dict(self._remote.get(vnid, EMPTY_MAP))

    def imported_count(self):
        """How many entries (attachments) are imported from EVPN."""
        return sum(sum(counts.values()) for counts in self._remote.values())

    # -- derived views (draft 5.2) --

    def members(self, vnid):
        """NVEs in the VN's context: those with a tenant system of it."""
        return set(self._members.get(vnid, ())) | self._port_members.get(
            vnid, set())

    def flow_members(self, vnid):
        """Members, plus old NVEs still redirecting a moved tenant system."""
        return self.members(vnid) | set(self._redirects.get(vnid, ()))

    def vns_of(self, dpid):
        """The VNs in whose context NVE ``dpid`` is."""
        return {key[0] for key in self._by_nve.get(dpid, ())} | \
            self._port_vns.get(dpid, set())

    def flow_vns_of(self, dpid):
        """The VNs whose flows NVE ``dpid`` holds: its VNs and those it still
        redirects for."""
        return self.vns_of(dpid) | {
            vnid for vnid, olds in self._redirects.items() if dpid in olds}

    def attachments_in(self, vnid):
        """The attachments of VN ``vnid``."""
        return self._by_vn.get(vnid, {}).values()

    def attachments_at(self, dpid):
        """The attachments at NVE ``dpid``."""
        return [self.attachments[k] for k in self._by_nve.get(dpid, ())]

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
        base = {'vnid': att.vnid, 'mac': att.mac, 'vlan': att.vlan,
                'nve': nve_name, 'nve_ip': vtep,
                'nve_mac': nve_mac, 'port': port,
                'tunnel_if_id': tunnel_if, 'seq': att.seq,
                'source': att.source, 'reachable': att.reachable}
        if not att.ips:
            return [dict(base, ip=None, bid=att.bid)]
        return [dict(base, ip=ip, bid=bid if bid is not None else att.bid)
                for ip, bid in sorted(att.ips.items())]
