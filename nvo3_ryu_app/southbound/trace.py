"""Explain a packet's fate, in the draft's terms (``nvo3ctl trace``).

A frame from a tenant system (or from an access port) is run through the
flows the authority holds for each NVE (their desired state, the one the
audits hold the switches to), on the simulated OpenFlow network of
simulate.py: from the ingress NVE's access port, through every table,
over each tunnel to the NVE it reaches, to where it is delivered, answered,
punted or dropped.  Every flow it meets is annotated with its owner, read
back from its cookie (a VN on an NVE, a tenant system's mapping entry, the
NVE itself), so the answer says which mapping entries and which VN
membership decided.

Each hop also carries what to give ``ovs-appctl ofproto/trace`` on that
NVE (the bridge's flow syntax) and the (table, priority, cookie) of every
flow the switch should hit: the client (nvo3ctl trace --ofproto-trace)
runs the switch's own trace and says whether the two agree.  A flow
deleted by hand, a switch behind on its flows, anything an audit would
repair, shows up there as a disagreement at the table where it happens.
"""

import ipaddress

from ..authority import oftext
from ..authority import pipeline as P
from ..authority.addresses import dpid_str, norm_ip, norm_mac
from ..authority.errors import BadRequest, Conflict, NotFound
from ..authority.owners import cookie_for
from . import simulate as S

BROADCAST = 'ff:ff:ff:ff:ff:ff'
KINDS = ('auto', 'ip', 'arp', 'eth', 'broadcast')

# Why a frame went to the controller, by (table, priority tier).
PUNTS = {
    (P.CLASSIFY, 'MISS'): ('dropped', 'no binding: the port (or VLAN) is '
                           'bound to no VN, or the tunnel key is no VN '
                           'here; counted and dropped by the authority'),
    (P.CLASSIFY, 'PORT_PUNT'): ('punted', 'first frame of a VN at this NVE: '
                                'the authority learns the tenant system '
                                '(attach) and programs the VN here'),
    (P.SOURCE, 'PORT_PUNT'): ('punted', 'unknown source at a bound port: '
                              'learned as a new tenant system (attach), or '
                              'a known one seen elsewhere (move, or a '
                              'conflict if the old location still answers)'),
    (P.SOURCE, 'ADDR_PUNT'): ('punted', 'an address the tenant system does '
                              'not own yet: learned, or refused as spoofing '
                              'when another tenant system of the VN owns '
                              'it (conflict event)'),
    (P.ARP_ND_RESPONDER, 'ND_PUNT'): ('answered', 'neighbour solicitation '
                                      'answered by the authority at the '
                                      'ingress port'),
    (P.ARP_ND_RESPONDER, 'GATEWAY'): ('answered', 'answered by the authority '
                                      'for the VN gateway'),
    (P.L3_ROUTE, 'GLEAN'): ('punted', 'routed to an address nobody '
                            'announced: the authority asks for it from the '
                            'gateway (glean)'),
    (P.L2_FORWARD, 'PROBE'): ('punted', 'an answer to a mobility probe'),
}


class Trace:
    """A frame's way through the NVEs (see the module doc); built by
    :func:`trace`, shown by :meth:`to_dict`."""

    def __init__(self, views, tables, settings):
        self.views = views
        self.db = views.db
        self.tables = tables
        self.settings = settings
        self.net = _Network(self.db, settings, tables)
        self.notes = []
        self.verdicts = []

    def owner_of(self, dpid, cookie):
        """The owner a cookie names among what NVE ``dpid`` holds."""
        table = self.tables.get(dpid)
        for owner in (table.owners() if table is not None else ()):
            if cookie_for(owner) == cookie:
                return owner
        return None

    def flow_view(self, dpid, table_id, flow, names):
        """One flow the frame met, with its owner in the draft's terms."""
        if isinstance(flow, str):
            return {'table': table_id,
                    'table_name': P.TABLES[table_id].name, 'note': flow}
        owner = self.owner_of(dpid, flow.cookie)
        return {'table': table_id, 'table_name': P.TABLES[table_id].name,
                'priority': flow.priority,
                'tier': P.tier_name(table_id, flow.priority),
                'cookie': '0x%016x' % flow.cookie,
                'owner': self.views.owner(owner, dpid)['text']
                if owner is not None else 'unknown cookie',
                'flow': oftext.flow_text(flow, names)}


class _Network(S.FakeNetwork):
    """The simulated network, each switch loaded on first use with what
    the authority holds for that NVE."""

    def __init__(self, db, settings, tables):
        super().__init__(db, settings)
        self.tables = tables

    def switch(self, dpid):
        """NVE ``dpid``'s switch, holding its desired flows and meters."""
        sw = self.switches.get(dpid)
        if sw is None:
            sw = self.switches[dpid] = S.FakeSwitch(dpid)
            table = self.tables.get(dpid)
            items = table.desired.values() if table is not None else ()
            meters = [i for i in items if isinstance(i, P.Meter)]
            flows = [i for i in items if isinstance(i, P.Flow)]
            sw.apply([('add', m) for m in meters] +
                     [('add', f) for f in flows], verify_idempotent=False)
        return sw


def _is_mac(text):
    try:
        norm_mac(text)
        return True
    except Exception:   # noqa: BLE001 - anything not a MAC
        return False


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _tenant(db, vnid, text):
    """The attachment of VN ``vnid`` a MAC or an IP names, or None."""
    if _is_mac(text):
        return db.attachments.get((vnid, norm_mac(text)))
    if _is_ip(text):
        return db.lookup_ip(vnid, norm_ip(text))
    return None             # neither a MAC nor an IP: no tenant system


def _elsewhere(db, vnid, text):
    """VNs other than ``vnid`` where a MAC or IP is a tenant system."""
    found = []
    for other in sorted(db.vns):
        if other != vnid and _tenant(db, other, text) is not None:
            found.append(other)
    return found


def _ofproto_flow(pkt, in_port):
    """The frame as ``ofproto/trace`` takes it (OVS flow syntax)."""
    parts = ['in_port=%d' % in_port]
    if pkt.get('tunnel_id'):
        parts.append('tun_id=0x%x' % pkt['tunnel_id'])
        for ours, theirs in (('tun_ipv4_src', 'tun_src'),
                             ('tun_ipv4_dst', 'tun_dst'),
                             ('tun_ipv6_src', 'tun_ipv6_src'),
                             ('tun_ipv6_dst', 'tun_ipv6_dst')):
            if pkt.get(ours):
                parts.append('%s=%s' % (theirs, pkt[ours]))
    parts += ['dl_src=%s' % pkt['eth_src'], 'dl_dst=%s' % pkt['eth_dst']]
    if pkt.get('vlan_vid'):
        parts.append('dl_vlan=%d' % (pkt['vlan_vid'] & 0xFFF))
    parts.append('dl_type=0x%04x' % pkt['eth_type'])
    names = (('arp_op', 'arp_op'), ('arp_spa', 'arp_spa'),
             ('arp_tpa', 'arp_tpa'), ('arp_sha', 'arp_sha'),
             ('arp_tha', 'arp_tha'), ('ipv4_src', 'nw_src'),
             ('ipv4_dst', 'nw_dst'), ('ipv6_src', 'ipv6_src'),
             ('ipv6_dst', 'ipv6_dst'), ('ip_proto', 'nw_proto'),
             ('ip_ttl', 'nw_ttl'), ('icmpv6_type', 'icmpv6_type'),
             ('ipv6_nd_target', 'nd_target'))
    for ours, theirs in names:
        if pkt.get(ours) is not None:
            parts.append('%s=%s' % (theirs, pkt[ours]))
    return ','.join(parts)


def _frame(db, vn, src_att, src_mac, src_ip, dst, kind):
    """The frame the source sends, and what the destination names."""
    dst_att = None
    if dst.lower() in ('broadcast', BROADCAST):
        return 'broadcast', S.broadcast(src_mac), None
    if _is_ip(dst):
        dst_ip = norm_ip(dst)
        dst_att = db.lookup_ip(vn.vnid, dst_ip)
        if kind == 'auto':
            kind = 'ip' if dst_att is not None or vn.service == 'l3' \
                else 'arp'
        if kind == 'arp':
            if src_ip is None or ':' in dst_ip:
                raise BadRequest('an ARP request needs an IPv4 source and '
                                 'target', 'dst')
            return 'arp', S.arp_request(src_mac, src_ip, dst_ip), dst_att
        if src_ip is None:
            raise Conflict('the source has no IP address in VN %d' %
                           vn.vnid, 'src')
        eth_dst = dst_att.mac if dst_att is not None else BROADCAST
        if vn.service == 'l3' and not _same_subnet(src_ip, dst_ip, vn):
            eth_dst = vn.gateway_mac
        if ':' in dst_ip:
            return 'ip', S.ipv6(src_mac, eth_dst, src_ip, dst_ip), dst_att
        return 'ip', S.ipv4(src_mac, eth_dst, src_ip, dst_ip), dst_att
    if _is_mac(dst):
        dst_mac = norm_mac(dst)
        dst_att = db.attachments.get((vn.vnid, dst_mac))
        return 'eth', S.ethernet(src_mac, dst_mac), dst_att
    raise NotFound('dst must be a MAC, an IP address or "broadcast": '
                   'nothing is named %r' % dst[:40], 'dst')


def _same_subnet(src_ip, dst_ip, vn):
    for iface in vn.gateway_ips:
        net = ipaddress.ip_interface(iface).network
        if ipaddress.ip_address(src_ip) in net:
            return ipaddress.ip_address(dst_ip) in net
    return False


def trace(views, tables, settings, vn, src, dst, kind='auto', at=None):
    """Trace a frame of VN ``vn`` (VNID or name) from ``src`` (a tenant
    system's MAC or IP) to ``dst`` (MAC, IP or ``broadcast``).  ``kind``:
    ``auto`` (an IP packet, or an ARP request when the target's MAC is
    unknown), ``ip``, ``arp``, ``eth`` or ``broadcast``.  ``at``: ``(dpid,
    port)`` to send from there instead of the source's attachment (a
    frame from a MAC the authority does not know there: spoofing, a move,
    an unbound port).  Returns the trace as a dict (see to REST)."""
    if kind not in KINDS:
        raise BadRequest('kind must be one of %s' % ', '.join(KINDS), 'kind')
    db = views.db
    vn = db.get_vn(views.resolve_vn(vn))
    tr = Trace(views, tables, settings)
    src_att = _tenant(db, vn.vnid, src)
    if src_att is not None:
        src_mac = src_att.mac
        src_ip = next((ip for ip in sorted(src_att.ips) if ':' not in ip),
                      next(iter(sorted(src_att.ips)), None))
        if _is_ip(src):
            src_ip = norm_ip(src)
    elif _is_mac(src) and at is not None:
        src_mac, src_ip = norm_mac(src), None
    elif _is_ip(src) and at is not None:
        raise Conflict('give the source as a MAC to send it from a port',
                       'src')
    else:
        other = _elsewhere(db, vn.vnid, src)
        raise NotFound('%s is no tenant system of VN %d%s; to trace a '
                       'frame from an unknown source give the port it '
                       'comes from (at=NVE:PORT)' % (
                           src[:40], vn.vnid, ' (it is in VN %s)' % ', '.join(
                               map(str, other)) if other else ''), 'src')
    if at is not None:
        dpid, port, vlan = at[0], at[1], None
    else:
        dpid, port, vlan = src_att.nve, src_att.port, src_att.vlan
    nve = db.nves.get(dpid)
    if nve is None:
        raise NotFound('no NVE %s' % dpid_str(dpid), 'at')
    ofport = nve.ofport(port)
    kind, pkt, dst_att = _frame(db, vn, src_att, src_mac, src_ip, dst, kind)
    if vlan is not None:
        pkt['vlan_vid'] = S.VLAN_PRESENT | vlan
    out = {
        'vn': {'vnid': vn.vnid, 'name': vn.name, 'service': vn.service,
               'encap': vn.encap},
        'kind': kind, 'frame': dict(pkt),
        'source': _entry(db, settings, src_att) if src_att else {
            'mac': src_mac, 'note': 'not a tenant system here'},
        'destination': _entry(db, settings, dst_att) if dst_att else None,
        'membership': [{'nve': dpid_str(d), 'name': views.nve_label(d),
                        'vtep_ip': db.nves[d].vtep_ip}
                       for d in sorted(db.members(vn.vnid))],
        'ingress': {'nve': dpid_str(dpid), 'name': views.nve_label(dpid),
                    'port': port, 'ofport': ofport, 'vlan': vlan},
        'hops': [], 'verdicts': tr.verdicts, 'notes': tr.notes,
    }
    if dst_att is None and kind != 'broadcast':
        other = _elsewhere(db, vn.vnid, dst)
        if other:
            tr.notes.append('%s is a tenant system of VN %s, not of VN %d: '
                            'isolation, a frame of VN %d never reaches it' % (
                                dst, ', '.join(map(str, other)), vn.vnid,
                                vn.vnid))
        else:
            tr.notes.append('%s is in no mapping entry of VN %d' % (
                dst, vn.vnid))
    if src_att is not None and src_att.frozen_until > 0:
        tr.notes.append('%s is frozen at %s port %s until %.0f (it moved '
                        'too often): claims elsewhere are refused' % (
                            src_att.mac, views.nve_label(src_att.nve),
                            src_att.port, src_att.frozen_until))
    if ofport is None:
        tr.verdicts.append('dropped: port %s of %s is not up (the NVE has '
                           'no such port now)' % (port, views.nve_label(
                               dpid)))
        return out
    result = tr.net.send(dpid, ofport, pkt)
    for hop in result.steps:
        out['hops'].append(_hop(tr, hop))
    _verdicts(tr, result, dpid, ofport)
    return out


def _entry(db, settings, att):
    entries = db.mapping_entries(att, settings.tunnel_ports)
    return {'mac': att.mac, 'ips': sorted(att.ips), 'nve': dpid_str(att.nve),
            'port': att.port, 'vlan': att.vlan, 'seq': att.seq,
            'tunnel_if_id': entries[0]['tunnel_if_id'],
            'nve_ip': entries[0]['nve_ip'], 'origin': att.source,
            'reachable': att.reachable}


def _hop(tr, hop):
    dpid, in_port, pkt, steps, outputs = hop
    nve = tr.db.nves.get(dpid)
    names = {n: name for name, n in (nve.dyn_ports if nve else {}).items()}
    arrived = 'tunnel %s (VNID %s from %s)' % (
        names.get(in_port, in_port), pkt.get('tunnel_id'),
        pkt.get('tun_ipv4_src') or pkt.get('tun_ipv6_src')) \
        if pkt.get('tunnel_id') else 'access port %s' % names.get(
            in_port, in_port)
    tables = [tr.flow_view(dpid, t, f, names) for t, f in steps]
    return {
        'nve': dpid_str(dpid), 'name': tr.views.nve_label(dpid),
        'in_port': in_port, 'arrived': arrived, 'tables': tables,
        'outputs': [_output_text(out, names) for out in outputs],
        'ofproto_trace': {
            'flow': _ofproto_flow(pkt, in_port),
            'expect': [{'table': t['table'], 'priority': t.get('priority'),
                        'cookie': t.get('cookie')} for t in tables
                       if 'priority' in t]},
    }


def _output_text(out, names):
    port = out.port
    if port == 'CONTROLLER':
        return 'to the authority (packet-in from table %d)' % out.table
    text = 'output %s' % (names.get(port, port))
    if out.pkt.get('tunnel_id') is not None and (
            out.pkt.get('tun_ipv4_dst') or out.pkt.get('tun_ipv6_dst')):
        text += ' (VNID %d to VTEP %s)' % (out.pkt['tunnel_id'], out.pkt.get(
            'tun_ipv4_dst') or out.pkt.get('tun_ipv6_dst'))
    return text


def _verdicts(tr, result, ingress, in_port):
    views, say = tr.views, tr.verdicts.append
    for dpid, port, _pkt in result.deliveries:
        where = views.nve_label(dpid)
        if dpid == ingress and port == in_port:
            say('answered by the ingress NVE %s itself (ARP responder, '
                'sent back out of its port %s): nothing crosses the '
                'underlay' % (where, result.names.get((dpid, port), port)))
        else:
            say('delivered on %s port %s' % (where, result.names.get(
                (dpid, port), port)))
    for src, dst, vni, _pkt in result.underlay:
        say('tunnelled from %s to %s (VNID %d)' % (
            views.nve_label(src), views.nve_label(dst) if dst else
            'an unknown VTEP', vni))
    for dpid, table, _pkt in result.packet_ins:
        steps = next(s[3] for s in result.steps if s[0] == dpid)
        flow = next((f for t, f in reversed(steps) if t == table
                     and not isinstance(f, str)), None)
        tier = P.tier_name(table, flow.priority) if flow else None
        what, why = PUNTS.get((table, tier), ('punted', 'to the authority'))
        say('%s at %s (table %s): %s' % (what, views.nve_label(dpid),
                                          P.TABLES[table].name, why))
    flooded = set()
    for dpid, _port, _pkt, steps, outputs in result.steps:
        for table, flow in steps:
            if isinstance(flow, str):
                continue
            tier = P.tier_name(table, flow.priority)
            if tier in ('FLOOD', 'UNKNOWN_UCAST') and table == P.L2_FORWARD \
                    and dpid not in flooded:
                flooded.add(dpid)
                say('replicated by %s (BUM%s) to its local ports of the VN '
                    'and to the VN\'s member NVEs only' % (
                        views.nve_label(dpid), ', unknown unicast'
                        if tier == 'UNKNOWN_UCAST' else ''))
            if tier == 'BLOCKED':
                say('dropped at %s: this MAC is blocked at this port (a '
                    'conflicting claim: it lives elsewhere and answered '
                    'there)' % views.nve_label(dpid))
        if not outputs and steps and not any(
                d == dpid for d, _t, _p in result.packet_ins):
            table, flow = steps[-1]
            if isinstance(flow, str) or not flow.actions:
                say('dropped at %s in table %s (%s)' % (
                    views.nve_label(dpid), P.TABLES[table].name,
                    flow if isinstance(flow, str) else 'a drop flow, tier %s'
                    % P.tier_name(table, flow.priority)))
    if not tr.verdicts:
        say('dropped: no flow sends it anywhere')


__all__ = ['trace', 'KINDS', 'Trace']
