"""What each NVE must hold, computed from the mapping database (pure).

Flows are grouped by *owner* (owners.py), the database record they come
from: the NVE itself, a VN on one of its member NVEs, or one tenant-system
attachment as seen by one member NVE (local delivery where it is attached, a
tunnel route everywhere else, ARP answers and L3 routes for its addresses).

The owner is what the cookie names, and the unit of recomputation: a change
recomputes only the owners it touched, on the NVEs that hold them or must
hold them (see planner.py).  ``owners_for`` lists everything an NVE must
hold, so a full recompute is the union of the same functions.  The flows
of interconnects and external networks (draft 4.3) are gwflows.py's.
"""

import functools
import ipaddress
from typing import NamedTuple

from . import gwflows
from . import pipeline as P
from .gwflows import arp_reply as _arp_reply
from .gwflows import local_output as _local_output
from .gwflows import nd_punt as _nd_punt
from .gwflows import tunnel_output as _tunnel_output
from .owners import EXT, IC, IC_HOST, NVE, VN, NveOwner, TsOwner, VnOwner, \
    cookie_for


def owners_for(db, dpid):
    """Every owner whose flows NVE ``dpid`` must hold (a full recompute)."""
    if dpid not in db.nves:
        return []
    owners = [NveOwner()]
    for vnid in sorted(db.flow_vns_of(dpid)):
        owners.append(VnOwner(vnid))
        owners.extend(att.key for att in db.attachments_in(vnid))
    owners.extend(gwflows.owners_for(db, dpid))
    return owners


def spec(db, cfg, dpid, owner):
    """What ``owner`` puts on NVE ``dpid``, as a spec for :func:`build`
    (None if nothing).  An NVE's and a VN's flows are their own spec; a
    tenant system's is a small view of the records its flows depend on,
    equal on every NVE that sees it the same way (its remote NVEs), so
    one object and one built flow set serve them all."""
    nve = db.nves.get(dpid)
    if nve is None:
        return None
    kind = owner.kind
    if kind == NVE:
        return tuple(_nve_flows(db, cfg, nve, cookie_for(owner)))
    if kind in (IC, IC_HOST, EXT):
        return gwflows.spec(db, cfg, nve, owner)
    vnid = owner.vnid
    vn = db.vns.get(vnid)
    if vn is None or dpid not in db.flow_members(vnid):
        return None
    if kind == VN:
        return tuple(_vn_flows(db, cfg, nve, vn, cookie_for(owner)))
    att = db.attachments.get((vnid, owner.mac))
    if att is None or not db.local_member(vnid, dpid):
        # A gateway in the VN only for its interconnects has no port of
        # it: nothing of its tenant systems to deliver or route there.
        return None
    if att.migration is not None:
        # Two places at once while it migrates (dualflows.py builds on
        # this module, so it is imported here rather than above).
        from . import dualflows
        return dualflows.view(db, cfg, nve, vn, att, cookie_for(owner))
    return _ts_view(db, cfg, nve, vn, att)


def layer_key(db, cfg, dpid, vnid):
    """The shared layer NVE ``dpid`` reads VN ``vnid``'s tenant systems
    from (southbound/flowtable.py): ``(vnid, its tunnel port number)``,
    the one part of a remote view that is the NVE's own; None where it
    holds none of them."""
    nve, vn = db.nves.get(dpid), db.vns.get(vnid)
    if nve is None or vn is None or not db.local_member(vnid, dpid) or \
            dpid not in db.flow_members(vnid):
        return None
    return (vnid, nve.ofport(cfg.tunnel_ports[vn.encap]))


def shared_view(db, cfg, key, mac):
    """The spec of tenant system ``mac`` in layer ``key`` (layer_key): as
    a member NVE with that tunnel port sees it when it is attached
    elsewhere, no claimant is blocked there and it does not redirect for
    it.  None while it migrates (each NVE's view is its own then)."""
    vnid, tun = key
    vn = db.vns.get(vnid)
    att = db.attachments.get((vnid, mac))
    if vn is None or att is None or att.migration is not None:
        return None
    return _ts_there(db, vn, att, att.ips, tun, (), False)


def build(owner_spec):
    """The flows (and meters) of a spec from :func:`spec`."""
    if owner_spec is None:
        return ()
    if type(owner_spec) is tuple:  # pylint: disable=unidiomatic-typecheck
        return owner_spec
    return _build_ts(owner_spec)


def compute(db, cfg, dpid, owner):
    """The flows (and meters) ``owner`` puts on NVE ``dpid``; [] if none."""
    return list(build(spec(db, cfg, dpid, owner)))


# --- per NVE ---------------------------------------------------------------

def _nve_flows(db, cfg, nve, cookie):
    out = [
        P.Meter(P.MISS_METER_ID, cfg.miss_rate_pps, cfg.punt_burst),
        P.flow(P.CLASSIFY, P.PRIO_MISS, {},
               [('meter', P.MISS_METER_ID), ('output', 'CONTROLLER')], cookie),
        P.flow(P.SOURCE, P.PRIO_MISS, {}, [], cookie),
        P.flow(P.ARP_ND_RESPONDER, P.PRIO_MISS, {},
               [('goto', P.L3_ROUTE)], cookie),
        # A unicast ARP request or neighbour solicitation is a liveness
        # check (arping -t, the kernel's NUD probe of a stale entry): only
        # its target can answer it, so it goes there like any frame.
        P.flow(P.ARP_ND_RESPONDER, P.PRIO_UNICAST,
               {'eth_type': 0x0806, 'arp_op': 1, 'eth_dst': P.UCAST},
               [('goto', P.L3_ROUTE)], cookie),
        P.flow(P.ARP_ND_RESPONDER, P.PRIO_UNICAST,
               {'eth_type': 0x86DD, 'ip_proto': 58, 'icmpv6_type': 135,
                'eth_dst': P.UCAST},
               [('goto', P.L3_ROUTE)], cookie),
        P.flow(P.L3_ROUTE, P.PRIO_MISS, {}, [('goto', P.L2_FORWARD)], cookie),
        P.flow(P.L2_FORWARD, P.PRIO_MISS, {}, [], cookie),
        P.flow(P.L2_FORWARD, P.PRIO_PROBE, {'eth_dst': P.PROBE_MAC},
               [('meter', P.MISS_METER_ID), ('output', 'CONTROLLER')], cookie),
        P.flow(P.LOCAL_DELIVERY, P.PRIO_MISS, {}, [], cookie),
        P.flow(P.TO_INGRESS, P.PRIO_MISS, {}, [('output', 'IN_PORT')],
               cookie),
    ]
    if nve.role == 'gateway':
        # What reaches a gateway's interconnect table and no interconnect
        # allows is dropped here, and counted by this flow.
        out.append(P.flow(P.INTERCONNECT, P.PRIO_MISS, {}, [], cookie))
    for name in sorted(nve.bindings):
        ofport = nve.ofport(name)
        if ofport is None:
            continue
        # Until a tenant system of the port's VN lives here, the NVE holds
        # nothing of that VN (table CLASSIFY punts); an unknown source on
        # an active port is attachment discovery (table SOURCE punts).
        out.append(P.Meter(ofport, cfg.punt_rate_pps, cfg.punt_burst))
        out += P.port_punt_flows(ofport, cookie)
    return out


# --- per VN on a member NVE ------------------------------------------------

def vn_ports(nve, vnid):
    """(ofport, vlan or None) of every access binding of ``vnid`` here."""
    out = []
    for name in sorted(nve.bindings):
        binding = nve.bindings[name]
        ofport = nve.ofport(name)
        if ofport is None:
            continue
        if binding.vnid == vnid:
            out.append((ofport, None))
        for vlan, vn_id in sorted(binding.vlans.items()):
            if vn_id == vnid:
                out.append((ofport, vlan))
    return out


def bum_ports(db, nve, vnid):
    """(ofport, vlan or None) of every local port broadcasts and multicast
    of ``vnid`` reach on ``nve``: its access bindings and its external
    networks' ports (unicast reaches those only for allowed MACs)."""
    return vn_ports(nve, vnid) + gwflows.ext_ports(db, nve, vnid)


def _flood_actions(db, cfg, nve, vn, local_only, bum=True):
    ports = bum_ports(db, nve, vn.vnid) if bum else vn_ports(nve, vn.vnid)
    # Untagged outputs first: tagged ones push and pop around themselves.
    acts = []
    for ofport, vlan in sorted(ports, key=lambda p: p[1] is not None):
        acts += _local_output(ofport, vlan)
    if local_only:
        return acts
    tun = nve.ofport(cfg.tunnel_ports[vn.encap])
    if tun is None:
        return acts
    ours = set()
    for member in sorted(db.members(vn.vnid)):
        peer = db.nves[member]
        ours.add(peer.vtep_ip)
        if member == nve.dpid or not peer.vtep_ip or peer.dyn_unreachable:
            continue
        acts += _tunnel_output(vn.vnid, peer.vtep_ip, tun)
    # EVPN VTEPs in the VN (their inclusive multicast routes: evpn.py) get
    # the VN's broadcasts too: ingress replication, as to member NVEs.
    for vtep in sorted(db.evpn_vteps(vn.vnid) - ours):
        acts += _tunnel_output(vn.vnid, vtep, tun)
    return acts


def _vn_flows(db, cfg, nve, vn, cookie):
    meta = ('metadata', vn.vnid)
    out = []
    tun = nve.ofport(cfg.tunnel_ports[vn.encap])
    if tun is not None:
        out.append(P.flow(P.CLASSIFY, P.PRIO_TUNNEL,
                          {'in_port': tun, 'tunnel_id': vn.vnid},
                          [meta, ('goto', P.LOCAL_DELIVERY)], cookie))
    for ofport, vlan in vn_ports(nve, vn.vnid):
        if vlan is None:
            out.append(P.flow(P.CLASSIFY, P.PRIO_ACCESS,
                              {'in_port': ofport, 'vlan_vid': P.OFPVID_NONE},
                              [meta, ('goto', P.SOURCE)], cookie))
        else:
            out.append(P.flow(
                P.CLASSIFY, P.PRIO_ACCESS_VLAN,
                {'in_port': ofport, 'vlan_vid': P.VLAN_PRESENT | vlan},
                [('pop_vlan',), ('set', P.VLAN_REG, vlan), meta,
                 ('goto', P.SOURCE)], cookie))
            out.append(P.flow(
                P.TO_INGRESS, P.PRIO_HOST, {'in_port': ofport, P.VLAN_REG: vlan},
                [('push_vlan',), ('set', 'vlan_vid', P.VLAN_PRESENT | vlan),
                 ('output', 'IN_PORT')], cookie))
    flood = _flood_actions(db, cfg, nve, vn, local_only=False)
    local = _flood_actions(db, cfg, nve, vn, local_only=True)
    # Unknown unicast never leaves towards an external network (draft 4.3:
    # unicast only for its allowed MACs).
    flood_ucast = _flood_actions(db, cfg, nve, vn, local_only=False,
                                 bum=False)
    local_ucast = _flood_actions(db, cfg, nve, vn, local_only=True,
                                 bum=False)
    vmatch = {'metadata': vn.vnid}
    out += [
        P.flow(P.L2_FORWARD, P.PRIO_FLOOD, dict(vmatch, eth_dst=P.MCAST_BIT),
               flood, cookie),
        P.flow(P.L2_FORWARD, P.PRIO_UNKNOWN_UCAST, vmatch, flood_ucast,
               cookie),
        P.flow(P.LOCAL_DELIVERY, P.PRIO_FLOOD,
               dict(vmatch, eth_dst=P.MCAST_BIT), local, cookie),
        P.flow(P.LOCAL_DELIVERY, P.PRIO_UNKNOWN_UCAST, vmatch, local_ucast,
               cookie),
    ]
    out += gwflows.vn_router_flows(db, vn, cookie)
    if nve.role == 'gateway':
        out += gwflows.vn_gateway_flows(db, cfg, nve, vn, local, cookie)
    if vn.service == 'l3':
        # The gateway is the NVE itself: it answers for its addresses also
        # when asked by unicast (a guest's NUD probe of its router).
        for gw_ip in vn.gateway_host_ips():
            if ':' in gw_ip:
                out.append(_nd_punt(vn.vnid, gw_ip, cookie, P.PRIO_GATEWAY))
            else:
                out.append(_arp_reply(vn.vnid, gw_ip, vn.gateway_mac, cookie,
                                      P.PRIO_GATEWAY))
        # To the gateway, for nobody we know: the authority resolves the
        # address (ARP from the gateway, like a router's glean).
        out.append(P.flow(P.L3_ROUTE, P.PRIO_GLEAN,
                          dict(vmatch, eth_dst=vn.gateway_mac),
                          [('meter', P.MISS_METER_ID),
                           ('output', 'CONTROLLER')], cookie))
    return out


# --- per tenant system on a member NVE -------------------------------------

def _view_cookie(view):
    """The cookie of a tenant system's flows, which names their owner:
    derived from the view's key rather than kept in it (a 64-bit int and
    a field of their own in each view)."""
    return cookie_for(view.key)


def _part(field, at, doc):
    """A field of a view read from its key or its shared ``ctx``."""
    return property(lambda view: view[field][at], doc=doc)


def _rare_part(index, usual):
    """A field of a view kept in the ``rare`` tuple of its ``ctx``:
    ``usual`` unless the view has one."""
    def get(view):
        rare = view.ctx[-1]
        return usual if rare is None else rare[index]
    return property(get)


# There is a view or two per mapping entry (flowtable.py), so a view has
# four fields (a tuple of four is 80 B, of six 96, of eight 112): the
# attachment's key (its VN and MAC, the owner of its flows) and addresses,
# the one part that is the NVE's own (the port, the route), and ``ctx``,
# one tuple shared by the views of a VN alike (_here_ctx, _there_ctx):
# the VN's gateway, and the fields that nearly always hold the same value
# in one ``rare`` tuple, None when they all do.

class TsHere(NamedTuple):
    """A tenant system as the NVE it is attached to sees it."""
    key: tuple              # owners.TsOwner (vnid, mac): the attachment's
    ips: tuple              # sorted
    ofport: int             # None: its port is gone, it is held nowhere
    ctx: tuple              # (l3, vlan, meter, rare): see _here_ctx
    cookie = property(_view_cookie)
    vnid = _part(0, 0, 'its VN')
    mac = _part(0, 1, 'its MAC')
    l3 = _part(3, 0, '(gateway MAC, gateway interfaces) or None')
    vlan = _part(3, 1, 'its VLAN ID, None untagged')

    @property
    def meter(self):
        """The meter of its punts: its port's (None: the NVE's miss
        meter)."""
        meter = self.ctx[2]
        return self.ofport if meter is None else meter

    # ofports of claimants refused here
    blocked = _rare_part(0, ())
    # a registered vNIC classified by source IP
    by_source_ip = _rare_part(1, False)
    # False: a host of an external network that is not on its allowed
    # list (it sends, gets nothing)
    deliver = _rare_part(2, True)


def here_rare(blocked, by_source_ip, deliver):
    """The ``rare`` part of TsHere.ctx: None for the usual ((), False,
    True)."""
    if not blocked and not by_source_ip and deliver:
        return None
    return (blocked, by_source_ip, deliver)


@functools.lru_cache(maxsize=4096)
def _here_ctx(l3, vlan, meter, rare):
    """TsHere.ctx: (l3, vlan, meter, rare), ``meter`` None where it is the
    port's own (its ofport): one tuple for the tenant systems of a VN
    alike, as :func:`_route`."""
    return (l3, vlan, meter, rare)


def make_here(key, ips, l3, ofport, vlan, meter, rare=None):
    """A TsHere from its fields (``rare``: :func:`here_rare`)."""
    return TsHere(key, ips, ofport, _here_ctx(
        l3, vlan, None if meter == ofport else meter, rare))


class TsThere(NamedTuple):
    """A tenant system as every other member NVE sees it."""
    key: tuple              # owners.TsOwner (vnid, mac): the attachment's
    ips: tuple
    route: tuple            # (VTEP, tunnel ofport); None: not deliverable
    ctx: tuple              # (l3, rare): see _there_ctx
    cookie = property(_view_cookie)
    vnid = _part(0, 0, 'its VN')
    mac = _part(0, 1, 'its MAC')
    l3 = _part(3, 0, '(gateway MAC, gateway interfaces) or None')
    blocked = _rare_part(0, ())
    # it just left this NVE: follow it
    redirect = _rare_part(1, False)


def there_rare(blocked, redirect):
    """The ``rare`` part of TsThere.ctx: None for the usual ((), False),
    as every view of a shared layer has."""
    if not blocked and not redirect:
        return None
    return (blocked, redirect)


@functools.lru_cache(maxsize=1024)
def _there_ctx(l3, rare):
    """TsThere.ctx, one tuple for the tenant systems of a VN alike."""
    return (l3, rare)


def make_there(key, ips, l3, route, rare=None):
    """A TsThere from its fields (``rare``: :func:`there_rare`)."""
    return TsThere(key, ips, route, _there_ctx(l3, rare))


def _ts_view(db, cfg, nve, vn, att):
    blocked = []
    for (dpid, port) in sorted(att.blocked):
        ofport = nve.ofport(port) if dpid == nve.dpid else None
        if ofport is not None and (dpid, port) != (att.nve, att.port):
            blocked.append(ofport)
    ips = att.ips                   # sorted, shared with the attachment
    l3 = _l3(vn)
    deliver = db.deliverable(att)
    if att.nve == nve.dpid:
        ofport = nve.ofport(att.port)
        # Bound ports (and external networks' ports) have a meter of their
        # own; a port only registered vNICs use (by source IP) shares the
        # NVE's miss meter.
        meter = ofport if att.port in nve.bindings or db.external_at(
            nve.dpid, att.port) else P.MISS_METER_ID
        return make_here(att.key, ips, l3, ofport, att.vlan, meter,
                         here_rare(tuple(blocked), bool(
                             ofport is not None and db.by_source_ip(att)),
                             deliver))
    return _ts_there(db, vn, att, ips,
                     nve.ofport(cfg.tunnel_ports[vn.encap]), tuple(blocked),
                     att.redirect_from == nve.dpid)


def _ts_there(db, vn, att, ips, tun, blocked, redirect):
    # An entry imported from EVPN is seen from every member NVE as any
    # remote one is: a tunnel to the VTEP it sits behind.
    l3 = _l3(vn)
    vtep = db.nves[att.nve].vtep_ip if att.nve is not None else att.port
    route = _route(vtep, tun) if (db.deliverable(att) and att.reachable
                                  and vtep and tun is not None) else None
    return make_there(att.key, ips, l3, route, there_rare(blocked, redirect))


def sees_as_its_layer(db, dpid, owner):
    """Whether NVE ``dpid`` sees tenant system ``owner`` as the layer it
    reads (:func:`layer_key`) does, so that :func:`spec` there equals
    the layer's :func:`shared_view` (both None where it reads no layer):
    it is attached elsewhere, not migrating, no claimant of it is blocked
    on ``dpid`` and ``dpid`` does not redirect for it (what
    :func:`_ts_view` makes of its own otherwise; keep the two together).
    The planner asks it to skip working out such views one NVE at a
    time."""
    att = db.attachments.get((owner.vnid, owner.mac))
    if att is None or att.nve == dpid or att.migration is not None:
        return False
    mobility = att.mobility
    return mobility is None or (
        mobility.redirect_from != dpid and
        not any(where[0] == dpid for where in mobility.blocked))


def _l3(vn):
    """(gateway MAC, gateway interfaces) of an l3 VN, else None."""
    if vn.service != 'l3':
        return None
    return _gateway(vn.gateway_mac, tuple(vn.gateway_ips))


@functools.lru_cache(maxsize=1024)
def _gateway(mac, interfaces):
    """One tuple per VN gateway for the views of all its tenant systems,
    as :func:`_route` (a tuple of its own cost each mapping entry of an
    l3 VN ~60 B)."""
    return (mac, interfaces)


@functools.lru_cache(maxsize=8192)
def _route(vtep, tun):
    """One (VTEP, tunnel ofport) tuple for every tenant system behind a
    VTEP: a tuple of its own in each view cost ~60 B per mapping entry
    (the cache holds about one per NVE)."""
    return (vtep, tun)


@functools.lru_cache(maxsize=256)   # a remote view serves ~every member
def _build_ts(view):
    if not isinstance(view, (TsHere, TsThere)):
        return view.build()        # a view that builds itself (dualflows)
    vnid, mac, cookie = view.vnid, view.mac, view.cookie
    vmatch = {'metadata': vnid}
    out = [P.flow(P.SOURCE, P.PRIO_BLOCKED,
                  {'metadata': vnid, 'in_port': ofport, 'eth_src': mac}, [],
                  cookie)
           for ofport in view.blocked]
    if isinstance(view, TsHere):
        if view.ofport is None:
            return tuple(out)
        deliver = _local_output(view.ofport, view.vlan)
        out += _source_flows(view)
        if not view.deliver:
            return tuple(out)
        out.append(P.flow(P.LOCAL_DELIVERY, P.PRIO_HOST,
                          dict(vmatch, eth_dst=mac), deliver, cookie))
        if view.by_source_ip:
            out += _bid_classify_flows(view)
    else:
        if view.route is None:
            return tuple(out)
        deliver = _tunnel_output(vnid, view.route[0], view.route[1])
        if view.redirect:
            # Frames still tunnelled here by members not yet reprogrammed
            # follow the tenant system to its new NVE instead of dying.
            # They came in by the VN's tunnel port: out of it again is
            # IN_PORT in OpenFlow (a plain output to it would be dropped).
            out.append(P.flow(P.LOCAL_DELIVERY, P.PRIO_REDIRECT,
                              dict(vmatch, eth_dst=mac),
                              deliver[:-1] + [('output', 'IN_PORT')],
                              cookie))
    out.append(P.flow(P.L2_FORWARD, P.PRIO_HOST,
                      dict(vmatch, eth_dst=mac), deliver, cookie))
    for ip in view.ips:
        v6 = ':' in ip
        if v6:
            out.append(_nd_punt(vnid, ip, cookie))
        else:
            out.append(_arp_reply(vnid, ip, mac, cookie))
        if view.l3 is not None and _routable(view.l3[1], ip):
            gw_mac = view.l3[0]
            dst_field, eth_type = ('ipv6_dst', 0x86DD) if v6 else (
                'ipv4_dst', 0x0800)
            out.append(P.flow(
                P.L3_ROUTE, P.PRIO_HOST,
                {'metadata': vnid, 'eth_dst': gw_mac,
                 'eth_type': eth_type, dst_field: ip},
                [('set', 'eth_src', gw_mac), ('set', 'eth_dst', mac),
                 ('dec_ttl',), ('goto', P.L2_FORWARD)], cookie))
    return tuple(out)


_L3_SOURCES = (  # (ethertype, source field, "no address yet" value)
    (0x0806, 'arp_spa', '0.0.0.0'), (0x0800, 'ipv4_src', '0.0.0.0'),
    (0x86DD, 'ipv6_src', '::'))


def _source_flows(view):
    """Admit the tenant system's frames; a frame with an L3 source address
    it does not own yet is punted, so every address is learned (and one
    owned by another tenant system is refused, not forwarded)."""
    base = {'metadata': view.vnid, 'in_port': view.ofport,
            'eth_src': view.mac}
    admit = [('goto', P.ARP_ND_RESPONDER)]
    cookie = view.cookie
    out = [P.flow(P.SOURCE, P.PRIO_HOST_ANY, base, admit, cookie)]
    for eth_type, field, unspecified in _L3_SOURCES:
        out.append(P.flow(P.SOURCE, P.PRIO_ADDR_PUNT,
                          dict(base, eth_type=eth_type),
                          [('meter', view.meter), ('output', 'CONTROLLER')],
                          cookie))
        owned = [ip for ip in view.ips
                 if (':' in ip) == (field == 'ipv6_src')]
        for ip in owned + [unspecified]:
            out.append(P.flow(P.SOURCE, P.PRIO_HOST,
                              dict(base, eth_type=eth_type, **{field: ip}),
                              admit, cookie))
    out += _announce_flows(view, base)
    return out


def _announce_flows(view, base):
    """What the tenant system says about its own addresses is for the VN
    to hear, never for the responder to answer (law 2): a gratuitous ARP
    (sender = target address: RFC 5227 announcement, ``arping -U``), its
    own address probe (RFC 5227, sender 0.0.0.0) and its own IPv6 DAD
    solicitation (source ``::``).  Answered, they would tell the guest that
    its address is taken, or tell its peers nothing.  Only the owner gets
    here with its address: anyone else's frames from it are punted by
    ``PRIO_ADDR_PUNT`` and refused."""
    past = [('goto', P.L3_ROUTE)]
    out = []
    for ip in view.ips:
        if ':' in ip:
            matches = [dict(base, eth_type=0x86DD, ipv6_src='::',
                            ip_proto=58, icmpv6_type=135,
                            ipv6_nd_target=ip)]
        else:
            matches = [dict(base, eth_type=0x0806, arp_spa=ip, arp_tpa=ip),
                       dict(base, eth_type=0x0806, arp_spa='0.0.0.0',
                            arp_tpa=ip)]
        out += [P.flow(P.SOURCE, P.PRIO_ANNOUNCE, m, past, view.cookie)
                for m in matches]
    return out


def _bid_classify_flows(view):
    """Table 0 for a registered vNIC reached by source IP (draft 4.2): the
    frames of each of its IPs enter that IP's VN, so one untagged vNIC can
    be in several VNs on one port (its other IPs are in other VNs)."""
    base = {'in_port': view.ofport, 'vlan_vid': P.OFPVID_NONE,
            'eth_src': view.mac}
    actions = [('metadata', view.vnid), ('goto', P.SOURCE)]
    out = []
    for ip in view.ips:
        if ':' in ip:
            matches = [dict(base, eth_type=0x86DD, ipv6_src=ip)]
        else:
            matches = [dict(base, eth_type=0x0800, ipv4_src=ip),
                       dict(base, eth_type=0x0806, arp_spa=ip)]
        out += [P.flow(P.CLASSIFY, P.PRIO_ACCESS_BID, m, actions,
                       view.cookie) for m in matches]
    return out


def _routable(gateway_ips, ip):
    addr = ipaddress.ip_address(ip)
    return any(addr in ipaddress.ip_interface(gw).network
               for gw in gateway_ips)


__all__ = ['spec', 'build', 'compute', 'owners_for', 'layer_key',
           'shared_view', 'sees_as_its_layer',
           'vn_ports', 'bum_ports', 'TsHere', 'TsThere', 'make_here',
           'make_there']
