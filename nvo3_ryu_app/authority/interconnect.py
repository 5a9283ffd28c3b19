"""Interconnection functionality (draft section 4.3): the rules.

A *gateway* is an NVE registered with role ``gateway``.  It carries

* **interconnects** between two VNs, of the draft's three kinds, decided by
  the VNs' services:

  - ``l3+l3`` (a): the gateway routes between the two VNs' subnets; hosts
    use their own VN's gateway address as next hop, the TTL is decremented
    once, at the gateway;
  - ``l2+l2`` (b): frames cross only between MACs of the interconnect's
    forwarding allowed list (``allowed_macs``): a frame crosses when both
    its source and its destination are on it.  An allowed MAC of the other
    VN is a mapping entry of this VN located at the gateway, so ARP for it
    is answered at the ingress NVE (law 2); broadcasts cross only to the
    allowed MACs whose addresses the authority does not know yet (they
    may need an ARP request; the others never do);
  - ``l2+l3`` (c): ``router`` gives the gateway an address and a MAC on the
    L2 VN, which its hosts use as next hop into the L3 VN;

* **externals**: a non-VN network on a port of the gateway, mapped by VLAN
  ID (or untagged) to VNs.  Its hosts are learned as mapping entries at
  that port; unicast frames of the VN leave towards it only for its
  ``allowed_macs``.

Whatever crosses leaves the gateway in the destination VN's encapsulation
and VNID, whatever it arrived in (the draft's encapsulation conversion).
The flows are gwflows.py's; this module validates requests (every refusal
before any change, so a refused request changes nothing) and derives
what the flows need: the routed networks of each VN, the MACs an l2+l2
interconnect imports into a VN.

Limits, by design: a gateway converts the traffic of tenant systems on
other NVEs; an allowed MAC (l2+l2) that is itself an external host of the
gateway is not reached across, and broadcasts of the gateway's own
external hosts stay in their VN.  One interconnect joins a pair of VNs.
"""

import ipaddress

from .addresses import (dpid_str, norm_dpid, norm_gateway, norm_mac,
                        norm_name, norm_port_name, norm_vlan, norm_vnid)
from . import pipeline as P
from .errors import BadRequest, Conflict, NotFound
from .model import External, Interconnect
from .owners import IcOwner, cookie_for

L3L3, L2L2, L2L3 = 'l3+l3', 'l2+l2', 'l2+l3'


def kind(db, ic):
    """The draft's case of ``ic``: ``l3+l3``, ``l2+l2`` or ``l2+l3``."""
    services = sorted(db.vns[v].service for v in ic.vns)
    return {('l3', 'l3'): L3L3, ('l2', 'l2'): L2L2}.get(tuple(services),
                                                       L2L3)


def routed(db, ic):
    """Whether the gateway routes between the VNs of ``ic`` (a, c)."""
    return kind(db, ic) != L2L2


# --- validation ---------------------------------------------------------------

def _gateway_nve(db, gateway):
    dpid = norm_dpid(gateway, 'gateway')
    nve = db.nves.get(dpid)
    if nve is None:
        raise NotFound('no NVE %s' % dpid_str(dpid), 'gateway')
    if nve.role != 'gateway':
        raise Conflict('NVE %s is not a gateway (register it with "role": '
                       '"gateway")' % dpid_str(dpid), 'gateway')
    return nve


def _macs(macs):
    if macs is None:
        return ()
    if not isinstance(macs, (list, tuple)):
        raise BadRequest('allowed_macs must be a list of MAC addresses',
                         'allowed_macs')
    return tuple(sorted({norm_mac(m, 'allowed_macs') for m in macs}))


def _router(router, l2_vnid):
    """``{vnid: (ip/len, mac)}`` from ``{"<vnid>": {"ip", "mac"}}``."""
    if not isinstance(router, dict):
        raise BadRequest('router must be an object {"<vnid>": {"ip": '
                         '"10.5.0.254/24", "mac": "..."}}', 'router')
    out = {}
    for key, value in router.items():
        vnid = norm_vnid(key, 'router')
        if vnid != l2_vnid:
            raise BadRequest('router names VN %d; it gives the gateway an '
                             'address on the L2 VN %d' % (vnid, l2_vnid),
                             'router')
        if not isinstance(value, dict) or set(value) != {'ip', 'mac'} or \
                not isinstance(value['ip'], str):
            raise BadRequest('router.%d must be {"ip": "a.b.c.d/len", '
                             '"mac": "..."}' % vnid, 'router')
        try:
            mac, ips = norm_gateway(value['mac'], [value['ip']])
        except BadRequest as exc:
            raise BadRequest('router.%d: %s' % (vnid, exc.message),
                             'router') from None
        if mac is None:
            raise BadRequest('router.%d.mac is required' % vnid, 'router')
        out[vnid] = (ips[0], mac)
    if l2_vnid not in out:
        raise BadRequest('an l2 + l3 interconnect needs "router": the '
                         'gateway\'s address on the L2 VN %d' % l2_vnid,
                         'router')
    return out


def put_interconnect(db, name, gateway, vns, allowed_macs=None, router=None,
                     origin='rest', now=0.0):
    """Create or replace interconnect ``name``; returns it.  404 for an
    unknown VN or gateway, 409 for an NVE that is not a gateway, a pair of
    VNs another interconnect joins or overlapping routes, 400 for a
    malformed request (not two VNs, the same VN twice, a bad MAC, a field
    that does not fit the kind)."""
    name = norm_name(name, 'name')
    nve = _gateway_nve(db, gateway)
    if not isinstance(vns, (list, tuple)) or len(vns) != 2:
        raise BadRequest('vns must name two VNs', 'vns')
    vnids = tuple(norm_vnid(v, 'vns') for v in vns)
    if vnids[0] == vnids[1]:
        raise BadRequest('vns names VN %d twice' % vnids[0], 'vns')
    for vnid in vnids:
        if vnid not in db.vns:
            raise NotFound('no VN %d' % vnid, 'vns')
    macs = _macs(allowed_macs)
    ic = Interconnect(name, nve.dpid, vnids, macs, {}, origin)
    case = kind(db, ic)
    if macs and case != L2L2:
        raise BadRequest('allowed_macs is the forwarding allowed list of '
                         'an l2 + l2 interconnect; VNs %d and %d are %s' % (
                             vnids[0], vnids[1], case), 'allowed_macs')
    if case == L2L3:
        l2 = next(v for v in vnids if db.vns[v].service == 'l2')
        ic.router = _router(router or {}, l2)
    elif router:
        raise BadRequest('router is for an l2 + l3 interconnect; VNs %d '
                         'and %d are %s' % (vnids[0], vnids[1], case),
                         'router')
    for other in db.interconnects.values():
        if other.name != name and set(other.vns) == set(vnids):
            raise Conflict('interconnect %s already joins VNs %d and %d'
                           % (other.name, vnids[0], vnids[1]), 'vns')
    for vnid, (iface, mac) in ic.router.items():
        ip = str(ipaddress.ip_interface(iface).ip)
        for other in db.interconnects_of(vnid):
            theirs = other.router.get(vnid)
            if other.name != name and theirs and theirs != (iface, mac) and (
                    theirs[1] == mac or str(ipaddress.ip_interface(
                        theirs[0]).ip) == ip):
                raise Conflict('interconnect %s gives VN %d the router %s '
                               '%s; one address, one MAC' % (
                                   other.name, vnid, theirs[0], theirs[1]),
                               'router')
        owner = db.lookup_ip(vnid, ip)
        if owner is not None:
            raise Conflict('router address %s is used by tenant system %s '
                           'in VN %d' % (ip, owner.mac, vnid), 'router')
        if (vnid, mac) in db.attachments:
            raise Conflict('router MAC %s is a tenant system of VN %d' % (
                mac, vnid), 'router')
    others = [o for o in db.interconnects.values() if o.name != name]
    _check_routes(others + [ic], set(vnids), lambda v: db.vns[v])
    db.set_interconnect(ic, now)
    return ic


def delete_interconnect(db, name, now=0.0):
    """Remove interconnect ``name``: its flows leave every NVE."""
    db.remove_interconnect(norm_name(name, 'name'), now)


def check_vn_update(db, vn, new):
    """A VN that takes part in an interconnect keeps its service (it
    decides the interconnect's kind), and its new subnets must not overlap
    the routes of its interconnects (Conflict otherwise)."""
    if new['service'] != vn.service:
        raise Conflict('VN %d takes part in interconnect %s: its service '
                       'cannot change' % (vn.vnid, ', '.join(
                           ic.name for ic in db.interconnects_of(vn.vnid))),
                       'service')
    changed = _VnView(vn.vnid, new['service'], new['gateway_mac'],
                      tuple(new['gateway_ips']))

    def vn_of(vnid):
        return changed if vnid == vn.vnid else db.vns[vnid]
    # Its peers route to its subnets: their tables change too.
    peers = {ic.other(vn.vnid) for ic in db.interconnects_of(vn.vnid)}
    _check_routes(list(db.interconnects.values()), {vn.vnid} | peers,
                  vn_of, field='gateway.ips')


class _VnView:
    """The fields of a VN the route checks read, as a change would make
    them."""

    def __init__(self, vnid, service, gateway_mac, gateway_ips):
        self.vnid, self.service = vnid, service
        self.gateway_mac, self.gateway_ips = gateway_mac, gateway_ips


def _own_nets(vn, ics):
    """The subnets a VN's hosts are routed from: an l3 VN's gateway
    subnets, an l2 VN's router subnets."""
    if vn.service == 'l3':
        return [ipaddress.ip_interface(i).network for i in vn.gateway_ips]
    return [ipaddress.ip_interface(ic.router[vn.vnid][0]).network
            for ic in ics if vn.vnid in ic.router]


def _check_routes(ics, vnids, vn_of, field='vns'):
    """Every VN of ``vnids`` routes each destination one way: its own
    subnets and those it reaches through its routed interconnects never
    overlap (the flows at its NVEs would be ambiguous)."""
    for vnid in sorted(vnids):
        mine = [ic for ic in ics if vnid in ic.vns and _is_routed(
            vn_of, ic)]
        if not mine:
            continue
        nets = [(net, 'VN %d' % vnid) for net in _own_nets(
            vn_of(vnid), mine)]
        for ic in mine:
            other = vn_of(ic.other(vnid))
            nets += [(net, 'interconnect %s' % ic.name)
                     for net in _own_nets(other, [ic])]
        for i, (net, what) in enumerate(nets):
            for net2, what2 in nets[i + 1:]:
                if net.version == net2.version and net.overlaps(net2):
                    raise Conflict('in VN %d, %s (%s) overlaps %s (%s): '
                                   'routes would be ambiguous' % (
                                       vnid, net, what, net2, what2), field)


def _is_routed(vn_of, ic):
    return {vn_of(v).service for v in ic.vns} != {'l2'}


def put_external(db, name, gateway, port, vnid=None, vlans=None,
                 allowed_macs=None, origin='rest', now=0.0):
    """Create or replace external network ``name`` on ``port`` of gateway
    ``gateway``; returns it.  404 for an unknown VN or gateway, 409 for an
    NVE that is not a gateway or a port another external uses, 400 for a
    malformed request (``vnid`` and ``vlans`` both or neither, a VLAN out
    of range, a bad MAC, a port bound as an access port)."""
    name = norm_name(name, 'name')
    nve = _gateway_nve(db, gateway)
    port = norm_port_name(port, 'port')
    if (vnid is None) == (vlans is None):
        raise BadRequest('give either "vnid" (untagged) or "vlans" (VLAN ID '
                         '-> VNID)', 'vnid')
    mapped = {}
    if vlans is not None:
        if not isinstance(vlans, dict) or not vlans:
            raise BadRequest('vlans must be a non-empty object of VLAN ID '
                             '-> VNID', 'vlans')
        for vlan, vn_id in vlans.items():
            mapped[norm_vlan(vlan, 'vlans')] = db.get_vn(
                norm_vnid(vn_id, 'vlans')).vnid
        if len(set(mapped.values())) != len(mapped):
            raise BadRequest('a port carries each VN on one VLAN only',
                             'vlans')
        vnid = None
    else:
        vnid = db.get_vn(norm_vnid(vnid)).vnid
    macs = _macs(allowed_macs)
    if port in nve.bindings:
        raise BadRequest('port %s of NVE %s is bound as an access port' % (
            port, dpid_str(nve.dpid)), 'port')
    other = db.external_at(nve.dpid, port)
    if other is not None and other.name != name:
        raise Conflict('port %s of NVE %s carries external network %s' % (
            port, dpid_str(nve.dpid), other.name), 'port')
    ext = External(name, nve.dpid, port, vnid, mapped, macs, origin)
    db.set_external(ext, now)
    return ext


def delete_external(db, name, now=0.0):
    """Remove external network ``name``: its flows leave the gateway and
    every NVE, its hosts detach."""
    db.remove_external(norm_name(name, 'name'), now)


# --- what the flows need ------------------------------------------------------

def side(db, ic, vnid):
    """``(gateway MAC, [interfaces])`` of the gateway on ``vnid``'s side of
    a routed interconnect: an l3 VN's own gateway, or the router on the
    L2 VN."""
    if vnid in ic.router:
        iface, mac = ic.router[vnid]
        return mac, [iface]
    vn = db.vns[vnid]
    return vn.gateway_mac, list(vn.gateway_ips)


def nets(db, ic, vnid):
    """The subnets on ``vnid``'s side of routed ``ic`` (what the other
    side routes to the gateway)."""
    return [ipaddress.ip_interface(i).network for i in side(db, ic, vnid)[1]]


def routable(db, ic, vnid, ip):
    """Whether address ``ip`` of a host of ``vnid`` is reached across."""
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in nets(db, ic, vnid))


def l2_ics(db, vnid):
    """The l2 + l2 interconnects of ``vnid``, by name."""
    return [ic for ic in db.interconnects_of(vnid) if kind(db, ic) == L2L2]


def reachable_across(db, ic, att):
    """Whether allowed MAC ``att`` (an attachment of one of ``ic``'s VNs)
    can be reached from the other VN: attached and tunnelled to on an NVE
    other than the gateway."""
    return att.reachable and bool(db.vtep_of(att)) and att.nve != ic.gateway


def imports(db, vnid):
    """``{mac: (interconnect, attachment)}``: the allowed MACs of other VNs
    that l2 + l2 interconnects make entries of ``vnid`` (at the gateway).
    A MAC attached in ``vnid`` itself stays its own; one two interconnects
    would import is imported by the first (by name)."""
    out = {}
    for ic in l2_ics(db, vnid):
        other = ic.other(vnid)
        for mac in ic.allowed_macs:
            if mac in out or (vnid, mac) in db.attachments:
                continue
            att = db.attachments.get((other, mac))
            if att is not None and reachable_across(db, ic, att):
                out[mac] = (ic, att)
    return out


def import_answers(db, vnid):
    """``{ip: (interconnect, attachment)}``: the addresses of imported MACs
    that ``vnid``'s NVEs answer ARP (or NS) for.  An address two imported
    MACs have is answered for the first (by MAC); the VN's own tenant
    systems and gateways take precedence in the flows themselves."""
    out = {}
    for _, (ic, att) in sorted(imports(db, vnid).items()):
        for ip in sorted(att.ips):
            out.setdefault(ip, (ic, att))
    return out


def answer_for(db, vnid, ip):
    """The MAC an NVE of ``vnid`` answers address resolution of ``ip``
    with across interconnects (a router's, or an imported MAC's), or
    None."""
    for iface, mac in sorted(routers(db, vnid)):
        if str(ipaddress.ip_interface(iface).ip) == ip:
            return mac
    found = import_answers(db, vnid).get(ip)
    return found[1].mac if found else None


def routers(db, vnid):
    """``{(ip/len, mac)}`` of the routers interconnects give L2 VN
    ``vnid``."""
    return {ic.router[vnid] for ic in db.interconnects_of(vnid)
            if vnid in ic.router}


def imported_by(db, ic, vnid):
    """The attachments ``ic`` imports into ``vnid`` (see :func:`imports`),
    by MAC."""
    return [att for _, (owner, att) in sorted(imports(db, vnid).items())
            if owner is ic]


def allowed_sources(db, ic, vnid):
    """Allowed MACs of ``ic`` attached in ``vnid``: whose frames cross."""
    return [db.attachments[(vnid, mac)] for mac in ic.allowed_macs
            if (vnid, mac) in db.attachments]


def ics_allowing(db, mac):
    """The l2 + l2 interconnects whose allowed list has ``mac``."""
    return [ic for ic in db.interconnects.values() if mac in ic.allowed_macs]


def gateways_of(db, vnid):
    """The gateway NVEs of ``vnid``'s interconnects."""
    return {ic.gateway for ic in db.interconnects_of(vnid)}


# --- traffic through the gateways ---------------------------------------------

class Traffic:
    """Frames and bytes each interconnect carried through its gateway, as
    counters that only grow, read from the gateway's flow counters: the
    table-7 flows that route or admit a frame into the other VN carry the
    interconnect's cookie.  The counts come with the gateway's flow dumps
    (every ``audit_interval``, and ``GET /v1/nves/{dpid}/audit``).  A flow
    that was replaced since the last dump starts again from zero (OpenFlow
    clears the counters of a flow added over another): what it counted
    since the dump is added; what its predecessor counted after the last
    dump is lost."""

    def __init__(self):
        self._last = {}       # dpid -> {flow key: (packets, bytes, cookie)}
        self.totals = {}      # interconnect name -> [frames, bytes]
        self.as_of = {}       # interconnect name -> time of the last dump

    def observe(self, db, dpid, flow_counts, now):
        """A dump of NVE ``dpid``: ``[(Flow, packets, bytes)]``."""
        names = {cookie_for(IcOwner(ic.name)): ic.name
                 for ic in db.interconnects.values() if ic.gateway == dpid}
        if not names and dpid not in self._last:
            return
        # A dump may come in several parts: each updates what it carries.
        last = self._last.setdefault(dpid, {})
        seen = {}
        for item in flow_counts:
            flow = item[0]
            if flow.table != P.INTERCONNECT or flow.priority not in (
                    P.PRIO_ROUTE, P.PRIO_ADMIT):
                continue
            name = names.get(flow.cookie)
            if name is None:
                continue
            packets, nbytes = item[1], item[2] if len(item) > 2 else 0
            was = last.get(flow.key, (0, 0, 0))
            grew = (packets - was[0], nbytes - was[1]) if packets >= was[0] \
                else (packets, nbytes)
            total = self.totals.setdefault(name, [0, 0])
            total[0] += grew[0]
            total[1] += max(0, grew[1])
            seen[flow.key] = (packets, nbytes, flow.cookie)
        last.update(seen)
        cookies = set(names)
        for key in [k for k, (_, _, cookie) in last.items()
                    if cookie not in cookies]:
            del last[key]
        for name in names.values():
            self.as_of[name] = now
        for name in list(self.totals):
            if name not in db.interconnects:
                del self.totals[name]
                self.as_of.pop(name, None)

    def of(self, name):
        """``{"frames", "bytes", "as_of"}`` of interconnect ``name``."""
        frames, nbytes = self.totals.get(name, (0, 0))
        return {'frames': frames, 'bytes': nbytes,
                'as_of': self.as_of.get(name)}
