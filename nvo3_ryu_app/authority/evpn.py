"""BGP EVPN (RFC 7432; RFC 8365 for VXLAN): what the authority advertises,
what it imports, and where a MAC known on both sides is.

Plain Python, time passed in; the speaker's I/O is peering/bgp.py, which
advertises the difference between :attr:`Evpn.desired` and what it has
advertised, and hands every route its peers send to :meth:`Evpn.receive`.

Export.  For each VN with ``evpn`` on, the authority is one PE with one
route distinguisher per VN (``<router id>:<VNID>``; ``<AS>:<VNID>`` for a
VNID over 16 bits) and its route targets (``<AS>:<VNID>`` unless the VN
names them).  It advertises an inclusive multicast route (type 3, ingress
replication) per member NVE, originated at the NVE's VTEP, and a MAC/IP
route (type 2) per mapping entry at an NVE of ours, next hop the NVE's
VTEP, VNI = VNID.  The draft's location sequence number (one counter per
VN and MAC, model.Attachment.seq) is RFC 7432's MAC mobility sequence
number.

Import.  A peer's route counts for the VN whose VNID is the route's VNI, if
the VN has ``evpn`` on and the route carries one of the VN's route targets
(with derived ones, any ``<AS>:<VNID>``: FRR matches its auto route targets
on the VNI alone, so do we).  Inclusive multicast routes make their VTEPs
members of the VN for BUM replication (model.MappingDB.set_evpn_vteps);
MAC/IP routes become mapping entries of origin ``evpn`` behind their VTEP
(model.MappingDB.import_entry), with the addresses of the routes that
carry one, so that member NVEs tunnel to them and answer ARP for them at
the ingress (law 2).  Routes are kept per peer, route distinguisher and
NLRI, as BGP identifies them; a repeated route changes nothing.

Mobility across the boundary (RFC 7432 section 15).  os-ken's speaker
keeps the same MAC from two VTEPs as two routes (each VTEP has its own
route distinguisher) and never compares their sequence numbers: this
module does (:func:`remote_wins`).  Among the peers' routes for a MAC the
highest sequence number wins, then the lowest VTEP address (15.1); against
our own entry the same rule decides.  A peer's winning route moves the
entry behind the peer's VTEP (and our route for it is withdrawn, since we
advertise only entries at our NVEs); a tenant system that then shows up at
an NVE of ours is a move like any other (mobility.py) and takes the next
sequence number, which the peer's PE sees as the newer location.  A sticky
MAC (15.2) never moves: its entry is frozen where the route puts it.
Registered entries and frozen ones stay where they are (a conflict event
says so).
"""

import ipaddress
from typing import NamedTuple

from . import events as ev
from .addresses import norm_ip, norm_mac, norm_vnid
from .errors import BadRequest, MappingError
from .model import EVPN, location_of

MAC_IP, IMET = 'mac_ip', 'imet'
FOREVER = float('inf')
# The tunnel types of RFC 8365 by VN encapsulation (os-ken's names).
TUNNEL_TYPES = {'vxlan': 'vxlan', 'gre': 'nvgre'}


class Route(NamedTuple):
    """One EVPN route, exported or received: a MAC/IP advertisement (type
    2: ``mac``, ``ip`` or None, ``seq``, ``sticky``) or an inclusive
    multicast Ethernet tag route (type 3).  ``vtep`` is the next hop of a
    type 2 and the originating router (and PMSI tunnel endpoint) of a type
    3; ``peer`` the neighbour a received route came from."""

    kind: str
    rd: str
    vni: int
    vtep: str
    mac: str = None
    ip: str = None
    seq: int = 0
    sticky: bool = False
    rts: tuple = ()
    encap: str = 'vxlan'
    peer: str = None

    def received_key(self):
        """The route's identity in a peer's RIB: peer, RD and NLRI."""
        if self.kind == IMET:
            return (self.peer, self.rd, IMET, self.vtep)
        return (self.peer, self.rd, MAC_IP, self.mac, self.ip)


class SettingsError(ValueError):
    """The BGP options do not make a speaker (the message says which)."""


def neighbors(settings):
    """``[(address, remote AS)]`` of ``bgp_neighbors``, checked; raises
    SettingsError naming the bad option (with ``bgp_as`` set, a router id
    is required too)."""
    if not settings.bgp_as:
        return []
    if not 0 < settings.bgp_as < 1 << 32:
        raise SettingsError('bgp_as must be an AS number 1..4294967295')
    try:
        if str(ipaddress.IPv4Address(settings.bgp_router_id)) != \
                settings.bgp_router_id:
            raise ValueError(settings.bgp_router_id)
    except ValueError:
        raise SettingsError('bgp_router_id must be an IPv4 address (the BGP '
                            'identifier), not %r' % (settings.bgp_router_id,)
                            ) from None
    out = []
    for text in settings.bgp_neighbors:
        address, _, asn = str(text).strip().rpartition(':')
        try:
            address = str(ipaddress.ip_address(address))
            asn = int(asn)
            if not 0 < asn < 1 << 32:
                raise ValueError(asn)
        except ValueError:
            raise SettingsError('bgp_neighbors entries are <address>:<remote '
                                'AS>, not %r' % (text,)) from None
        if address in (a for a, _ in out):
            raise SettingsError('bgp_neighbors names %s twice' % address)
        out.append((address, asn))
    return out


def route_config(settings, vnid, route_targets=()):
    """``(route distinguisher, route targets)`` of VN ``vnid`` for this
    speaker, or BadRequest when the AS and VNID do not fit the derived
    forms (RFC 4364 and 4360: a 2-byte number beside an IPv4 address or a
    4-byte AS)."""
    asn, router_id = settings.bgp_as, settings.bgp_router_id
    if vnid <= 0xFFFF:
        rd = '%s:%d' % (router_id, vnid)
    elif asn < 1 << 16:
        rd = '%d:%d' % (asn, vnid)
    else:
        raise BadRequest('VNID %d does not fit a route distinguisher beside '
                         'the 4-byte AS %d (EVPN VNs of this speaker have '
                         'VNIDs up to 65535)' % (vnid, asn), 'vnid')
    # Here a VNID over 16 bits comes with a 2-byte AS: <AS>:<VNID> fits.
    return rd, tuple(route_targets) or ('%d:%d' % (asn, vnid),)


def accepts(vn, rts):
    """Whether a route with route targets ``rts`` is for VN ``vn``: one of
    its route targets, or with derived ones any ``<AS>:<VNID>``."""
    if vn.route_targets:
        return not set(rts).isdisjoint(vn.route_targets)
    suffix = ':%d' % vn.vnid
    return any(rt.endswith(suffix) for rt in rts)


def _ip_key(ip):
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))


def best_remote(routes):
    """The winning location among MAC/IP routes of one MAC (RFC 7432 15):
    ``(vtep, seq, sticky)`` of the highest sequence number, then the
    lowest VTEP address; None without routes.  A VTEP's MAC-only and MAC/IP
    routes count as one location (the highest sequence of them)."""
    by_vtep = {}
    for route in routes:
        seq, sticky = by_vtep.get(route.vtep, (-1, False))
        by_vtep[route.vtep] = (max(seq, route.seq), sticky or route.sticky)
    if not by_vtep:
        return None
    vtep = min(by_vtep, key=lambda v: (-by_vtep[v][0], _ip_key(v)))
    return (vtep,) + by_vtep[vtep]


def remote_wins(local_seq, local_vtep, remote_seq, remote_vtep,
                remote_sticky=False):
    """RFC 7432 15: whether a peer's route (``remote_*``) takes a MAC away
    from our entry (``local_*``): a sticky route does; else the higher
    sequence number; at equal numbers the lower VTEP address."""
    if remote_sticky:
        return True
    if remote_seq != local_seq:
        return remote_seq > local_seq
    return local_vtep is None or _ip_key(remote_vtep) < _ip_key(local_vtep)


class Evpn:
    """The EVPN side of one authority: its desired routes, the routes its
    peers sent, and the entries and VTEP memberships they make."""

    def __init__(self, db, settings, counters):
        self.db = db
        self.settings = settings
        self.counters = counters
        self.enabled = bool(settings.bgp_as)
        # Export: key -> Route; keys changed since take_changes().
        self.desired = {}
        self.changed = set()
        self._macs_out = {}         # vnid -> {mac: {key}}
        self._imets_out = {}        # (vnid, dpid) -> key
        self._vrfs = {}             # vnid -> (rd, rts)
        # Import: received key -> Route; per VNI, MAC and IMET.
        self.received = {}
        self._rx_macs = {}          # vni -> {mac: {received key}}
        self._rx_imets = {}         # vni -> {received key}
        self._dirty_macs = set()    # (vnid, mac) to settle
        self._dirty_vns = set()     # vnids whose EVPN VTEPs to settle

    # -- export -------------------------------------------------------------

    def note(self, touched):
        """Recompute the desired routes a database change touched
        (``touched``: what MappingDB.take_touched returned)."""
        if not self.enabled:
            return
        vns, nves, entries, members = touched
        db = self.db
        for vnid in vns:
            self._vrfs.pop(vnid, None)
            macs = set(self._macs_out.get(vnid, ()))
            macs.update(a.mac for a in db.attachments_in(vnid))
            for mac in macs:
                self._export_entry(vnid, mac)
            dpids = {d for (v, d) in self._imets_out if v == vnid}
            for dpid in dpids | db.members(vnid):
                self._export_imet(vnid, dpid)
        for vnid, mac in entries:
            self._export_entry(vnid, mac)
        for vnid, dpid in members:
            if dpid is not None:
                self._export_imet(vnid, dpid)
        for dpid in nves:
            for att in db.attachments_at(dpid):
                self._export_entry(att.vnid, att.mac)
            vnids = {v for (v, d) in self._imets_out if d == dpid}
            for vnid in vnids | db.vns_of(dpid):
                self._export_imet(vnid, dpid)

    def take_changes(self):
        """``{key: route or None}``: what changed in :attr:`desired` since
        the last call (None: withdrawn), for the speaker to advertise."""
        keys, self.changed = self.changed, set()
        return {key: self.desired.get(key) for key in keys}

    def vrf(self, vnid):
        """``(rd, rts)`` the VN's routes are advertised with."""
        found = self._vrfs.get(vnid)
        if found is None:
            vn = self.db.vns[vnid]
            found = self._vrfs[vnid] = route_config(
                self.settings, vnid, vn.route_targets)
        return found

    def _exporting(self, vnid):
        vn = self.db.vns.get(vnid)
        if vn is None or not vn.evpn:
            return None
        try:
            return self.vrf(vnid)
        except BadRequest:          # refused at every write; a stored VN
            self.counters['evpn_vn_unexportable'] += 1
            return None

    def _set(self, key, route):
        if self.desired.get(key) == route:
            return
        if route is None:
            del self.desired[key]
        else:
            self.desired[key] = route
        self.changed.add(key)

    def _export_entry(self, vnid, mac):
        """MAC/IP routes of one mapping entry: one per address, MAC-only
        without one; none unless it is at a reachable NVE of ours with a
        VTEP."""
        db = self.db
        by_mac = self._macs_out.get(vnid)
        old = by_mac.pop(mac, ()) if by_mac else ()
        new = {}
        att = db.attachments.get((vnid, mac))
        vrf = self._exporting(vnid) if att is not None and \
            att.nve is not None and att.reachable else None
        if vrf is not None:
            nve = db.nves[att.nve]
            if nve.vtep_ip and not nve.dyn_unreachable:
                encap = db.vns[vnid].encap
                for ip in sorted(att.ips) or (None,):
                    new[(MAC_IP, vnid, mac, ip)] = Route(
                        MAC_IP, vrf[0], vnid, nve.vtep_ip, mac, ip, att.seq,
                        rts=vrf[1], encap=encap)
        for key in old:
            if key not in new:
                self._set(key, None)
        for key, route in new.items():
            self._set(key, route)
        if new:
            self._macs_out.setdefault(vnid, {})[mac] = set(new)
        elif by_mac is not None and not by_mac:
            del self._macs_out[vnid]

    def _export_imet(self, vnid, dpid):
        """The inclusive multicast route of member NVE ``dpid`` in VN
        ``vnid`` (ingress replication to its VTEP), if it has one."""
        db = self.db
        old = self._imets_out.pop((vnid, dpid), None)
        key = None
        nve = db.nves.get(dpid)
        vrf = self._exporting(vnid) if nve is not None and nve.vtep_ip \
            and not nve.dyn_unreachable and db.is_member(vnid, dpid) \
            else None
        if vrf is not None:
            key = (IMET, vnid, nve.vtep_ip)
            self._set(key, Route(IMET, vrf[0], vnid, nve.vtep_ip, rts=vrf[1],
                                 encap=db.vns[vnid].encap))
            self._imets_out[(vnid, dpid)] = key
        if old is not None and old != key:
            self._set(old, None)

    # -- import -------------------------------------------------------------

    def receive(self, route, withdraw=False):
        """A peer advertised (or withdrew) ``route``.  A malformed route is
        dropped and counted; the decisions wait for :meth:`settle`."""
        if not self.enabled:
            return
        try:
            route = self._checked(route)
        except (MappingError, ValueError, TypeError):
            self.counters['evpn_routes_dropped_malformed'] += 1
            return
        key = route.received_key()
        if withdraw:
            self.counters['evpn_routes_withdrawn'] += 1
            self._forget(key)
            return
        self.counters['evpn_routes_received'] += 1
        old = self.received.get(key)
        if old == route:
            return                  # the speaker may repeat itself
        if old is not None:
            self._forget(key)
        self.received[key] = route
        if route.kind == IMET:
            self._rx_imets.setdefault(route.vni, set()).add(key)
            self._dirty_vns.add(route.vni)
        else:
            self._rx_macs.setdefault(route.vni, {}).setdefault(
                route.mac, set()).add(key)
            self._dirty_macs.add((route.vni, route.mac))

    def peer_down(self, peer):
        """The session with ``peer`` ended: every route it sent is gone."""
        for key in [k for k in self.received if k[0] == peer]:
            self._forget(key)

    @staticmethod
    def _checked(route):
        if route.kind not in (MAC_IP, IMET):
            raise ValueError('route type %r' % (route.kind,))
        changes = {'vni': norm_vnid(route.vni), 'vtep': norm_ip(route.vtep),
                   'seq': int(route.seq), 'rts': tuple(route.rts)}
        if route.kind == MAC_IP:
            changes['mac'] = norm_mac(route.mac)
            if route.ip is not None:
                changes['ip'] = norm_ip(route.ip)
        if not 0 <= changes['seq'] < 1 << 32:
            raise ValueError('sequence number %r' % (route.seq,))
        return route._replace(**changes)

    def _forget(self, key):
        route = self.received.pop(key, None)
        if route is None:
            return
        if route.kind == IMET:
            keys = self._rx_imets.get(route.vni)
            keys.discard(key)
            if not keys:
                del self._rx_imets[route.vni]
            self._dirty_vns.add(route.vni)
            return
        macs = self._rx_macs[route.vni]
        keys = macs[route.mac]
        keys.discard(key)
        if not keys:
            del macs[route.mac]
            if not macs:
                del self._rx_macs[route.vni]
        self._dirty_macs.add((route.vni, route.mac))

    # -- deciding: imported entries, EVPN VTEPs, mobility ----------------

    def settle(self, now):
        """Bring the imported entries and EVPN VTEP memberships in line with
        the routes received and the database: for every MAC whose routes,
        entry or VN changed, and every VN whose inclusive multicast routes
        or configuration changed.  Changes go through the database's
        primitives (events, touched entries) and are committed with it."""
        if not self.enabled:
            return
        db = self.db
        for vnid in db.touched_vns:
            self._dirty_vns.add(vnid)
            self._dirty_macs.update(
                (vnid, mac) for mac in self._rx_macs.get(vnid, ()))
            self._dirty_macs.update((vnid, a.mac)
                                    for a in db.attachments_in(vnid)
                                    if a.nve is None)
        for vnid, mac in db.touched_entries:
            if mac in self._rx_macs.get(vnid, ()):
                self._dirty_macs.add((vnid, mac))
        if not (self._dirty_macs or self._dirty_vns):
            return
        own = {nve.vtep_ip for nve in db.nves.values() if nve.vtep_ip}
        macs, self._dirty_macs = self._dirty_macs, set()
        for vnid, mac in sorted(macs):
            self._settle_mac(vnid, mac, own, now)
        vnids, self._dirty_vns = self._dirty_vns, set()
        for vnid in sorted(vnids):
            vn = db.vns.get(vnid)
            vteps = set()
            if vn is not None and vn.evpn:
                for key in self._rx_imets.get(vnid, ()):
                    route = self.received[key]
                    if accepts(vn, route.rts):
                        vteps.add(route.vtep)
            if vn is not None:
                db.set_evpn_vteps(vnid, vteps - own, now)

    def _candidates(self, vn, mac, own):
        out = []
        for key in self._rx_macs.get(vn.vnid, {}).get(mac, ()):
            route = self.received[key]
            if route.vtep in own:
                # Our own route, reflected back: never a location.
                self.counters['evpn_routes_own'] += 1
            elif accepts(vn, route.rts):
                out.append(route)
        return out

    def _settle_mac(self, vnid, mac, own, now):
        db = self.db
        vn = db.vns.get(vnid)
        routes = self._candidates(vn, mac, own) if vn is not None and \
            vn.evpn else []
        best = best_remote(routes)
        att = db.attachments.get((vnid, mac))
        if best is None:
            if att is not None and att.nve is None:
                db.remove_attachment(att, now, reason='evpn-withdrawn')
            return
        vtep, seq, sticky = best
        if att is None:
            att = db.import_entry(vnid, mac, vtep, seq, now)
        elif att.nve is not None:
            if not self._yields(att, best, now):
                return
            db.relocate_to_evpn(att, vtep, seq, now)
        elif att.port != vtep:
            db.relocate_to_evpn(att, vtep, seq, now)
        elif att.seq != seq:
            db.set_remote_seq(att, seq)
        until = FOREVER if sticky else 0.0
        if att.frozen_until != until:
            db.freeze(att, until)
        ours = [r for r in routes if r.vtep == vtep]
        if any(r.ip is not None for r in ours):
            # A MAC-only route says nothing of addresses: only MAC/IP
            # routes replace the ones the entry has.
            self._set_ips(att, {r.ip for r in ours if r.ip is not None},
                          now)

    def _yields(self, att, best, now):
        """Whether our entry ``att`` gives way to the peers' best route."""
        db = self.db
        vtep, seq, sticky = best
        local_vtep = db.nves[att.nve].vtep_ip
        if not remote_wins(att.seq, local_vtep, seq, vtep, sticky):
            return False
        if att.source == 'registered' or att.frozen_until > now:
            self.counters['evpn_routes_refused'] += 1
            db.event_log.record(
                now, ev.CONFLICT, vnid=att.vnid, mac=att.mac,
                **location_of(att), claimant_vtep=vtep,
                reason='evpn-' + ('registered' if att.source == 'registered'
                                  else 'frozen'), origin=EVPN)
            return False
        return True

    def _set_ips(self, att, ips, now):
        db = self.db
        for ip in [ip for ip in att.ips if ip not in ips]:
            db.remove_ip(att, ip)
        for ip in sorted(ips - set(att.ips)):
            try:
                db.add_ip(att, ip, None, now)
            except MappingError:
                self.counters['evpn_ip_conflicts'] += 1

    # -- figures --------------------------------------------------------

    def figures(self):
        """Counts for ``GET /v1/bgp`` and metrics: routes desired (to
        export) and received, imported entries, EVPN VTEPs."""
        db = self.db
        return {
            'desired': len(self.desired),
            'received': len(self.received),
            'imported_entries': db.imported_count(),
            'evpn_vteps': len({vtep for vnid in db.vns
                               for vtep in db.evpn_vteps(vnid)}),
        }
