"""The flows of interconnects and external networks (draft 4.3), pure.

What each NVE holds for them (docs/pipeline.md has the tables):

* a **member NVE** of a VN with a routed interconnect sends frames to the
  VN's gateway MAC for a subnet of the other VN through the tunnel, in its
  own VN's key, to the interconnect's gateway (table 3, ``CROSS``); the
  TTL is left for the gateway to decrement.  On an L2 VN with a router it
  answers ARP for the router's address (table 2, ``GATEWAY``) and drops
  other frames to the router's MAC.  With an l2 + l2 interconnect, the
  allowed MACs of the other VN are entries of its own VN at the gateway:
  host routes to the gateway (table 4) and ARP answers (table 2,
  ``CROSS``, below the VN's own hosts);
* the **gateway** classifies tunnel frames as every member does; in table
  5 the frames that cross (to the gateway MAC, to an imported MAC, the
  broadcasts that must cross) go on to table 7 with their ``in_port``
  cleared; table 7 routes them to the host in the other VN (``ROUTE``:
  MACs rewritten, TTL decremented) or admits a bridged frame from an
  allowed source (``ADMIT``; table 5 already set the destination's VNID
  and VTEP), each in the other VN's encapsulation; a frame for a routed
  subnet whose host is not known yet is punted (``GLEAN``: the authority
  asks for it with ARP in the other VN); whatever else gets there is
  dropped (the table miss: isolation);
* an **external network** is classified on the gateway as an access
  binding is (table 0, VLAN popped), its hosts are learned by the usual
  punts, multicast and broadcast of its VNs reach it, unicast only for its
  allowed MACs (flows.py and the tenant systems' views).

Owners (owners.py): :class:`IcOwner` for an interconnect's flows on an NVE,
:class:`IcHostOwner` for the route to one host on the gateway (so an
attach recomputes one host, not the interconnect), :class:`ExtOwner` for
an external network on its gateway; what depends on every interconnect
of a VN at once (the gateway MACs steered to table 7, broadcasts, routers)
is the VN's own (``vn_gateway_flows``, ``vn_router_flows``).
"""

import ipaddress

from . import interconnect as I
from . import pipeline as P
from .owners import (EXT, IC, IC_HOST, ExtOwner, IcHostOwner, IcOwner,
                     cookie_for)

_V4, _V6 = 0x0800, 0x86DD


def owners_for(db, dpid):
    """The interconnect and external owners NVE ``dpid`` must hold."""
    out = []
    for name, ic in sorted(db.interconnects.items()):
        if ic.gateway == dpid or any(db.is_member(v, dpid) for v in ic.vns):
            out.append(IcOwner(name))
        if ic.gateway == dpid and I.routed(db, ic):
            for vnid in ic.vns:
                out.extend(IcHostOwner(name, vnid, att.mac)
                           for att in db.attachments_in(vnid))
    out.extend(ExtOwner(name) for name, ext in sorted(db.externals.items())
               if ext.gateway == dpid)
    return out


def spec(db, cfg, nve, owner):
    """The flows of an interconnect or external ``owner`` on ``nve`` (a
    tuple: their own spec), or None."""
    kind = owner.kind
    cookie = cookie_for(owner)
    if kind == EXT:
        ext = db.externals.get(owner.name)
        if ext is None or ext.gateway != nve.dpid:
            return None
        return tuple(_ext_flows(db, cfg, nve, ext, cookie))
    ic = db.interconnects.get(owner.name)
    if ic is None:
        return None
    if kind == IC:
        return tuple(_ic_flows(db, cfg, nve, ic, cookie))
    if kind == IC_HOST:
        if ic.gateway != nve.dpid or owner.vnid not in ic.vns or \
                not I.routed(db, ic):
            return None
        return tuple(_host_route(db, cfg, nve, ic, owner.vnid, owner.mac,
                                 cookie))
    return None


# --- helpers -------------------------------------------------------------------

def tunnel_output(vnid, vtep_ip, tun_ofport):
    """Into the tunnel with key ``vnid`` to ``vtep_ip``."""
    field = 'tun_ipv6_dst' if ':' in vtep_ip else 'tun_ipv4_dst'
    return [('set', 'tunnel_id', vnid), ('set', field, vtep_ip),
            ('output', tun_ofport)]


def local_output(ofport, vlan):
    """Out of a local port (tagged with ``vlan`` when given)."""
    if vlan is None:
        return [('output', ofport)]
    return [('push_vlan',), ('set', 'vlan_vid', P.VLAN_PRESENT | vlan),
            ('output', ofport), ('pop_vlan',)]


def _tun_port(db, cfg, nve, vnid):
    return nve.ofport(cfg.tunnel_ports[db.vns[vnid].encap])


def _net_match(net):
    """The match of destination subnet ``net``."""
    if net.version == 4:
        match = {'eth_type': _V4}
        field = 'ipv4_dst'
    else:
        match = {'eth_type': _V6}
        field = 'ipv6_dst'
    if net.prefixlen:           # /0: any address (a switch drops the field)
        match[field] = (str(net.network_address), str(net.netmask))
    return match


def _host_match(ip):
    if ':' in ip:
        return {'eth_type': _V6, 'ipv6_dst': ip}
    return {'eth_type': _V4, 'ipv4_dst': ip}


def ext_ports(db, nve, vnid):
    """(ofport, vlan or None) of the present external ports of ``nve``
    that carry ``vnid``."""
    out = []
    for _, ext in sorted(db.externals.items()):
        if ext.gateway != nve.dpid:
            continue
        ofport = nve.ofport(ext.port)
        if ofport is None:
            continue
        if ext.vnid == vnid:
            out.append((ofport, None))
        for vlan, vn_id in sorted(ext.vlans.items()):
            if vn_id == vnid:
                out.append((ofport, vlan))
    return out


def _deliver_to(db, cfg, nve, att):
    """How ``nve`` (a gateway) hands a frame to ``att``: its local port,
    or the tunnel to its NVE in its VN's key; None when it cannot."""
    if att.nve == nve.dpid:
        ofport = nve.ofport(att.port)
        if ofport is None or not db.deliverable(att):
            return None
        return local_output(ofport, att.vlan)
    holder_ip = db.vtep_of(att)
    port = _tun_port(db, cfg, nve, att.vnid)
    if not (att.reachable and holder_ip) or port is None:
        return None
    return tunnel_output(att.vnid, holder_ip, port)


# --- an interconnect on an NVE ---------------------------------------------------

def _ic_flows(db, cfg, nve, ic, cookie):
    out = []
    gateway = db.nves.get(ic.gateway)
    at_gateway = nve.dpid == ic.gateway
    routed = I.routed(db, ic)
    for vnid in ic.vns:
        if not db.is_member(vnid, nve.dpid):
            continue
        if at_gateway:
            onward = [('goto', P.INTERCONNECT)]
        else:
            port = _tun_port(db, cfg, nve, vnid)
            if port is None or gateway is None or not gateway.vtep_ip:
                continue
            onward = tunnel_output(vnid, gateway.vtep_ip, port)
        if routed:
            out += _cross_routes(db, ic, vnid, onward, cookie)
        else:
            out += _imported_entries(db, ic, vnid, at_gateway, onward,
                                     cookie)
    if at_gateway:
        out += _gateway_flows(db, cfg, nve, ic, routed, cookie)
    return out


def _cross_routes(db, ic, vnid, onward, cookie):
    """Table 3 of a member of ``vnid``: the other VN's subnets go to the
    gateway (or, on the gateway, to table 7)."""
    gw_mac = I.side(db, ic, vnid)[0]
    return [P.flow(P.L3_ROUTE, P.PRIO_CROSS,
                   dict(_net_match(net), metadata=vnid, eth_dst=gw_mac),
                   onward, cookie)
            for net in I.nets(db, ic, ic.other(vnid))]


def _imported_entries(db, ic, vnid, at_gateway, onward, cookie):
    """The allowed MACs of the other VN, as entries of ``vnid`` at the
    gateway: a host route (on the gateway: into table 7 with the
    destination set, for its own external hosts' frames) and ARP/NS
    answers for their addresses."""
    other = ic.other(vnid)
    out = []
    for att in I.imported_by(db, ic, vnid):
        if at_gateway:
            holder_ip = db.vtep_of(att)
            field = 'tun_ipv6_dst' if ':' in holder_ip \
                else 'tun_ipv4_dst'
            acts = [('set', 'tunnel_id', other),
                    ('set', field, holder_ip)] + onward
        else:
            acts = onward
        out.append(P.flow(P.L2_FORWARD, P.PRIO_HOST,
                          {'metadata': vnid, 'eth_dst': att.mac}, acts,
                          cookie))
    for ip, (owner, att) in sorted(I.import_answers(db, vnid).items()):
        if owner is not ic:
            continue
        if ':' in ip:
            out.append(nd_punt(vnid, ip, cookie, P.PRIO_ND_CROSS))
        else:
            out.append(arp_reply(vnid, ip, att.mac, cookie, P.PRIO_CROSS))
    return out


def _gateway_flows(db, cfg, nve, ic, routed, cookie):
    """The interconnect's own flows on its gateway: glean punts of routed
    subnets; for l2 + l2, frames to an imported MAC steered to table 7
    with its VNID and VTEP set (table 5), and admitted there from the
    allowed sources only."""
    out = []
    for vnid in ic.vns:
        other = ic.other(vnid)
        if routed:
            gw_mac = I.side(db, ic, vnid)[0]
            for net in I.nets(db, ic, other):
                out.append(P.flow(
                    P.INTERCONNECT, P.PRIO_GLEAN,
                    dict(_net_match(net), metadata=vnid, eth_dst=gw_mac),
                    [('meter', P.MISS_METER_ID), ('output', 'CONTROLLER')],
                    cookie))
            continue
        for att in I.imported_by(db, ic, vnid):
            holder_ip = db.vtep_of(att)
            field = 'tun_ipv6_dst' if ':' in holder_ip \
                else 'tun_ipv4_dst'
            out.append(P.flow(
                P.LOCAL_DELIVERY, P.PRIO_CROSS,
                {'metadata': vnid, 'eth_dst': att.mac},
                [('set', 'in_port', 0), ('set', 'tunnel_id', other),
                 ('set', field, holder_ip),
                 ('goto', P.INTERCONNECT)], cookie))
        port = _tun_port(db, cfg, nve, other)
        if port is None:
            continue
        for src in I.allowed_sources(db, ic, vnid):
            out.append(P.flow(
                P.INTERCONNECT, P.PRIO_ADMIT,
                {'metadata': vnid, 'tunnel_id': other, 'eth_src': src.mac},
                [('output', port)], cookie))
    return out


def _host_route(db, cfg, nve, ic, vnid, mac, cookie):
    """On the gateway: the route from the other VN to host ``mac`` of
    ``vnid``, for each of its addresses in ``vnid``'s routed subnets."""
    att = db.attachments.get((vnid, mac))
    if att is None or not att.ips:
        return []
    deliver = _deliver_to(db, cfg, nve, att)
    if deliver is None:
        return []
    src = ic.other(vnid)
    src_mac, dst_mac = I.side(db, ic, src)[0], I.side(db, ic, vnid)[0]
    out = []
    for ip in sorted(att.ips):
        if not I.routable(db, ic, vnid, ip):
            continue
        out.append(P.flow(
            P.INTERCONNECT, P.PRIO_ROUTE,
            dict(_host_match(ip), metadata=src, eth_dst=src_mac),
            [('set', 'eth_src', dst_mac), ('set', 'eth_dst', mac),
             ('dec_ttl',)] + deliver, cookie))
    return out


# --- what depends on every interconnect of a VN -----------------------------------

def vn_router_flows(db, vn, cookie):
    """On every member NVE of an L2 VN with routers: ARP (NS) for a
    router's address answered in place, other frames to its MAC dropped
    (they have nowhere to go)."""
    out = []
    for iface, mac in sorted(I.routers(db, vn.vnid)):
        ip = str(ipaddress.ip_interface(iface).ip)
        if ':' in ip:
            out.append(nd_punt(vn.vnid, ip, cookie, P.PRIO_GATEWAY))
        else:
            out.append(arp_reply(vn.vnid, ip, mac, cookie, P.PRIO_GATEWAY))
    for mac in sorted({mac for _, mac in I.routers(db, vn.vnid)}):
        out.append(P.flow(P.L3_ROUTE, P.PRIO_GLEAN,
                          {'metadata': vn.vnid, 'eth_dst': mac}, [], cookie))
    return out


def vn_gateway_flows(db, cfg, nve, vn, local, cookie):
    """On a gateway, for a VN it interconnects: frames of the VN to one of
    its gateway MACs (routed interconnects) go on to table 7; so do
    broadcasts when some allowed source's must cross (to the allowed MACs
    across whose addresses are not known yet), each copy addressed to its
    MAC in the other VN's key; the others, and the local copies, reach
    the VN's local ports only (``local``: their output actions)."""
    vnid = vn.vnid
    ics = [ic for ic in db.interconnects_of(vnid) if ic.gateway == nve.dpid]
    if not ics:
        return []
    steer = [('set', 'in_port', 0), ('goto', P.INTERCONNECT)]
    out = []
    for mac in sorted({I.side(db, ic, vnid)[0] for ic in ics
                       if I.routed(db, ic)}):
        out.append(P.flow(P.LOCAL_DELIVERY, P.PRIO_CROSS,
                          {'metadata': vnid, 'eth_dst': mac}, steer, cookie))
    copies = {}
    for ic in ics:
        if I.routed(db, ic):
            continue
        other = ic.other(vnid)
        port = _tun_port(db, cfg, nve, other)
        targets = [att for att in I.imported_by(db, ic, vnid)
                   if not att.ips]
        if port is None or not targets:
            continue
        acts = []
        for att in targets:
            holder_ip = db.vtep_of(att)
            acts += [('set', 'eth_dst', att.mac)] + tunnel_output(
                other, holder_ip, port)
        for src in I.allowed_sources(db, ic, vnid):
            copies.setdefault(src.mac, []).extend(acts)
    if not copies:
        return out
    restore = [('set', 'eth_dst', P.BROADCAST)] + local if local else []
    out.append(P.flow(P.LOCAL_DELIVERY, P.PRIO_CROSS,
                      {'metadata': vnid, 'eth_dst': P.BROADCAST}, steer,
                      cookie))
    for mac, acts in sorted(copies.items()):
        out.append(P.flow(P.INTERCONNECT, P.PRIO_BROADCAST,
                          {'metadata': vnid, 'eth_src': mac,
                           'eth_dst': P.BROADCAST}, acts + restore, cookie))
    out.append(P.flow(P.INTERCONNECT, P.PRIO_LOCAL,
                      {'metadata': vnid, 'eth_dst': P.BROADCAST}, local,
                      cookie))
    return out


# --- an external network on its gateway -----------------------------------------

def _ext_flows(db, cfg, nve, ext, cookie):
    """Its port classified as an access binding is: into the VN of the
    frame's VLAN (popped, and kept in reg6 to re-tag answers), unknown
    sources punted (learned as mapping entries of that port)."""
    ofport = nve.ofport(ext.port)
    if ofport is None:
        return []
    out = [P.Meter(ofport, cfg.punt_rate_pps, cfg.punt_burst)]
    out += P.port_punt_flows(ofport, cookie)
    if ext.vnid is not None:
        out.append(P.flow(P.CLASSIFY, P.PRIO_ACCESS,
                          {'in_port': ofport, 'vlan_vid': P.OFPVID_NONE},
                          [('metadata', ext.vnid), ('goto', P.SOURCE)],
                          cookie))
    for vlan, vnid in sorted(ext.vlans.items()):
        out.append(P.flow(
            P.CLASSIFY, P.PRIO_ACCESS_VLAN,
            {'in_port': ofport, 'vlan_vid': P.VLAN_PRESENT | vlan},
            [('pop_vlan',), ('set', P.VLAN_REG, vlan), ('metadata', vnid),
             ('goto', P.SOURCE)], cookie))
        out.append(P.flow(
            P.TO_INGRESS, P.PRIO_HOST, {'in_port': ofport, P.VLAN_REG: vlan},
            [('push_vlan',), ('set', 'vlan_vid', P.VLAN_PRESENT | vlan),
             ('output', 'IN_PORT')], cookie))
    return out


# --- shared with flows.py ------------------------------------------------------

def nd_punt(vnid, ip, cookie, priority=P.PRIO_ND_PUNT):
    """A neighbour solicitation for a known IPv6 address: the authority
    answers it (OVS cannot turn an NS into an NA by itself)."""
    return P.flow(
        P.ARP_ND_RESPONDER, priority,
        {'metadata': vnid, 'eth_type': 0x86DD, 'ip_proto': 58,
         'icmpv6_type': 135, 'ipv6_nd_target': ip},
        [('output', 'CONTROLLER')], cookie)


def arp_reply(vnid, ip, mac, cookie, priority=P.PRIO_HOST):
    """Turn an ARP request for ``ip`` into the answer, sent back in place."""
    return P.flow(
        P.ARP_ND_RESPONDER, priority,
        {'metadata': vnid, 'eth_type': 0x0806, 'arp_op': 1, 'arp_tpa': ip},
        [('move', 'eth_src', 'eth_dst', 48), ('set', 'eth_src', mac),
         ('set', 'arp_op', 2), ('move', 'arp_sha', 'arp_tha', 48),
         ('move', 'arp_spa', 'arp_tpa', 32), ('set', 'arp_sha', mac),
         ('set', 'arp_spa', ip), ('goto', P.TO_INGRESS)], cookie)


__all__ = ['owners_for', 'spec', 'vn_gateway_flows', 'vn_router_flows',
           'ext_ports', 'tunnel_output', 'local_output', 'nd_punt',
           'arp_reply', 'IcOwner', 'IcHostOwner', 'ExtOwner']
